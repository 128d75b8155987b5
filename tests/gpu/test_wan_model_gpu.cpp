// The CUDA DiT (CudaWanModel over the paged KV cache) and the GPU rollout against the CPU fp32 reference
// (WanModel, KvCache, Rollout) on two models:
//   tiny:   the embedded default's architecture (configs/tiny.textproto: dim 64, 2 heads of 32: the simple
//           attention kernel), text_len 16;
//   hd128:  dim 256, 2 heads of 128 (the fast attention kernel), text_len 200 (two cross-attention blocks,
//           the second short);
// at latent sizes whose tokens per frame are not a multiple of the 128-token KV block: 8x20 (40 tokens) and
// 26x20 (130 tokens: two blocks per frame, the second holds 2 tokens).
// Bounds (bf16 GEMM/attention inputs vs fp32): relative L2 error < 2e-2 for the flow of a forward, < 5e-2 for
// rollout latents. Every measured error is printed ("[ measured ]") for the notes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "runtime/core/check.h"
#include "runtime/model/wan_model.h"
#include "runtime/model/wan_model_cuda.h"
#include "runtime/rollout/rollout.h"
#include "runtime/rollout/rollout_cuda.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

#ifdef LONGROLL_HAS_CUDA

using test::gaussian;
using test::rel_error;

// The paged cache of a model that built its own (single-GPU) attention step.
const PagedKvCache& cache_of(const CudaWanModel& g) {
    return dynamic_cast<const CudaLocalAttentionStep&>(g.attention_step()).cache();
}

constexpr double kForwardBound = 2e-2;
constexpr double kRolloutBound = 5e-2;
constexpr double kIntermediateBound = 5e-2;

struct ModelCase {
    const char* name;
    WanModelConfig cfg;
};

WanModelConfig tiny_default_config() {
    WanModelConfig c;
    c.dims.dim = 64;
    c.dims.ffn_dim = 128;
    c.dims.num_heads = 2;
    c.dims.num_layers = 2;
    c.dims.text_dim = 64;
    c.dims.freq_dim = 256;
    c.text_len = 16;
    return c;
}

WanModelConfig hd128_config() {
    WanModelConfig c;
    c.dims.dim = 256;
    c.dims.ffn_dim = 512;
    c.dims.num_heads = 2;
    c.dims.num_layers = 2;
    c.dims.text_dim = 128;
    c.dims.freq_dim = 256;
    c.text_len = 200;
    return c;
}

std::vector<ModelCase> model_cases() { return {{"tiny", tiny_default_config()}, {"hd128", hd128_config()}}; }

struct Latent {
    int64_t h, w;
};
const Latent kLatents[] = {{8, 20}, {26, 20}};

WanModel host_model(const WanModelConfig& cfg, uint64_t seed = 5) {
    return WanModel::from_weights(make_default_wan_weights(cfg.dims, seed), cfg);
}

// A prompt embedding [len, text_dim], shorter than text_len (the padding path is exercised).
HostTensor context(const WanModelConfig& cfg, uint32_t seed, int64_t len) {
    HostTensor t(DType::kF32, Shape{len, cfg.dims.text_dim});
    const auto v = gaussian(t.view.numel(), seed);
    std::copy(v.begin(), v.end(), t.as<float>());
    return t;
}

void measured(const std::string& what, double err, double bound) {
    std::printf("[ measured ] %s: relative error %.3e (bound %.0e)\n", what.c_str(), err, bound);
    std::fflush(stdout);
}

// The flow of one CPU forward over `cache`.
std::vector<float> cpu_forward(const WanModel& m, const WanPrompt& p, KvCache& cache, const std::vector<float>& x,
                               const std::vector<float>& t, int64_t start, Latent lat, RopePositions rope,
                               bool protect_sink = false) {
    const int64_t frames = static_cast<int64_t>(t.size());
    std::vector<float> out(static_cast<size_t>(frames * m.config().dims.out_dim * lat.h * lat.w));
    WanForwardArgs a;
    a.x = x.data();
    a.t = t.data();
    a.frames = frames;
    a.height = lat.h;
    a.width = lat.w;
    a.start_frame = start;
    a.prompt = &p;
    a.cache = &cache;
    a.protect_sink = protect_sink;
    a.rope = rope;
    m.forward(a, out.data());
    return out;
}

