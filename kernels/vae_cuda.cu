// CUDA kernels of the Wan VAE decoder (see vae_cuda.h) but the convolution (vae_conv_cuda.cu). All of these are
// memory bound: grid-stride loops over pairs of channels, except the two that run on every full-resolution frame
// (the norm, the attention's softmax), which keep a row in registers and read it once with wide loads.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/vae_cuda.h"
#include "runtime/core/cuda_check.h"

namespace lr {
namespace {

using bf16 = __nv_bfloat16;
using bf162 = __nv_bfloat162;

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `work` items; the loop covers whatever one pass of the grid does not.
unsigned grid_for(int64_t work) {
    return static_cast<unsigned>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, int64_t{1} << 20));
}

__device__ __forceinline__ int64_t global_thread() {
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// std::clamp's comparisons, so that NaN passes through as on the CPU (fminf/fmaxf would drop it).
__device__ __forceinline__ float clamp_like_std(float v, float lo, float hi) { return v < lo ? lo : (hi < v ? hi : v); }

// ---- z * std + mean ----------------------------------------------------------------------------------------------

__global__ void denorm_latent_kernel(VaeDenormLatentParams p) {
    const int64_t n = p.pixels * p.channels;
    bf16* y = static_cast<bf16*>(p.y);
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        const int64_t pix = i / p.channels, c = i - pix * p.channels;
        y[i] = __float2bfloat16_rn(p.z[c * p.z_stride + pix] / p.inv_std[c] + p.mean[c]);
    }
}

// ---- RMS_norm (+ SiLU) -------------------------------------------------------------------------------------------

// The general case (any even dim, stride or alignment): one warp per pixel, the row read twice (then from L1).
constexpr int kNormRowsPerBlock = kThreads / 32;

__global__ void rms_norm_kernel(VaeRmsNormParams p, float scale, int64_t x_stride, int64_t y_stride) {
    const int lane = static_cast<int>(threadIdx.x & 31);
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kNormRowsPerBlock + threadIdx.x / 32;
    if (row >= p.rows) return;
    const int64_t pairs = p.dim / 2;
    const float2* x = reinterpret_cast<const float2*>(p.x + row * x_stride);
    float sq = 0.0f;
    for (int64_t i = lane; i < pairs; i += 32) {
        const float2 v = x[i];
        sq = fmaf(v.x, v.x, sq);
        sq = fmaf(v.y, v.y, sq);
    }
    for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    const float denom = fmaxf(sqrtf(sq), p.eps);
    const float2* gamma = reinterpret_cast<const float2*>(p.gamma);
    const float2* bias = reinterpret_cast<const float2*>(p.bias);
    bf162* y = reinterpret_cast<bf162*>(static_cast<bf16*>(p.y) + row * y_stride);
    bf162* x_copy = p.x_copy ? reinterpret_cast<bf162*>(static_cast<bf16*>(p.x_copy) + row * p.dim) : nullptr;
    for (int64_t i = lane; i < pairs; i += 32) {
        const float2 v = x[i];
        const float2 g = gamma[i];
        // The CPU reference's order of operations: divide, scale, gain, bias.
        float a = v.x / denom * scale * g.x;
        float b = v.y / denom * scale * g.y;
        if (bias) {
            const float2 bb = bias[i];
            a += bb.x;
            b += bb.y;
        }
        if (p.silu) {
            a = a / (1.0f + expf(-a));
            b = b / (1.0f + expf(-b));
        }
        y[i] = __floats2bfloat162_rn(a, b);
        if (x_copy) x_copy[i] = __floats2bfloat162_rn(v.x, v.y);
    }
}

// The decoder's case (dim % 4 == 0, dim <= 512, 16-byte aligned rows): a group of kLanes lanes per pixel holds
// the row in registers (at most kNormVecs float4 per lane), so x is read once with 16-byte loads; a warp serves
// 32 / kLanes pixels. Memory bound: this is what makes the norms of the 1088p frames run near DRAM speed.
constexpr int kNormVecs = 4;

