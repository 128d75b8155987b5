#include "kernels/timestep_embedding.h"

#include <cmath>

#include "runtime/core/check.h"

namespace lr {

void timestep_embedding_cpu(const TimestepEmbeddingParams& p) {
    LR_ASSERT(p.dim > 0 && p.dim % 2 == 0, "timestep_embedding: dim must be even, found ", p.dim);
    const int64_t half = p.dim / 2;
    for (int64_t i = 0; i < p.n; ++i) {
        const double t = p.t[i];
        float* out = p.out + i * p.dim;
        for (int64_t j = 0; j < half; ++j) {
            const double freq = std::pow(10000.0, -(static_cast<double>(j) / static_cast<double>(half)));
            const double angle = t * freq;
            out[j] = static_cast<float>(std::cos(angle));
            out[half + j] = static_cast<float>(std::sin(angle));
        }
    }
}

}  // namespace lr