// The flow of one GPU forward (x uploaded, flow downloaded).
std::vector<float> gpu_forward(CudaWanModel& g, const CudaPrompt& p, const std::vector<float>& x,
                               const std::vector<float>& t, int64_t start, bool protect_sink = false) {
    const int64_t frames = static_cast<int64_t>(t.size());
    const WanDims& d = g.config().dims;
    const size_t out_n = static_cast<size_t>(frames * d.out_dim * g.options().height * g.options().width);
    // On the model's stream: a non-blocking stream does not wait for the legacy stream's copies.
    DeviceBuffer dx(x.size() * sizeof(float));
    LR_CUDA_CHECK(cudaMemcpyAsync(dx.data(), x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice, g.stream()));
    DeviceBuffer dout(out_n * sizeof(float));
    CudaForwardArgs a;
    a.x = static_cast<const float*>(dx.data());
    a.t = t.data();
    a.frames = frames;
    a.start_frame = start;
    a.prompt = &p;
    a.protect_sink = protect_sink;
    a.out = static_cast<float*>(dout.data());
    g.forward(a);
    LR_CUDA_CHECK(cudaStreamSynchronize(g.stream()));
    return test::to_host<float>(dout, out_n);
}

CudaModelOptions options(Latent lat, int64_t max_forward, int64_t window, int64_t sink, int64_t max_frames,
                         RopePositions rope) {
    CudaModelOptions o;
    o.height = lat.h;
    o.width = lat.w;
    o.max_forward_frames = max_forward;
    o.window_frames = window;
    o.sink_frames = sink;
    o.max_frames = max_frames;
    o.rope = rope;
    return o;
}

const char* rope_name(RopePositions r) { return r == RopePositions::kAbsolute ? "absolute" : "relative"; }

std::string case_name(const ModelCase& mc, Latent lat) { return str_cat(mc.name, " ", lat.h, "x", lat.w); }

#endif  // LONGROLL_HAS_CUDA

TEST(WanModelGpu, ForwardWithEmptyCacheMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    for (const ModelCase& mc : model_cases()) {
        WanModel m = host_model(mc.cfg);
        const HostTensor ctx = context(mc.cfg, 1, mc.cfg.text_len - 3);
        const WanPrompt cpu_prompt = m.encode_prompt(ctx.view);
        for (const Latent lat : kLatents) {
            const std::string name = case_name(mc, lat);
            const std::vector<float> t{1000.0f, 937.5f, 833.3333f};  // a timestep per frame: per-frame modulation
            const auto x = gaussian(3 * 16 * lat.h * lat.w, 2);
            KvCache cache(m.kv_cache_config(lat.h, lat.w, -1, 0, 3));
            const auto want = cpu_forward(m, cpu_prompt, cache, x, t, 0, lat, RopePositions::kAbsolute);

            CudaWanModel g(m, options(lat, 3, -1, 0, 3, RopePositions::kAbsolute));
            const CudaPrompt prompt = g.encode_prompt(ctx.view);
            const auto got = gpu_forward(g, prompt, x, t, 0);
            const double err = rel_error(got, want, want.size());
            measured(name + ": forward, empty cache", err, kForwardBound);
            EXPECT_LT(err, kForwardBound) << name;
            EXPECT_EQ(cache_of(g).frames(), 3);

            // Every intermediate by name, to localise a failure (the GPU then takes its dump path).
            std::map<std::string, std::vector<float>> cpu_dump;
            m.set_dump([&](const std::string& n, const float* data, const Shape& s) {
                cpu_dump[n].assign(data, data + s.numel());
            });
            KvCache cache2(m.kv_cache_config(lat.h, lat.w, -1, 0, 3));
            cpu_forward(m, m.encode_prompt(ctx.view), cache2, x, t, 0, lat, RopePositions::kAbsolute);
            m.set_dump(nullptr);
            int64_t compared = 0;
            g.set_dump([&](const std::string& n, const float* data, const Shape& s) {
                const auto it = cpu_dump.find(n);
                if (it == cpu_dump.end()) return;
                ASSERT_EQ(static_cast<size_t>(s.numel()), it->second.size()) << n;
                const double e = rel_error(data, it->second, it->second.size());
                measured(name + ": " + n, e, kIntermediateBound);
                EXPECT_LT(e, kIntermediateBound) << name << ": " << n;
                ++compared;
            });
            g.reset_cache(0);
            const CudaPrompt prompt2 = g.encode_prompt(ctx.view);
            const auto dumped = gpu_forward(g, prompt2, x, t, 0);
            EXPECT_LT(rel_error(dumped, want, want.size()), kForwardBound) << name << " (dump path)";
            EXPECT_GE(compared, 5 + 7 * mc.cfg.dims.num_layers) << name;  // text, patch, time x2, head; 7 per block
        }
    }
#endif
}

