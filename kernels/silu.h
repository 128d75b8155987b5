// SiLU (swish): y = x * sigmoid(x) = x / (1 + exp(-x)). Wan's time embedding and time projection use it.
#pragma once

#include <cstdint>

namespace lr {

struct SiluParams {
    const float* x = nullptr;  // [n]
    float* y = nullptr;        // [n]; may be x
    int64_t n = 0;
};

void silu_cpu(const SiluParams& p);

}  // namespace lr
