// The DiT's fused norms on the GPU: LayerNorm + AdaLN modulation, q/k RMSNorm + 3D RoPE + KV-cache store,
// and the gated residual add. CPU references: layer_norm_cpu, rms_norm_cpu + rope_3d_cpu, add_gated in
// runtime/model (tests/gpu/test_dit_norm_gpu.cpp compares them).
//
// The two norms run one block per row and keep the row in registers: kIters chunks of kVec elements per
// thread, so x is read from memory once and the statistics are exact block reductions over the held values
// (two passes for LayerNorm: mean, then the centred sum of squares, which avoids E[x^2] - E[x]^2 cancellation).
// The row length picks kIters at one dispatch point; rows of the DiT are 1536 or 5120 wide.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/dit_ops_cuda.h"
#include "kernels/rope_3d.h"
#include "runtime/core/cuda_check.h"

namespace lr {
namespace {

// Threads per row block at most: a row of up to 16 chunks per thread then keeps 255 registers per thread
// available, so even 16 float4 chunks stay in registers without spilling.
constexpr int kMaxThreads = 256;
constexpr int kMaxIters = 16;
// Pairs of one RoPE head whose cos/sin a block tabulates in shared memory (head_dim <= 512).
constexpr int kMaxRopePairs = 256;

// Per pair of a head: its inverse frequency, computed on the host with rope_3d_cpu's own formula (std::pow in
// double, so the GPU uses bit-identical frequencies), and which position axis it rotates by. Passed by value
// (~2.3 KB of kernel parameters), so a captured graph carries it.
struct RopeFreqs {
    double inv_freq[kMaxRopePairs];
    int8_t axis[kMaxRopePairs];  // 0 frame, 1 row, 2 col
};

RopeFreqs rope_freqs(int64_t head_dim, double theta) {
    RopeFreqs f{};
    const int64_t fp = rope_frame_pairs(head_dim);
    const int64_t sp = rope_spatial_pairs(head_dim);
    const double a = static_cast<double>(2 * fp);
    const double b = static_cast<double>(2 * sp);
    for (int64_t i = 0; i < head_dim / 2; ++i) {
        const bool frame = i < fp;
        const int64_t j = frame ? i : (i - fp) % sp;
        f.inv_freq[i] = 1.0 / std::pow(theta, static_cast<double>(2 * j) / (frame ? a : b));
        f.axis[i] = static_cast<int8_t>(frame ? 0 : (i < fp + sp ? 1 : 2));
    }
    return f;
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Sum over the block, returned to every thread; blockDim.x is a multiple of 32. Every warp reduces the 32
// partial sums itself (same order in every warp, so all threads see the same value). The leading barrier
// lets two calls in a row share `scratch`.
__device__ float block_sum(float v, float* scratch) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = static_cast<int>(threadIdx.x) / 32;
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const int warps = static_cast<int>(blockDim.x) / 32;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// kVec consecutive floats; kVec == 4 is one 16-byte access (the caller checked the alignment).
template <int kVec>
__device__ void load_vec(const float* p, float (&v)[kVec]) {
    if constexpr (kVec == 4) {
        const float4 t = *reinterpret_cast<const float4*>(p);
        v[0] = t.x;
        v[1] = t.y;
        v[2] = t.z;
        v[3] = t.w;
    } else {
#pragma unroll
        for (int e = 0; e < kVec; ++e) v[e] = p[e];
    }
}

template <int kVec>
__device__ void load_vec(const __nv_bfloat16* p, float (&v)[kVec]) {
    if constexpr (kVec == 4) {
        const uint2 raw = *reinterpret_cast<const uint2*>(p);
        const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
        const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
        v[0] = a.x;
        v[1] = a.y;
        v[2] = b.x;
        v[3] = b.y;
    } else {
#pragma unroll
        for (int e = 0; e < kVec; ++e) v[e] = __bfloat162float(p[e]);
    }
}

template <int kVec>
__device__ void store_vec(float* p, const float (&v)[kVec]) {
    if constexpr (kVec == 4) {
        *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
        for (int e = 0; e < kVec; ++e) p[e] = v[e];
    }
}

struct alignas(8) Bf16x4 {
    __nv_bfloat162 lo, hi;
};

template <int kVec>
__device__ void store_vec(__nv_bfloat16* p, const float (&v)[kVec]) {
    if constexpr (kVec == 4) {
        *reinterpret_cast<Bf16x4*>(p) = Bf16x4{__floats2bfloat162_rn(v[0], v[1]), __floats2bfloat162_rn(v[2], v[3])};
    } else {
#pragma unroll
        for (int e = 0; e < kVec; ++e) p[e] = __float2bfloat16_rn(v[e]);
    }
}

// Chunks per thread and threads per block for a row of `units` (vectors or pairs): the fewest chunks that
// fit kMaxThreads. threads = 0: the row is too long.
struct RowShape {
    int iters = 1;
    int threads = 0;
};

RowShape row_shape(int64_t units) {
    RowShape s;
    for (int iters : {1, 2, 4, 8, kMaxIters}) {
        s.iters = iters;
        if ((units + iters - 1) / iters <= kMaxThreads) break;
    }
    const int64_t threads = ((units + s.iters - 1) / s.iters + 31) / 32 * 32;
    s.threads = threads <= kMaxThreads ? static_cast<int>(threads) : 0;
    return s;
}

// ---- LayerNorm + modulation ------------------------------------------------------------------------------

template <int kVec, int kIters>
__global__ void __launch_bounds__(kMaxThreads) layer_norm_mod_kernel(LayerNormModParams p) {
    __shared__ float scratch[32];
    const int64_t r = blockIdx.x;
    const int dim = static_cast<int>(p.dim);
    const float* x = p.x + r * p.x_stride;  // [dim]

    float v[kIters][kVec];
    float sum = 0.0f;
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
        const int c = (it * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x)) * kVec;
        if (c < dim) {
            load_vec<kVec>(x + c, v[it]);
#pragma unroll
            for (int e = 0; e < kVec; ++e) sum += v[it][e];
        }
    }
    const float mean = block_sum(sum, scratch) / static_cast<float>(dim);
    float sq = 0.0f;
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
        const int c = (it * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x)) * kVec;
        if (c < dim) {
#pragma unroll
            for (int e = 0; e < kVec; ++e) {
                const float d = v[it][e] - mean;
                sq += d * d;
            }
        }
    }
    const float var = block_sum(sq, scratch) / static_cast<float>(dim);
    const float rstd = 1.0f / sqrtf(var + p.eps);

    const int64_t g = (p.row0 + r) / p.rows_per_group;
    const float* shift = p.shift ? p.shift + g * p.mod_stride : nullptr;   // [dim]
    const float* scale = p.scale ? p.scale + g * p.mod_stride : nullptr;   // [dim]
    __nv_bfloat16* y = static_cast<__nv_bfloat16*>(p.y) + r * p.y_stride;  // [dim]
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
        const int c = (it * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x)) * kVec;
        if (c >= dim) continue;
        float out[kVec];
