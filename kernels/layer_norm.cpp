#include "kernels/layer_norm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu_parallel.h"
#include "runtime/core/check.h"

namespace lr {

void layer_norm_cpu(const LayerNormParams& p) {
    LR_ASSERT((p.shift == nullptr) == (p.scale == nullptr), "layer_norm: shift and scale come together");
    LR_ASSERT(p.shift == nullptr || p.rows_per_group > 0, "layer_norm: modulation needs rows_per_group > 0");
    LR_ASSERT((p.weight == nullptr) || (p.bias != nullptr), "layer_norm: affine needs weight and bias");
    const int64_t d = p.dim;
    parallel_for(p.rows, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(d, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* x = p.x + r * d;
            float* y = p.y + r * d;
            double sum = 0.0;
            for (int64_t i = 0; i < d; ++i) sum += x[i];
            const double mean = sum / static_cast<double>(d);
            double sq = 0.0;
            for (int64_t i = 0; i < d; ++i) {
                const double c = x[i] - mean;
                sq += c * c;
            }
            const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(d) + p.eps));
            const float m = static_cast<float>(mean);
            const float* shift = p.shift ? p.shift + (r / p.rows_per_group) * p.mod_stride : nullptr;
            const float* scale = p.scale ? p.scale + (r / p.rows_per_group) * p.mod_stride : nullptr;
            for (int64_t i = 0; i < d; ++i) {
                float v = (x[i] - m) * rstd;
                if (p.weight) v = v * p.weight[i] + p.bias[i];
                if (shift) v = v * (1.0f + scale[i]) + shift[i];
                y[i] = v;
            }
        }
    });
}

}  // namespace lr
