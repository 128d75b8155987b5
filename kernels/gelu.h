// GELU with the tanh approximation (PyTorch's GELU(approximate='tanh')), used by Wan's FFN and text embedding:
//   y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
#pragma once

#include <cstdint>

namespace lr {

struct GeluParams {
    const float* x = nullptr;  // [n]
    float* y = nullptr;        // [n]; may be x
    int64_t n = 0;
};

void gelu_tanh_cpu(const GeluParams& p);

}  // namespace lr
