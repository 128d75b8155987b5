// Shared by the N-rank == 1-rank rollout tests (Ulysses, spatial): a random prompt and a seeded rollout.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/rollout/rollout.h"
#include "tests/unit/model/model_test_util.h"

namespace lr::test {

// A prompt embedding [len, text_dim] of Gaussian numbers.
inline HostTensor random_context(uint32_t seed, int64_t len, int64_t text_dim) {
    HostTensor t(DType::kF32, Shape{len, text_dim});
    const auto v = gaussian(t.view.numel(), seed);
    std::copy(v.begin(), v.end(), t.as<float>());
    return t;
}

// The latents [frames, in_dim, h, w] of a rollout with seeded noise; `cache_bytes` gets the KV cache size.
inline std::vector<float> run_rollout(const WanModel& m, const RolloutOptions& o, int64_t frames, int64_t h, int64_t w,
                                      const std::vector<PromptSegment>& prompts, size_t* cache_bytes) {
    const int64_t c = m.config().dims.in_dim;
    const SeededNoise noise(17, c, h, w);
    Rollout r(m, o, RolloutShape{frames, h, w});
    if (cache_bytes) *cache_bytes = r.cache().bytes();
    HostTensor latents(DType::kF32, Shape{frames, c, h, w});
    std::memset(latents.as<float>(), 0, static_cast<size_t>(latents.view.nbytes()));
    r.run(prompts, noise, collect_latents(latents));
    return {latents.as<float>(), latents.as<float>() + latents.view.numel()};
}

struct RolloutCase {
    std::string name;
    RolloutOptions opts;
    int64_t frames = 0;
    bool switch_prompt = false;
};

// The rollouts every N-rank == 1-rank test runs (12-head tiny model, 3-frame chunks unless said):
//   Self-Forcing: absolute RoPE, window 6 with a 3-frame sink, 4 chunks (evicting from chunk 3 on);
//   LongLive: window-relative RoPE and a prompt switch at frame 6 (re-cache with the sink protected);
//   no window: the cache holds the whole run, 2-frame chunks (token shards of uneven sizes).
inline std::vector<RolloutCase> standard_rollout_cases() {
    RolloutCase c{"absolute window 6 sink 3", {}, 12, false};
    c.opts.frames_per_chunk = 3;
    c.opts.local_attn_size = 6;
    c.opts.sink_size = 3;
    RolloutCase l{"window-relative, prompt switch", {}, 12, true};
    l.opts.frames_per_chunk = 3;
    l.opts.local_attn_size = 6;
    l.opts.sink_size = 3;
    l.opts.rope = RopePositions::kWindowRelative;
    l.opts.denoising_steps = {1000, 500};
    RolloutCase w{"no window, 2-frame chunks", {}, 6, false};
    w.opts.frames_per_chunk = 2;
    return {c, l, w};
}

}  // namespace lr::test
