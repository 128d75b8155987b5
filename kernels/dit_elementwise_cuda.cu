// The DiT's simple elementwise ops on the GPU (dit_ops_cuda.h): modulation broadcast add, SiLU / GELU, the
// timestep sinusoid, patchify / unpatchify and the flow-matching step. All are memory bound and tiny next to the
// GEMMs and attention, so each is one thread per output element in a grid-stride loop, written for obvious
// agreement with its CPU reference rather than for speed: the same formula in the same precision, with the
// roundings pinned (__dmul_rn, __fmul_rn, ...) where the CPU result is bit-defined, because nvcc would
// otherwise contract a * b + c into an FMA and the host compiler (ISO C++ mode, no -mfma) does not.
#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/dit_ops_cuda.h"
#include "runtime/core/cuda_check.h"

namespace lr {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

__device__ __forceinline__ int64_t first_index() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// gelu_tanh_cpu and silu_cpu: the same fp32 formulas (the division is IEEE: nvcc's default -prec-div=true).
__device__ __forceinline__ float gelu_tanh_f32(float x) {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float silu_f32(float x) { return x / (1.0f + expf(-x)); }

__device__ __forceinline__ float load_f32(const void* p, DType t, int64_t i) {
    return t == DType::kBF16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i])
                             : static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void store_f32(void* p, DType t, int64_t i, float v) {
    if (t == DType::kBF16) {
        static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
    } else {
        static_cast<float*>(p)[i] = v;
    }
}

__global__ void add_broadcast_kernel(AddBroadcastParams p) {
    const int64_t total = p.groups * p.n;
    for (int64_t i = first_index(); i < total; i += grid_stride()) p.out[i] = p.base[i % p.n] + p.rows[i];
}

// One 32-bit word per thread and step; row r's words are r * words + w of the flat index.
__global__ void copy_rows_kernel(CopyRowsParams p, int64_t words, int64_t src_stride, int64_t dst_stride) {
    const int64_t total = p.rows * words;
    for (int64_t i = first_index(); i < total; i += grid_stride()) {
        const int64_t r = i / words, w = i % words;
        const int64_t s = p.src_row ? p.src_row[r] : r;
        const int64_t d = p.dst_row ? p.dst_row[r] : r;
        if (s < 0 || d < 0) continue;
        const auto* src = reinterpret_cast<const uint32_t*>(static_cast<const char*>(p.src) + s * src_stride);
        auto* dst = reinterpret_cast<uint32_t*>(static_cast<char*>(p.dst) + d * dst_stride);
        dst[w] = src[w];
    }
}

__global__ void unary_kernel(UnaryParams p) {
    for (int64_t i = first_index(); i < p.n; i += grid_stride()) {
        const float x = load_f32(p.x, p.x_dtype, i);
        store_f32(p.y, p.y_dtype, i, p.op == UnaryOp::kSilu ? silu_f32(x) : gelu_tanh_f32(x));
    }
}

// out[i, j] = cos(t_i f_j), out[i, half + j] = sin(t_i f_j), f_j = 10000^(-j / half), all in double.
__global__ void timestep_embedding_kernel(TimestepEmbeddingParams p) {
    const int64_t half = p.dim / 2;
    const int64_t total = p.n * half;
    for (int64_t idx = first_index(); idx < total; idx += grid_stride()) {
        const int64_t i = idx / half, j = idx % half;
        const double freq = pow(10000.0, -(static_cast<double>(j) / static_cast<double>(half)));
        const double angle = static_cast<double>(p.t[i]) * freq;
        p.out[i * p.dim + j] = static_cast<float>(cos(angle));
        p.out[i * p.dim + half + j] = static_cast<float>(sin(angle));
    }
}

// One thread per patch element: patches[token, (c, kt, kh, kw)] = x[f * pt + kt, c, i * ph + kh, j * pw + kw]
// with token = (f, i, j). Writes are coalesced; reads hop between the pw-wide runs of x's rows.
__global__ void patchify_kernel(PatchifyCudaParams p) {
    const PatchShape s = p.shape;
    // PatchShape's helpers are host functions; the same arithmetic here.
    const int64_t gh = s.height / s.ph, gw = s.width / s.pw;
    const int64_t row = s.channels * s.pt * s.ph * s.pw;
    const int64_t total = (s.frames / s.pt) * gh * gw * row;
    auto* out = static_cast<__nv_bfloat16*>(p.patches);
    for (int64_t idx = first_index(); idx < total; idx += grid_stride()) {
        const int64_t token = idx / row;
        int64_t q = idx % row;  // (c, kt, kh, kw), kw fastest
        const int64_t kw = q % s.pw;
        q /= s.pw;
        const int64_t kh = q % s.ph;
        q /= s.ph;
        const int64_t kt = q % s.pt;
        const int64_t c = q / s.pt;
        const int64_t j = token % gw, i = (token / gw) % gh, f = token / (gw * gh);
        const int64_t src = (((f * s.pt + kt) * s.channels + c) * s.height + (i * s.ph + kh)) * s.width + j * s.pw + kw;
        out[idx] = __float2bfloat16_rn(p.x[src]);
    }
}

// One thread per latent element x[fr, c, h, w]: it comes from token (fr / pt, h / ph, w / pw), inner index
// (kt, kh, kw, c) with the channel fastest. Writes are coalesced.
__global__ void unpatchify_kernel(UnpatchifyParams p) {
    const PatchShape s = p.shape;
    const int64_t gh = s.height / s.ph, gw = s.width / s.pw;
    const int64_t row = s.channels * s.pt * s.ph * s.pw;
    const int64_t total = s.frames * s.channels * s.height * s.width;
    for (int64_t idx = first_index(); idx < total; idx += grid_stride()) {
        const int64_t w = idx % s.width;
        const int64_t h = (idx / s.width) % s.height;
        const int64_t c = (idx / (s.width * s.height)) % s.channels;
        const int64_t fr = idx / (s.width * s.height * s.channels);
        const int64_t token = ((fr / s.pt) * gh + h / s.ph) * gw + w / s.pw;
        const int64_t inner = (((fr % s.pt) * s.ph + h % s.ph) * s.pw + w % s.pw) * s.channels + c;
        p.x[idx] = p.patches[token * row + inner];
    }
}

__global__ void flow_to_x0_kernel(const float* flow, const float* xt, double sigma, float* x0, int64_t n) {
    for (int64_t i = first_index(); i < n; i += grid_stride()) {
        x0[i] =
            static_cast<float>(__dsub_rn(static_cast<double>(xt[i]), __dmul_rn(sigma, static_cast<double>(flow[i]))));
    }
}

__global__ void add_noise_kernel(const float* x0, const float* noise, float keep, float sigma, float* out, int64_t n) {
    for (int64_t i = first_index(); i < n; i += grid_stride()) {
        out[i] = __fadd_rn(__fmul_rn(keep, x0[i]), __fmul_rn(sigma, noise[i]));
    }
}

// No contraction into an fma: the same two roundings as the CPU's double expression.
__global__ void euler_step_kernel(const float* flow, double dsigma, float* x, int64_t n) {
    for (int64_t i = first_index(); i < n; i += grid_stride()) {
        x[i] =
            static_cast<float>(__dadd_rn(static_cast<double>(x[i]), __dmul_rn(dsigma, static_cast<double>(flow[i]))));
    }
}

void check_patch_shape(const PatchShape& s) {
    LR_ASSERT(s.frames > 0 && s.channels > 0 && s.height > 0 && s.width > 0 && s.pt > 0 && s.ph > 0 && s.pw > 0 &&
                  s.frames % s.pt == 0 && s.height % s.ph == 0 && s.width % s.pw == 0,
              "patchify: latent [", s.frames, ", ", s.channels, ", ", s.height, ", ", s.width,
              "] is not a whole number of patches (", s.pt, ", ", s.ph, ", ", s.pw, ")");
}

}  // namespace