template <int kLanes>
__global__ void rms_norm_rows_kernel(VaeRmsNormParams p, float scale, int64_t x_stride, int64_t y_stride) {
    const int lane = static_cast<int>(threadIdx.x & 31), sub = lane % kLanes;
    const int64_t warp = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    const int64_t row = warp * (32 / kLanes) + lane / kLanes;
    const bool active = row < p.rows;  // inactive lanes still take part in the shuffles
    const int quads = static_cast<int>(p.dim / 4);
    const float4* x = reinterpret_cast<const float4*>(p.x + (active ? row : 0) * x_stride);
    float4 v[kNormVecs];
    float sq = 0.0f;
#pragma unroll
    for (int j = 0; j < kNormVecs; ++j) {
        const int i = sub + j * kLanes;
        v[j] = active && i < quads ? x[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        sq = fmaf(v[j].x, v[j].x, sq);
        sq = fmaf(v[j].y, v[j].y, sq);
        sq = fmaf(v[j].z, v[j].z, sq);
        sq = fmaf(v[j].w, v[j].w, sq);
    }
#pragma unroll
    for (int o = kLanes / 2; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    if (!active) return;
    const float denom = fmaxf(sqrtf(sq), p.eps);
    const float4* gamma = reinterpret_cast<const float4*>(p.gamma);
    const float4* bias = reinterpret_cast<const float4*>(p.bias);
    uint2* y = reinterpret_cast<uint2*>(static_cast<bf16*>(p.y) + row * y_stride);
    uint2* x_copy = p.x_copy ? reinterpret_cast<uint2*>(static_cast<bf16*>(p.x_copy) + row * p.dim) : nullptr;
    auto pack = [](float a, float b, float c, float d) {
        const bf162 lo = __floats2bfloat162_rn(a, b), hi = __floats2bfloat162_rn(c, d);
        return make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
    };
    auto finish = [&](float value, float g, float b) {
        float a = value / denom * scale * g;  // the CPU reference's order: divide, scale, gain, bias
        if (bias) a += b;
        return p.silu ? a / (1.0f + expf(-a)) : a;
    };
#pragma unroll
    for (int j = 0; j < kNormVecs; ++j) {
        const int i = sub + j * kLanes;
        if (i >= quads) continue;
        const float4 g = gamma[i];
        const float4 b = bias ? bias[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        y[i] = pack(finish(v[j].x, g.x, b.x), finish(v[j].y, g.y, b.y), finish(v[j].z, g.z, b.z),
                    finish(v[j].w, g.w, b.w));
        if (x_copy) x_copy[i] = pack(v[j].x, v[j].y, v[j].z, v[j].w);
    }
}

template <int kLanes>
void launch_rms_norm_rows(const VaeRmsNormParams& p, float scale, int64_t xs, int64_t ys, Stream stream) {
    const int64_t rows_per_block = (kThreads / 32) * (32 / kLanes);
    const int64_t blocks = (p.rows + rows_per_block - 1) / rows_per_block;
    LR_ASSERT(blocks < (int64_t{1} << 31), "vae_rms_norm: too many rows ", p.rows);
    rms_norm_rows_kernel<kLanes><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, scale, xs, ys);
}

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// ---- nearest 2x upsampling ---------------------------------------------------------------------------------------

__device__ __forceinline__ float2 load_pair(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 load_pair(const bf16* p) {
    return __bfloat1622float2(*reinterpret_cast<const bf162*>(p));
}

template <typename T>
__global__ void upsample_kernel(VaeUpsampleParams p, int64_t x_stride) {
    const T* x = static_cast<const T*>(p.x);
    bf162* y = static_cast<bf162*>(p.y);
    const int64_t pairs = p.channels / 2, out_w = 2 * p.width;
    const int64_t n = 4 * p.height * p.width * pairs;
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        const int64_t c2 = i % pairs, pix = i / pairs;
        const int64_t ox = pix % out_w, oy = pix / out_w;
        const float2 v = load_pair(x + ((oy >> 1) * p.width + (ox >> 1)) * x_stride + 2 * c2);
        y[i] = __floats2bfloat162_rn(v.x, v.y);
    }
}

// ---- im2col ------------------------------------------------------------------------------------------------------

// Vec = bf16 values per item: 8 (one 16-byte load and store) when channels % 8 == 0, else 2.
template <int Vec>
__global__ void im2col_kernel(VaeIm2colParams p) {
    using Chunk = std::conditional_t<Vec == 8, uint4, uint32_t>;
    const int64_t c_chunks = p.channels / Vec, taps = p.kt * p.kh * p.kw, k = taps * p.channels;
    const int64_t n = p.pixels * taps * c_chunks;
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        const int64_t c = (i % c_chunks) * Vec;
        const int64_t rest = i / c_chunks;
        const int64_t tap = rest % taps, row = rest / taps;
        const int64_t pix = p.pixel0 + row;
        const int64_t x = pix % p.width, y = pix / p.width;
        const int64_t dx = tap % p.kw, dy = (tap / p.kw) % p.kh, dt = tap / (p.kw * p.kh);
        const int64_t yy = y + dy - p.kh / 2, xx = x + dx - p.kw / 2;
        const bf16* frame = static_cast<const bf16*>(dt == 0 ? p.frames[0] : dt == 1 ? p.frames[1] : p.frames[2]);
        Chunk v{};
        if (frame != nullptr && yy >= 0 && yy < p.height && xx >= 0 && xx < p.width) {
            v = *reinterpret_cast<const Chunk*>(frame + (yy * p.width + xx) * p.channels + c);
        }
        *reinterpret_cast<Chunk*>(static_cast<bf16*>(p.col) + row * k + tap * p.channels + c) = v;
    }
}

// ---- attention pieces --------------------------------------------------------------------------------------------

// Reduction over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
template <typename Op>
__device__ float block_reduce(float v, Op op, float* scratch) {
    const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
    const int warps = static_cast<int>(blockDim.x >> 5);
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();  // scratch may still be read from the previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = scratch[0];
    for (int w = 1; w < warps; ++w) v = op(v, scratch[w]);
    return v;
}

// Rows of any length: three passes over the scores (max, sum, write).
__global__ void softmax_kernel(VaeSoftmaxParams p, int64_t stride, int64_t out_stride) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x;
    const float* s = p.scores + row * stride;
    bf16* out = static_cast<bf16*>(p.probs) + row * out_stride;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < p.cols; j += blockDim.x) m = fmaxf(m, s[j]);
    m = block_reduce(
        m, [](float a, float b) { return fmaxf(a, b); }, scratch);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < p.cols; j += blockDim.x) sum += expf(p.scale * (s[j] - m));
    sum = block_reduce(
        sum, [](float a, float b) { return a + b; }, scratch);
    const float inv = 1.0f / sum;
    for (int64_t j = threadIdx.x; j < p.cols; j += blockDim.x) {
        out[j] = __float2bfloat16_rn(expf(p.scale * (s[j] - m)) * inv);
    }
}

