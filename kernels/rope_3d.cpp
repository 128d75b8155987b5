#include "kernels/rope_3d.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "runtime/core/check.h"

namespace lr {

int64_t rope_spatial_pairs(int64_t head_dim) { return head_dim / 6; }
int64_t rope_frame_pairs(int64_t head_dim) { return head_dim / 2 - 2 * rope_spatial_pairs(head_dim); }

void rope_3d_cpu(const Rope3dParams& p) {
    LR_ASSERT(p.head_dim > 0 && p.head_dim % 2 == 0, "rope_3d: head_dim must be even, found ", p.head_dim);
    const int64_t pairs = p.head_dim / 2;
    const int64_t fp = rope_frame_pairs(p.head_dim);
    const int64_t sp = rope_spatial_pairs(p.head_dim);
    const double a = static_cast<double>(2 * fp);
    const double b = static_cast<double>(2 * sp);
    // Inverse frequencies as the reference computes them: 1 / theta^((2j) / part_dim), in double.
    std::vector<double> inv_freq(static_cast<size_t>(pairs));
    std::vector<int> axis(static_cast<size_t>(pairs));
    for (int64_t i = 0; i < pairs; ++i) {
        const bool frame = i < fp;
        const int64_t j = frame ? i : (i - fp) % sp;
        inv_freq[static_cast<size_t>(i)] = 1.0 / std::pow(p.theta, static_cast<double>(2 * j) / (frame ? a : b));
        axis[static_cast<size_t>(i)] = frame ? 0 : (i < fp + sp ? 1 : 2);
    }
    const int64_t xs = p.x_stride > 0 ? p.x_stride : p.heads * p.head_dim;
    const int64_t ys = p.y_stride > 0 ? p.y_stride : p.heads * p.head_dim;
    parallel_for(p.tokens, 64, [&](int64_t t0, int64_t t1) {
        std::vector<double> cs(static_cast<size_t>(2 * pairs));
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t* pos = p.positions + 3 * t;
            for (int64_t i = 0; i < pairs; ++i) {
                const double angle =
                    static_cast<double>(pos[axis[static_cast<size_t>(i)]]) * inv_freq[static_cast<size_t>(i)];
                cs[static_cast<size_t>(2 * i)] = std::cos(angle);
                cs[static_cast<size_t>(2 * i + 1)] = std::sin(angle);
            }
            for (int64_t h = 0; h < p.heads; ++h) {
                const float* x = p.x + t * xs + h * p.head_dim;
                float* y = p.y + t * ys + h * p.head_dim;
                for (int64_t i = 0; i < pairs; ++i) {
                    const double re = x[2 * i], im = x[2 * i + 1];
                    const double c = cs[static_cast<size_t>(2 * i)], s = cs[static_cast<size_t>(2 * i + 1)];
                    y[2 * i] = static_cast<float>(re * c - im * s);
                    y[2 * i + 1] = static_cast<float>(re * s + im * c);
                }
            }
        }
    });
}

}  // namespace lr