void launch_add_broadcast(const AddBroadcastParams& p, Stream stream) {
    LR_ASSERT(p.groups >= 0 && p.n >= 0, "add_broadcast: groups ", p.groups, ", n ", p.n);
    if (p.groups == 0 || p.n == 0) return;
    LR_ASSERT(p.base && p.rows && p.out, "add_broadcast: null pointer");
    add_broadcast_kernel<<<grid_for(p.groups * p.n), kThreads, 0, stream>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_copy_rows(const CopyRowsParams& p, Stream stream) {
    LR_ASSERT(p.rows >= 0 && p.row_bytes > 0 && p.row_bytes % 4 == 0, "copy_rows: rows ", p.rows, ", row_bytes ",
              p.row_bytes, " (a positive multiple of 4)");
    const int64_t src_stride = p.src_stride ? p.src_stride : p.row_bytes;
    const int64_t dst_stride = p.dst_stride ? p.dst_stride : p.row_bytes;
    LR_ASSERT(src_stride % 4 == 0 && dst_stride % 4 == 0 && src_stride >= p.row_bytes && dst_stride >= p.row_bytes,
              "copy_rows: strides ", src_stride, " / ", dst_stride, " for rows of ", p.row_bytes, " bytes");
    if (p.rows == 0) return;
    LR_ASSERT(p.src && p.dst, "copy_rows: null pointer");
    const int64_t words = p.row_bytes / 4;
    copy_rows_kernel<<<grid_for(p.rows * words), kThreads, 0, stream>>>(p, words, src_stride, dst_stride);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_unary(const UnaryParams& p, Stream stream) {
    const auto supported = [](DType t) { return t == DType::kF32 || t == DType::kBF16; };
    LR_ASSERT(supported(p.x_dtype) && supported(p.y_dtype), "unary: x and y must be F32 or BF16, found ",
              dtype_name(p.x_dtype), " and ", dtype_name(p.y_dtype));
    // In place is safe only element for element: a narrower y would overwrite x ahead of its reader.
    LR_ASSERT(p.x != p.y || p.x_dtype == p.y_dtype, "unary: y aliases x with a different dtype");
    LR_ASSERT(p.n >= 0, "unary: n ", p.n);
    if (p.n == 0) return;
    LR_ASSERT(p.x && p.y, "unary: null pointer");
    unary_kernel<<<grid_for(p.n), kThreads, 0, stream>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_timestep_embedding(const TimestepEmbeddingParams& p, Stream stream) {
    LR_ASSERT(p.dim > 0 && p.dim % 2 == 0, "timestep_embedding: dim must be even, found ", p.dim);
    LR_ASSERT(p.n >= 0, "timestep_embedding: n ", p.n);
    if (p.n == 0) return;
    LR_ASSERT(p.t && p.out, "timestep_embedding: null pointer");
    timestep_embedding_kernel<<<grid_for(p.n * (p.dim / 2)), kThreads, 0, stream>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_patchify(const PatchifyCudaParams& p, Stream stream) {
    check_patch_shape(p.shape);
    LR_ASSERT(p.x && p.patches, "patchify: null pointer");
    patchify_kernel<<<grid_for(p.shape.tokens() * p.shape.patch_size()), kThreads, 0, stream>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_unpatchify(const UnpatchifyParams& p, Stream stream) {
    check_patch_shape(p.shape);
    LR_ASSERT(p.patches && p.x, "unpatchify: null pointer");
    const PatchShape& s = p.shape;
    unpatchify_kernel<<<grid_for(s.frames * s.channels * s.height * s.width), kThreads, 0, stream>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_flow_to_x0(const float* flow, const float* xt, double sigma, float* x0, int64_t n, Stream stream) {
    LR_ASSERT(n >= 0, "flow_to_x0: n ", n);
    if (n == 0) return;
    LR_ASSERT(flow && xt && x0, "flow_to_x0: null pointer");
    flow_to_x0_kernel<<<grid_for(n), kThreads, 0, stream>>>(flow, xt, sigma, x0, n);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_add_noise(const float* x0, const float* noise, float sigma, float* out, int64_t n, Stream stream) {
    LR_ASSERT(n >= 0, "add_noise: n ", n);
    if (n == 0) return;
    LR_ASSERT(x0 && noise && out, "add_noise: null pointer");
    // 1 - sigma rounded once in fp32, as FlowMatchScheduler::add_noise computes it.
    const float keep = 1.0f - sigma;
    add_noise_kernel<<<grid_for(n), kThreads, 0, stream>>>(x0, noise, keep, sigma, out, n);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_euler_step(const float* flow, double dsigma, float* x, int64_t n, Stream stream) {
    LR_ASSERT(n >= 0, "euler_step: n ", n);
    if (n == 0) return;
    LR_ASSERT(flow && x, "euler_step: null pointer");
    euler_step_kernel<<<grid_for(n), kThreads, 0, stream>>>(flow, dsigma, x, n);
    LR_CUDA_LAUNCH_CHECK();
}

}  // namespace lr