#pragma unroll
        for (int e = 0; e < kVec; ++e) out[e] = (v[it][e] - mean) * rstd;
        if (p.weight) {
            float w[kVec], b[kVec];
            load_vec<kVec>(p.weight + c, w);
            load_vec<kVec>(p.bias + c, b);
#pragma unroll
            for (int e = 0; e < kVec; ++e) out[e] = out[e] * w[e] + b[e];
        }
        if (shift) {
            float sh[kVec], sc[kVec];
            load_vec<kVec>(shift + c, sh);
            load_vec<kVec>(scale + c, sc);
#pragma unroll
            for (int e = 0; e < kVec; ++e) out[e] = out[e] * (1.0f + sc[e]) + sh[e];
        }
        store_vec<kVec>(y + c, out);
    }
}

template <int kVec>
void launch_layer_norm_vec(const LayerNormModParams& p, RowShape s, Stream stream) {
    const dim3 grid(static_cast<unsigned>(p.rows));
    switch (s.iters) {
        case 1:
            layer_norm_mod_kernel<kVec, 1><<<grid, s.threads, 0, stream>>>(p);
            break;
        case 2:
            layer_norm_mod_kernel<kVec, 2><<<grid, s.threads, 0, stream>>>(p);
            break;
        case 4:
            layer_norm_mod_kernel<kVec, 4><<<grid, s.threads, 0, stream>>>(p);
            break;
        case 8:
            layer_norm_mod_kernel<kVec, 8><<<grid, s.threads, 0, stream>>>(p);
            break;
        default:
            layer_norm_mod_kernel<kVec, kMaxIters><<<grid, s.threads, 0, stream>>>(p);
            break;
    }
    LR_CUDA_LAUNCH_CHECK();
}

