#include "launch/generate_inputs.h"

#include "cache/tile_layout.h"
#include "runtime/model/head_profile.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>

#include "kernels/cast.h"
#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/model/wan_weights.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/umt5_encoder.h"
#include "runtime/text/umt5_encoder_cuda.h"
#include "runtime/text/word_table.h"

namespace lr {
namespace {

WanDims dims_of(const ModelConfig& m) {
    WanDims d;
    d.dim = m.dim;
    d.ffn_dim = m.ffn_dim;
    d.num_heads = m.num_heads;
    d.num_layers = m.num_layers;
    d.in_dim = m.in_dim;
    d.out_dim = m.out_dim;
    d.text_dim = m.text_dim;
    d.freq_dim = m.freq_dim;
    d.patch = m.patch_size;
    return d;
}

int64_t parameter_count(const WanDims& d) {
    int64_t n = 0;
    for (const WeightSpec& s : wan_weight_specs(d)) n += s.shape.numel();
    return n;
}

// `context` of a --prompt-embeds file as F32 [L, text_dim], checked against the model.
HostTensor read_context(const std::string& path, const ModelConfig& m) {
    const SafetensorsCheckpoint f = SafetensorsCheckpoint::open(path);
    const SafetensorsEntry* e = f.find("context");
    LR_CHECK(e != nullptr, path, ": no tensor 'context' (expected the text encoder output [L <= ", m.text_len, ", ",
             m.text_dim, "])");
    LR_CHECK(e->shape.ndim == 2 && e->shape[0] >= 1 && e->shape[0] <= m.text_len && e->shape[1] == m.text_dim, path,
             ": tensor 'context' has shape ", e->shape.str(), ", expected [L, ", m.text_dim,
             "] with 1 <= L <= ", m.text_len);
    LR_CHECK(e->dtype == DType::kF32 || e->dtype == DType::kBF16 || e->dtype == DType::kF16, path,
             ": tensor 'context' has dtype ", dtype_name(e->dtype), ", expected F32, BF16 or F16");
    HostTensor ctx(DType::kF32, e->shape);
    cast(f.view("context"), ctx.view);
    // NaN or Inf would flow through cross-attention into every frame (an all-black video with exit code 0).
    const float* v = ctx.as<float>();
    for (int64_t i = 0; i < ctx.view.numel(); ++i) {
        LR_CHECK(std::isfinite(v[i]), path, ": tensor 'context' holds ", std::isnan(v[i]) ? "NaN" : "Inf", " at token ",
                 i / m.text_dim, ", channel ", i % m.text_dim, "; the embeddings are broken");
    }
    return ctx;
}

// A fixed embedding for the embedded default: every token a different pseudo-random vector of unit scale.
HostTensor default_context(const ModelConfig& m) {
    HostTensor ctx(DType::kF32, Shape{m.text_len, m.text_dim});
    uint64_t s = 0x5eed5eed5eedull;
    for (int64_t i = 0; i < ctx.view.numel(); ++i) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ctx.as<float>()[i] =
            static_cast<float>(static_cast<int64_t>(s >> 40) - (1 << 23)) / static_cast<float>(1 << 23);
    }
    return ctx;
}

// The config's model block as the checkpoint's architecture (the inverse of wan_model_config).
void set_model_config(ModelConfig& m, const WanModelConfig& mc) {
    const WanDims& d = mc.dims;
    m.dim = d.dim;
    m.ffn_dim = d.ffn_dim;
    m.num_heads = d.num_heads;
    m.num_layers = d.num_layers;
    m.in_dim = d.in_dim;
    m.out_dim = d.out_dim;
    m.text_dim = d.text_dim;
    m.freq_dim = d.freq_dim;
    m.patch_size = d.patch;
    m.text_len = mc.text_len;
    m.eps = mc.eps;
}

}  // namespace

