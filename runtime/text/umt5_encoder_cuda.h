// The UMT5 encoder on the GPU (the CPU reference: umt5_encoder.h, whose layer math this follows op by op): bf16
// weights and activations, fp32 accumulation, statistics and residual stream. Each layer's matrices are widened
// (or narrowed) to bf16 on the host and uploaded once for all the prompts of the call, so the device holds one
// layer at a time (UMT5-XXL: ~0.45 GB of weights, plus the prompts' activations), not the whole 11 GB encoder.
//
//   x = embedding rows (f32);  per layer:  h = RMSNorm(x) (bf16);  q, k, v = h W (cuBLASLt);
//   a = softmax(q k^T + relative bias) v (launch_relative_bias_attention);  x += a O (f32 accumulate);
//   h = RMSNorm(x);  g = gelu_tanh(h Gate) * (h Up) (launch_gated_gelu);  x += g Down;   out = RMSNorm(x) (bf16)
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/text/umt5_encoder.h"

namespace lr {

// Encodes each prompt's token ids on CUDA device `device` to F32 [length, d_model] (the bf16 result widened).
// RuntimeError in a build without CUDA; InputError naming the tensor when a weight used holds NaN or Inf.
std::vector<HostTensor> encode_umt5_cuda(const Umt5Encoder& encoder, const std::vector<std::vector<int32_t>>& prompts,
                                         int device);

}  // namespace lr
