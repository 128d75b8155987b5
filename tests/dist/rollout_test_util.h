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

}  // namespace lr::test
