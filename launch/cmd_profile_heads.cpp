// `longroll profile-heads`: Forcing-KV's offline head profile (DESIGN.md section 6). A short dense rollout of
// the model on the CPU reference path; every self-attention call also measures, per layer and head, the share
// of attention on the most recent key frames among the key frames after the sink (Forcing-KV's statistic:
// last 4 key frames over key frames [skip:]). The averaged shares go to a JSON file that FORCING_KV reads
// (attention.forcing_kv.head_profile); heads at or above attention.forcing_kv.static_head_threshold are static.
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "launch/cli.h"
#include "launch/cli_args.h"
#include "launch/config.h"
#include "launch/default_model.h"
#include "launch/generate_inputs.h"
#include "runtime/core/check.h"
#include "runtime/model/head_profile.h"
#include "runtime/rollout/noise.h"
#include "runtime/rollout/rollout.h"
#include "runtime/video/partial_file.h"

namespace lr {
namespace {

const std::vector<FlagSpec> kProfileFlags = {
    {"config", "FILE", "run config (textproto); default: the embedded tiny model's"},
    {"set", "PATH=VALUE", "override a config field, e.g. video.width=832", true},
    {"weights", "FILE", "DiT checkpoint (safetensors); default: the embedded model"},
    {"prompt-embeds", "FILE", "prompt embeddings (tensor 'context'); default: the embedded prompt"},
    {"latent-frames", "N", "frames of the profiling rollout (default 21: 7 chunks)"},
    {"recent-frames", "N", "the share is measured on this many latest key frames (default 4)"},
    {"seed", "N", "noise seed (default 0)"},
    {"out", "FILE", "the head profile to write (JSON)"},
    {"overwrite", "", "replace an existing --out"},
};

}  // namespace

int cmd_profile_heads(const std::vector<std::string>& args) {
    const ParsedArgs a = parse_args("profile-heads", kProfileFlags, args);
    if (a.has("help")) {
        std::printf("%s", format_help("profile-heads", "--out FILE [--config FILE] [--weights FILE]",
                                      "Profiles the heads of a model for attention.policy FORCING_KV: a short dense "
                                      "rollout on the CPU,\nper layer and head the share of attention on the latest "
                                      "key frames.",
                                      kProfileFlags)
                              .c_str());
        return 0;
    }
    LR_CHECK(a.positional().empty(), "longroll profile-heads: unexpected argument '", a.positional()[0], "'");
    const std::optional<std::string> out = a.get("out");
    LR_CHECK(out.has_value(), "longroll profile-heads: --out FILE is required");
    check_output_location(*out);
    LR_CHECK(a.has("overwrite") || !std::filesystem::exists(*out), "--out ", *out,
             " exists; pass --overwrite to replace it");
    std::vector<ConfigOverride> overrides;
    for (const auto& s : a.get_all("set")) overrides.push_back(parse_override(s));
    // Neither --config nor --weights: the embedded default model, as generate runs it (launch/default_model.h).
    const std::optional<DefaultModel> shipped =
        !a.has("config") && !a.has("weights") ? find_default_model() : std::nullopt;
    Config cfg = a.get("config") ? load_config(*a.get("config"), overrides)
                 : shipped
                     ? load_config(shipped->config, overrides)
                     : parse_config_text(config_to_text(default_config()), "<embedded default config>", overrides);
    // The profile is a dense rollout over the whole run: every key frame is there to be measured.
    cfg.attention.policy = AttentionPolicy::kDense;
    cfg.rollout.local_attn_size = -1;
    validate_config(cfg);
    const int64_t frames = a.get_int("latent-frames", 1, 1024).value_or(21);
    const int64_t recent = a.get_int("recent-frames", 1, 1024).value_or(4);
    LR_CHECK(frames > recent + cfg.rollout.sink_size, "--latent-frames ", frames, ": the profile needs more than the ",
             recent, " recent frames plus the sink (", cfg.rollout.sink_size, ")");
    const LoadedModel model = shipped ? load_default_model(*shipped, cfg, true) : load_model(a.get("weights"), cfg);
    std::optional<std::string> embeds = a.get("prompt-embeds");
    if (!embeds && shipped) embeds = shipped->prompt;
    const Prompts prompts = load_prompts(embeds, {}, cfg, frames);

    RolloutOptions ropts = rollout_options(cfg.rollout);
    ropts.block_size = cfg.attention.block_size;
    const RolloutShape shape{frames, cfg.video.height / 8, cfg.video.width / 8};
    ropts.policy = block_policy_config(cfg, model.model->config(), shape.height, shape.width, shape.frames);
    Rollout rollout(*model.model, ropts, shape);
    const int64_t L = cfg.model.num_layers, H = cfg.model.num_heads;
    HeadShareAccumulator acc;
    acc.recent = recent;
    acc.skip = std::max<int64_t>(1, cfg.rollout.sink_size);  // Forcing-KV skips the sink (at least frame 0)
    acc.recent_mass.assign(static_cast<size_t>(L * H), 0.0);
    acc.total_mass.assign(acc.recent_mass.size(), 0.0);
    rollout.mutable_step()->set_profile(&acc);
    const SeededNoise noise(static_cast<uint64_t>(a.get_int("seed", 0, INT64_MAX).value_or(0)), cfg.model.in_dim,
                            shape.height, shape.width);
    std::fprintf(stderr, "longroll profile-heads: %lld latent frames, %lld layers x %lld heads (%s)\n",
                 static_cast<long long>(frames), static_cast<long long>(L), static_cast<long long>(H),
                 model.description.c_str());
    rollout.run(prompts.segments, noise, [&](const RolloutChunk& c) {
        std::fprintf(stderr, "  chunk %lld/%lld\n", static_cast<long long>(c.index + 1),
                     static_cast<long long>(rollout.num_chunks()));
    });
    HeadProfile p;
    p.num_layers = L;
    p.num_heads = H;
    p.recent_frames = recent;
    p.skip_frames = acc.skip;
    p.forwards = rollout.num_chunks() * (static_cast<int64_t>(ropts.denoising_steps.size()) + 1);
    p.model_signature = wan_model_signature(model.model->config());
    int64_t n_static = 0;
    for (size_t i = 0; i < acc.total_mass.size(); ++i) {
        const double share = acc.total_mass[i] > 0 ? acc.recent_mass[i] / acc.total_mass[i] : 1.0;
        p.share.push_back(std::min(1.0, std::max(0.0, share)));
        n_static += p.share.back() >= cfg.attention.forcing_kv.static_head_threshold ? 1 : 0;
    }
    PartialFile file(*out);
    {
        std::ofstream f(file.temp_path());
        f << head_profile_json(p);
        LR_RUNTIME(f.good(), "profile-heads: writing ", file.temp_path(), " failed");
    }
    file.commit();
    std::fprintf(stderr, "longroll profile-heads: %lld of %lld heads static at threshold %.2f; wrote %s\n",
                 static_cast<long long>(n_static), static_cast<long long>(L * H),
                 cfg.attention.forcing_kv.static_head_threshold, out->c_str());
    return 0;
}

}  // namespace lr
