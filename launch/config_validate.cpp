// Semantic checks: a config that passes can be run (up to what depends on the world size, the weights and
// the memory, which the launcher checks). Each problem names one field; checks that need another field to
// be valid first are skipped while it is not, so that one mistake gives one message.
#include <arpa/inet.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "launch/config_detail.h"

namespace lr::config_detail {

namespace {

constexpr std::array<std::string_view, 10> kX264Presets = {"ultrafast", "superfast", "veryfast", "faster",   "fast",
                                                           "medium",    "slow",      "slower",   "veryslow", "placebo"};

class Checker {
  public:
    std::vector<Issue> issues;

    // Records `message` about `path` when `ok` is false; returns ok, so dependent checks can be skipped.
    template <typename... Args>
    bool check(bool ok, const char* path, const Args&... message) {
        if (!ok) issues.push_back({path, -1, str_cat(message...)});
        return ok;
    }
    template <typename... Args>
    bool check_element(bool ok, const char* path, int index, const Args&... message) {
        if (!ok) issues.push_back({path, index, str_cat(message...)});
        return ok;
    }
    template <typename T>
    bool positive(T v, const char* path) {
        return check(v > 0, path, "expected a positive number, found ", v);
    }
    template <typename T>
    bool at_least(T v, T min, const char* path) {
        return check(v >= min, path, "expected at least ", min, ", found ", v);
    }
};

// Returns whether the sizes the latent grid and the parallel layout depend on (dim, heads, patch) are valid.
bool model_shape_ok(const ModelConfig& m, Checker& c) {
    bool ok = c.positive(m.dim, "model.dim");
    ok &= c.positive(m.ffn_dim, "model.ffn_dim");
    const bool heads_ok = c.positive(m.num_heads, "model.num_heads");
    ok &= heads_ok;
    c.positive(m.num_layers, "model.num_layers");
    c.positive(m.text_dim, "model.text_dim");
    c.positive(m.text_len, "model.text_len");
    // The timestep embedding is [cos, sin] of freq_dim / 2 frequencies.
    c.check(m.freq_dim > 0 && m.freq_dim % 2 == 0, "model.freq_dim", "expected a positive even number, found ",
            m.freq_dim);
    c.check(std::isfinite(m.eps) && m.eps > 0, "model.eps", "expected a positive number, found ", m.eps);
    static constexpr std::array<const char*, 3> kPatchAxes = {"t", "h", "w"};
    for (int i = 0; i < 3; ++i) {
        ok &= c.check_element(m.patch_size[i] >= 1, "model.patch_size", i, "expected a positive patch size for ",
                              kPatchAxes[i], ", found ", m.patch_size[i]);
    }
    // The decoder is the Wan VAE, whose latents have 16 channels; the only task is text to video.
    c.check(m.in_dim == 16, "model.in_dim", "expected 16 (the Wan VAE's latent channels), found ", m.in_dim);
    c.check(m.out_dim == 16, "model.out_dim", "expected 16 (the Wan VAE's latent channels), found ", m.out_dim);
    // Wan2.1 normalises q/k (self and cross) with RMSNorm; the engine always does, so turning it off is refused.
    c.check(m.qk_norm, "model.qk_norm", "expected true (Wan2.1's RMSNorm on q and k, always applied), found false");
    c.check(m.cross_attn_norm, "model.cross_attn_norm",
            "expected true (Wan2.1's affine norm3 before cross-attention, always applied), found false");
    c.check(m.model_type == "t2v", "model.model_type", "expected \"t2v\" (the only model type supported), found \"",
            m.model_type, "\"");
    if (m.dim > 0 && heads_ok) {
        if (c.check(m.dim % m.num_heads == 0, "model.dim", "expected a multiple of model.num_heads (", m.num_heads,
                    "), found ", m.dim)) {
            // 3D RoPE rotates pairs of elements and gives a share of the pairs to each of frame, row and column.
            const int64_t hd = m.dim / m.num_heads;
            ok &= c.check(hd % 2 == 0 && hd >= 6, "model.num_heads",
                          "expected a head size dim / num_heads that is even and at least 6 (3D RoPE rotates pairs "
                          "split over frame, row and column), found ",
                          m.dim, " / ", m.num_heads, " = ", hd);
        } else {
            ok = false;
        }
    }
    return ok;
}

void check_rollout(const RolloutConfig& r, Checker& c) {
    c.positive(r.frames_per_chunk, "rollout.frames_per_chunk");
    const bool steps_ok = c.positive(r.num_train_timesteps, "rollout.num_train_timesteps");
    if (c.check(!r.denoising_steps.empty(), "rollout.denoising_steps", "expected at least one timestep, found none") &&
        steps_ok) {
        for (size_t i = 0; i < r.denoising_steps.size(); ++i) {
            const int t = r.denoising_steps[i];
            const int index = static_cast<int>(i);
            c.check_element(t > 0 && t <= r.num_train_timesteps, "rollout.denoising_steps", index, "element ", i,
                            ": expected a timestep in (0, ", r.num_train_timesteps,
                            "] (rollout.num_train_timesteps), found ", t);
            if (i > 0) {
                c.check_element(t < r.denoising_steps[i - 1], "rollout.denoising_steps", index, "element ", i,
                                ": expected strictly decreasing timesteps, found ", r.denoising_steps[i - 1], " then ",
                                t);
            }
        }
    }
    c.check(std::isfinite(r.timestep_shift) && r.timestep_shift > 0, "rollout.timestep_shift",
            "expected a positive number, found ", r.timestep_shift);
    if (steps_ok) {
        c.check(r.context_noise >= 0 && r.context_noise < r.num_train_timesteps, "rollout.context_noise",
                "expected a timestep in [0, ", r.num_train_timesteps, ") (0 = clean context), found ", r.context_noise);
    }
    const bool sink_ok = c.at_least(r.sink_size, 0, "rollout.sink_size");
    if (r.local_attn_size != -1 && sink_ok && r.frames_per_chunk > 0) {
        const int need = r.frames_per_chunk + r.sink_size;
        c.check(r.local_attn_size >= need, "rollout.local_attn_size",
                "expected -1 (keep the whole run) or at least rollout.frames_per_chunk + rollout.sink_size = ",
                r.frames_per_chunk, " + ", r.sink_size, " = ", need,
                " latent frames (the window holds the current chunk plus the sink), found ", r.local_attn_size);
    }
}

// Returns whether width and height are usable for the checks that need the latent grid.
bool check_video(const VideoConfig& v, Checker& c) {
    const bool w_ok =
        c.check(v.width > 0 && v.width % 16 == 0, "video.width",
                "expected a positive multiple of 16 (8x VAE downsampling, then 2x2 patches), found ", v.width);
    const bool h_ok =
        c.check(v.height > 0 && v.height % 16 == 0, "video.height",
                "expected a positive multiple of 16 (8x VAE downsampling, then 2x2 patches), found ", v.height,
                v.height == 1080 ? " (for 1080p generate 1088 rows and set crop_height: 1080)" : "");
    c.positive(v.fps, "video.fps");
    if (c.check(v.crop_height >= 0 && v.crop_height % 2 == 0, "video.crop_height",
                "expected 0 (no crop) or a positive even number of rows (4:2:0 video), found ", v.crop_height) &&
        h_ok) {
        c.check(v.crop_height <= v.height, "video.crop_height", "expected at most video.height (", v.height,
                ") rows, found ", v.crop_height);
    }
    return w_ok && h_ok;
}

void check_attention(const AttentionConfig& a, const RolloutConfig& r, Checker& c) {
    c.check(a.block_size == 64 || a.block_size == 128, "attention.block_size", "expected 64 or 128 tokens, found ",
            a.block_size);
    if (a.policy == AttentionPolicy::kSinkWindow) {
        c.check(r.local_attn_size != -1, "attention.policy",
                "SINK_WINDOW needs a window: expected rollout.local_attn_size to be set (e.g. 12), found -1 (the "
                "whole run, which is DENSE)");
    }
    c.at_least(a.sparse_forcing.persistent_blocks, 0, "attention.sparse_forcing.persistent_blocks");
    const auto budget = [&](int v, const char* field) {
        c.check(v == -1 || v >= 1, field, "expected -1 (auto) or a budget >= 1, found ", v);
    };
    budget(a.sparse_forcing.topk_blocks, "attention.sparse_forcing.topk_blocks");
    c.at_least(a.light_forcing.near_frames, 0, "attention.light_forcing.near_frames");
    budget(a.light_forcing.topk_frames, "attention.light_forcing.topk_frames");
    budget(a.light_forcing.topk_blocks, "attention.light_forcing.topk_blocks");
    if (a.policy == AttentionPolicy::kForcingKv) {
        c.check(!a.forcing_kv.head_profile.empty(), "attention.forcing_kv.head_profile",
                "FORCING_KV needs a head profile of the model: make one with `longroll profile-heads --out FILE`");
        c.check(r.local_attn_size == -1, "rollout.local_attn_size",
                "FORCING_KV sets the window itself (sink_size + forcing_kv.recent_frames + frames_per_chunk, plus the "
                "dynamic heads' segments): expected -1, found ",
                r.local_attn_size);
    }
    if (a.policy == AttentionPolicy::kSparseForcing) {
        c.check(r.local_attn_size != -1, "rollout.local_attn_size",
                "SPARSE_FORCING keeps persistent blocks when frames leave the window: expected a window (e.g. 21), "
                "found -1");
    }
    const ForcingKvConfig& f = a.forcing_kv;
    c.check(f.static_head_threshold > 0 && f.static_head_threshold <= 1, "attention.forcing_kv.static_head_threshold",
            "expected a share of attention in (0, 1], found ", f.static_head_threshold);
    c.at_least(f.recent_frames, 1, "attention.forcing_kv.recent_frames");
    c.check(f.dynamic_keep_ratio > 0 && f.dynamic_keep_ratio <= 1, "attention.forcing_kv.dynamic_keep_ratio",
            "expected a ratio in (0, 1], found ", f.dynamic_keep_ratio);
    c.at_least(a.lvsa.window_frames, 0, "attention.lvsa.window_frames");
    c.at_least(a.lvsa.anchor_interval, 2, "attention.lvsa.anchor_interval");
}

void check_parallel(const Config& cfg, bool model_ok, bool video_ok, Checker& c) {
    const ParallelConfig& p = cfg.parallel;
    const ModelConfig& m = cfg.model;
    if (c.at_least(p.ulysses, 1, "parallel.ulysses") && model_ok) {
        c.check(m.num_heads % p.ulysses == 0, "parallel.ulysses", "expected a divisor of model.num_heads (",
                m.num_heads, "): Ulysses gives each rank whole heads, found ", p.ulysses);
    }
    if (c.at_least(p.spatial, 1, "parallel.spatial") && model_ok && video_ok &&
        (cfg.attention.block_size == 64 || cfg.attention.block_size == 128)) {
        const int64_t rows = cfg.video.height / 8 / m.patch_size[1];
        const int64_t cols = cfg.video.width / 8 / m.patch_size[2];
        const int64_t tokens = rows * cols;
        const int64_t blocks = (tokens + cfg.attention.block_size - 1) / cfg.attention.block_size;
        c.check(p.spatial <= blocks, "parallel.spatial", "expected at most ", blocks, " ranks: a ", cfg.video.width,
                "x", cfg.video.height, " frame has ", tokens, " tokens = ", blocks, " blocks of ",
                cfg.attention.block_size, " and every spatial rank needs a block, found ", p.spatial);
    }
    c.at_least(p.data_parallel, 0, "parallel.data_parallel");
    if (c.at_least(p.overlap_groups, 1, "parallel.overlap_groups") && p.overlap_groups > 1) {
        c.check(p.ulysses * p.spatial > 1, "parallel.overlap_groups",
                "expected 1 with one DiT rank (ulysses x spatial = 1 has no exchange to overlap), found ",
                p.overlap_groups);
        if (model_ok && p.ulysses >= 1 && m.num_heads % p.ulysses == 0)
            c.check((m.num_heads / p.ulysses) % p.overlap_groups == 0, "parallel.overlap_groups",
                    "expected a divisor of the heads of a Ulysses rank (model.num_heads / parallel.ulysses = ",
                    m.num_heads / p.ulysses, "): each group holds whole heads, found ", p.overlap_groups);
    }
    if (p.vae == VaePlacement::kDedicatedRanks) {
        if (c.at_least(p.vae_ranks, 1, "parallel.vae_ranks") && video_ok) {
            const int64_t rows = cfg.video.height / 8;
            c.check(p.vae_ranks <= rows, "parallel.vae_ranks", "expected at most ", rows,
                    " ranks: the VAE ranks split a latent frame's ", rows,
                    " rows (video.height / 8) and each needs one, found ", p.vae_ranks);
        }
    } else {
        c.at_least(p.vae_ranks, 0, "parallel.vae_ranks");
    }
    // The rest of what NCCL needs (a build with it, a GPU of its own per rank) is known at start-up only.
    c.check(!(p.transport == Transport::kNccl && cfg.runtime.device == DeviceChoice::kCpu), "parallel.transport",
            "expected MPI or AUTO with runtime.device CPU (NCCL moves GPU buffers; the DiT would run on the CPU), "
            "found NCCL");
}

}  // namespace

std::vector<Issue> find_config_issues(const Config& cfg) {
    Checker c;
    bool model_ok = model_shape_ok(cfg.model, c);
    check_rollout(cfg.rollout, c);
    const bool video_ok = check_video(cfg.video, c);
    const ModelConfig& m = cfg.model;
    if (model_ok && cfg.rollout.frames_per_chunk > 0) {
        c.check(cfg.rollout.frames_per_chunk % m.patch_size[0] == 0, "rollout.frames_per_chunk",
                "expected a multiple of model.patch_size t (", m.patch_size[0], "), found ",
                cfg.rollout.frames_per_chunk);
    }
    if (model_ok && video_ok) {
        // The latent grid (pixels / 8) must split into whole patches, at least one per axis.
        const int64_t lh = cfg.video.height / 8;
        const int64_t lw = cfg.video.width / 8;
        model_ok &= c.check(lh % m.patch_size[1] == 0 && lh / m.patch_size[1] >= 1, "video.height",
                            "expected a latent height (height / 8 = ", lh, ") of one or more whole patches of ",
                            m.patch_size[1], " rows (model.patch_size), found ", cfg.video.height);
        model_ok &= c.check(lw % m.patch_size[2] == 0 && lw / m.patch_size[2] >= 1, "video.width",
                            "expected a latent width (width / 8 = ", lw, ") of one or more whole patches of ",
                            m.patch_size[2], " columns (model.patch_size), found ", cfg.video.width);
    }
    check_attention(cfg.attention, cfg.rollout, c);
    check_parallel(cfg, model_ok, video_ok, c);

    const OutputConfig& o = cfg.output;
    c.check(o.crf >= 0 && o.crf <= 51, "output.crf", "expected 0 (lossless) to 51, found ", o.crf);
    c.check(o.checkpoint_every >= 0, "output.checkpoint_every",
            "expected chunks between resume checkpoints (0 = only when stopped), found ", o.checkpoint_every);
    bool preset_ok = false;
    for (std::string_view p : kX264Presets) preset_ok |= o.preset == p;
    c.check(preset_ok, "output.preset",
            "expected an x264 preset (ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow, "
            "placebo), found \"",
            o.preset, "\"");

    const MonitoringConfig& mon = cfg.monitoring;
    if (mon.enabled) {
        c.check(mon.port >= 0 && mon.port <= 65535, "monitoring.port",
                "expected a port in [0, 65535] (0 = ephemeral; to turn metrics off set monitoring.enabled: false or "
                "--set monitoring.port=off), found ",
                mon.port);
        c.check(!mon.bind.empty(), "monitoring.bind", "expected an address to listen on (e.g. 0.0.0.0), found \"\"");
        // The exporter listens on a literal address; civetweb parses a bad one leniently (999.1.1.1 became
        // 231.1.1.1), so it is checked here.
        std::string addr = mon.bind;
        if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
        unsigned char buf[16];
        c.check(mon.bind.empty() || ::inet_pton(AF_INET, addr.c_str(), buf) == 1 ||
                    ::inet_pton(AF_INET6, addr.c_str(), buf) == 1,
                "monitoring.bind", "expected an IPv4 or IPv6 address (e.g. 0.0.0.0, 127.0.0.1, ::), found \"", mon.bind,
                "\"");
    }

    const DType dt = cfg.runtime.dtype;
    c.check(dt == DType::kBF16 || dt == DType::kF16 || dt == DType::kF32, "runtime.dtype",
            "expected BF16, F16 or F32, found ", dtype_name(dt));

    // The encoder is useless without its tokenizer and the other way round.
    const TextConfig& t = cfg.text;
    c.check(t.encoder.empty() == t.tokenizer.empty(), t.encoder.empty() ? "text.encoder" : "text.tokenizer",
            "text.encoder and text.tokenizer go together (the UMT5 weights and their sentencepiece model); only ",
            t.encoder.empty() ? "text.tokenizer" : "text.encoder", " is set");
    // Keeping the encoder needs a prompt that comes after the one pass that encodes them all; a run has none.
    c.check(!t.keep_encoder_in_host_memory, "text.keep_encoder_in_host_memory",
            "true is not supported: a run encodes all its prompts (--prompt, --prompt-file lines, --switch-prompt "
            "texts) in one pass before the DiT plans its memory, so no later prompt could use a kept encoder; leave "
            "it false (the encoder is freed after that pass)");
    return c.issues;
}

void throw_if_issues(const std::vector<Issue>& issues, const FieldOrigins& origins) {
    if (issues.empty()) return;
    std::string msg;
    for (const Issue& issue : issues) {
        if (!msg.empty()) msg += '\n';
        msg += origins.format(issue);
    }
    LR_FAIL(msg);
}

}  // namespace lr::config_detail

namespace lr {

void validate_config(const Config& cfg) {
    config_detail::throw_if_issues(config_detail::find_config_issues(cfg), config_detail::FieldOrigins(""));
}

}  // namespace lr
