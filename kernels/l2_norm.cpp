#include "kernels/l2_norm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu_parallel.h"
#include "runtime/core/check.h"

namespace lr {

void l2_norm_cpu(const L2NormParams& p) {
    LR_ASSERT(p.x && p.y && p.gamma && p.dim > 0 && p.rows >= 0, "l2_norm: bad arguments");
    const int64_t d = p.dim;
    const int64_t xs = p.x_stride > 0 ? p.x_stride : d;
    const int64_t ys = p.y_stride > 0 ? p.y_stride : d;
    // PyTorch multiplies by the Python float dim**0.5, rounded to fp32.
    const float scale = p.scale != 0.0f ? p.scale : static_cast<float>(std::sqrt(static_cast<double>(d)));
    parallel_for(p.rows, std::max<int64_t>(1, (int64_t{1} << 15) / d), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* x = p.x + r * xs;
            float* y = p.y + r * ys;
            double sq = 0.0;
            for (int64_t i = 0; i < d; ++i) sq += static_cast<double>(x[i]) * x[i];
            const float denom = std::max(static_cast<float>(std::sqrt(sq)), p.eps);
            for (int64_t i = 0; i < d; ++i) {
                float v = x[i] / denom * scale * p.gamma[i];
                if (p.bias) v += p.bias[i];
                if (p.silu) v = v / (1.0f + std::exp(-v));
                y[i] = v;
            }
        }
    });
}

}  // namespace lr