// Rows of up to kSoftmaxPerThread x kSoftmaxThreads columns (a 1088p frame has 32640 pixels) stay in registers:
// the scores are read once. 512 threads leave each 128 registers.
constexpr int kSoftmaxPerThread = 64;
constexpr int kSoftmaxThreads = 512;

__global__ void __launch_bounds__(kSoftmaxThreads)
    softmax_regs_kernel(VaeSoftmaxParams p, int64_t stride, int64_t out_stride) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x;
    const float* s = p.scores + row * stride;
    bf16* out = static_cast<bf16*>(p.probs) + row * out_stride;
    float v[kSoftmaxPerThread];
    float m = -INFINITY;
#pragma unroll
    for (int t = 0; t < kSoftmaxPerThread; ++t) {
        const int64_t j = threadIdx.x + static_cast<int64_t>(t) * blockDim.x;
        v[t] = j < p.cols ? s[j] : -INFINITY;
        m = fmaxf(m, v[t]);
    }
    m = block_reduce(
        m, [](float a, float b) { return fmaxf(a, b); }, scratch);
    float sum = 0.0f;
#pragma unroll
    for (int t = 0; t < kSoftmaxPerThread; ++t) {
        const int64_t j = threadIdx.x + static_cast<int64_t>(t) * blockDim.x;
        v[t] = j < p.cols ? expf(p.scale * (v[t] - m)) : 0.0f;
        sum += v[t];
    }
    sum = block_reduce(
        sum, [](float a, float b) { return a + b; }, scratch);
    const float inv = 1.0f / sum;