// Chunks of 2 frames in a window of 5 with a sink of 1: the third chunk evicts, later forwards attend over a
// full cache; every denoising step rewrites the chunk in place and the clean pass at t = 0 rewrites it again.
TEST(WanModelGpu, ForwardsOverAFilledCacheMatchCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    for (const ModelCase& mc : model_cases()) {
        const WanModel m = host_model(mc.cfg);
        const HostTensor ctx = context(mc.cfg, 3, 7);
        const WanPrompt cpu_prompt = m.encode_prompt(ctx.view);
        for (const Latent lat : kLatents) {
            for (const RopePositions rope : {RopePositions::kAbsolute, RopePositions::kWindowRelative}) {
                const std::string name = str_cat(case_name(mc, lat), " ", rope_name(rope));
                KvCache cache(m.kv_cache_config(lat.h, lat.w, 5, 1, 5));
                CudaWanModel g(m, options(lat, 2, 5, 1, 5, rope));
                const CudaPrompt prompt = g.encode_prompt(ctx.view);
                double worst = 0.0;
                uint32_t seed = 10;
                for (int64_t start = 0; start < 8; start += 2) {
                    for (const float ts : {937.5f, 625.0f, 0.0f}) {
                        const std::vector<float> t{ts, ts};
                        const auto x = gaussian(2 * 16 * lat.h * lat.w, seed++);
                        const auto want = cpu_forward(m, cpu_prompt, cache, x, t, start, lat, rope);
                        const auto got = gpu_forward(g, prompt, x, t, start);
                        const double err = rel_error(got, want, want.size());
                        worst = std::max(worst, err);
                        EXPECT_LT(err, kForwardBound) << name << ", frames from " << start << ", t " << ts;
                    }
                    EXPECT_EQ(cache_of(g).slot_frames(), cache.slot_frames()) << name;
                }
                measured(name + ": forwards over a filled cache (worst of 12)", worst, kForwardBound);
            }
        }
    }
#endif
}

#ifdef LONGROLL_HAS_CUDA
std::vector<float> cpu_rollout(const WanModel& m, const RolloutOptions& o, const RolloutShape& shape,
                               const std::vector<PromptSegment>& prompts, const NoiseSource& noise) {
    Rollout r(m, o, shape);
    HostTensor latents(DType::kF32, Shape{shape.frames, 16, shape.height, shape.width});
    r.run(prompts, noise, collect_latents(latents));
    return {latents.as<float>(), latents.as<float>() + latents.view.numel()};
}

