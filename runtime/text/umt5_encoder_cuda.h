// The UMT5 encoder on the GPU (the CPU reference: umt5_encoder.h, whose layer math this follows op by op): bf16
// weights and activations, fp32 accumulation, statistics and residual stream.
//
//   x = embedding rows (f32);  per layer:  h = RMSNorm(x) (bf16);  q, k, v = h W (cuBLASLt);
//   a = softmax(q k^T + relative bias) v (launch_relative_bias_attention);  x += a O (f32 accumulate);
//   h = RMSNorm(x);  g = gelu_tanh(h Gate) * (h Up) (launch_gated_gelu);  x += g Down;   out = RMSNorm(x) (bf16)
//
// Two ways to hold the weights:
// - encode_umt5_cuda streams them: each layer's matrices are uploaded once for all the prompts of the call (bf16
//   files straight from the mapped file, others narrowed on the host), so the device holds one layer at a time
//   (UMT5-XXL: ~0.39 GB of weights, plus the prompts' activations), not the whole 11 GB encoder. This is what
//   `generate` runs: once per job, before the DiT plans its memory.
// - CudaUmt5Encoder keeps the whole encoder on the device (UMT5-XXL: 11.4 GB) and encodes with no host work but
//   the ids' upload: what a server encoding prompt after prompt would hold, and what text_bench times against
//   transformers (whose model is resident too).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/stream.h"
#include "runtime/core/tensor.h"
#include "runtime/text/umt5_encoder.h"

namespace lr {

// Encodes each prompt's token ids on CUDA device `device` to F32 [length, d_model] (the bf16 result widened).
// RuntimeError in a build without CUDA; InputError naming the tensor when a weight used holds NaN or Inf.
std::vector<HostTensor> encode_umt5_cuda(const Umt5Encoder& encoder, const std::vector<std::vector<int32_t>>& prompts,
                                         int device);

class CudaUmt5Encoder {
  public:
    // Every tensor of `host` on device `device` (matrices and the embedding bf16, norms f32). InputError naming
    // the tensor when one holds NaN or Inf.
    static CudaUmt5Encoder upload(const Umt5Encoder& host, int device);
    // Seeded weights drawn on the device (no host copy of the matrices): matrices ~ U(-1, 1) * sqrt(3 / in), the
    // embedding ~ U(-1, 1), norm weights 1 + 0.2 U(-1, 1), the position bias ~ U(-2, 2). For benchmarks.
    static CudaUmt5Encoder with_random_weights(const Umt5Config& config, uint64_t seed, int device);

    CudaUmt5Encoder(CudaUmt5Encoder&&) noexcept;
    CudaUmt5Encoder& operator=(CudaUmt5Encoder&&) noexcept;
    ~CudaUmt5Encoder();

    const Umt5Config& config() const;
    size_t weight_bytes() const;  // on the device
    Stream stream() const;

    // Enqueues the encoding of `ids` (1 <= length, each id < vocab_size) on stream(); returns the device pointer of
    // the bf16 result [length, d_model], valid until the next call. The first call with a new length builds that
    // length's bias tables (host work and an upload, kept for later calls); otherwise nothing waits on the host.
    const void* encode_async(const std::vector<int32_t>& ids);
    // Encodes each prompt to F32 [length, d_model], as encode_umt5_cuda does.
    std::vector<HostTensor> encode(const std::vector<std::vector<int32_t>>& prompts);
    // Writes the weights as a safetensors file under Hugging Face's UMT5EncoderModel names (bf16 matrices, f32
    // norms), readable by Umt5Encoder::open: the streamed path's input in text_bench. Needs weight_bytes() of host
    // memory.
    void save(const std::string& path) const;

    struct Impl;

  private:
    explicit CudaUmt5Encoder(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace lr
