#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "runtime/core/check.h"
#include "runtime/rollout/rollout.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

using test::tiny_context;
using test::tiny_model;

constexpr int64_t kC = 16, kH = 4, kW = 6, kFrame = kC * kH * kW;

RolloutOptions options(int64_t fpc, int64_t window, int64_t sink) {
    RolloutOptions o;
    o.frames_per_chunk = fpc;
    o.local_attn_size = window;
    o.sink_size = sink;
    return o;
}

// Runs a rollout and returns all latents plus the chunk starts seen by the callback.
std::vector<float> roll(const WanModel& m, const RolloutOptions& o, int64_t frames, const NoiseSource& noise,
                        const std::vector<PromptSegment>& prompts, std::vector<int64_t>* starts = nullptr,
                        int64_t resume = 0, const float* resume_latents = nullptr) {
    Rollout r(m, o, RolloutShape{frames, kH, kW});
    HostTensor latents(DType::kF32, Shape{frames, kC, kH, kW});
    std::memset(latents.as<float>(), 0, static_cast<size_t>(latents.view.nbytes()));
    r.run(prompts, noise,
          collect_latents(latents,
                          [&](const RolloutChunk& c) {
                              if (starts) starts->push_back(c.start_frame);
                          }),
          resume, resume_latents);
    return {latents.as<float>(), latents.as<float>() + latents.view.numel()};
}

// The first chunk (2 frames) by hand: 4 forwards at the warped timesteps through an attention step shaped as the
// rollout's, x0 = x - sigma * flow in double after each; `advance(i, flow, x0, x)` moves x to step i + 1 (not called
// after the last). Returns the last x0: what the rollout must emit.
std::vector<float> first_chunk_by_hand(
    const WanModel& m, const RolloutOptions& o, const HostTensor& ctx, const NoiseSource& noise,
    const std::function<void(size_t, const std::vector<float>&, const std::vector<float>&, std::vector<float>&)>&
        advance) {
    const FlowMatchScheduler s(5.0);
    const auto ts = s.warp({1000, 750, 500, 250});
    const WanPrompt p = m.encode_prompt(ctx.view);
    const Rollout probe(m, o, RolloutShape{2, kH, kW});
    CpuAttentionStep step(probe.step()->config());
    std::vector<float> x(2 * kFrame), flow(x.size()), x0(x.size());
    noise.initial(0, x.data());
    noise.initial(1, x.data() + kFrame);
    for (size_t i = 0; i < ts.size(); ++i) {
        const float t2[2] = {ts[i], ts[i]};
        WanForwardArgs a;
        a.x = x.data();
        a.t = t2;
        a.frames = 2;
        a.height = kH;
        a.width = kW;
        a.prompt = &p;
        a.step = &step;
        a.attn.step = static_cast<int64_t>(i);
        a.attn.num_steps = static_cast<int64_t>(ts.size());
        m.forward(a, flow.data());
        const double sigma = s.sigma_at(ts[i]);
        for (size_t j = 0; j < x.size(); ++j) {
            x0[j] = static_cast<float>(static_cast<double>(x[j]) - sigma * static_cast<double>(flow[j]));
        }
        if (i + 1 < ts.size()) advance(i, flow, x0, x);
    }
    return x0;
}

TEST(Rollout, FirstChunkFollowsTheSchedulerStepByStep) {
    const WanModel m = tiny_model();
    const HostTensor ctx = tiny_context(1);
    const SeededNoise noise(3, kC, kH, kW);
    const RolloutOptions o = options(2, -1, 0);
    const auto got = roll(m, o, 2, noise, {{0, ctx.view}});

    // Self-Forcing: x0 re-noised with fresh noise to the next timestep, (1 - sigma') x0 + sigma' noise in fp32.
    const FlowMatchScheduler s(5.0);
    const auto ts = s.warp({1000, 750, 500, 250});
    std::vector<float> fresh(2 * kFrame);
    const auto want = first_chunk_by_hand(m, o, ctx, noise, [&](size_t i, const auto&, const auto& x0, auto& x) {
        noise.step(static_cast<int64_t>(i), 0, fresh.data());
        noise.step(static_cast<int64_t>(i), 1, fresh.data() + kFrame);
        const float next = s.sigma_at(ts[i + 1]), keep = 1.0f - next;
        for (size_t j = 0; j < x.size(); ++j) x[j] = keep * x0[j] + next * fresh[j];
    });
    EXPECT_EQ(got, want);
}

