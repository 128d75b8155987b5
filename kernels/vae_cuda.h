// The Wan2.1 VAE decoder's ops on the GPU (DESIGN.md section 5), for runtime/vae/wan_vae_cuda: activations are
// channels-last frames [height, width, channels] like the CPU decoder's, bf16 where they feed a convolution, f32
// where they are the residual stream or feed a norm. CPU references (tests/gpu/test_vae_gpu.cpp compares them):
//   launch_vae_denorm_latent      the z / (1 / std) + mean loop of VaeStream (wan_vae.cpp)
//   launch_vae_rms_norm           l2_norm_cpu (kernels/l2_norm.h), statistics in fp32
//   launch_vae_upsample_nearest2x upsample_nearest2x_cpu (kernels/upsample_nearest.h)
//   launch_vae_im2col             the im2col inside conv3d_cpu (kernels/conv3d.h); with a GEMM it is the conv
//   launch_vae_conv               conv3d_cpu: implicit GEMM on bf16 tensor cores over the frames (vae_conv_cuda.cu)
//   launch_vae_softmax_rows, launch_vae_transpose: the pieces of the per-frame attention (attention_cpu)
//   launch_vae_rgb_out            the head's clamp and vae_rgb_to_u8 (runtime/vae/wan_vae.h)
// The residual adds are fused into the convolutions (accumulate into the f32 stream), as on the CPU.
// All pointers are device pointers; every launch is asynchronous on `stream` and graph capturable.
#pragma once

#include <cstdint>

#include "runtime/core/dtype.h"
#include "runtime/core/stream.h"