WanModelConfig wan_model_config(const ModelConfig& m) {
    WanModelConfig c;
    c.dims = dims_of(m);
    c.text_len = m.text_len;
    c.eps = m.eps;
    return c;
}

bool ModelSource::gave(const std::string& field) const {
    return config_file || std::find(set_fields.begin(), set_fields.end(), field) != set_fields.end();
}

void settle_checkpoint_model(const std::string& weights_path, Config& cfg, const ModelSource& source, bool say) {
    const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(weights_path);
    const WanModelConfig base = wan_model_config(cfg.model);
    bool from_metadata = false;
    WanModelConfig mc = wan_model_config_from_metadata(ckpt, base, &from_metadata);
    bool guessed_heads = false;
    if (!from_metadata) {
        const std::optional<WanDims> d = infer_wan_dims(ckpt, base.dims);
        if (!d) return;  // not a Wan DiT's names: the tensor checks of the load say what is missing
        mc.dims = *d;
        // infer_wan_dims keeps the config's head count where the width agrees; a width of its own needs a guess,
        // unless the user gave the count.
        if (d->dim != base.dims.dim) {
            if (source.gave("num_heads")) {
                mc.dims.num_heads = base.dims.num_heads;
            } else {
                guessed_heads = true;
            }
        }
    }
    const std::string theirs = from_metadata ? str_cat(weights_path, "'s own config (__metadata__[\"config\"])")
                                             : str_cat(weights_path, "'s tensor shapes");
    // field, the config's value, the checkpoint's value
    std::vector<std::tuple<std::string, std::string, std::string>> fields = {
        {"dim", std::to_string(base.dims.dim), std::to_string(mc.dims.dim)},
        {"ffn_dim", std::to_string(base.dims.ffn_dim), std::to_string(mc.dims.ffn_dim)},
        {"num_heads", std::to_string(base.dims.num_heads), std::to_string(mc.dims.num_heads)},
        {"num_layers", std::to_string(base.dims.num_layers), std::to_string(mc.dims.num_layers)},
        {"in_dim", std::to_string(base.dims.in_dim), std::to_string(mc.dims.in_dim)},
        {"out_dim", std::to_string(base.dims.out_dim), std::to_string(mc.dims.out_dim)},
        {"text_dim", std::to_string(base.dims.text_dim), std::to_string(mc.dims.text_dim)},
        {"freq_dim", std::to_string(base.dims.freq_dim), std::to_string(mc.dims.freq_dim)},
        {"patch_size", str_cat("[", base.dims.patch[0], ", ", base.dims.patch[1], ", ", base.dims.patch[2], "]"),
         str_cat("[", mc.dims.patch[0], ", ", mc.dims.patch[1], ", ", mc.dims.patch[2], "]")},
        {"text_len", std::to_string(base.text_len), std::to_string(mc.text_len)},
        {"eps", str_cat(base.eps), str_cat(mc.eps)},
    };
    std::string conflicts;
    std::string fix;
    for (const auto& [field, mine, ckpt_value] : fields) {
        if (mine == ckpt_value || mine == "0" || !source.gave(field)) continue;  // 0: not in the config
        if (guessed_heads && field == "num_heads") continue;
        conflicts += str_cat(conflicts.empty() ? "" : "; ", "model.", field, " is ", mine, " in the config but ",
                             ckpt_value, " in the checkpoint");
        fix += str_cat(" --set model.", field, "=", ckpt_value);
    }
    LR_CHECK(conflicts.empty(), "the config's model disagrees with ", theirs, ": ", conflicts,
             ". The config must describe the checkpoint: give the config made for it, drop the model { } block from "
             "--config (the checkpoint's own model is then used), or set",
             fix);
    if (guessed_heads && say) {
        std::fprintf(stderr,
                     "longroll: note: %s has no model config in its metadata; its sizes come from its tensor shapes, "
                     "and model.num_heads = %lld is a guess from its width %lld (12 for 1536, 40 for 5120, else "
                     "width / 128): if that is wrong, give --set model.num_heads=N\n",
                     weights_path.c_str(), static_cast<long long>(mc.dims.num_heads),
                     static_cast<long long>(mc.dims.dim));
    }
    set_model_config(cfg.model, mc);
}

