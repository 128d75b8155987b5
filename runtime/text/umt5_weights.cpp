#include "runtime/text/umt5_weights.h"

#include <cmath>

#include "runtime/core/check.h"
#include "runtime/io/json.h"

namespace lr {
namespace {

bool has(const SafetensorsCheckpoint& c, const std::string& name) { return c.find(name) != nullptr; }

// The layer count: blocks 0, 1, ... while the layer's q projection exists.
int64_t count_layers(const SafetensorsCheckpoint& c, Umt5Naming naming) {
    int64_t n = 0;
    while (has(c, umt5_tensor_name(naming, Umt5Tensor::kQ, n))) ++n;
    return n;
}

}  // namespace

std::string_view umt5_naming_name(Umt5Naming naming) {
    return naming == Umt5Naming::kWan ? "Wan (wan/modules/t5.py)" : "Hugging Face (UMT5EncoderModel)";
}

int64_t Umt5Config::parameter_count() const {
    const int64_t per_layer = 4 * d_model * inner_dim() + 3 * d_model * d_ff + 2 * d_model + num_buckets * num_heads;
    return vocab_size * d_model + num_layers * per_layer + d_model;
}

std::string umt5_tensor_name(Umt5Naming naming, Umt5Tensor t, int64_t layer) {
    if (naming == Umt5Naming::kWan) {
        const std::string b = str_cat("blocks.", layer, ".");
        switch (t) {
            case Umt5Tensor::kEmbedding:
                return "token_embedding.weight";
            case Umt5Tensor::kAttnNorm:
                return b + "norm1.weight";
            case Umt5Tensor::kQ:
                return b + "attn.q.weight";
            case Umt5Tensor::kK:
                return b + "attn.k.weight";
            case Umt5Tensor::kV:
                return b + "attn.v.weight";
            case Umt5Tensor::kO:
                return b + "attn.o.weight";
            case Umt5Tensor::kRelBias:
                return b + "pos_embedding.embedding.weight";
            case Umt5Tensor::kFfnNorm:
                return b + "norm2.weight";
            case Umt5Tensor::kFfnGate:
                return b + "ffn.gate.0.weight";
            case Umt5Tensor::kFfnUp:
                return b + "ffn.fc1.weight";
            case Umt5Tensor::kFfnDown:
                return b + "ffn.fc2.weight";
            case Umt5Tensor::kFinalNorm:
                return "norm.weight";
        }
    } else {
        const std::string b = str_cat("encoder.block.", layer, ".layer.");
        switch (t) {
            case Umt5Tensor::kEmbedding:
                return "shared.weight";
            case Umt5Tensor::kAttnNorm:
                return b + "0.layer_norm.weight";
            case Umt5Tensor::kQ:
                return b + "0.SelfAttention.q.weight";
            case Umt5Tensor::kK:
                return b + "0.SelfAttention.k.weight";
            case Umt5Tensor::kV:
                return b + "0.SelfAttention.v.weight";
            case Umt5Tensor::kO:
                return b + "0.SelfAttention.o.weight";
            case Umt5Tensor::kRelBias:
                return b + "0.SelfAttention.relative_attention_bias.weight";
            case Umt5Tensor::kFfnNorm:
                return b + "1.layer_norm.weight";
            case Umt5Tensor::kFfnGate:
                return b + "1.DenseReluDense.wi_0.weight";
            case Umt5Tensor::kFfnUp:
                return b + "1.DenseReluDense.wi_1.weight";
            case Umt5Tensor::kFfnDown:
                return b + "1.DenseReluDense.wo.weight";
            case Umt5Tensor::kFinalNorm:
                return "encoder.final_layer_norm.weight";
        }
    }
    LR_ASSERT(false, "unknown Umt5Tensor");
}

Shape umt5_tensor_shape(const Umt5Config& c, Umt5Tensor t) {
    switch (t) {
        case Umt5Tensor::kEmbedding:
            return Shape{c.vocab_size, c.d_model};
        case Umt5Tensor::kAttnNorm:
        case Umt5Tensor::kFfnNorm:
        case Umt5Tensor::kFinalNorm:
            return Shape{c.d_model};
        case Umt5Tensor::kQ:
        case Umt5Tensor::kK:
        case Umt5Tensor::kV:
            return Shape{c.inner_dim(), c.d_model};
        case Umt5Tensor::kO:
            return Shape{c.d_model, c.inner_dim()};
        case Umt5Tensor::kRelBias:
            return Shape{c.num_buckets, c.num_heads};
        case Umt5Tensor::kFfnGate:
        case Umt5Tensor::kFfnUp:
            return Shape{c.d_ff, c.d_model};
        case Umt5Tensor::kFfnDown:
            return Shape{c.d_model, c.d_ff};
    }
    LR_ASSERT(false, "unknown Umt5Tensor");
}

std::string umt5_embedding_name(const SafetensorsCheckpoint& ckpt, Umt5Naming naming) {
    const std::string name = umt5_tensor_name(naming, Umt5Tensor::kEmbedding);
    if (naming == Umt5Naming::kHuggingFace && !has(ckpt, name) && has(ckpt, "encoder.embed_tokens.weight")) {
        return "encoder.embed_tokens.weight";
    }
    return name;
}

std::optional<Umt5Detection> detect_umt5(const SafetensorsCheckpoint& ckpt) {
    Umt5Detection d;
    if (has(ckpt, umt5_tensor_name(Umt5Naming::kWan, Umt5Tensor::kQ, 0))) {
        d.naming = Umt5Naming::kWan;
    } else if (has(ckpt, umt5_tensor_name(Umt5Naming::kHuggingFace, Umt5Tensor::kQ, 0))) {
        d.naming = Umt5Naming::kHuggingFace;
    } else {
        return std::nullopt;
    }
    const SafetensorsEntry* emb = ckpt.find(umt5_embedding_name(ckpt, d.naming));
    const SafetensorsEntry* q = ckpt.find(umt5_tensor_name(d.naming, Umt5Tensor::kQ, 0));
    const SafetensorsEntry* bias = ckpt.find(umt5_tensor_name(d.naming, Umt5Tensor::kRelBias, 0));
    const SafetensorsEntry* gate = ckpt.find(umt5_tensor_name(d.naming, Umt5Tensor::kFfnGate, 0));
    // UMT5 has a position bias in every layer and a gated FFN; T5 v1.0 has neither, T5 v1.1 / mT5 share one bias.
    if (!emb || !q || !bias || !gate || emb->shape.ndim != 2 || q->shape.ndim != 2 || bias->shape.ndim != 2 ||
        gate->shape.ndim != 2) {
        return std::nullopt;
    }
    Umt5Config& c = d.config;
    c.vocab_size = emb->shape[0];
    c.d_model = emb->shape[1];
    c.num_buckets = bias->shape[0];
    c.num_heads = bias->shape[1];
    c.d_ff = gate->shape[0];
    if (c.num_heads <= 0 || q->shape[0] % c.num_heads != 0) return std::nullopt;
    c.d_kv = q->shape[0] / c.num_heads;
    c.num_layers = count_layers(ckpt, d.naming);
    if (const std::string* meta = ckpt.metadata_value("config")) {
        // Written by tools/convert_checkpoint.py --format umt5 (Hugging Face config.json field names).
        const json::Value v = json::parse(*meta, str_cat(ckpt.path(), ": __metadata__[\"config\"]"));
        if (const json::Value* x = v.find("relative_attention_max_distance")) c.max_distance = x->as_int64();
        if (const json::Value* x = v.find("layer_norm_epsilon")) c.eps = x->as_number();
        LR_CHECK(c.max_distance > 0 && c.eps > 0 && std::isfinite(c.eps), ckpt.path(),
                 ": __metadata__[\"config\"]: relative_attention_max_distance and layer_norm_epsilon must be positive");
    }
    return d;
}

std::string describe_non_umt5(const SafetensorsCheckpoint& ckpt) {
    const auto any_with = [&](std::string_view part) {
        for (const std::string& n : ckpt.names()) {
            if (n.find(part) != std::string::npos) return true;
        }
        return false;
    };
    if (any_with("patch_embedding") || any_with("attn1.to_q") || any_with("scale_shift_table")) {
        return "it is a Wan2.1 DiT checkpoint (give it as --weights)";
    }
    if (any_with("decoder.conv1") || any_with("decoder.upsamples") || any_with("decoder.up_blocks")) {
        return "it is a Wan2.1 VAE checkpoint (give it as --vae)";
    }
    if (has(ckpt, "pos_embedding.embedding.weight") ||
        (has(ckpt, umt5_tensor_name(Umt5Naming::kHuggingFace, Umt5Tensor::kRelBias, 0)) &&
         has(ckpt, umt5_tensor_name(Umt5Naming::kHuggingFace, Umt5Tensor::kQ, 1)) &&
         !has(ckpt, umt5_tensor_name(Umt5Naming::kHuggingFace, Umt5Tensor::kRelBias, 1)))) {
        return "it is a T5 encoder with one position bias shared by all layers (T5 / mT5), not UMT5";
    }
    if (any_with("DenseReluDense.wi.weight")) return "it is a T5 v1.0 encoder (ReLU FFN), not UMT5";
    return str_cat("found neither Wan's '", umt5_tensor_name(Umt5Naming::kWan, Umt5Tensor::kQ, 0),
                   "' nor Hugging Face's '", umt5_tensor_name(Umt5Naming::kHuggingFace, Umt5Tensor::kQ, 0), "'");
}

int64_t umt5_relative_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance) {
    const int64_t half = num_buckets / 2;
    int64_t bucket = rel > 0 ? half : 0;
    const int64_t dist = rel < 0 ? -rel : rel;
    const int64_t max_exact = half / 2;
    if (dist < max_exact) return bucket + dist;
    // As the references compute it: float32 log of the ratio, divided by the double log of max_distance /
    // max_exact rounded to float, truncated toward zero.
    const float ratio =
        std::log(static_cast<float>(dist) / static_cast<float>(max_exact)) /
        static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact))) *
        static_cast<float>(half - max_exact);
    const int64_t large = std::min<int64_t>(max_exact + static_cast<int64_t>(ratio), half - 1);
    return bucket + large;
}

}  // namespace lr
