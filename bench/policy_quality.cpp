// Quality of each attention policy against dense on the same inputs (DESIGN.md section 6), on the CPU reference
// path:
//   - attention-output relative error per layer: a dense rollout drives the model; at every forward, every policy's
//     attention step (its own cache, retained blocks and tables) attends over the same q, k, v, and its output is
//     compared with dense's (the rollout continues with dense's), so the error is the policy's alone;
//   - latent relative error over a rollout: each policy's own rollout against dense's, per chunk.
// The model: --weights FILE (with its --config), or the embedded random-weight tiny model. Random weights attend
// diffusely: their errors bound bugs, they do not judge a policy; a trained model's do.
//
//   policy_quality [--config FILE] [--weights FILE] [--prompt-embeds FILE] [--size WxH] [--frames N]
//                  [--window N] [--block 64|128] [--sink N] [--json FILE] [--commit SHA]
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "launch/config.h"
#include "launch/generate_inputs.h"
#include "runtime/core/check.h"
#include "runtime/model/attention_step_cpu.h"
#include "runtime/rollout/noise.h"
#include "runtime/rollout/rollout.h"

namespace lr {
namespace {

const char* kPolicies[] = {"SPARSE_FORCING", "LIGHT_FORCING", "LVSA", "FORCING_KV"};

double rel(const float* a, const float* b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
        num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        den += static_cast<double>(b[i]) * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

// Drives a dense step and shadows every policy's step on the same q, k, v.
class ComparingStep final : public AttentionStep {
  public:
    ComparingStep(std::unique_ptr<CpuAttentionStep> dense, std::vector<std::unique_ptr<CpuAttentionStep>> shadows,
                  int64_t layers)
        : dense_(std::move(dense)), shadows_(std::move(shadows)) {
        sum_.assign(shadows_.size(), std::vector<double>(static_cast<size_t>(layers), 0.0));
        count_.assign(shadows_.size(), 0);
    }
    KvWrite begin(const AttentionForward& f) override {
        for (auto& s : shadows_) s->begin(f);
        return dense_->begin(f);
    }
    void attend(int64_t l, const float* q, const float* k, const float* v, float* out) override {
        dense_->attend(l, q, k, v, out);
        const int64_t n = static_cast<int64_t>(frames_) * tpf_ * width_;
        tmp_.resize(static_cast<size_t>(n));
        for (size_t i = 0; i < shadows_.size(); ++i) {
            shadows_[i]->attend(l, q, k, v, tmp_.data());
            sum_[i][static_cast<size_t>(l)] += rel(tmp_.data(), out, n);
        }
    }
    void end() override {
        dense_->end();
        for (size_t i = 0; i < shadows_.size(); ++i) {
            shadows_[i]->end();
            ++count_[i];
        }
    }
    AttentionStats stats() const override { return dense_->stats(); }
    void shape(int64_t frames, int64_t tpf, int64_t width) {
        frames_ = frames;
        tpf_ = tpf;
        width_ = width;
    }
    // Mean over forwards of the per-layer error of shadow i.
    std::vector<double> errors(size_t i) const {
        std::vector<double> e = sum_[i];
        for (double& x : e) x /= std::max<int64_t>(1, count_[i]);
        return e;
    }
    double density(size_t i) const { return shadows_[i]->stats().density(); }

  private:
    std::unique_ptr<CpuAttentionStep> dense_;
    std::vector<std::unique_ptr<CpuAttentionStep>> shadows_;
    std::vector<std::vector<double>> sum_;
    std::vector<int64_t> count_;
    std::vector<float> tmp_;
    int64_t frames_ = 3, tpf_ = 0, width_ = 0;
};

int run(int argc, char** argv) {
    std::string config, weights, embeds, json, commit, size = "256x128";
    int64_t frames = 30, window = 12, block = 64, sink = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto value = [&]() -> std::string {
            LR_CHECK(i + 1 < argc, a, " needs a value");
            return argv[++i];
        };
        if (a == "--config")
            config = value();
        else if (a == "--weights")
            weights = value();
        else if (a == "--prompt-embeds")
            embeds = value();
        else if (a == "--size")
            size = value();
        else if (a == "--frames")
            frames = std::stoll(value());
        else if (a == "--window")
            window = std::stoll(value());
        else if (a == "--block")
            block = std::stoll(value());
        else if (a == "--sink")
            sink = std::stoll(value());
        else if (a == "--json")
            json = value();
        else if (a == "--commit")
            commit = value();
        else
            LR_FAIL("policy_quality: unknown flag ", a);
    }
    const auto x = size.find('x');
    LR_CHECK(x != std::string::npos, "--size: expected WxH, found ", size);
    std::vector<ConfigOverride> overrides = {parse_override("video.width=" + size.substr(0, x)),
                                             parse_override("video.height=" + size.substr(x + 1)),
                                             parse_override("attention.block_size=" + std::to_string(block)),
                                             parse_override("rollout.sink_size=" + std::to_string(sink))};
    Config cfg = config.empty() ? parse_config_text(config_to_text(default_config()), "<default>", overrides)
                                : load_config(config, overrides);
    const LoadedModel model = load_model(weights.empty() ? std::nullopt : std::optional<std::string>(weights), cfg);
    const WanModel& m = *model.model;
    const Prompts prompts =
        load_prompts(embeds.empty() ? std::nullopt : std::optional<std::string>(embeds), {}, cfg, frames);
    const RolloutShape shape{frames, cfg.video.height / 8, cfg.video.width / 8};
    const SeededNoise noise(7, cfg.model.in_dim, shape.height, shape.width);

    // A policy's rollout options: the window for all but Forcing-KV (its own); Forcing-KV marks every other head
    // static (profile it with longroll profile-heads for a trained model).
    const auto options = [&](const std::string& name) {
        Config c = cfg;
        c.rollout.local_attn_size = name == "FORCING_KV" ? -1 : window;
        RolloutOptions o = rollout_options(c.rollout);
        o.block_size = block;
        Config pc = c;
        pc.attention.policy = name == "DENSE"            ? AttentionPolicy::kDense
                              : name == "SPARSE_FORCING" ? AttentionPolicy::kSparseForcing
                              : name == "LIGHT_FORCING"  ? AttentionPolicy::kLightForcing
                              : name == "LVSA"           ? AttentionPolicy::kLvsa
                                                         : AttentionPolicy::kDense;
        if (name != "FORCING_KV") {
            o.policy = block_policy_config(pc, m.config(), shape.height, shape.width, shape.frames);
        } else {
            o.policy.kind = BlockPolicyKind::kForcingKv;
            o.policy.recent_frames = c.attention.forcing_kv.recent_frames;
            o.policy.dynamic_keep_ratio = c.attention.forcing_kv.dynamic_keep_ratio;
            for (int64_t i = 0; i < m.num_layers() * m.num_heads(); ++i) o.policy.static_head.push_back(i % 2 == 0);
        }
        return o;
    };
    const auto latents_of = [&](const RolloutOptions& o) {
        Rollout r(m, o, shape);
        HostTensor lat(DType::kF32, Shape{shape.frames, cfg.model.in_dim, shape.height, shape.width});
        r.run(prompts.segments, noise, collect_latents(lat));
        return std::vector<float>(lat.as<float>(), lat.as<float>() + lat.view.numel());
    };
    const std::vector<float> dense = latents_of(options("DENSE"));
    const int64_t frame_numel = cfg.model.in_dim * shape.height * shape.width;

    bench::JsonObject results;
    std::printf("%-16s %8s %12s %12s   attention error per layer (same inputs)\n", "policy", "density", "latent err",
                "last chunk");
    for (const char* name : kPolicies) {
        const std::vector<float> got = latents_of(options(name));
        const double err = rel(got.data(), dense.data(), static_cast<int64_t>(dense.size()));
        const int64_t last = (frames - 3) * frame_numel;
        const double last_err = rel(got.data() + last, dense.data() + last, 3 * frame_numel);
        std::vector<double> chunk_err;
        for (int64_t f = 0; f < frames; f += 3)
            chunk_err.push_back(rel(got.data() + f * frame_numel, dense.data() + f * frame_numel,
                                    std::min<int64_t>(3, frames - f) * frame_numel));
        // Same inputs: the dense rollout drives, this policy's step shadows it.
        RolloutOptions dopt = options("DENSE");
        RolloutOptions popt = options(name);
        AttentionStepConfig dc, pc;
        {
            dc.num_layers = m.num_layers();
            dc.num_heads = m.num_heads();
            dc.head_dim = m.head_dim();
            dc.grid_rows = shape.height / m.config().dims.patch[1];
            dc.grid_cols = shape.width / m.config().dims.patch[2];
            dc.block_size = block;
            dc.frames_per_chunk = 3;
            dc.window_frames = dopt.local_attn_size;
            dc.sink_frames = dopt.sink_size;
            dc.run_frames = frames;
            dc.max_write_frames = 3;
            dc.policy = dopt.policy;
            pc = dc;
            pc.window_frames = popt.local_attn_size;
            pc.policy = popt.policy;
        }
        std::vector<std::unique_ptr<CpuAttentionStep>> shadows;
        shadows.push_back(std::make_unique<CpuAttentionStep>(pc));
        ComparingStep cmp(std::make_unique<CpuAttentionStep>(dc), std::move(shadows), m.num_layers());
        cmp.shape(3, dc.grid_rows * dc.grid_cols, m.dim());
        const WanPrompt prompt = m.encode_prompt(prompts.segments[0].context);
        std::vector<float> xin(static_cast<size_t>(3 * frame_numel)), out(xin.size());
        const FlowMatchScheduler sched(dopt.timestep_shift);
        const std::vector<float> ts = sched.warp(dopt.denoising_steps);
        for (int64_t c = 0; c * 3 + 3 <= frames; ++c) {
            for (int64_t f = 0; f < 3; ++f) noise.initial(c * 3 + f, xin.data() + f * frame_numel);
            for (size_t s = 0; s <= ts.size(); ++s) {
                const float t = s < ts.size() ? ts[s] : 0.0f;
                const std::vector<float> tv(3, t);
                WanForwardArgs a;
                a.x = s < ts.size() ? xin.data() : dense.data() + c * 3 * frame_numel;
                a.t = tv.data();
                a.frames = 3;
                a.height = shape.height;
                a.width = shape.width;
                a.start_frame = c * 3;
                a.prompt = &prompt;
                a.step = &cmp;
                a.attn.chunk = c;
                a.attn.step = static_cast<int64_t>(s);
                a.attn.num_steps = static_cast<int64_t>(ts.size());
                m.forward(a, out.data());
            }
        }
        const std::vector<double> layer_err = cmp.errors(0);
        std::printf("%-16s %8.3f %12.3e %12.3e  ", name, cmp.density(0), err, last_err);
        for (double e : layer_err) std::printf(" %.2e", e);
        std::printf("\n");
        bench::JsonObject j;
        j.add("latent_rel_error", err)
            .add("last_chunk_rel_error", last_err)
            .add("chunk_rel_error", chunk_err)
            .add("attention_rel_error_per_layer", layer_err)
            .add("density_last_forward", cmp.density(0));
        results.add(name, j);
    }
    bench::JsonObject doc = bench::header("bench/policy_quality", commit);
    doc.add("model", model.description)
        .add("size", size)
        .add("latent_frames", frames)
        .add("window_frames", window)
        .add("block_size", block)
        .add("results", results);
    if (!json.empty() && !bench::write_json(json, doc)) return 1;
    return 0;
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    try {
        return lr::run(argc, argv);
    } catch (const lr::Error& e) {
        std::fprintf(stderr, "policy_quality: %s\n", e.what());
        return e.exit_code();
    }
}