namespace lr {

// y[p, c] = z[c, p] / inv_std[c] + mean[c]: the rollout's planar latent frame -> a channels-last bf16 frame.
// Divides by 1 / std (not multiplies by std) because that is what the reference computes in fp32. A row split
// reads its rows of the whole frame: z at the rank's first pixel, z_stride the frame's pixels.
struct VaeDenormLatentParams {
    const float* z = nullptr;        // f32 [channels, pixels], channel planes z_stride elements apart
    const float* mean = nullptr;     // f32 [channels]
    const float* inv_std = nullptr;  // f32 [channels]
    void* y = nullptr;               // bf16 [pixels, channels]
    int64_t pixels = 0;
    int64_t channels = 0;
    int64_t z_stride = 0;  // 0: pixels
};
void launch_vae_denorm_latent(const VaeDenormLatentParams& p, Stream stream);

// The VAE's RMS_norm per pixel: y = x / max(||x||_2, eps) * scale * gamma (+ bias), then y * sigmoid(y) when
// silu; fp32 sum of squares, bf16 out. dim, the strides and the pointers' element offsets must be even (pairs of
// channels per load). x_copy, when set, also gets x rounded to bf16: the input of a residual block's 1x1
// shortcut conv, read from the same pass.
struct VaeRmsNormParams {
    const float* x = nullptr;      // f32 [rows, dim], rows x_stride elements apart (0: dim)
    void* y = nullptr;             // bf16 [rows, dim], rows y_stride elements apart (0: dim)
    void* x_copy = nullptr;        // bf16 [rows, dim] contiguous, or nullptr
    const float* gamma = nullptr;  // f32 [dim]
    const float* bias = nullptr;   // f32 [dim], or nullptr
    int64_t rows = 0;
    int64_t dim = 0;
    int64_t x_stride = 0;
    int64_t y_stride = 0;
    float scale = 0.0f;  // 0: sqrt(dim)
    float eps = 1e-12f;
    bool silu = false;
};
void launch_vae_rms_norm(const VaeRmsNormParams& p, Stream stream);

// y[2i + a][2j + b][c] = x[i][j][c]: the nearest 2x upsampling before a resample conv. x may be a channel slice
// of a wider frame (the time conv's output holds two frames side by side in channels). channels even.
struct VaeUpsampleParams {
    const void* x = nullptr;  // [height, width, channels] of x_dtype (F32 or BF16), pixels x_pixel_stride apart
    DType x_dtype = DType::kBF16;
    void* y = nullptr;  // bf16 [2 height, 2 width, channels], contiguous; must not alias x
    int64_t height = 0;
    int64_t width = 0;
    int64_t channels = 0;
    int64_t x_pixel_stride = 0;  // 0: channels; even
};
void launch_vae_upsample_nearest2x(const VaeUpsampleParams& p, Stream stream);

// The input of a conv over a window of `kt` channels-last frames, as GEMM rows: for output pixels
// [pixel0, pixel0 + pixels) of the frame,
//   col[i][((dt * kh + dy) * kw + dx) * channels + c] = frames[dt][y + dy - kh/2][x + dx - kw/2][c]
// with zeros outside the frame and for null frames (the causal zero padding before the first frame). A GEMM of
// col [pixels, K] with the weight [out, K] (conv_weight_for_gemm's layout) is the conv; bands of pixels bound
// the memory (the whole 3x3x3 im2col of a 1088p frame at 96 channels is 10.8 GB). channels even.
struct VaeIm2colParams {
    const void* frames[3] = {nullptr, nullptr, nullptr};  // bf16 [height, width, channels] each, or nullptr
    void* col = nullptr;                                  // bf16 [pixels, kt * kh * kw * channels]
    int64_t height = 0;
    int64_t width = 0;
    int64_t channels = 0;
    int64_t kt = 1;  // 1..3
    int64_t kh = 1;  // odd
    int64_t kw = 1;  // odd
    int64_t pixel0 = 0;
    int64_t pixels = 0;
};
void launch_vae_im2col(const VaeIm2colParams& p, Stream stream);

// A conv over a window of `kt` channels-last bf16 frames as an implicit GEMM: the kernel gathers the im2col
// tile of each step straight from the frames into shared memory (cp.async, zero-filled at the borders and for
// null frames), so nothing the size of the im2col is ever written. bf16 tensor cores, fp32 accumulation; the bias
// and the residual add (accumulate into an f32 y) are the epilogue.
//   y[p][o] (+)= bias[o] + sum_{dt, dy, dx, c} weight[o][((dt * kh + dy) * kw + dx) * in_ch + c] * in_dt[...]
// Needs in_ch % 8 == 0 (16-byte gathers), out_ch and ldy even. On sm_90 devices, out_ch % 96 == 0 runs on
// wgmma (Hopper's warpgroup MMA), everything else on mma.sync.
enum class VaeConvKernel {
    kAuto,     // wgmma where it applies, else mma.sync
    kMmaSync,  // mma.sync only (tests compare the two)
};
struct VaeConvParams {
    const void* frames[3] = {nullptr, nullptr, nullptr};  // bf16 [height, width, in_ch] each, or nullptr
    const void* weight = nullptr;                         // bf16 [out_ch, kt * kh * kw * in_ch]
    const float* bias = nullptr;                          // f32 [out_ch], or nullptr
    void* y = nullptr;                                    // [height * width, out_ch] of y_dtype, rows ldy apart
    DType y_dtype = DType::kF32;                          // kF32 or kBF16
    int64_t ldy = 0;                                      // 0: out_ch
    bool accumulate = false;                              // y += conv (f32 y only)
    int64_t height = 0;
    int64_t width = 0;
    int64_t in_ch = 0;
    int64_t out_ch = 0;
    int64_t kt = 1;  // 1..3
    int64_t kh = 1;  // odd
    int64_t kw = 1;  // odd
    VaeConvKernel kernel = VaeConvKernel::kAuto;
};
void launch_vae_conv(const VaeConvParams& p, Stream stream);

// probs[r][j] = exp(scale * (s[r][j] - max_j s[r])) / sum_j (...): one query band's attention weights, fp32
// softmax over f32 scores, written as bf16 for the GEMM with v.
struct VaeSoftmaxParams {
    const float* scores = nullptr;  // f32 [rows, cols], rows scores_stride elements apart (0: cols)
    void* probs = nullptr;          // bf16 [rows, cols], rows probs_stride elements apart (0: cols)
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t scores_stride = 0;
    int64_t probs_stride = 0;
    float scale = 1.0f;
};
void launch_vae_softmax_rows(const VaeSoftmaxParams& p, Stream stream);

// y[c][r] = x[r][c] (bf16): v^T, so that probs . v is a GEMM with a [n, k] weight operand.
struct VaeTransposeParams {
    const void* x = nullptr;  // bf16 [rows, cols], rows x_stride elements apart (0: cols)
    void* y = nullptr;        // bf16 [cols, rows], rows y_stride elements apart (0: rows)
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t x_stride = 0;
    int64_t y_stride = 0;
};
void launch_vae_transpose(const VaeTransposeParams& p, Stream stream);

// The RGB head's output to a frame: clamp to [-1, 1], then either planar f32 [3, pixels] or rgb24 exactly as
// vae_rgb_to_u8 (x * 0.5 + 0.5, clamp to [0, 1], * 255, truncated; NaN -> 0). Exactly one of u8 / planar. A
// row split's rank 0 writes its rows into the whole planar frame: planar_stride the frame's pixels.
struct VaeRgbOutParams {
    const float* rgb = nullptr;  // f32 [pixels, 3], pixels rgb_stride elements apart (0: 3)
    int64_t pixels = 0;
    int64_t rgb_stride = 0;
    uint8_t* u8 = nullptr;      // [pixels, 3]
    float* planar = nullptr;    // [3, pixels], channel planes planar_stride elements apart
    int64_t planar_stride = 0;  // 0: pixels
};
void launch_vae_rgb_out(const VaeRgbOutParams& p, Stream stream);

// data[i] = offset + scale * u, u uniform in [-1, 1) from a counter-based hash of (key, i): weights of the
// benchmark VAE, made on the device so that no host copy of the real-size weights exists.
struct VaeFillUniformParams {
    void* data = nullptr;  // [n] of dtype (F32 or BF16)
    DType dtype = DType::kBF16;
    int64_t n = 0;
    uint64_t key = 0;
    float offset = 0.0f;
    float scale = 1.0f;
};
void launch_vae_fill_uniform(const VaeFillUniformParams& p, Stream stream);

}  // namespace lr