// ---- RMSNorm + RoPE + store -------------------------------------------------------------------------------

// Row r's elements as pairs (2k, 2k+1): a RoPE pair never straddles two heads because head_dim is even.
template <typename T>
__device__ float2 load_pair(const T* p) {
    if constexpr (sizeof(T) == 2) {
        return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
    } else {
        return *reinterpret_cast<const float2*>(p);
    }
}

template <typename T, int kIters>
__global__ void __launch_bounds__(kMaxThreads)
    norm_rope_kernel(NormRopeParams p, const __grid_constant__ RopeFreqs freqs) {
    __shared__ float scratch[32];
    __shared__ double s_cos[kMaxRopePairs];
    __shared__ double s_sin[kMaxRopePairs];
    const int64_t r = blockIdx.x;
    const int64_t dst = p.dst_row ? p.dst_row[r] : r;
    if (dst < 0) return;  // the whole block leaves together, before any barrier
    const int64_t src = p.src_row ? p.src_row[r] : r;
    const int half = static_cast<int>(p.head_dim / 2);
    const int pairs = static_cast<int>(p.heads) * half;

    const T* x = static_cast<const T*>(p.x) + src * p.x_stride;  // [heads * head_dim]
    float2 v[kIters];
    float sq = 0.0f;
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
        const int k = it * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x);
        if (k < pairs) {
            v[it] = load_pair(x + 2 * k);
            sq += v[it].x * v[it].x + v[it].y * v[it].y;
        }
    }
    // cos/sin of this row's angles, one per pair of a head (all heads share them), as rope_3d_cpu computes
    // them: angle = pos * inv_freq in double. After the loads, so that the double math overlaps them.
    if (p.positions) {
        const int32_t* pos = p.positions + 3 * r;  // (frame, row, col)
        for (int i = static_cast<int>(threadIdx.x); i < half; i += static_cast<int>(blockDim.x)) {
            sincos(static_cast<double>(pos[freqs.axis[i]]) * freqs.inv_freq[i], &s_sin[i], &s_cos[i]);
        }
    }
    float inv_rms = 1.0f;
    if (p.norm_weight) {
        const float mean_sq = block_sum(sq, scratch) / static_cast<float>(2 * pairs);
        inv_rms = 1.0f / sqrtf(mean_sq + p.eps);
    }
    if (p.positions) __syncthreads();  // the cos/sin table is complete

    __nv_bfloat16* y = static_cast<__nv_bfloat16*>(p.y) + dst * p.y_stride;  // [heads * head_dim]
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
        const int k = it * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x);
        if (k >= pairs) continue;
        float a = v[it].x;
        float b = v[it].y;
        if (p.norm_weight) {
            // rms_norm_cpu's order: (x * inv) * weight, in fp32.
            const float2 w = *reinterpret_cast<const float2*>(p.norm_weight + 2 * k);
            a = a * inv_rms * w.x;
            b = b * inv_rms * w.y;
        }
        if (p.positions) {
            const int i = k % half;
            const double c = s_cos[i];
            const double s = s_sin[i];
            const double re = a;
            const double im = b;
            a = static_cast<float>(re * c - im * s);
            b = static_cast<float>(re * s + im * c);
        }
        *reinterpret_cast<__nv_bfloat162*>(y + 2 * k) = __floats2bfloat162_rn(a, b);
    }
}