#pragma unroll
    for (int t = 0; t < kSoftmaxPerThread; ++t) {
        const int64_t j = threadIdx.x + static_cast<int64_t>(t) * blockDim.x;
        if (j < p.cols) out[j] = __float2bfloat16_rn(v[t] * inv);
    }
}

constexpr int kTile = 32;

__global__ void transpose_kernel(VaeTransposeParams p, int64_t x_stride, int64_t y_stride) {
    __shared__ uint16_t tile[kTile][kTile + 1];
    const uint16_t* x = static_cast<const uint16_t*>(p.x);
    uint16_t* y = static_cast<uint16_t*>(p.y);
    const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kTile, c0 = static_cast<int64_t>(blockIdx.y) * kTile;
    for (int k = static_cast<int>(threadIdx.y); k < kTile; k += static_cast<int>(blockDim.y)) {
        const int64_t r = r0 + k, c = c0 + threadIdx.x;
        if (r < p.rows && c < p.cols) tile[k][threadIdx.x] = x[r * x_stride + c];
    }
    __syncthreads();
    for (int k = static_cast<int>(threadIdx.y); k < kTile; k += static_cast<int>(blockDim.y)) {
        const int64_t c = c0 + k, r = r0 + threadIdx.x;
        if (r < p.rows && c < p.cols) y[c * y_stride + r] = tile[threadIdx.x][k];
    }
}

// ---- RGB out -----------------------------------------------------------------------------------------------------

__global__ void rgb_out_kernel(VaeRgbOutParams p, int64_t stride) {
    for (int64_t i = global_thread(); i < p.pixels * 3; i += grid_threads()) {
        const int64_t pix = i / 3, ch = i - pix * 3;
        const float v = clamp_like_std(p.rgb[pix * stride + ch], -1.0f, 1.0f);
        if (p.planar) {
            p.planar[ch * p.planar_stride + pix] = v;
        } else {
            // vae_rgb_to_u8: v * 0.5 is exact, so a fused multiply-add rounds like the CPU's two operations.
            const float scaled = clamp_like_std(v * 0.5f + 0.5f, 0.0f, 1.0f) * 255.0f;
            p.u8[i] = scaled >= 0.0f ? static_cast<uint8_t>(static_cast<int>(scaled)) : 0;
        }
    }
}

// ---- random fill -------------------------------------------------------------------------------------------------

// runtime/core/det_random.h's splitmix64 and uniform_pm1, on the device.
__device__ __forceinline__ uint64_t splitmix64_device(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

__global__ void fill_uniform_kernel(VaeFillUniformParams p) {
    for (int64_t i = global_thread(); i < p.n; i += grid_threads()) {
        const float u = static_cast<float>(splitmix64_device(p.key + static_cast<uint64_t>(i)) >> 40) *
                            (1.0f / 16777216.0f) * 2.0f -
                        1.0f;
        const float v = p.offset + p.scale * u;
        if (p.dtype == DType::kF32) {
            static_cast<float*>(p.data)[i] = v;
        } else {
            static_cast<bf16*>(p.data)[i] = __float2bfloat16_rn(v);
        }
    }
}

}  // namespace

