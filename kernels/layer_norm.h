// LayerNorm over the last dimension, with the optional affine gain/bias and the optional AdaLN modulation that
// Wan applies per latent frame, fused in one pass:
//   y = LN(x) [* weight + bias] [* (1 + scale_g) + shift_g],   g = row / rows_per_group
// Wan uses it three ways: norm1/norm2/head norm (no affine, modulated), norm3 (affine, not modulated).
// Mean and variance are accumulated in double; the result is fp32 (PyTorch computes LayerNorm in fp32).
#pragma once

#include <cstdint>

namespace lr {

struct LayerNormParams {
    const float* x = nullptr;  // [rows, dim], contiguous
    float* y = nullptr;        // [rows, dim]; may be x
    int64_t rows = 0;
    int64_t dim = 0;
    float eps = 1e-6f;
    const float* weight = nullptr;  // [dim] or nullptr (no affine)
    const float* bias = nullptr;    // [dim] or nullptr
    // Modulation, both or neither: group g's vectors are shift + g * mod_stride and scale + g * mod_stride.
    const float* shift = nullptr;  // [groups, dim]
    const float* scale = nullptr;  // [groups, dim]
    int64_t rows_per_group = 0;    // tokens per latent frame
    int64_t mod_stride = 0;        // elements between consecutive groups (dim for a plain [groups, dim] table)
};

void layer_norm_cpu(const LayerNormParams& p);

}  // namespace lr