// One block per (retained row, head): the row's position from its slot's tile, then the head's pairs.
__global__ void rope_retained_kernel(RopeRetainedParams p, const __grid_constant__ RopeFreqs freqs) {
    const int64_t rj = blockIdx.x, h = blockIdx.y;
    const int64_t r = rj / p.block_size, j = rj % p.block_size;
    const int32_t tile = p.slot_tile[h * p.slots + r];
    if (tile < 0) return;
    const int32_t raster = p.tile_raster[static_cast<int64_t>(tile) * p.block_size + j];
    if (raster < 0) return;
    const int32_t pos[3] = {0, static_cast<int32_t>(raster / p.grid_cols), static_cast<int32_t>(raster % p.grid_cols)};
    const int64_t offset = ((p.first_block + r) * p.block_size + j) * p.heads * p.head_dim + h * p.head_dim;
    const auto* x = static_cast<const __nv_bfloat16*>(p.x) + offset;
    auto* y = static_cast<__nv_bfloat16*>(p.y) + offset;
    const int half = static_cast<int>(p.head_dim / 2);
    for (int i = static_cast<int>(threadIdx.x); i < half; i += static_cast<int>(blockDim.x)) {
        double sn, cs;
        sincos(static_cast<double>(pos[freqs.axis[i]]) * freqs.inv_freq[i], &sn, &cs);
        const float2 v = load_pair(x + 2 * i);
        const double re = v.x;
        const double im = v.y;
        *reinterpret_cast<__nv_bfloat162*>(y + 2 * i) =
            __floats2bfloat162_rn(static_cast<float>(re * cs - im * sn), static_cast<float>(re * sn + im * cs));
    }
}

template <typename T>
void launch_norm_rope_typed(const NormRopeParams& p, RowShape s, const RopeFreqs& freqs, Stream stream) {
    const dim3 grid(static_cast<unsigned>(p.rows));
    switch (s.iters) {
        case 1:
            norm_rope_kernel<T, 1><<<grid, s.threads, 0, stream>>>(p, freqs);
            break;
        case 2:
            norm_rope_kernel<T, 2><<<grid, s.threads, 0, stream>>>(p, freqs);
            break;
        case 4:
            norm_rope_kernel<T, 4><<<grid, s.threads, 0, stream>>>(p, freqs);
            break;
        case 8:
            norm_rope_kernel<T, 8><<<grid, s.threads, 0, stream>>>(p, freqs);
            break;
        default:
            norm_rope_kernel<T, kMaxIters><<<grid, s.threads, 0, stream>>>(p, freqs);
            break;
    }
    LR_CUDA_LAUNCH_CHECK();
}

// ---- Gated residual ---------------------------------------------------------------------------------------

// Grid-stride over kVec-element vectors of x (kVec divides dim, so a vector never crosses a row). The
// multiply and add are rounded separately (no FMA contraction), as add_gated on the CPU computes them.
template <typename T, int kVec>
__global__ void gated_residual_kernel(GatedResidualParams p) {
    const int64_t vecs = p.rows * p.dim / kVec;
    const T* y = static_cast<const T*>(p.y);
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < vecs;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t e = i * kVec;
        float xv[kVec], yv[kVec];
        load_vec<kVec>(p.x + e, xv);
        load_vec<kVec>(y + e, yv);
        if (p.gate) {
            const int64_t r = e / p.dim;
            const int64_t c = e - r * p.dim;
            float gv[kVec];
            load_vec<kVec>(p.gate + ((p.row0 + r) / p.rows_per_group) * p.mod_stride + c, gv);
#pragma unroll
            for (int k = 0; k < kVec; ++k) xv[k] = __fadd_rn(xv[k], __fmul_rn(yv[k], gv[k]));
        } else {
#pragma unroll
            for (int k = 0; k < kVec; ++k) xv[k] = __fadd_rn(xv[k], yv[k]);
        }
        store_vec<kVec>(p.x + e, xv);
    }
}

