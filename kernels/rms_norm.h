// RMSNorm over the whole last dimension (Wan's q/k norms span all heads, not one head):
//   y = x * rsqrt(mean(x^2) + eps) * weight, computed in fp32 with a double accumulator.
#pragma once

#include <cstdint>

namespace lr {

struct RmsNormParams {
    const float* x = nullptr;       // [rows, dim], rows x_stride elements apart
    float* y = nullptr;             // [rows, dim], rows y_stride elements apart; may be x
    const float* weight = nullptr;  // [dim]
    int64_t rows = 0;
    int64_t dim = 0;
    int64_t x_stride = 0;  // 0: dim
    int64_t y_stride = 0;  // 0: dim
    float eps = 1e-6f;
};

void rms_norm_cpu(const RmsNormParams& p);

}  // namespace lr
