#include "kernels/gelu.h"

#include <cmath>

#include "kernels/cpu_parallel.h"

namespace lr {

void gelu_tanh_cpu(const GeluParams& p) {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    parallel_for(p.n, 1 << 16, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            const float x = p.x[i];
            p.y[i] = 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
        }
    });
}

}  // namespace lr