template <typename T>
void launch_gated_residual_typed(const GatedResidualParams& p, bool vec4, Stream stream) {
    constexpr int kThreads = 256;
    const int64_t vecs = p.rows * p.dim / (vec4 ? 4 : 1);
    // Enough blocks to fill any current GPU many times over; the grid-stride loop covers the rest.
    const auto blocks = static_cast<unsigned>(std::min<int64_t>((vecs + kThreads - 1) / kThreads, 1 << 16));
    if (vec4) {
        gated_residual_kernel<T, 4><<<blocks, kThreads, 0, stream>>>(p);
    } else {
        gated_residual_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(p);
    }
    LR_CUDA_LAUNCH_CHECK();
}

}  // namespace

void launch_layer_norm_mod(const LayerNormModParams& p, Stream stream) {
    LR_ASSERT(p.rows >= 0 && p.dim > 0, "layer_norm_mod: rows ", p.rows, ", dim ", p.dim);
    LR_ASSERT((p.shift == nullptr) == (p.scale == nullptr), "layer_norm_mod: shift and scale come together");
    LR_ASSERT(p.shift == nullptr || p.rows_per_group > 0, "layer_norm_mod: modulation needs rows_per_group > 0");
    LR_ASSERT((p.weight == nullptr) == (p.bias == nullptr), "layer_norm_mod: affine needs weight and bias");
    if (p.rows == 0) return;
    LR_ASSERT(p.x && p.y, "layer_norm_mod: null x or y");
    LR_ASSERT(p.rows <= INT32_MAX, "layer_norm_mod: ", p.rows, " rows exceed one grid");
    LayerNormModParams q = p;
    if (q.x_stride == 0) q.x_stride = q.dim;
    if (q.y_stride == 0) q.y_stride = q.dim;
    if (q.shift == nullptr) q.rows_per_group = 1;  // the kernel divides by it either way
    const bool vec4 = q.dim % 4 == 0 && q.x_stride % 4 == 0 && q.y_stride % 4 == 0 && aligned(q.x, 16) &&
                      aligned(q.y, 8) && (q.weight == nullptr || (aligned(q.weight, 16) && aligned(q.bias, 16))) &&
                      (q.shift == nullptr || (q.mod_stride % 4 == 0 && aligned(q.shift, 16) && aligned(q.scale, 16)));
    const RowShape s = row_shape(vec4 ? q.dim / 4 : q.dim);
    LR_CHECK(s.threads > 0, "layer_norm_mod: dim ", q.dim, " is longer than one block can hold (at most ",
             kMaxIters * kMaxThreads * (vec4 ? 4 : 1), ")");
    if (vec4) {
        launch_layer_norm_vec<4>(q, s, stream);
    } else {
        launch_layer_norm_vec<1>(q, s, stream);
    }
}

