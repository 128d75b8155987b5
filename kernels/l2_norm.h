// The Wan VAE's RMS_norm over the channels of each pixel (channels-last rows), with the SiLU that follows it in
// every residual block and in the head fused in:
//   y = x / max(||x||_2, eps) * scale * gamma (+ bias),   then y = y * sigmoid(y) when silu
// where scale = sqrt(dim): F.normalize(x, dim=channels) * dim**0.5 * gamma. This is an RMS norm whose eps sits
// on the L2 norm (1e-12, F.normalize's default), not on the mean square like kernels/rms_norm.h. The operations
// run in the reference's order (divide, scale, gain, bias) in fp32; the norm is accumulated in double.
#pragma once

#include <cstdint>

namespace lr {

struct L2NormParams {
    const float* x = nullptr;      // [rows, dim], rows x_stride elements apart
    float* y = nullptr;            // [rows, dim], rows y_stride elements apart; may be x
    const float* gamma = nullptr;  // [dim]
    const float* bias = nullptr;   // [dim], or nullptr
    int64_t rows = 0;
    int64_t dim = 0;
    int64_t x_stride = 0;  // 0: dim
    int64_t y_stride = 0;  // 0: dim
    float scale = 0.0f;    // 0: sqrt(dim)
    float eps = 1e-12f;
    bool silu = false;
};

void l2_norm_cpu(const L2NormParams& p);

}  // namespace lr
