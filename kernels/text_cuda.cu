// UMT5's relative-bias attention and gated GELU on the GPU (text_cuda.h). A 512-token prompt is ~4 GFLOP of
// attention per layer next to ~200 GFLOP of GEMMs on cuBLASLt; the attention must still not dominate: the first
// kernel (one block per query and head, every key row read from global memory by one thread) took ~90% of an
// XXL encode on an H100 (116 ms vs transformers' 32 ms, bench/results/text_h100_96121f9). head_dim 64 (UMT5) now
// runs a tiled kernel; other widths keep the simple one.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <type_traits>

#include "kernels/text_cuda.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"

namespace lr {
namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Reduction over the block (kThreads threads): max when is_max, else sum. `red` holds kThreads / 32 floats.
__device__ float block_reduce(float v, bool is_max, float* red) {
    v = is_max ? warp_max(v) : warp_sum(v);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // red may still be read by a previous reduction
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = is_max ? -FLT_MAX : 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    return r;
}

// Block (i, h): query i, head h. Shared: the query row (head_dim floats), the scores (len floats), the reduction.
__global__ void relative_bias_attention_kernel(RelativeBiasAttentionCudaParams p) {
    extern __shared__ float smem[];
    const int64_t i = blockIdx.x, h = blockIdx.y, D = p.head_dim, L = p.len;
    float* sq = smem;
    float* ss = sq + D;
    float* red = ss + L;
    const auto* q = static_cast<const __nv_bfloat16*>(p.q) + i * p.q_stride + h * D;
    const auto* k = static_cast<const __nv_bfloat16*>(p.k) + h * D;
    const auto* v = static_cast<const __nv_bfloat16*>(p.v) + h * D;
    for (int64_t d = threadIdx.x; d < D; d += kThreads) sq[d] = __bfloat162float(q[d]);
    __syncthreads();
    const float* bias = p.rel_bias + h * (2 * L - 1) + (L - 1) - i;  // bias[j] for key j
    float local_max = -FLT_MAX;
    for (int64_t j = threadIdx.x; j < L; j += kThreads) {
        const __nv_bfloat16* kj = k + j * p.k_stride;
        float dot = 0.0f;
        for (int64_t d = 0; d < D; ++d) dot += sq[d] * __bfloat162float(kj[d]);
        const float s = p.scale * dot + bias[j];
        ss[j] = s;
        local_max = fmaxf(local_max, s);
    }
    const float m = block_reduce(local_max, true, red);
    float local_sum = 0.0f;
    for (int64_t j = threadIdx.x; j < L; j += kThreads) {
        const float e = expf(ss[j] - m);
        ss[j] = e;
        local_sum += e;
    }
    const float inv = 1.0f / block_reduce(local_sum, false, red);  // also orders the ss writes before the reads
    auto* out = static_cast<__nv_bfloat16*>(p.out) + i * p.out_stride + h * D;
    for (int64_t d = threadIdx.x; d < D; d += kThreads) {
        float acc = 0.0f;
        for (int64_t j = 0; j < L; ++j) acc += ss[j] * __bfloat162float(v[j * p.v_stride + d]);
        out[d] = __float2bfloat16_rn(acc * inv);
    }
}

// Tiled, for head_dim D: block (query tile, head) of QT queries x KS key splits (one thread each). K and V rows of
// the head come through shared memory in chunks of KC keys (coalesced, widened to f32, rows padded by one float so
// that the KS splits of a warp read different banks); each thread keeps its query and its output row in registers
// and runs an online softmax over the keys j = split (mod KS) of each chunk; the KS partial (max, sum, row) of a query
// are merged through shared memory at the end. Every key visible, bias[h, j - i + len - 1] added to the score.
template <int D, int QT, int KS, int KC>
__global__ void __launch_bounds__(QT* KS) relative_bias_attention_tiled_kernel(RelativeBiasAttentionCudaParams p) {
    constexpr int kT = QT * KS, kRow = D + 1;
    constexpr int kChunk = 2 * KC * kRow, kMerge = kT * (D + 2);
    __shared__ float smem[kChunk > kMerge ? kChunk : kMerge];
    float* sk = smem;
    float* sv = smem + KC * kRow;
    const int64_t L = p.len, h = blockIdx.y;
    const int t = static_cast<int>(threadIdx.x), qi = t / KS, split = t % KS;
    const int64_t i = static_cast<int64_t>(blockIdx.x) * QT + qi;
    const bool valid = i < L;
    float q[D], acc[D];
    const auto* qrow = static_cast<const __nv_bfloat16*>(p.q) + (valid ? i : 0) * p.q_stride + h * D;
#pragma unroll
    for (int d = 0; d < D; ++d) {
        q[d] = valid ? __bfloat162float(qrow[d]) * p.scale : 0.0f;
        acc[d] = 0.0f;
    }
    const float* bias = p.rel_bias + h * (2 * L - 1) + (L - 1) - (valid ? i : 0);  // bias[j] for key j
    const auto* kb = static_cast<const __nv_bfloat16*>(p.k) + h * D;
    const auto* vb = static_cast<const __nv_bfloat16*>(p.v) + h * D;
    float m = -FLT_MAX, l = 0.0f;
    for (int64_t j0 = 0; j0 < L; j0 += KC) {
        __syncthreads();  // the previous chunk's reads are done
        for (int e = t; e < KC * D; e += kT) {
            const int r = e / D, c = e % D;
            const int64_t j = j0 + r;
            sk[r * kRow + c] = j < L ? __bfloat162float(kb[j * p.k_stride + c]) : 0.0f;
            sv[r * kRow + c] = j < L ? __bfloat162float(vb[j * p.v_stride + c]) : 0.0f;
        }
        __syncthreads();
        if (!valid) continue;
        const int n = static_cast<int>(L - j0 < KC ? L - j0 : KC);
        for (int r = split; r < n; r += KS) {
            const float* kr = sk + r * kRow;
            float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
#pragma unroll
            for (int d = 0; d < D; d += 4) {
                d0 += q[d] * kr[d];
                d1 += q[d + 1] * kr[d + 1];
                d2 += q[d + 2] * kr[d + 2];
                d3 += q[d + 3] * kr[d + 3];
            }
            const float sc = (d0 + d1) + (d2 + d3) + bias[j0 + r];
            if (sc > m) {
                const float corr = expf(m - sc);  // 0 on the first key (m = -FLT_MAX)
                l *= corr;
#pragma unroll
                for (int d = 0; d < D; ++d) acc[d] *= corr;
                m = sc;
            }
            const float e = expf(sc - m);
            l += e;
            const float* vr = sv + r * kRow;
#pragma unroll
            for (int d = 0; d < D; ++d) acc[d] += e * vr[d];
        }
    }
    // Merge the KS splits of each query: slot t holds (max, sum, row).
    __syncthreads();
    float* mine = smem + t * (D + 2);
    mine[0] = m;
    mine[1] = l;
#pragma unroll
    for (int d = 0; d < D; ++d) mine[2 + d] = acc[d];
    __syncthreads();
    if (!valid) return;
    const float* first = smem + qi * KS * (D + 2);
    float mx = -FLT_MAX;
    for (int s2 = 0; s2 < KS; ++s2) mx = fmaxf(mx, first[s2 * (D + 2)]);
    float w[KS], sum = 0.0f;
    for (int s2 = 0; s2 < KS; ++s2) {
        const float* part = first + s2 * (D + 2);
        w[s2] = part[1] > 0.0f ? expf(part[0] - mx) : 0.0f;  // a split without keys weighs nothing
        sum += w[s2] * part[1];
    }
    const float inv = 1.0f / sum;
    auto* out = static_cast<__nv_bfloat16*>(p.out) + i * p.out_stride + h * D;
    for (int d = split * (D / KS); d < (split + 1) * (D / KS); ++d) {
        float o = 0.0f;
        for (int s2 = 0; s2 < KS; ++s2) o += w[s2] * first[s2 * (D + 2) + 2 + d];
        out[d] = __float2bfloat16_rn(o * inv);
    }
}

__device__ __forceinline__ float gelu_tanh_f32(float x) {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

__global__ void gated_gelu_kernel(const __nv_bfloat16* gate, const __nv_bfloat16* up, __nv_bfloat16* out, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        out[i] = __float2bfloat16_rn(gelu_tanh_f32(__bfloat162float(gate[i])) * __bfloat162float(up[i]));
    }
}

// Block i: row i, its dim elements in strides of the block.
template <typename T>
__global__ void embedding_rows_kernel(const T* table, const int32_t* ids, float* out, int64_t dim) {
    const int64_t i = blockIdx.x;
    const T* row = table + static_cast<int64_t>(ids[i]) * dim;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
        if constexpr (std::is_same_v<T, float>) {
            out[i * dim + d] = row[d];
        } else {
            out[i * dim + d] = __bfloat162float(row[d]);
        }
    }
}

}  // namespace