void launch_norm_rope(const NormRopeParams& p, Stream stream) {
    LR_ASSERT(p.x_dtype == DType::kBF16 || p.x_dtype == DType::kF32, "norm_rope: x must be BF16 or F32, found ",
              dtype_name(p.x_dtype));
    LR_ASSERT(p.rows >= 0 && p.heads > 0 && p.head_dim > 0 && p.head_dim % 2 == 0, "norm_rope: rows ", p.rows,
              ", heads ", p.heads, ", head_dim ", p.head_dim, " (must be even)");
    LR_CHECK(p.head_dim / 2 <= kMaxRopePairs, "norm_rope: head_dim ", p.head_dim, " exceeds ", 2 * kMaxRopePairs);
    if (p.rows == 0) return;
    LR_ASSERT(p.x && p.y, "norm_rope: null x or y");
    LR_ASSERT(p.rows <= INT32_MAX, "norm_rope: ", p.rows, " rows exceed one grid");
    NormRopeParams q = p;
    const int64_t width = q.heads * q.head_dim;
    if (q.x_stride == 0) q.x_stride = width;
    if (q.y_stride == 0) q.y_stride = width;
    const int x_size = dtype_size(q.x_dtype);
    // Pairs are loaded and stored whole: every row must start on a pair boundary.
    LR_ASSERT(q.x_stride % 2 == 0 && q.y_stride % 2 == 0 && aligned(q.x, 2 * x_size) && aligned(q.y, 4) &&
                  (q.norm_weight == nullptr || aligned(q.norm_weight, 8)),
              "norm_rope: rows must start on an even element (x_stride ", q.x_stride, ", y_stride ", q.y_stride, ")");
    const RowShape s = row_shape(width / 2);
    LR_CHECK(s.threads > 0, "norm_rope: row width ", width, " is longer than one block can hold (at most ",
             2 * kMaxIters * kMaxThreads, ")");
    // Without positions the table is unused; it is still passed (zeros) so that there is one kernel.
    const RopeFreqs freqs = q.positions ? rope_freqs(q.head_dim, q.theta) : RopeFreqs{};
    if (q.x_dtype == DType::kBF16) {
        launch_norm_rope_typed<__nv_bfloat16>(q, s, freqs, stream);
    } else {
        launch_norm_rope_typed<float>(q, s, freqs, stream);
    }
}

void launch_rope_retained(const RopeRetainedParams& p, Stream stream) {
    LR_ASSERT(p.slots >= 0 && p.block_size > 0 && p.heads > 0 && p.head_dim > 0 && p.head_dim % 2 == 0 &&
                  p.grid_cols > 0 && p.first_block >= 0,
              "rope_retained: slots ", p.slots, ", block_size ", p.block_size, ", heads ", p.heads, ", head_dim ",
              p.head_dim, " (must be even), grid_cols ", p.grid_cols);
    LR_CHECK(p.head_dim / 2 <= kMaxRopePairs, "rope_retained: head_dim ", p.head_dim, " exceeds ", 2 * kMaxRopePairs);
    if (p.slots == 0) return;
    LR_ASSERT(p.x && p.y && p.slot_tile && p.tile_raster, "rope_retained: null pointer");
    LR_ASSERT(p.slots * p.block_size <= INT32_MAX && p.heads <= 65535, "rope_retained: grid too large");
    LR_ASSERT(aligned(p.x, 4) && aligned(p.y, 4), "rope_retained: pools must be 4-byte aligned");
    const RopeFreqs freqs = rope_freqs(p.head_dim, p.theta);
    const int threads = static_cast<int>(std::min<int64_t>(kMaxThreads, (p.head_dim / 2 + 31) / 32 * 32));
    const dim3 grid(static_cast<unsigned>(p.slots * p.block_size), static_cast<unsigned>(p.heads));
    rope_retained_kernel<<<grid, threads, 0, stream>>>(p, freqs);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_gated_residual(const GatedResidualParams& p, Stream stream) {
    LR_ASSERT(p.y_dtype == DType::kBF16 || p.y_dtype == DType::kF32, "gated_residual: y must be BF16 or F32, found ",
              dtype_name(p.y_dtype));
    LR_ASSERT(p.rows >= 0 && p.dim > 0, "gated_residual: rows ", p.rows, ", dim ", p.dim);
    LR_ASSERT(p.gate == nullptr || p.rows_per_group > 0, "gated_residual: a gate needs rows_per_group > 0");
    if (p.rows == 0) return;
    LR_ASSERT(p.x && p.y, "gated_residual: null x or y");
    const bool vec4 = p.dim % 4 == 0 && aligned(p.x, 16) && aligned(p.y, 4 * dtype_size(p.y_dtype)) &&
                      (p.gate == nullptr || (p.mod_stride % 4 == 0 && aligned(p.gate, 16)));
    if (p.y_dtype == DType::kBF16) {
        launch_gated_residual_typed<__nv_bfloat16>(p, vec4, stream);
    } else {
        launch_gated_residual_typed<float>(p, vec4, stream);
    }
}

}  // namespace lr