std::vector<float> gpu_rollout(CudaRollout& r, const RolloutShape& shape, const std::vector<PromptSegment>& prompts,
                               const NoiseSource& noise, int64_t resume = 0, const float* resume_latents = nullptr,
                               std::vector<int64_t>* starts = nullptr) {
    HostTensor latents(DType::kF32, Shape{shape.frames, 16, shape.height, shape.width});
    std::fill(latents.as<float>(), latents.as<float>() + latents.view.numel(), 0.0f);
    r.run(prompts, noise,
          collect_latents(latents,
                          [&](const RolloutChunk& c) {
                              if (starts) starts->push_back(c.start_frame);
                          }),
          resume, resume_latents);
    return {latents.as<float>(), latents.as<float>() + latents.view.numel()};
}
#endif

// Self-Forcing-like: chunks of 3, a window of 6 with a sink of 1, 9 frames: the third chunk evicts.
TEST(WanModelGpu, RolloutWithWindowEvictionMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    for (const ModelCase& mc : model_cases()) {
        const WanModel m = host_model(mc.cfg);
        const HostTensor ctx = context(mc.cfg, 4, 9);
        for (const Latent lat : kLatents) {
            const std::string name = case_name(mc, lat);
            RolloutOptions o;
            o.frames_per_chunk = 3;
            o.local_attn_size = 6;
            o.sink_size = 1;
            const RolloutShape shape{9, lat.h, lat.w};
            const SeededNoise noise(7, 16, lat.h, lat.w);
            const auto want = cpu_rollout(m, o, shape, {{0, ctx.view}}, noise);

            CudaWanModel g(m, CudaRollout::model_options(o, shape, false));
            CudaRollout r(g, o, shape);
            std::vector<std::pair<int64_t, int64_t>> observed;
            r.set_step_observer([&](int64_t chunk, int64_t step, double seconds) {
                observed.emplace_back(chunk, step);
                EXPECT_GT(seconds, 0.0);
            });
            std::vector<int64_t> starts;
            const auto got = gpu_rollout(r, shape, {{0, ctx.view}}, noise, 0, nullptr, &starts);
            const double err = rel_error(got, want, want.size());
            measured(name + ": 3-chunk rollout, window 6, sink 1", err, kRolloutBound);
            EXPECT_LT(err, kRolloutBound) << name;
            EXPECT_EQ(starts, (std::vector<int64_t>{0, 3, 6}));
            ASSERT_EQ(observed.size(), 3u * 5u);  // 4 steps + the clean pass per chunk, in order
            for (size_t i = 0; i < observed.size(); ++i)
                EXPECT_EQ(observed[i], (std::pair<int64_t, int64_t>(static_cast<int64_t>(i / 5), i % 5)));
            EXPECT_EQ(cache_of(g).slot_frames(), (std::vector<int64_t>{0, 4, 5, 6, 7, 8}));
        }
    }
#endif
}

