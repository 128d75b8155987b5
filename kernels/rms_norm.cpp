#include "kernels/rms_norm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu_parallel.h"

namespace lr {

void rms_norm_cpu(const RmsNormParams& p) {
    const int64_t d = p.dim;
    const int64_t xs = p.x_stride > 0 ? p.x_stride : d;
    const int64_t ys = p.y_stride > 0 ? p.y_stride : d;
    parallel_for(p.rows, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(d, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* x = p.x + r * xs;
            float* y = p.y + r * ys;
            double sq = 0.0;
            for (int64_t i = 0; i < d; ++i) sq += static_cast<double>(x[i]) * x[i];
            const float inv = 1.0f / std::sqrt(static_cast<float>(sq / static_cast<double>(d)) + p.eps);
            for (int64_t i = 0; i < d; ++i) y[i] = x[i] * inv * p.weight[i];
        }
    });
}

}  // namespace lr
