// The sinusoidal timestep embedding of Wan (sinusoidal_embedding_1d):
//   out[i] = [cos(t_i * f_0), ..., cos(t_i * f_{half-1}), sin(t_i * f_0), ..., sin(t_i * f_{half-1})]
//   f_j = 10000^(-j / half),  half = dim / 2
// cos first, then sin. Computed in double (t * f reaches 1000 rad, where fp32 loses ~1e-4), stored as fp32.
#pragma once

#include <cstdint>

namespace lr {

struct TimestepEmbeddingParams {
    const float* t = nullptr;  // [n] timesteps (fp32, as the reference holds them before widening)
    float* out = nullptr;      // [n, dim]
    int64_t n = 0;
    int64_t dim = 0;  // even (freq_dim, 256)
};

void timestep_embedding_cpu(const TimestepEmbeddingParams& p);

}  // namespace lr
