#include "kernels/silu.h"

#include <cmath>

namespace lr {

void silu_cpu(const SiluParams& p) {
    for (int64_t i = 0; i < p.n; ++i) {
        const float x = p.x[i];
        p.y[i] = x / (1.0f + std::exp(-x));
    }
}

}  // namespace lr