// rollout.sampler EULER: the flow-matching ODE by hand, x += (sigma(t_{i+1}) - sigma(t_i)) * flow in double, and the
// last step's x0 emitted.
TEST(Rollout, EulerSamplerFollowsTheOdeStepByStep) {
    const WanModel m = tiny_model();
    const HostTensor ctx = tiny_context(1);
    const SeededNoise noise(3, kC, kH, kW);
    RolloutOptions o = options(2, -1, 0);
    o.step_rule = StepRule::kEuler;
    const auto got = roll(m, o, 2, noise, {{0, ctx.view}});

    const FlowMatchScheduler s(5.0);
    const auto ts = s.warp({1000, 750, 500, 250});
    const auto want = first_chunk_by_hand(m, o, ctx, noise, [&](size_t i, const auto& flow, const auto&, auto& x) {
        const double d = static_cast<double>(s.sigma_at(ts[i + 1])) - static_cast<double>(s.sigma_at(ts[i]));
        for (size_t j = 0; j < x.size(); ++j) {
            x[j] = static_cast<float>(static_cast<double>(x[j]) + d * static_cast<double>(flow[j]));
        }
    });
    EXPECT_EQ(got, want);
    // And the sampler took effect: Self-Forcing's re-noising gives other latents from the same noise.
    o.step_rule = StepRule::kRenoise;
    EXPECT_NE(roll(m, o, 2, noise, {{0, ctx.view}}), got);
}

// The Euler sampler draws no step noise: only the initial noise of each frame.
TEST(Rollout, EulerSamplerDrawsNoStepNoise) {
    struct Counting final : NoiseSource {
        explicit Counting(const NoiseSource& inner) : inner(inner) {}
        void initial(int64_t frame, float* out) const override { inner.initial(frame, out); }
        void step(int64_t s, int64_t frame, float* out) const override {
            ++steps;
            inner.step(s, frame, out);
        }
        const NoiseSource& inner;
        mutable int steps = 0;
    };
    const WanModel m = tiny_model();
    const HostTensor ctx = tiny_context(1);
    const SeededNoise seeded(5, kC, kH, kW);
    RolloutOptions o = options(2, 4, 0);
    const Counting renoise(seeded);
    roll(m, o, 6, renoise, {{0, ctx.view}});
    EXPECT_EQ(renoise.steps, 6 * 3);  // every frame, after each of the first 3 of 4 steps
    o.step_rule = StepRule::kEuler;
    const Counting euler(seeded);
    roll(m, o, 6, euler, {{0, ctx.view}});
    EXPECT_EQ(euler.steps, 0);
}

TEST(Rollout, DeterministicResumableAndReplayable) {
    const WanModel m = tiny_model();
    const HostTensor ctx = tiny_context(2);
    const SeededNoise noise(11, kC, kH, kW);
    const RolloutOptions o = options(2, 5, 1);  // evicts from the third chunk on
    const int64_t T = 10;
    std::vector<int64_t> starts;
    const auto a = roll(m, o, T, noise, {{0, ctx.view}}, &starts);
    EXPECT_EQ(starts, (std::vector<int64_t>{0, 2, 4, 6, 8}));
    EXPECT_EQ(roll(m, o, T, noise, {{0, ctx.view}}), a);
    for (float v : a) ASSERT_TRUE(std::isfinite(v));

    // Resume after 3 chunks: the clean passes rebuild the cache; the rest is bit-identical.
    std::vector<int64_t> resumed_starts;
    const auto b = roll(m, o, T, noise, {{0, ctx.view}}, &resumed_starts, 3, a.data());
    EXPECT_EQ(resumed_starts, (std::vector<int64_t>{6, 8}));
    EXPECT_TRUE(std::equal(a.begin() + 6 * kFrame, a.end(), b.begin() + 6 * kFrame));

    // Replaying the generator's noise from tensors gives the same run.
    const int64_t S = 4;
    HostTensor init(DType::kF32, Shape{T, kC, kH, kW});
    HostTensor steps(DType::kF32, Shape{S - 1, T, kC, kH, kW});
    for (int64_t f = 0; f < T; ++f) {
        noise.initial(f, init.as<float>() + f * kFrame);
        for (int64_t s = 0; s < S - 1; ++s) noise.step(s, f, steps.as<float>() + (s * T + f) * kFrame);
    }
    const ReplayNoise replay(init.view, steps.view, T, S, kC, kH, kW);
    EXPECT_EQ(roll(m, o, T, replay, {{0, ctx.view}}), a);

    // Another seed, another video.
    EXPECT_NE(roll(m, o, T, SeededNoise(12, kC, kH, kW), {{0, ctx.view}}), a);
}