void launch_embedding_rows(const EmbeddingRowsCudaParams& p, Stream stream) {
    LR_ASSERT(p.table && p.ids && p.out && p.len >= 0 && p.dim > 0 && p.len <= 2147483647,
              "embedding_rows: null pointer or bad shape (len ", p.len, ", dim ", p.dim, ")");
    LR_ASSERT(p.table_dtype == DType::kBF16 || p.table_dtype == DType::kF32, "embedding_rows: table dtype ",
              dtype_name(p.table_dtype), ", expected BF16 or F32");
    if (p.len == 0) return;
    const auto blocks = static_cast<unsigned>(p.len);
    if (p.table_dtype == DType::kF32) {
        embedding_rows_kernel<<<blocks, 256, 0, stream>>>(static_cast<const float*>(p.table), p.ids, p.out, p.dim);
    } else {
        embedding_rows_kernel<<<blocks, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(p.table), p.ids, p.out,
                                                          p.dim);
    }
    LR_CUDA_CHECK(cudaGetLastError());
}

void launch_relative_bias_attention(const RelativeBiasAttentionCudaParams& in, Stream stream) {
    RelativeBiasAttentionCudaParams p = in;
    LR_ASSERT(p.q && p.k && p.v && p.out && p.rel_bias && p.len > 0 && p.heads > 0 && p.head_dim > 0,
              "relative_bias_attention: null pointer or empty shape (len ", p.len, ", heads ", p.heads, ", head_dim ",
              p.head_dim, ")");
    const int64_t width = p.heads * p.head_dim;
    if (p.q_stride == 0) p.q_stride = width;
    if (p.k_stride == 0) p.k_stride = width;
    if (p.v_stride == 0) p.v_stride = width;
    if (p.out_stride == 0) p.out_stride = width;
    if (p.head_dim == 64) {
        // UMT5's width: the tiled kernel (32 queries x 4 key splits per block, keys in chunks of 64).
        constexpr int kQt = 32, kKs = 4, kKc = 64;
        LR_ASSERT(p.heads <= 65535, "relative_bias_attention: ", p.heads, " heads");
        const dim3 grid(static_cast<unsigned>((p.len + kQt - 1) / kQt), static_cast<unsigned>(p.heads));
        relative_bias_attention_tiled_kernel<64, kQt, kKs, kKc><<<grid, kQt * kKs, 0, stream>>>(p);
        LR_CUDA_CHECK(cudaGetLastError());
        return;
    }
    const size_t shared = static_cast<size_t>(p.head_dim + p.len + kThreads / 32) * sizeof(float);
    LR_CHECK(shared <= 48 * 1024, "relative_bias_attention: ", p.len, " tokens need ", shared,
             " bytes of shared memory (at most 48 KiB: about 12000 tokens)");
    LR_ASSERT(p.len <= 65535 && p.heads <= 65535, "relative_bias_attention: grid of ", p.len, " x ", p.heads);
    const dim3 grid(static_cast<unsigned>(p.len), static_cast<unsigned>(p.heads));
    relative_bias_attention_kernel<<<grid, kThreads, shared, stream>>>(p);
    LR_CUDA_CHECK(cudaGetLastError());
}

void launch_gated_gelu(const void* gate, const void* up, void* out, int64_t n, Stream stream) {
    LR_ASSERT(gate && up && out && n >= 0, "gated_gelu: null pointer or negative size");
    if (n == 0) return;
    const auto blocks = static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 65535));
    gated_gelu_kernel<<<blocks, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(gate),
                                                  static_cast<const __nv_bfloat16*>(up),
                                                  static_cast<__nv_bfloat16*>(out), n);
    LR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace lr
