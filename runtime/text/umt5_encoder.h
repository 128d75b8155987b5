// The UMT5 encoder (UMT5-XXL for Wan2.1) on the CPU, fp32: token ids -> text embeddings [L, d_model], the `context`
// the DiT's cross-attention reads (DESIGN.md section 3).
//
// Per layer (transformers' UMT5EncoderModel and wan/modules/t5.py alike):
//   h = RMSNorm(x) (no mean, no bias);  x += O(Attn(Q h, K h, V h) + this layer's relative position bias)
//   h = RMSNorm(x);                      x += Down(GELU_tanh(Gate h) * Up h)
// then a final RMSNorm. Attention scores are not scaled by 1/sqrt(d_kv) (T5's convention). There are no absolute
// positions. Wan runs the encoder on the prompt padded to 512 tokens with a mask and keeps the first L outputs (L =
// tokens + </s>); since masked keys get zero weight and the bias depends only on offsets, running the L tokens alone
// gives those L outputs exactly, which is what encode() does.
//
// The weights stay in the memory-mapped safetensors file: each layer's matrices are widened to fp32 when the layer
// runs (in place when the file is F32), once for all the prompts of the call, so the host holds one layer's fp32
// copy at a time, not 22 GB. Destroying the encoder unmaps the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/io/safetensors.h"
#include "runtime/text/umt5_weights.h"

namespace lr {

class Umt5Encoder {
  public:
    // Opens and checks a UMT5 encoder checkpoint (.safetensors or a sharded .safetensors.index.json): every tensor
    // present with its shape, F32/BF16/F16. InputError naming the file, and the tensor or what the file is instead
    // (a DiT, a VAE, a T5 that is not UMT5).
    static Umt5Encoder open(const std::string& path);

    const std::string& path() const { return ckpt_.path(); }
    const Umt5Config& config() const { return config_; }
    Umt5Naming naming() const { return naming_; }
    uint64_t weight_bytes() const { return ckpt_.total_bytes(); }
    const SafetensorsCheckpoint& checkpoint() const { return ckpt_; }
    const std::string& embedding_name() const { return embedding_name_; }

    // Encodes each prompt's token ids (1 <= length, each id < vocab_size) to F32 [length, d_model]. InputError
    // naming the tensor when a weight holds NaN or Inf.
    std::vector<HostTensor> encode(const std::vector<std::vector<int32_t>>& prompts) const;

  private:
    Umt5Encoder(SafetensorsCheckpoint ckpt, Umt5Naming naming, const Umt5Config& config);

    SafetensorsCheckpoint ckpt_;
    Umt5Naming naming_;
    Umt5Config config_;
    std::string embedding_name_;
};

}  // namespace lr
