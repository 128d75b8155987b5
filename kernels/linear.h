// Linear layer: y = x W^T + b, W stored [out, in] as in PyTorch checkpoints.
#pragma once

#include <cstdint>

namespace lr {

struct LinearParams {
    const float* x = nullptr;       // [rows, in_features], rows x_stride elements apart
    const float* weight = nullptr;  // [out_features, in_features], contiguous
    const float* bias = nullptr;    // [out_features], or nullptr
    float* y = nullptr;             // [rows, out_features], rows y_stride elements apart
    int64_t rows = 0;
    int64_t in_features = 0;
    int64_t out_features = 0;
    int64_t x_stride = 0;  // 0: in_features
    int64_t y_stride = 0;  // 0: out_features
};

void linear_cpu(const LinearParams& p);

}  // namespace lr