void launch_vae_denorm_latent(const VaeDenormLatentParams& params, Stream stream) {
    VaeDenormLatentParams p = params;
    if (p.z_stride == 0) p.z_stride = p.pixels;
    LR_ASSERT(p.z && p.mean && p.inv_std && p.y && p.pixels >= 0 && p.channels > 0 && p.z_stride >= p.pixels,
              "vae_denorm_latent: bad arguments");
    if (p.pixels == 0) return;
    denorm_latent_kernel<<<grid_for(p.pixels * p.channels), kThreads, 0, stream>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_vae_rms_norm(const VaeRmsNormParams& p, Stream stream) {
    const int64_t xs = p.x_stride > 0 ? p.x_stride : p.dim, ys = p.y_stride > 0 ? p.y_stride : p.dim;
    LR_ASSERT(p.x && p.y && p.gamma && p.rows >= 0 && p.dim > 0 && p.dim % 2 == 0 && xs % 2 == 0 && ys % 2 == 0,
              "vae_rms_norm: bad arguments (dim ", p.dim, ", strides ", xs, ", ", ys, ")");
    if (p.rows == 0) return;
    // PyTorch multiplies by the Python float dim ** 0.5, rounded to fp32 (as l2_norm_cpu).
    const float scale = p.scale != 0.0f ? p.scale : static_cast<float>(std::sqrt(static_cast<double>(p.dim)));
    const bool vec4 = p.dim % 4 == 0 && p.dim <= 32 * 4 * kNormVecs && xs % 4 == 0 && ys % 4 == 0 && aligned(p.x, 16) &&
                      aligned(p.gamma, 16) && aligned(p.bias, 16) && aligned(p.y, 8) && aligned(p.x_copy, 8);
    if (vec4) {
        // The fewest lanes per pixel that hold the row in kNormVecs float4 each.
        const int64_t lanes = (p.dim / 4 + kNormVecs - 1) / kNormVecs;
        if (lanes <= 1) {
            launch_rms_norm_rows<1>(p, scale, xs, ys, stream);
        } else if (lanes <= 2) {
            launch_rms_norm_rows<2>(p, scale, xs, ys, stream);
        } else if (lanes <= 4) {
            launch_rms_norm_rows<4>(p, scale, xs, ys, stream);
        } else if (lanes <= 8) {
            launch_rms_norm_rows<8>(p, scale, xs, ys, stream);
        } else if (lanes <= 16) {
            launch_rms_norm_rows<16>(p, scale, xs, ys, stream);
        } else {
            launch_rms_norm_rows<32>(p, scale, xs, ys, stream);
        }
    } else {
        const int64_t blocks = (p.rows + kNormRowsPerBlock - 1) / kNormRowsPerBlock;
        LR_ASSERT(blocks < (int64_t{1} << 31), "vae_rms_norm: too many rows ", p.rows);
        rms_norm_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, scale, xs, ys);
    }
    LR_CUDA_LAUNCH_CHECK();
}

void launch_vae_upsample_nearest2x(const VaeUpsampleParams& p, Stream stream) {
    const int64_t xs = p.x_pixel_stride > 0 ? p.x_pixel_stride : p.channels;
    LR_ASSERT(p.x && p.y && p.height >= 0 && p.width >= 0 && p.channels > 0 && p.channels % 2 == 0 && xs % 2 == 0 &&
                  (p.x_dtype == DType::kF32 || p.x_dtype == DType::kBF16),
              "vae_upsample_nearest2x: bad arguments");
    const int64_t n = 4 * p.height * p.width * (p.channels / 2);
    if (n == 0) return;
    if (p.x_dtype == DType::kF32) {
        upsample_kernel<float><<<grid_for(n), kThreads, 0, stream>>>(p, xs);
    } else {
        upsample_kernel<bf16><<<grid_for(n), kThreads, 0, stream>>>(p, xs);
    }
    LR_CUDA_LAUNCH_CHECK();
}