// LongLive-like: window-relative RoPE, chunks of 2, a window of 6 with a sink of 2, a prompt switch at frame 5
// (it takes effect at the chunk starting at 6: the window is re-cached under the new prompt), then a resume.
TEST(WanModelGpu, WindowRelativeRolloutWithPromptSwitchMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    for (const ModelCase& mc : model_cases()) {
        const WanModel m = host_model(mc.cfg);
        const HostTensor first = context(mc.cfg, 5, 6), second = context(mc.cfg, 6, 4);
        for (const Latent lat : kLatents) {
            const std::string name = case_name(mc, lat);
            RolloutOptions o;
            o.frames_per_chunk = 2;
            o.local_attn_size = 6;
            o.sink_size = 2;
            o.rope = RopePositions::kWindowRelative;
            const RolloutShape shape{12, lat.h, lat.w};
            const SeededNoise noise(8, 16, lat.h, lat.w);
            const std::vector<PromptSegment> prompts{{0, first.view}, {5, second.view}};
            const auto want = cpu_rollout(m, o, shape, prompts, noise);

            CudaWanModel g(m, CudaRollout::model_options(o, shape, true));
            EXPECT_EQ(g.options().max_forward_frames, 6);
            CudaRollout r(g, o, shape);
            const auto got = gpu_rollout(r, shape, prompts, noise);
            const double err = rel_error(got, want, want.size());
            measured(name + ": window-relative rollout with a prompt switch", err, kRolloutBound);
            EXPECT_LT(err, kRolloutBound) << name;

            // Resuming after 4 chunks replays the clean passes and the switch's re-cache: the same GPU result.
            std::vector<int64_t> starts;
            const auto resumed = gpu_rollout(r, shape, prompts, noise, 4, got.data(), &starts);
            EXPECT_EQ(starts, (std::vector<int64_t>{8, 10}));
            const int64_t fn = 16 * lat.h * lat.w;
            const std::vector<float> tail_got(got.begin() + 8 * fn, got.end());
            const std::vector<float> tail_resumed(resumed.begin() + 8 * fn, resumed.end());
            const double resume_err = rel_error(tail_resumed, tail_got, tail_got.size());
            measured(name + ": resumed vs uninterrupted GPU run", resume_err, 1e-4);
            EXPECT_LT(resume_err, 1e-4) << name;
        }
    }
#endif
}

// CUDA graphs replay exactly the eager launches: the same rollout with graphs on and off gives the same bytes, in
// both RoPE modes (window-relative re-rotates a growing number of cached rows: part of the graph's key), with a
// prompt switch (a one-off re-cache forward) and a short last chunk; and the graphs are actually replayed.
TEST(WanModelGpu, CudaGraphRolloutEqualsEagerRollout) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const ModelCase mc = model_cases()[1];
    const WanModel m = host_model(mc.cfg);
    const HostTensor first = context(mc.cfg, 5, 6), second = context(mc.cfg, 6, 4);
    const Latent lat = kLatents[1];
    for (const RopePositions rope : {RopePositions::kAbsolute, RopePositions::kWindowRelative}) {
        const std::string name = str_cat(case_name(mc, lat), " ", rope_name(rope));
        RolloutOptions o;
        o.frames_per_chunk = 3;
        o.local_attn_size = 9;
        o.sink_size = 1;
        o.rope = rope;
        const RolloutShape shape{20, lat.h, lat.w};  // 7 chunks, the last of 2 frames
        const SeededNoise noise(9, 16, lat.h, lat.w);
        const std::vector<PromptSegment> prompts{{0, first.view}, {10, second.view}};
        std::vector<float> runs[2];
        CudaGraphStats stats[2];
        for (int graphs = 0; graphs < 2; ++graphs) {
            CudaModelOptions mo = CudaRollout::model_options(o, shape, true);
            mo.cuda_graphs = graphs == 1;
            CudaWanModel g(m, mo);
            CudaRollout r(g, o, shape);
            runs[graphs] = gpu_rollout(r, shape, prompts, noise);
            stats[graphs] = g.graph_stats();
        }
        std::printf("[ measured ] %s: graphs on: %lld eager, %lld captured, %lld replayed forwards\n", name.c_str(),
                    static_cast<long long>(stats[1].eager), static_cast<long long>(stats[1].captured),
                    static_cast<long long>(stats[1].replayed));
        EXPECT_EQ(stats[0].captured + stats[0].replayed, 0) << name;
        EXPECT_EQ(stats[0].eager, stats[1].eager + stats[1].replayed) << name;  // every forward ran once
        EXPECT_GT(stats[1].captured, 0) << name;
        EXPECT_GT(stats[1].replayed, stats[1].eager) << name;
        ASSERT_EQ(runs[0].size(), runs[1].size());
        EXPECT_EQ(std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(float)), 0)
            << name << ": graph replay differs from eager launches (relative error "
            << rel_error(runs[1], runs[0], runs[0].size()) << ")";
    }
#endif
}

