#include "runtime/vae/wan_vae_weights.h"

#include <cmath>

#include "runtime/core/check.h"
#include "runtime/core/det_random.h"
#include "runtime/io/json.h"

namespace lr {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// A decimal index at the start of s followed by '.', e.g. "12.residual..." -> 12 and the rest after the dot.
std::optional<std::pair<int64_t, std::string_view>> take_index(std::string_view s) {
    size_t i = 0;
    int64_t v = 0;
    while (i < s.size() && i < 9 && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
    if (i == 0 || i >= s.size() || s[i] != '.') return std::nullopt;
    return std::make_pair(v, s.substr(i + 1));
}

// Residual block parameter names: diffusers <-> original (nn.Sequential indices of `residual`).
constexpr std::pair<std::string_view, std::string_view> kResidualNames[] = {
    {"norm1.", "residual.0."}, {"conv1.", "residual.2."},       {"norm2.", "residual.3."},
    {"conv2.", "residual.6."}, {"conv_shortcut.", "shortcut."},
};

std::optional<std::string> residual_to_original(std::string_view rest) {
    for (const auto& [diffusers, original] : kResidualNames) {
        if (starts_with(rest, diffusers)) return str_cat(original, rest.substr(diffusers.size()));
    }
    return std::nullopt;
}

std::optional<std::string> residual_to_diffusers(std::string_view rest) {
    for (const auto& [diffusers, original] : kResidualNames) {
        if (starts_with(rest, original)) return str_cat(diffusers, rest.substr(original.size()));
    }
    return std::nullopt;
}

// diffusers' decoder names (after "decoder.") -> original ones, or nullopt when `rest` is not a diffusers name.
std::optional<std::string> diffusers_decoder_to_original(std::string_view rest, int64_t num_res_blocks) {
    static constexpr std::pair<std::string_view, std::string_view> kFlat[] = {{"conv_in.", "conv1."},
                                                                              {"norm_out.", "head.0."},
                                                                              {"conv_out.", "head.2."},
                                                                              {"mid_block.attentions.0.", "middle.1."}};
    for (const auto& [from, to] : kFlat) {
        if (starts_with(rest, from)) return str_cat(to, rest.substr(from.size()));
    }
    if (starts_with(rest, "mid_block.resnets.")) {
        const auto idx = take_index(rest.substr(18));
        if (!idx || idx->first > 1) return std::nullopt;
        const auto r = residual_to_original(idx->second);
        if (!r) return std::nullopt;
        return str_cat("middle.", idx->first == 0 ? 0 : 2, ".", *r);
    }
    if (starts_with(rest, "up_blocks.")) {
        const auto stage = take_index(rest.substr(10));
        if (!stage) return std::nullopt;
        const int64_t base = stage->first * (num_res_blocks + 2);  // residual blocks + resample per stage
        const std::string_view tail = stage->second;
        if (starts_with(tail, "resnets.")) {
            const auto j = take_index(tail.substr(8));
            if (!j) return std::nullopt;
            const auto r = residual_to_original(j->second);
            if (!r) return std::nullopt;
            return str_cat("upsamples.", base + j->first, ".", *r);
        }
        if (starts_with(tail, "upsamplers.0."))
            return str_cat("upsamples.", base + num_res_blocks + 1, ".", tail.substr(13));
    }
    return std::nullopt;
}

}  // namespace

std::vector<int64_t> WanVaeConfig::dims() const {
    std::vector<int64_t> d{dim * dim_mult.back()};
    for (auto it = dim_mult.rbegin(); it != dim_mult.rend(); ++it) d.push_back(dim * *it);
    return d;
}

int64_t WanVaeConfig::frames_per_latent() const {
    int64_t f = 1;
    for (bool t : temporal_upsample) f *= t ? 2 : 1;
    return f;
}

int64_t WanVaeConfig::spatial_factor() const { return int64_t{1} << (dim_mult.size() - 1); }

void WanVaeConfig::validate() const {
    LR_CHECK(z_dim > 0 && z_dim <= 4096, "VAE config: z_dim must be in [1, 4096], found ", z_dim);
    LR_CHECK(dim > 0 && dim <= 4096, "VAE config: dim must be in [1, 4096], found ", dim);
    LR_CHECK(!dim_mult.empty() && dim_mult.size() <= 6, "VAE config: dim_mult must have 1 to 6 entries, found ",
             dim_mult.size());
    for (int64_t m : dim_mult) LR_CHECK(m > 0 && m <= 64, "VAE config: dim_mult entries must be in [1, 64]");
    LR_CHECK(num_res_blocks >= 0 && num_res_blocks <= 16, "VAE config: num_res_blocks must be in [0, 16], found ",
             num_res_blocks);
    LR_CHECK(temporal_upsample.size() + 1 == dim_mult.size(), "VAE config: temperal_upsample must have ",
             dim_mult.size() - 1, " entries (one per upsampling stage), found ", temporal_upsample.size());
    LR_CHECK(static_cast<int64_t>(latents_mean.size()) == z_dim && static_cast<int64_t>(latents_std.size()) == z_dim,
             "VAE config: latents_mean and latents_std must have z_dim = ", z_dim, " entries, found ",
             latents_mean.size(), " and ", latents_std.size());
    for (float s : latents_std)
        LR_CHECK(std::isfinite(s) && s != 0.0f, "VAE config: latents_std entries must be non-zero");
    for (float m : latents_mean) LR_CHECK(std::isfinite(m), "VAE config: latents_mean entries must be finite");
    for (const int64_t d : dims()) LR_CHECK(d % 2 == 0, "VAE config: decoder channels must be even, found ", d);
}

WanVaeConfig wan_vae_tiny_config() {
    WanVaeConfig c;
    c.dim = 8;
    return c;
}

std::vector<VaeBlock> wan_vae_decoder_blocks(const WanVaeConfig& cfg) {
    const std::vector<int64_t> dims = cfg.dims();
    std::vector<VaeBlock> b;
    b.push_back({VaeBlockKind::kResidual, "decoder.middle.0", dims[0], dims[0]});
    b.push_back({VaeBlockKind::kAttention, "decoder.middle.1", dims[0], dims[0]});
    b.push_back({VaeBlockKind::kResidual, "decoder.middle.2", dims[0], dims[0]});
    int64_t k = 0;
    const size_t stages = cfg.dim_mult.size();
    for (size_t i = 0; i < stages; ++i) {
        // Stages after the first start from the previous resample's halved channels.
        int64_t in = i == 0 ? dims[i] : dims[i] / 2;
        const int64_t out = dims[i + 1];
        for (int64_t j = 0; j <= cfg.num_res_blocks; ++j, in = out) {
            b.push_back({VaeBlockKind::kResidual, str_cat("decoder.upsamples.", k++), in, out});
        }
        if (i + 1 != stages) {
            const VaeBlockKind kind = cfg.temporal_upsample[i] ? VaeBlockKind::kUpsample3d : VaeBlockKind::kUpsample2d;
            b.push_back({kind, str_cat("decoder.upsamples.", k++), out, out / 2});
        }
    }
    return b;
}

std::vector<VaeWeightSpec> wan_vae_weight_specs(const WanVaeConfig& cfg) {
    const int64_t z = cfg.z_dim;
    const int64_t d0 = cfg.dims()[0];
    std::vector<VaeWeightSpec> s;
    auto conv = [&](const std::string& prefix, Shape w) {
        const int64_t out = w[0];
        s.push_back({prefix + ".weight", w});
        s.push_back({prefix + ".bias", Shape{out}});
    };
    conv("conv2", Shape{z, z, 1, 1, 1});
    conv("decoder.conv1", Shape{d0, z, 3, 3, 3});
    int64_t last = d0;
    for (const VaeBlock& b : wan_vae_decoder_blocks(cfg)) {
        const std::string& p = b.prefix;
        switch (b.kind) {
            case VaeBlockKind::kResidual:
                s.push_back({p + ".residual.0.gamma", Shape{b.in_ch, 1, 1, 1}});
                conv(p + ".residual.2", Shape{b.out_ch, b.in_ch, 3, 3, 3});
                s.push_back({p + ".residual.3.gamma", Shape{b.out_ch, 1, 1, 1}});
                conv(p + ".residual.6", Shape{b.out_ch, b.out_ch, 3, 3, 3});
                if (b.in_ch != b.out_ch) conv(p + ".shortcut", Shape{b.out_ch, b.in_ch, 1, 1, 1});
                break;
            case VaeBlockKind::kAttention:
                s.push_back({p + ".norm.gamma", Shape{b.in_ch, 1, 1}});
                conv(p + ".to_qkv", Shape{3 * b.in_ch, b.in_ch, 1, 1});
                conv(p + ".proj", Shape{b.in_ch, b.in_ch, 1, 1});
                break;
            case VaeBlockKind::kUpsample3d:
                conv(p + ".time_conv", Shape{2 * b.in_ch, b.in_ch, 3, 1, 1});
                [[fallthrough]];
            case VaeBlockKind::kUpsample2d:
                conv(p + ".resample.1", Shape{b.out_ch, b.in_ch, 3, 3});
                break;
        }
        last = b.out_ch;
    }
    s.push_back({"decoder.head.0.gamma", Shape{last, 1, 1, 1}});
    conv("decoder.head.2", Shape{3, last, 3, 3, 3});
    return s;
}

std::optional<std::string> canonical_wan_vae_name(std::string_view key, int64_t num_res_blocks) {
    std::string k(key);
    for (const std::string_view junk : {"_fsdp_wrapped_module.", "_orig_mod.", "_checkpoint_wrapped_module."}) {
        for (size_t p; (p = k.find(junk)) != std::string::npos;) k.erase(p, junk.size());
    }
    for (bool stripped = true; stripped;) {
        stripped = false;
        for (const std::string_view prefix : {"model.", "vae.", "first_stage_model."}) {
            if (starts_with(k, prefix)) {
                k.erase(0, prefix.size());
                stripped = true;
            }
        }
    }
    if (k.empty()) return std::nullopt;
    if (starts_with(k, "post_quant_conv.")) return str_cat("conv2.", std::string_view(k).substr(16));
    if (starts_with(k, "decoder.")) {
        if (auto d = diffusers_decoder_to_original(std::string_view(k).substr(8), num_res_blocks)) {
            return "decoder." + *d;
        }
    }
    return k;
}

std::optional<std::string> wan_vae_diffusers_name(std::string_view original, int64_t num_res_blocks) {
    if (starts_with(original, "conv2.")) return str_cat("post_quant_conv.", original.substr(6));
    if (!starts_with(original, "decoder.")) return std::nullopt;
    const std::string_view rest = original.substr(8);
    static constexpr std::pair<std::string_view, std::string_view> kFlat[] = {{"conv1.", "conv_in."},
                                                                              {"head.0.", "norm_out."},
                                                                              {"head.2.", "conv_out."},
                                                                              {"middle.1.", "mid_block.attentions.0."}};
    for (const auto& [from, to] : kFlat) {
        if (starts_with(rest, from)) return str_cat("decoder.", to, rest.substr(from.size()));
    }
    if (starts_with(rest, "middle.")) {
        const auto idx = take_index(rest.substr(7));
        if (!idx || (idx->first != 0 && idx->first != 2)) return std::nullopt;
        const auto r = residual_to_diffusers(idx->second);
        if (!r) return std::nullopt;
        return str_cat("decoder.mid_block.resnets.", idx->first / 2, ".", *r);
    }
    if (starts_with(rest, "upsamples.")) {
        const auto idx = take_index(rest.substr(10));
        if (!idx) return std::nullopt;
        const int64_t per_stage = num_res_blocks + 2;
        const int64_t stage = idx->first / per_stage, j = idx->first % per_stage;
        if (j <= num_res_blocks) {
            const auto r = residual_to_diffusers(idx->second);
            if (!r) return std::nullopt;
            return str_cat("decoder.up_blocks.", stage, ".resnets.", j, ".", *r);
        }
        return str_cat("decoder.up_blocks.", stage, ".upsamplers.0.", idx->second);
    }
    return std::nullopt;
}

std::map<std::string, std::string> resolve_wan_vae_weights(const SafetensorsCheckpoint& ckpt, const WanVaeConfig& cfg) {
    std::map<std::string, std::string> by_canonical;
    for (const std::string& key : ckpt.names()) {
        const auto c = canonical_wan_vae_name(key, cfg.num_res_blocks);
        // Encoder tensors (and anything else) are not read, so they cannot clash.
        if (c && (starts_with(*c, "decoder.") || starts_with(*c, "conv2."))) {
            const auto [it, inserted] = by_canonical.emplace(*c, key);
            LR_CHECK(inserted, ckpt.path(), ": tensors '", it->second, "' and '", key, "' both name the VAE tensor '",
                     *c, "'; the checkpoint holds two VAEs or two naming schemes");
        }
    }
    std::map<std::string, std::string> resolved;
    for (const VaeWeightSpec& spec : wan_vae_weight_specs(cfg)) {
        const auto it = by_canonical.find(spec.name);
        if (it == by_canonical.end()) {
            const auto diffusers = wan_vae_diffusers_name(spec.name, cfg.num_res_blocks);
            LR_FAIL(ckpt.path(), ": missing VAE tensor '", spec.name, "'",
                    diffusers ? str_cat(" (diffusers: '", *diffusers, "')") : std::string(), ", expected shape ",
                    spec.shape.str(), " for a Wan VAE decoder with dim ", cfg.dim, ", z_dim ", cfg.z_dim,
                    " (is this a Wan2.1 VAE checkpoint?)");
        }
        const SafetensorsEntry* e = ckpt.find(it->second);
        LR_ASSERT(e != nullptr, "resolved key vanished: ", it->second);
        LR_CHECK(e->shape == spec.shape, ckpt.path(), ": VAE tensor '", it->second, "' has shape ", e->shape.str(),
                 ", expected ", spec.shape.str(), " (does the VAE config match the checkpoint?)");
        LR_CHECK(e->dtype == DType::kF32 || e->dtype == DType::kBF16 || e->dtype == DType::kF16, ckpt.path(),
                 ": VAE tensor '", it->second, "' has dtype ", dtype_name(e->dtype), ", expected F32, BF16 or F16");
        resolved.emplace(spec.name, it->second);
    }
    return resolved;
}

WanVaeConfig wan_vae_config_from_checkpoint(const SafetensorsCheckpoint& ckpt, const WanVaeConfig& base) {
    WanVaeConfig c = base;
    bool have_dim = false, have_z = false;
    if (const std::string* text = ckpt.metadata_value("config")) {
        const std::string where = str_cat(ckpt.path(), ": __metadata__[\"config\"]");
        const json::Value cfg = json::parse(*text, where);
        LR_CHECK(cfg.is_object(), where, ": expected a JSON object");
        auto read_int = [&](const char* key, int64_t& dst) {
            const json::Value* v = cfg.find(key);
            if (!v) return false;
            LR_CHECK(v->is_integer() && v->as_int64() >= 0 && v->as_int64() < (int64_t{1} << 20), where, ": '", key,
                     "' must be a non-negative integer");
            dst = v->as_int64();
            return true;
        };
        auto array = [&](const char* key) -> const json::Value::Array* {
            const json::Value* v = cfg.find(key);
            if (!v) return nullptr;
            LR_CHECK(v->is_array(), where, ": '", key, "' must be an array");
            return &v->as_array();
        };
        have_z = read_int("z_dim", c.z_dim);
        have_dim = read_int("dim", c.dim);
        read_int("num_res_blocks", c.num_res_blocks);
        if (const auto* a = array("dim_mult")) {
            c.dim_mult.clear();
            for (const json::Value& v : *a) {
                LR_CHECK(v.is_integer(), where, ": 'dim_mult' must hold integers");
                c.dim_mult.push_back(v.as_int64());
            }
        }
        if (const auto* a = array("temperal_upsample")) {
            c.temporal_upsample.clear();
            for (const json::Value& v : *a) {
                LR_CHECK(v.is_bool(), where, ": 'temperal_upsample' must hold booleans");
                c.temporal_upsample.push_back(v.as_bool());
            }
        }
        for (auto [key, dst] : {std::pair{"latents_mean", &c.latents_mean}, std::pair{"latents_std", &c.latents_std}}) {
            if (const auto* a = array(key)) {
                dst->clear();
                for (const json::Value& v : *a) {
                    LR_CHECK(v.is_number(), where, ": '", key, "' must hold numbers");
                    dst->push_back(static_cast<float>(v.as_number()));
                }
            }
        }
    }
    // Without a config, the shapes say z_dim (conv2 [z, z, 1, 1, 1]) and dim (head conv [3, dim * dim_mult[0], ...]).
    for (const std::string& key : ckpt.names()) {
        const auto name = canonical_wan_vae_name(key, c.num_res_blocks);
        if (!name) continue;
        const SafetensorsEntry* e = ckpt.find(key);
        if (!have_z && *name == "conv2.weight" && e->shape.ndim == 5) c.z_dim = e->shape[0];
        if (!have_dim && *name == "decoder.head.2.weight" && e->shape.ndim == 5 && e->shape[1] % c.dim_mult[0] == 0) {
            c.dim = e->shape[1] / c.dim_mult[0];
        }
    }
    c.validate();
    return c;
}

std::vector<std::pair<std::string, HostTensor>> make_default_wan_vae_weights(const WanVaeConfig& cfg, uint64_t seed) {
    std::vector<std::pair<std::string, HostTensor>> out;
    for (const VaeWeightSpec& spec : wan_vae_weight_specs(cfg)) {
        HostTensor t(DType::kF32, spec.shape);
        float* p = t.as<float>();
        const int64_t n = t.view.numel();
        const uint64_t key = tensor_stream_key(seed, spec.name);
        float scale = 0.02f, offset = 0.0f;
        if (spec.name.ends_with(".gamma")) {
            scale = 0.1f;
            offset = 1.0f;
        } else if (spec.name.ends_with(".weight")) {
            // Unit-variance outputs for unit-variance inputs; half that for the RGB head, so that the default
            // video is not mostly clamped.
            const float gain = spec.name == "decoder.head.2.weight" ? 0.5f : 1.0f;
            scale = gain * std::sqrt(3.0f / static_cast<float>(n / spec.shape[0]));
        }
        for (int64_t i = 0; i < n; ++i) {
            p[i] = offset + scale * uniform_pm1(key, static_cast<uint64_t>(i));
        }
        out.emplace_back(spec.name, std::move(t));
    }
    return out;
}

}  // namespace lr