LoadedModel load_model(const std::optional<std::string>& weights_path, Config& cfg, bool weights) {
    LoadedModel out;
    if (weights_path) {
        const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(*weights_path);
        bool from_metadata = false;
        WanModelConfig mc = wan_model_config_from_metadata(ckpt, wan_model_config(cfg.model), &from_metadata);
        bool from_shapes = false;
        if (!from_metadata) {
            // No config in the file: the tensor shapes say what the model is (settle_checkpoint_model has refused a
            // config that says otherwise, where it ran).
            if (auto d = infer_wan_dims(ckpt, mc.dims)) {
                from_shapes = true;
                mc.dims = *d;
            }
        }
        if (from_metadata || from_shapes) {
            // The checkpoint knows its own architecture better than a config file does.
            set_model_config(cfg.model, mc);
            validate_config(cfg);
        }
        if (weights) out.model = WanModel::from_checkpoint(ckpt, wan_model_config(cfg.model));
        out.description = str_cat(*weights_path, " (", format_bytes(ckpt.total_bytes()),
                                  from_metadata ? ", model config from its metadata)"
                                  : from_shapes ? ", model sizes from its tensor shapes)"
                                                : ")");
        return out;
    }
    const WanDims d = dims_of(cfg.model);
    const int64_t params = parameter_count(d);
    constexpr int64_t kMaxEmbeddedParams = 64LL << 20;
    LR_CHECK(
        params <= kMaxEmbeddedParams, "no --weights given and the model (dim ", d.dim, ", ", d.num_layers, " layers, ",
        params / 1000000,
        "M parameters) is too large for the embedded default; give --weights "
        "FILE.safetensors (tools/convert_checkpoint.py converts PyTorch checkpoints) or use configs/tiny.textproto");
    if (weights) {
        out.model = WanModel::from_weights(make_default_wan_weights(d, /*seed=*/2026), wan_model_config(cfg.model));
    }
    out.embedded = true;
    out.description = str_cat("embedded default (", params / 1000,
                              "K parameters, deterministic random weights: NOT a trained model, the video shows no "
                              "real content)");
    return out;
}

std::vector<std::pair<int64_t, PromptRef>> parse_prompt_switches(const std::vector<std::string>& switches,
                                                                 const Config& cfg, int64_t latent_frames) {
    std::vector<std::pair<int64_t, PromptRef>> out;
    int64_t last = 0;
    for (const std::string& s : switches) {
        const size_t colon = s.find(':');
        int64_t frame = -1;
        const bool ok = colon != std::string::npos && colon > 0 &&
                        std::from_chars(s.data(), s.data() + colon, frame).ptr == s.data() + colon;
        LR_CHECK(ok && colon + 1 < s.size(), "--switch-prompt '", s,
                 "': expected FRAME:FILE.safetensors (prompt embeddings) or FRAME:TEXT (a latent frame and a prompt)");
        LR_CHECK(frame > 0 && frame < latent_frames, "--switch-prompt ", s, ": frame ", frame,
                 " is outside the run (1 to ", latent_frames - 1, ")");
        LR_CHECK(frame % cfg.rollout.frames_per_chunk == 0, "--switch-prompt ", s, ": frame ", frame,
                 " is not at a chunk start (a multiple of rollout.frames_per_chunk = ", cfg.rollout.frames_per_chunk,
                 ")");
        LR_CHECK(frame > last, "--switch-prompt ", s, ": switches must be given in increasing frame order");
        last = frame;
        const std::string value = s.substr(colon + 1);
        const bool file = value.size() > 12 && value.compare(value.size() - 12, 12, ".safetensors") == 0;
        out.push_back({frame, PromptRef{value, !file, str_cat("--switch-prompt ", frame, ":")}});
    }
    return out;
}