// Resume replays the clean passes of the saved chunks: every policy's retained and persistent blocks, chunk-aware
// budgets and anchors come out as in the uninterrupted run, so the rest is bit-identical.
TEST(Rollout, ResumeIsBitIdenticalForEveryPolicy) {
    const WanModel m = tiny_model();
    const HostTensor ctx = tiny_context(4);
    const SeededNoise noise(21, kC, kH, kW);
    const int64_t T = 15, F = 3;  // 5 chunks; resume after 3
    const int64_t layers = m.num_layers(), heads = m.num_heads();
    std::vector<RolloutOptions> cases;
    RolloutOptions sf = options(F, 9, 0);
    sf.policy.kind = BlockPolicyKind::kSparseForcing;
    sf.policy.persistent_blocks = 2;
    sf.policy.sf_topk_blocks = 3;
    cases.push_back(sf);
    RolloutOptions lf = options(F, 9, 0);
    lf.policy.kind = BlockPolicyKind::kLightForcing;
    lf.policy.near_frames = 1;
    lf.policy.topk_frames = 2;
    lf.policy.lf_topk_blocks = 2;
    cases.push_back(lf);
    RolloutOptions lvsa = options(F, 9, 1);
    lvsa.policy.kind = BlockPolicyKind::kLvsa;
    lvsa.policy.lvsa_window_frames = 1;
    lvsa.policy.anchor_interval = 2;
    cases.push_back(lvsa);
    RolloutOptions fkv = options(F, -1, 1);
    fkv.policy.kind = BlockPolicyKind::kForcingKv;
    fkv.policy.recent_frames = 1;
    fkv.policy.dynamic_keep_ratio = 0.5;
    for (int64_t i = 0; i < layers * heads; ++i) fkv.policy.static_head.push_back(static_cast<uint8_t>(i % 2));
    cases.push_back(fkv);
    for (const RolloutOptions& o : cases) {
        const auto a = roll(m, o, T, noise, {{0, ctx.view}});
        const auto b = roll(m, o, T, noise, {{0, ctx.view}}, nullptr, 3, a.data());
        EXPECT_TRUE(std::equal(a.begin() + 3 * F * kFrame, a.end(), b.begin() + 3 * F * kFrame))
            << block_policy_name(o.policy.kind);
        // The policy did something: a dense run differs.
        RolloutOptions dense = o;
        dense.policy = BlockPolicyConfig{};
        EXPECT_NE(roll(m, dense, T, noise, {{0, ctx.view}}), a) << block_policy_name(o.policy.kind);
    }
}

// A second run of the same rollout (the next video of a --prompt-file run, a resume) starts from an empty cache:
// no persistent (Sparse Forcing) or retained (Forcing-KV) block of the first run is selected, attended or counted
// in the K/V held. It equals a fresh rollout running the second video alone, bit for bit.
TEST(Rollout, ASecondRunForgetsTheFirstRunsRetainedBlocks) {
    const WanModel m = tiny_model();
    const HostTensor ctx_a = tiny_context(4), ctx_b = tiny_context(5);
    const SeededNoise noise_a(21, kC, kH, kW), noise_b(33, kC, kH, kW);
    const int64_t T = 15, F = 3;
    const int64_t layers = m.num_layers(), heads = m.num_heads();
    RolloutOptions sf = options(F, 9, 0);
    sf.policy.kind = BlockPolicyKind::kSparseForcing;
    sf.policy.persistent_blocks = 2;
    sf.policy.sf_topk_blocks = 3;
    RolloutOptions fkv = options(F, -1, 1);
    fkv.policy.kind = BlockPolicyKind::kForcingKv;
    fkv.policy.recent_frames = 1;
    fkv.policy.dynamic_keep_ratio = 0.5;
    for (int64_t i = 0; i < layers * heads; ++i) fkv.policy.static_head.push_back(static_cast<uint8_t>(i % 2));
    const RolloutShape shape{T, kH, kW};
    const auto retained = [&](const Rollout& r) {
        std::vector<std::vector<std::pair<int64_t, int64_t>>> out;
        for (int64_t l = 0; l < layers; ++l)
            for (int64_t h = 0; h < heads; ++h) out.push_back(r.step()->retained(l, h));
        return out;
    };
    for (const RolloutOptions& o : {sf, fkv}) {
        const char* name = block_policy_name(o.policy.kind);
        HostTensor latents(DType::kF32, Shape{T, kC, kH, kW});
        const auto video = [&]() { return std::vector<float>(latents.as<float>(), latents.as<float>() + T * kFrame); };
        Rollout fresh(m, o, shape);
        fresh.run({{0, ctx_b.view}}, noise_b, collect_latents(latents));
        const auto want = video();
        const auto want_retained = retained(fresh);
        const int64_t want_held = fresh.step()->stats().kv_bytes_held;

        Rollout reused(m, o, shape);
        reused.run({{0, ctx_a.view}}, noise_a, collect_latents(latents));
        const auto first_retained = retained(reused);
        // The first run retained blocks (else this test proves nothing) and made another video.
        size_t kept = 0;
        for (const auto& r : first_retained) kept += r.size();
        ASSERT_GT(kept, 0u) << name;
        EXPECT_NE(video(), want) << name;
        reused.run({{0, ctx_b.view}}, noise_b, collect_latents(latents));
        EXPECT_EQ(video(), want) << name;
        EXPECT_EQ(retained(reused), want_retained) << name;
        EXPECT_EQ(reused.step()->stats().kv_bytes_held, want_held) << name;
        EXPECT_EQ(reused.step()->kv_bytes(), fresh.step()->kv_bytes()) << name;
    }
}

