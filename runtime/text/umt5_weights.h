// The UMT5 encoder's tensors under the two naming schemes in use, and what a checkpoint says about the model.
//
// Wan2.1 ships the UMT5-XXL encoder as `models_t5_umt5-xxl-enc-bf16.pth` with the names of its own T5 code
// (wan/modules/t5.py: token_embedding, blocks.N.{norm1, attn.q, pos_embedding.embedding, ffn.gate.0, ...}, norm);
// tools/convert_checkpoint.py --format umt5 turns it into safetensors with those names. Hugging Face's
// UMT5EncoderModel (transformers, diffusers' Wan pipelines, ComfyUI's umt5_xxl files) names the same tensors
// shared / encoder.block.N.layer.{0,1}.... Both are read; the model's sizes come from the tensor shapes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/io/safetensors.h"

namespace lr {

enum class Umt5Naming { kWan, kHuggingFace };

std::string_view umt5_naming_name(Umt5Naming naming);  // "Wan (wan/modules/t5.py)", "Hugging Face (UMT5EncoderModel)"

// UMT5-XXL: vocab 256384, d_model 4096, 64 heads of 64, d_ff 10240, 24 layers, 32 buckets, max distance 128.
struct Umt5Config {
    int64_t vocab_size = 0;
    int64_t d_model = 0;
    int64_t num_heads = 0;
    int64_t d_kv = 0;  // head size; the attention's width is num_heads * d_kv
    int64_t d_ff = 0;  // gated-GELU FFN inner size
    int64_t num_layers = 0;
    int64_t num_buckets = 32;    // relative position buckets (half for keys before the query, half after)
    int64_t max_distance = 128;  // offsets from here on share the last bucket
    double eps = 1e-6;           // of the RMS norms

    int64_t inner_dim() const { return num_heads * d_kv; }
    int64_t parameter_count() const;
    friend bool operator==(const Umt5Config&, const Umt5Config&) = default;
};

// One tensor of the encoder; `layer` is ignored for the embedding and the final norm.
enum class Umt5Tensor {
    kEmbedding,  // [vocab, d_model]
    kAttnNorm,   // [d_model]: RMS norm before self-attention
    kQ,          // [inner, d_model]
    kK,          // [inner, d_model]
    kV,          // [inner, d_model]
    kO,          // [d_model, inner]
    kRelBias,    // [num_buckets, num_heads]: this layer's relative position bias (one per layer in UMT5)
    kFfnNorm,    // [d_model]
    kFfnGate,    // [d_ff, d_model]: GELU(tanh) branch (Wan ffn.gate.0, HF wi_0)
    kFfnUp,      // [d_ff, d_model]: linear branch (Wan ffn.fc1, HF wi_1)
    kFfnDown,    // [d_model, d_ff] (Wan ffn.fc2, HF wo)
    kFinalNorm,  // [d_model]
};

// The name of `t` in a scheme. Hugging Face's embedding is `shared.weight` (a file may hold
// `encoder.embed_tokens.weight` instead: see umt5_embedding_name).
std::string umt5_tensor_name(Umt5Naming naming, Umt5Tensor t, int64_t layer = 0);
Shape umt5_tensor_shape(const Umt5Config& c, Umt5Tensor t);

// The embedding's name in this checkpoint (for Hugging Face files: shared.weight or encoder.embed_tokens.weight).
std::string umt5_embedding_name(const SafetensorsCheckpoint& ckpt, Umt5Naming naming);

struct Umt5Detection {
    Umt5Naming naming = Umt5Naming::kWan;
    Umt5Config config;
};

// What a checkpoint is, as far as the text encoder is concerned: a UMT5 encoder (naming and sizes read off the
// shapes; num_buckets from the bias, max_distance and eps from __metadata__["config"] when the converter wrote
// them, else UMT5's 128 and 1e-6), or nullopt. Only the first layer's shapes and the layer count are looked at
// here; Umt5Encoder::open checks every tensor.
std::optional<Umt5Detection> detect_umt5(const SafetensorsCheckpoint& ckpt);

// Why `ckpt` is not a UMT5 encoder, for the error message: "a Wan2.1 DiT checkpoint (give it as --weights)",
// "a T5 encoder with one shared position bias (T5 v1.1 / mT5), not UMT5", ...
std::string describe_non_umt5(const SafetensorsCheckpoint& ckpt);

// The bucket of a key at offset `rel` = key position - query position, bidirectional (T5's
// _relative_position_bucket for an encoder): offsets after the query use the upper half of the buckets; within a
// half, |rel| < half/2 gets a bucket each, larger offsets share log-spaced buckets up to max_distance.
int64_t umt5_relative_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance);

}  // namespace lr