EncodedTexts encode_text_prompts(const std::vector<PromptRef>& prompts, const Config& cfg, bool verbose, int gpu,
                                 const std::string& word_table) {
    EncodedTexts out;
    std::vector<const PromptRef*> texts;
    const bool by_words = cfg.text.encoder.empty() && !word_table.empty();
    for (const PromptRef& p : prompts) {
        if (!p.is_text) continue;
        LR_CHECK(!cfg.text.encoder.empty() || by_words, p.where,
                 ": a text prompt needs the UMT5 text encoder: give --text-encoder FILE.safetensors and --tokenizer "
                 "spiece.model (or text.encoder / text.tokenizer in the config), or --prompt-embeds FILE");
        if (out.contexts.emplace(p.value, HostTensor()).second) texts.push_back(&p);
    }
    if (texts.empty()) return out;
    if (by_words) {
        // The default model's own text encoder: a word table, no UMT5 (runtime/text/word_table.h).
        const WordTable table = WordTable::open(word_table, cfg.model.text_dim);
        std::string lengths;
        for (const PromptRef* p : texts) {
            out.contexts[p->value] = table.encode(p->value, cfg.model.text_len, p->where);
            lengths += str_cat(lengths.empty() ? "" : ", ", out.contexts[p->value].view.size(0));
        }
        out.description =
            str_cat("the default model's word table ", word_table, " (", table.vocab().size(),
                    " words): ", texts.size(), " prompt", texts.size() == 1 ? "" : "s", " (", lengths, " words)");
        return out;
    }
    const auto t0 = std::chrono::steady_clock::now();
    // The encoder lives in this scope only: its mapping and scratch are gone before the DiT plans its memory.
    const Umt5Encoder encoder = Umt5Encoder::open(cfg.text.encoder);
    const Umt5Config& ec = encoder.config();
    LR_CHECK(ec.d_model == cfg.model.text_dim, "--text-encoder ", cfg.text.encoder, ": the encoder's d_model is ",
             ec.d_model, " but the DiT takes text_dim ", cfg.model.text_dim, " (UMT5-XXL: 4096)");
    const Umt5Tokenizer tokenizer = Umt5Tokenizer::open(cfg.text.tokenizer, ec.vocab_size, cfg.text.encoder);
    std::vector<std::vector<int32_t>> ids;
    std::string lengths;
    for (const PromptRef* p : texts) {
        TokenizedPrompt t = tokenizer.encode(p->value, cfg.model.text_len, p->where);
        if (t.dropped > 0 && verbose) {
            std::fprintf(stderr,
                         "longroll: warning: %s: the prompt is %lld tokens long; its last %lld tokens are cut to fit "
                         "model.text_len = %lld (with </s>), as the reference does\n",
                         p->where.c_str(), static_cast<long long>(t.ids.size() - 1 + t.dropped),
                         static_cast<long long>(t.dropped), static_cast<long long>(cfg.model.text_len));
        }
        lengths += str_cat(lengths.empty() ? "" : ", ", t.ids.size());
        ids.push_back(std::move(t.ids));
    }
    const bool on_gpu = gpu >= 0;
    std::vector<HostTensor> contexts = on_gpu ? encode_umt5_cuda(encoder, ids, gpu) : encoder.encode(ids);
    for (size_t i = 0; i < texts.size(); ++i) out.contexts[texts[i]->value] = std::move(contexts[i]);
    char seconds[32];
    std::snprintf(seconds, sizeof(seconds), "%.2f",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    out.description =
        str_cat("UMT5 ", cfg.text.encoder, " (", umt5_naming_name(encoder.naming()), " names, ", ec.num_layers,
                " layers, d_model ", ec.d_model, ", ", format_bytes(encoder.weight_bytes()), ") + ", cfg.text.tokenizer,
                ": ", texts.size(), " prompt", texts.size() == 1 ? "" : "s", " (", lengths, " tokens) encoded on ",
                on_gpu ? str_cat("GPU ", gpu, " (bf16)") : std::string("the CPU"), " in ", seconds,
                " s, then freed before the DiT plans its memory");
    return out;
}

namespace {

HostTensor context_of(const PromptRef& p, const Config& cfg, const EncodedTexts& texts) {
    if (!p.is_text) return read_context(p.value, cfg.model);
    const auto it = texts.contexts.find(p.value);
    LR_ASSERT(it != texts.contexts.end() && it->second.view.data, "text prompt not encoded: ", p.where);
    HostTensor copy(DType::kF32, it->second.view.shape);
    std::memcpy(copy.view.data, it->second.view.data, static_cast<size_t>(copy.view.nbytes()));
    return copy;
}

std::string describe(const PromptRef& p, const HostTensor& ctx) {
    if (!p.is_text) return str_cat(p.value, " (", ctx.view.size(0), " tokens)");
    constexpr size_t kShown = 60;
    return str_cat(json::quote_for_message(p.value, kShown), " (", ctx.view.size(0), " tokens)");
}

}  // namespace

Prompts load_prompts(const std::optional<PromptRef>& main, const std::vector<std::pair<int64_t, PromptRef>>& switches,
                     const Config& cfg, const EncodedTexts& texts) {
    Prompts p;
    p.contexts.push_back(main ? context_of(*main, cfg, texts) : default_context(cfg.model));
    p.description =
        main ? describe(*main, p.contexts[0]) : std::string("embedded default (a fixed pseudo-random embedding)");
    std::vector<int64_t> starts{0};
    for (const auto& [frame, ref] : switches) {
        starts.push_back(frame);
        p.contexts.push_back(context_of(ref, cfg, texts));
        p.description += str_cat("; from frame ", frame, ": ", describe(ref, p.contexts.back()));
    }
    for (size_t i = 0; i < starts.size(); ++i) p.segments.push_back({starts[i], p.contexts[i].view});
    return p;
}

Prompts load_prompts(const std::optional<std::string>& embeds_path, const std::vector<std::string>& switches,
                     const Config& cfg, int64_t latent_frames) {
    const auto parsed = parse_prompt_switches(switches, cfg, latent_frames);
    for (const auto& s : parsed) LR_CHECK(!s.second.is_text, s.second.where, " takes a .safetensors file here");
    const auto main = embeds_path ? std::optional(PromptRef{*embeds_path, false, "--prompt-embeds"}) : std::nullopt;
    return load_prompts(main, parsed, cfg, EncodedTexts{});
}

LoadedVae load_vae(const std::optional<std::string>& path, bool model_embedded, bool need_video) {
    LoadedVae v;
    if (path) {
        const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(*path);
        WanVaeDecoder decoder = WanVaeDecoder::from_checkpoint(ckpt, wan_vae_config_from_checkpoint(ckpt, {}));
        v.description = str_cat(*path, " (", decoder.parameter_count() / 1000000, "M parameters, base dim ",
                                decoder.config().dim, ")");
        if (need_video) v.decoder = std::move(decoder);
        return v;
    }
    if (!need_video) {
        v.description = "none (no --out: latents only)";
        return v;
    }
    LR_CHECK(model_embedded,
             "--vae FILE is required to write video with --weights (the Wan2.1 VAE, converted with "
             "tools/convert_checkpoint.py); or give only --save-latents to skip decoding");
    v.decoder = WanVaeDecoder::make_default(/*seed=*/2026);
    v.description = str_cat("embedded default (", v.decoder->parameter_count() / 1000,
                            "K parameters, deterministic random weights: NOT the trained VAE)");
    return v;
}

BlockPolicyConfig block_policy_config(const Config& cfg, const WanModelConfig& model, int64_t latent_height,
                                      int64_t latent_width, int64_t run_frames) {
    const AttentionConfig& a = cfg.attention;
    const RolloutConfig& r = cfg.rollout;
    BlockPolicyConfig p;
    switch (a.policy) {
        case AttentionPolicy::kDense:
            p.kind = BlockPolicyKind::kDense;
            break;
        case AttentionPolicy::kSinkWindow:
            p.kind = BlockPolicyKind::kSinkWindow;
            break;
        case AttentionPolicy::kSparseForcing:
            p.kind = BlockPolicyKind::kSparseForcing;
            break;
        case AttentionPolicy::kLightForcing:
            p.kind = BlockPolicyKind::kLightForcing;
            break;
        case AttentionPolicy::kForcingKv:
            p.kind = BlockPolicyKind::kForcingKv;
            break;
        case AttentionPolicy::kLvsa:
            p.kind = BlockPolicyKind::kLvsa;
            break;
    }
    const TileLayout tiles(latent_height / model.dims.patch[1], latent_width / model.dims.patch[2],
                           tile_shape_for_block(a.block_size));
    const int64_t tpf = tiles.tiles_per_frame();
    const int64_t fpc = r.frames_per_chunk;
    const int64_t past = (r.local_attn_size == -1 ? run_frames : r.local_attn_size) - fpc;  // frames before a chunk
    // Sparse Forcing: auto budget a quarter of the window's blocks outside the chunk.
    p.persistent_blocks = a.sparse_forcing.persistent_blocks;
    p.sf_topk_blocks =
        a.sparse_forcing.topk_blocks != -1 ? a.sparse_forcing.topk_blocks : std::max<int64_t>(1, past * tpf / 4);
    // Light Forcing: auto frames half the middle frames, auto blocks half of what the frame stage leaves.
    p.chunk_aware_growth = a.light_forcing.chunk_aware_growth;
    p.near_frames = a.light_forcing.near_frames;
    const int64_t middle = past - r.sink_size - p.near_frames;
    p.topk_frames = a.light_forcing.topk_frames != -1 ? a.light_forcing.topk_frames : std::max<int64_t>(1, middle / 2);
    p.lf_topk_blocks = a.light_forcing.topk_blocks != -1
                           ? a.light_forcing.topk_blocks
                           : std::max<int64_t>(1, (r.sink_size + p.near_frames + p.topk_frames) * tpf / 2);
    p.recent_frames = a.forcing_kv.recent_frames;
    p.dynamic_keep_ratio = a.forcing_kv.dynamic_keep_ratio;
    p.static_head_threshold = a.forcing_kv.static_head_threshold;
    if (p.kind == BlockPolicyKind::kForcingKv) {
        LR_CHECK(!a.forcing_kv.head_profile.empty(), "attention.forcing_kv.head_profile: FORCING_KV needs a head ",
                 "profile of this model; make one with `longroll profile-heads --out heads.json` (same --config and ",
                 "--weights) and pass --set attention.forcing_kv.head_profile=heads.json");
        const HeadProfile prof = read_head_profile(a.forcing_kv.head_profile);
        p.static_head = static_heads(prof, model, p.static_head_threshold, a.forcing_kv.head_profile);
    }
    p.lvsa_window_frames = a.lvsa.window_frames;
    p.anchor_interval = a.lvsa.anchor_interval;
    return p;
}

RolloutOptions rollout_options(const RolloutConfig& r) {
    RolloutOptions o;
    o.frames_per_chunk = r.frames_per_chunk;
    o.denoising_steps = r.denoising_steps;
    o.timestep_shift = r.timestep_shift;
    o.context_noise = r.context_noise;
    o.local_attn_size = r.local_attn_size;
    o.sink_size = r.sink_size;
    o.rope = r.rope_mode == RopeMode::kWindowRelative ? RopePositions::kWindowRelative : RopePositions::kAbsolute;
    o.num_train_timesteps = r.num_train_timesteps;
    o.step_rule = r.sampler == Sampler::kEuler ? StepRule::kEuler : StepRule::kRenoise;
    return o;
}

}  // namespace lr