TEST(Rollout, WindowBoundsTheCacheForLongRuns) {
    const WanModel m = tiny_model();
    const HostTensor ctx = tiny_context(3);
    RolloutOptions o = options(3, 9, 3);  // LongLive-like: window 9 (3 sink + 2 chunks), chunks of 3
    Rollout r(m, o, RolloutShape{60, kH, kW});
    const size_t bytes = r.cache().bytes();
    EXPECT_EQ(Rollout::kv_cache_bytes(m, o, RolloutShape{60, kH, kW}), bytes);
    // Without a window the cache holds the whole run.
    EXPECT_EQ(Rollout::kv_cache_bytes(m, options(3, -1, 0), RolloutShape{60, kH, kW}), bytes / 9 * 60);
    int64_t chunks = 0;
    r.run({{0, ctx.view}}, SeededNoise(1, kC, kH, kW), [&](const RolloutChunk&) { ++chunks; });
    EXPECT_EQ(chunks, 20);
    EXPECT_EQ(r.cache().bytes(), bytes);
    EXPECT_EQ(bytes, static_cast<size_t>(2 * 2 * 9 * 6 * 32) * sizeof(float));  // K+V, 2 layers, 9 frames
    EXPECT_EQ(r.cache().slot_frames(), (std::vector<int64_t>{0, 1, 2, 54, 55, 56, 57, 58, 59}));
    // A chunk that cannot fit next to the sink is refused up front.
    EXPECT_THROW(Rollout(m, options(3, 5, 3), RolloutShape{9, kH, kW}), InputError);
}

TEST(Rollout, PromptSwitchChangesOnlyLaterChunks) {
    const WanModel m = tiny_model();
    const HostTensor first = tiny_context(4), second = tiny_context(5);
    const SeededNoise noise(2, kC, kH, kW);
    for (const RopePositions rope : {RopePositions::kAbsolute, RopePositions::kWindowRelative}) {
        RolloutOptions o = options(2, 6, 2);
        o.rope = rope;
        const int64_t T = 12;
        const auto one = roll(m, o, T, noise, {{0, first.view}});
        // The switch at frame 5 takes effect at the chunk starting at 6.
        const auto two = roll(m, o, T, noise, {{0, first.view}, {5, second.view}});
        EXPECT_TRUE(std::equal(one.begin(), one.begin() + 6 * kFrame, two.begin()));
        EXPECT_GT(test::rel_error(std::vector<float>(two.begin() + 6 * kFrame, two.end()),
                                  std::vector<float>(one.begin() + 6 * kFrame, one.end()), 6 * kFrame),
                  1e-3);
        // Resuming across a switch replays the re-cache too.
        const auto resumed = roll(m, o, T, noise, {{0, first.view}, {5, second.view}}, nullptr, 4, two.data());
        EXPECT_TRUE(std::equal(two.begin() + 8 * kFrame, two.end(), resumed.begin() + 8 * kFrame));
    }
    EXPECT_THROW(roll(m, options(2, -1, 0), 4, noise, {{1, first.view}}), InputError);
}

}  // namespace
}  // namespace lr
