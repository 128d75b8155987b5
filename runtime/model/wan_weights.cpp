#include "runtime/model/wan_weights.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <utility>

#include "runtime/core/check.h"
#include "runtime/core/det_random.h"
#include "runtime/io/json.h"

namespace lr {
namespace {

void add_linear(std::vector<WeightSpec>& out, const std::string& prefix, int64_t out_f, int64_t in_f) {
    out.push_back({prefix + ".weight", Shape{out_f, in_f}});
    out.push_back({prefix + ".bias", Shape{out_f}});
}

}  // namespace

std::vector<WeightSpec> wan_weight_specs(const WanDims& d) {
    const int64_t patch_numel = d.patch[0] * d.patch[1] * d.patch[2];
    std::vector<WeightSpec> s;
    // Conv3d with kernel = stride = patch: a linear map of each patch. [dim, in_dim, pt, ph, pw]
    s.push_back({"patch_embedding.weight", Shape{d.dim, d.in_dim, d.patch[0], d.patch[1], d.patch[2]}});
    s.push_back({"patch_embedding.bias", Shape{d.dim}});
    add_linear(s, "text_embedding.0", d.dim, d.text_dim);
    add_linear(s, "text_embedding.2", d.dim, d.dim);
    add_linear(s, "time_embedding.0", d.dim, d.freq_dim);
    add_linear(s, "time_embedding.2", d.dim, d.dim);
    add_linear(s, "time_projection.1", 6 * d.dim, d.dim);
    for (int64_t i = 0; i < d.num_layers; ++i) {
        const std::string b = str_cat("blocks.", i, ".");
        s.push_back({b + "modulation", Shape{1, 6, d.dim}});  // [1, 6, dim]
        for (const char* attn : {"self_attn", "cross_attn"}) {
            for (const char* proj : {"q", "k", "v", "o"}) add_linear(s, b + attn + "." + proj, d.dim, d.dim);
            // RMSNorm over the whole dim (not per head)
            s.push_back({b + attn + ".norm_q.weight", Shape{d.dim}});
            s.push_back({b + attn + ".norm_k.weight", Shape{d.dim}});
        }
        s.push_back({b + "norm3.weight", Shape{d.dim}});  // the only affine LayerNorm
        s.push_back({b + "norm3.bias", Shape{d.dim}});
        add_linear(s, b + "ffn.0", d.ffn_dim, d.dim);
        add_linear(s, b + "ffn.2", d.dim, d.ffn_dim);
    }
    s.push_back({"head.modulation", Shape{1, 2, d.dim}});  // [1, 2, dim]
    add_linear(s, "head.head", d.out_dim * patch_numel, d.dim);
    return s;
}

std::optional<std::string> diffusers_to_wan_name(std::string_view key) {
    // Whole-name renames (diffusers' convert_wan_to_diffusers.py, read backwards).
    static constexpr std::pair<std::string_view, std::string_view> kTop[] = {
        {"condition_embedder.time_embedder.linear_1.", "time_embedding.0."},
        {"condition_embedder.time_embedder.linear_2.", "time_embedding.2."},
        {"condition_embedder.text_embedder.linear_1.", "text_embedding.0."},
        {"condition_embedder.text_embedder.linear_2.", "text_embedding.2."},
        {"condition_embedder.time_proj.", "time_projection.1."},
        {"proj_out.", "head.head."},
    };
    if (key == "scale_shift_table") return std::string("head.modulation");
    for (const auto& [from, to] : kTop) {
        if (key.substr(0, from.size()) == from) return str_cat(to, key.substr(from.size()));
    }
    // Per block: "blocks.<i>." then a renamed module path.
    static constexpr std::pair<std::string_view, std::string_view> kBlock[] = {
        {"scale_shift_table", "modulation"},
        {"attn1.to_q.", "self_attn.q."},
        {"attn1.to_k.", "self_attn.k."},
        {"attn1.to_v.", "self_attn.v."},
        {"attn1.to_out.0.", "self_attn.o."},
        {"attn1.norm_q.", "self_attn.norm_q."},
        {"attn1.norm_k.", "self_attn.norm_k."},
        {"attn2.to_q.", "cross_attn.q."},
        {"attn2.to_k.", "cross_attn.k."},
        {"attn2.to_v.", "cross_attn.v."},
        {"attn2.to_out.0.", "cross_attn.o."},
        {"attn2.norm_q.", "cross_attn.norm_q."},
        {"attn2.norm_k.", "cross_attn.norm_k."},
        {"ffn.net.0.proj.", "ffn.0."},
        {"ffn.net.2.", "ffn.2."},
        // diffusers orders the norms norm1, norm2, norm3 by use; Wan calls the affine cross-attention norm norm3.
        // diffusers' norm3 (the FFN norm) has no parameters, so its norm2 is unambiguous.
        {"norm2.", "norm3."},
    };
    if (key.substr(0, 7) != "blocks.") return std::nullopt;
    const size_t dot = key.find('.', 7);
    if (dot == std::string_view::npos) return std::nullopt;
    const std::string_view head = key.substr(0, dot + 1), rest = key.substr(dot + 1);
    for (const auto& [from, to] : kBlock) {
        if (rest == from || (from.back() == '.' && rest.substr(0, from.size()) == from)) {
            return str_cat(head, to, rest.substr(from.size()));
        }
    }
    return std::nullopt;
}

std::optional<std::string> canonical_wan_name(std::string_view key) {
    std::string k(key);
    for (const std::string_view junk : {"_fsdp_wrapped_module.", "_orig_mod."}) {
        for (size_t p; (p = k.find(junk)) != std::string::npos;) k.erase(p, junk.size());
    }
    if (k.rfind("model.", 0) == 0) k.erase(0, 6);
    if (k.rfind("diffusion_model.", 0) == 0) k.erase(0, 16);  // ComfyUI files: "model.diffusion_model."
    if (k.empty()) return std::nullopt;
    if (auto d = diffusers_to_wan_name(k)) return d;
    return k;
}

std::map<std::string, std::string> resolve_wan_weights(const SafetensorsCheckpoint& ckpt, const WanDims& d) {
    std::map<std::string, std::string> by_canonical;
    for (const std::string& key : ckpt.names()) {
        if (auto c = canonical_wan_name(key)) {
            const auto [it, inserted] = by_canonical.emplace(*c, key);
            LR_CHECK(inserted, ckpt.path(), ": tensors '", it->second, "' and '", key, "' both name '", *c,
                     "'; the checkpoint holds two models (convert it with tools/convert_checkpoint.py)");
        }
    }
    std::map<std::string, std::string> resolved;
    for (const WeightSpec& spec : wan_weight_specs(d)) {
        const auto it = by_canonical.find(spec.name);
        LR_CHECK(it != by_canonical.end(), ckpt.path(), ": missing tensor '", spec.name, "' (expected shape ",
                 spec.shape.str(), ") for a Wan model with dim ", d.dim, ", ", d.num_layers, " layers");
        const SafetensorsEntry* e = ckpt.find(it->second);
        LR_ASSERT(e != nullptr, "resolved key vanished: ", it->second);
        LR_CHECK(e->shape == spec.shape, ckpt.path(), ": tensor '", it->second, "' has shape ", e->shape.str(),
                 ", expected ", spec.shape.str(), " (does the model config match the checkpoint?)");
        LR_CHECK(e->dtype == DType::kF32 || e->dtype == DType::kBF16 || e->dtype == DType::kF16, ckpt.path(),
                 ": tensor '", it->second, "' has dtype ", dtype_name(e->dtype), ", expected F32, BF16 or F16");
        resolved.emplace(spec.name, it->second);
    }
    return resolved;
}

WanDims wan_dims_from_metadata(const SafetensorsCheckpoint& ckpt, const WanDims& base, bool* found) {
    WanDims d = base;
    if (found) *found = false;
    const std::string* text = ckpt.metadata_value("config");
    if (!text) return d;
    const std::string where = str_cat(ckpt.path(), ": __metadata__[\"config\"]");
    const json::Value cfg = json::parse(*text, where);
    LR_CHECK(cfg.is_object(), where, ": expected a JSON object");
    auto read_int = [&](const char* key, int64_t& dst) {
        const json::Value* v = cfg.find(key);
        if (!v) return;
        LR_CHECK(v->is_integer() && v->as_int64() > 0 && v->as_int64() < (int64_t{1} << 31), where, ": '", key,
                 "' must be a positive integer");
        dst = v->as_int64();
    };
    read_int("dim", d.dim);
    read_int("ffn_dim", d.ffn_dim);
    read_int("num_heads", d.num_heads);
    read_int("num_layers", d.num_layers);
    read_int("in_dim", d.in_dim);
    read_int("out_dim", d.out_dim);
    read_int("text_dim", d.text_dim);
    read_int("freq_dim", d.freq_dim);
    if (const json::Value* p = cfg.find("patch_size")) {
        LR_CHECK(p->type() == json::Type::kArray && p->as_array().size() == 3, where,
                 ": 'patch_size' must be an array of 3 positive integers");
        for (size_t i = 0; i < 3; ++i) {
            const json::Value& v = p->as_array()[i];
            LR_CHECK(v.is_integer() && v.as_int64() > 0 && v.as_int64() < 64, where,
                     ": 'patch_size' must be an array of 3 positive integers");
            d.patch[i] = v.as_int64();
        }
    }
    if (found) *found = true;
    return d;
}

std::optional<WanDims> infer_wan_dims(const SafetensorsCheckpoint& ckpt, const WanDims& base) {
    std::map<std::string, const SafetensorsEntry*> by_name;
    int64_t layers = 0;
    for (const std::string& key : ckpt.names()) {
        const auto c = canonical_wan_name(key);
        if (!c) continue;
        by_name.emplace(*c, ckpt.find(key));
        if (c->rfind("blocks.", 0) == 0) {
            const int64_t i = std::strtoll(c->c_str() + 7, nullptr, 10);
            layers = std::max(layers, i + 1);
        }
    }
    auto shape = [&](const char* name, int ndim) -> const Shape* {
        const auto it = by_name.find(name);
        if (it == by_name.end() || it->second->shape.ndim != ndim) return nullptr;
        return &it->second->shape;
    };
    const Shape* patch = shape("patch_embedding.weight", 5);  // [dim, in_dim, pt, ph, pw]
    if (!patch) return std::nullopt;
    WanDims d = base;
    d.dim = (*patch)[0];
    d.in_dim = (*patch)[1];
    d.patch = {(*patch)[2], (*patch)[3], (*patch)[4]};
    d.num_layers = layers;
    if (const Shape* s = shape("blocks.0.ffn.0.weight", 2)) d.ffn_dim = (*s)[0];
    if (const Shape* s = shape("text_embedding.0.weight", 2)) d.text_dim = (*s)[1];
    if (const Shape* s = shape("time_embedding.0.weight", 2)) d.freq_dim = (*s)[1];
    const int64_t patch_numel = d.patch[0] * d.patch[1] * d.patch[2];
    if (const Shape* s = shape("head.head.weight", 2); s && patch_numel > 0) d.out_dim = (*s)[0] / patch_numel;
    if (d.dim != base.dim || base.num_heads <= 0) {
        d.num_heads = d.dim == 1536 ? 12 : d.dim == 5120 ? 40 : std::max<int64_t>(1, d.dim / 128);
    }
    return d;
}

std::vector<std::pair<std::string, HostTensor>> make_default_wan_weights(const WanDims& d, uint64_t seed) {
    std::vector<std::pair<std::string, HostTensor>> out;
    for (const WeightSpec& spec : wan_weight_specs(d)) {
        HostTensor t(DType::kF32, spec.shape);
        float* p = t.as<float>();
        const int64_t n = t.view.numel();
        const uint64_t key = tensor_stream_key(seed, spec.name);
        // Gains of norms near 1, biases and modulation small, matrices ~ U(-1, 1) / sqrt(fan_in).
        float scale = 0.02f;
        float offset = 0.0f;
        if (spec.name.ends_with("norm_q.weight") || spec.name.ends_with("norm_k.weight") ||
            spec.name.ends_with("norm3.weight")) {
            scale = 0.1f;
            offset = 1.0f;
        } else if (spec.shape.ndim >= 2 && !spec.name.ends_with("modulation")) {
            const int64_t fan_in = n / spec.shape[0];
            scale = 1.0f / std::sqrt(static_cast<float>(fan_in));
        }
        for (int64_t i = 0; i < n; ++i) {
            p[i] = offset + scale * uniform_pm1(key, static_cast<uint64_t>(i));
        }
        out.emplace_back(spec.name, std::move(t));
    }
    return out;
}

}  // namespace lr