void launch_vae_im2col(const VaeIm2colParams& p, Stream stream) {
    LR_ASSERT(p.col && p.channels > 0 && p.channels % 2 == 0 && p.kt >= 1 && p.kt <= 3 && p.kh % 2 == 1 &&
                  p.kw % 2 == 1 && p.pixel0 >= 0 && p.pixels >= 0 && p.pixel0 + p.pixels <= p.height * p.width,
              "vae_im2col: bad arguments");
    const int64_t n = p.pixels * p.kt * p.kh * p.kw * p.channels;
    if (n == 0) return;
    if (p.channels % 8 == 0) {
        im2col_kernel<8><<<grid_for(n / 8), kThreads, 0, stream>>>(p);
    } else {
        im2col_kernel<2><<<grid_for(n / 2), kThreads, 0, stream>>>(p);
    }
    LR_CUDA_LAUNCH_CHECK();
}

void launch_vae_softmax_rows(const VaeSoftmaxParams& p, Stream stream) {
    const int64_t stride = p.scores_stride > 0 ? p.scores_stride : p.cols;
    const int64_t out_stride = p.probs_stride > 0 ? p.probs_stride : p.cols;
    LR_ASSERT(p.scores && p.probs && p.rows >= 0 && p.cols > 0 && stride >= p.cols && out_stride >= p.cols &&
                  p.rows < (int64_t{1} << 31),
              "vae_softmax_rows: bad arguments");
    if (p.rows == 0) return;
    if (p.cols <= int64_t{kSoftmaxPerThread} * kSoftmaxThreads) {
        const int64_t threads_needed = (p.cols + kSoftmaxPerThread - 1) / kSoftmaxPerThread;
        const int threads = static_cast<int>(std::clamp<int64_t>((threads_needed + 31) / 32 * 32, 32, kSoftmaxThreads));
        softmax_regs_kernel<<<static_cast<unsigned>(p.rows), threads, 0, stream>>>(p, stride, out_stride);
    } else {
        softmax_kernel<<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(p, stride, out_stride);
    }
    LR_CUDA_LAUNCH_CHECK();
}

void launch_vae_transpose(const VaeTransposeParams& p, Stream stream) {
    const int64_t stride = p.x_stride > 0 ? p.x_stride : p.cols;
    const int64_t y_stride = p.y_stride > 0 ? p.y_stride : p.rows;
    LR_ASSERT(p.x && p.y && p.rows >= 0 && p.cols >= 0 && stride >= p.cols && y_stride >= p.rows,
              "vae_transpose: bad arguments");
    if (p.rows == 0 || p.cols == 0) return;
    const int64_t gx = (p.rows + kTile - 1) / kTile, gy = (p.cols + kTile - 1) / kTile;
    LR_ASSERT(gx < (int64_t{1} << 31) && gy < 65536, "vae_transpose: ", p.rows, " x ", p.cols, " is too large");
    transpose_kernel<<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), dim3(kTile, 8), 0, stream>>>(
        p, stride, y_stride);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_vae_rgb_out(const VaeRgbOutParams& params, Stream stream) {
    VaeRgbOutParams p = params;
    if (p.planar_stride == 0) p.planar_stride = p.pixels;
    const int64_t stride = p.rgb_stride > 0 ? p.rgb_stride : 3;
    LR_ASSERT(p.rgb && p.pixels >= 0 && stride >= 3 && ((p.u8 != nullptr) != (p.planar != nullptr)) &&
                  p.planar_stride >= p.pixels,
              "vae_rgb_out: bad arguments");
    if (p.pixels == 0) return;
    rgb_out_kernel<<<grid_for(p.pixels * 3), kThreads, 0, stream>>>(p, stride);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_vae_fill_uniform(const VaeFillUniformParams& p, Stream stream) {
    LR_ASSERT(p.data && p.n >= 0 && (p.dtype == DType::kF32 || p.dtype == DType::kBF16),
              "vae_fill_uniform: bad arguments");
    if (p.n == 0) return;
    fill_uniform_kernel<<<grid_for(p.n), kThreads, 0, stream>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

}  // namespace lr