TEST(WanModelGpu, RefusesWhatCannotFitOrDoesNotMatch) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const WanModelConfig cfg = hd128_config();
    const WanModel m = host_model(cfg);
    // Two million frames of storage: hundreds of GiB of KV pools.
    const CudaModelOptions huge = options({8, 20}, 3, -1, 0, 2'000'000, RopePositions::kAbsolute);
    EXPECT_GT(CudaWanModel::device_bytes(cfg, huge), size_t{400} << 30);
    try {
        CudaWanModel g(m, huge);
        ADD_FAILURE() << "a plan of " << format_bytes(CudaWanModel::device_bytes(cfg, huge)) << " was accepted";
    } catch (const InputError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("free"), std::string::npos) << msg;
        EXPECT_NE(msg.find("KV cache"), std::string::npos) << msg;
    }
    EXPECT_THROW(CudaWanModel(m, options({9, 20}, 3, -1, 0, 3, RopePositions::kAbsolute)), InputError);  // odd rows

    CudaWanModel g(m, options({8, 20}, 2, 4, 1, 4, RopePositions::kAbsolute));
    const HostTensor ctx = context(cfg, 1, 3);
    const CudaPrompt prompt = g.encode_prompt(ctx.view);
    const auto x = gaussian(3 * 16 * 8 * 20, 1);
    EXPECT_THROW(gpu_forward(g, prompt, x, {500.0f, 500.0f, 500.0f}, 0), InputError);  // > max_forward_frames
    EXPECT_THROW(g.encode_prompt(context(cfg, 1, cfg.text_len + 1).view), InputError);

    RolloutOptions o;
    o.frames_per_chunk = 2;
    o.local_attn_size = 4;
    o.sink_size = 1;
    EXPECT_NO_THROW({ CudaRollout probe(g, o, RolloutShape{8, 8, 20}); });
    o.local_attn_size = 6;
    EXPECT_THROW(CudaRollout(g, o, RolloutShape{8, 8, 20}), InputError);  // planned for a window of 4
    o.local_attn_size = 4;
    CudaRollout r(g, o, RolloutShape{8, 8, 20});
    // A prompt switch needs a re-cache of 4 frames in one forward; this model was planned for 2.
    const HostTensor other = context(cfg, 2, 3);
    EXPECT_THROW(r.run({{0, ctx.view}, {4, other.view}}, SeededNoise(1, 16, 8, 20), nullptr), InputError);
#endif
}

// Benchmarks build models at 1.3B / 14B shapes without host weights: the random-weight path must run.
TEST(WanModelGpu, RandomWeightsRun) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const WanModelConfig cfg = hd128_config();
    const CudaModelOptions o = options({26, 20}, 3, 6, 1, 6, RopePositions::kAbsolute);
    CudaWanModel g = CudaWanModel::with_random_weights(cfg, o, 42);
    EXPECT_LE(g.weight_bytes() + g.kv_bytes() + g.activation_bytes(), CudaWanModel::device_bytes(cfg, o));
    const HostTensor ctx = context(cfg, 1, 20);
    const CudaPrompt prompt = g.encode_prompt(ctx.view);
    const auto x = gaussian(3 * 16 * 26 * 20, 3);
    const auto a = gpu_forward(g, prompt, x, {937.5f, 937.5f, 937.5f}, 0);
    double norm = 0.0;
    for (float v : a) {
        ASSERT_TRUE(std::isfinite(v));
        norm += static_cast<double>(v) * v;
    }
    EXPECT_GT(norm, 0.0);
    // Same seed, same weights: a second model gives the same flow.
    CudaWanModel g2 = CudaWanModel::with_random_weights(cfg, o, 42);
    const CudaPrompt prompt2 = g2.encode_prompt(ctx.view);
    const auto b = gpu_forward(g2, prompt2, x, {937.5f, 937.5f, 937.5f}, 0);
    EXPECT_LT(rel_error(b, a, a.size()), 1e-6);
#endif
}

}  // namespace
}  // namespace lr
