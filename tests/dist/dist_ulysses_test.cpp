// Ulysses head parallelism on the CPU path (DESIGN.md section 7): a rollout on N ranks, each holding the KV
// cache of 12 / N heads, equals the 1-rank rollout computed in the same process. Run under mpirun with N
// dividing 12; exit 0 when every rank passed, 1 otherwise.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
#include "dist_test_harness.h"
#include "rollout_test_util.h"
#include "runtime/rollout/rollout.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

using disttest::Errors;

constexpr int64_t kC = 16, kH = 4, kW = 6;  // 2 x 3 patches: 6 tokens per frame, 18 per 3-frame chunk

// 12 heads of 16, so 1, 2, 3, 4, 6 and 12 ranks divide the heads.
WanModelConfig config() {
    WanModelConfig c;
    c.dims.dim = 192;
    c.dims.ffn_dim = 64;
    c.dims.num_heads = 12;
    c.dims.num_layers = 2;
    c.dims.text_dim = 32;
    c.dims.freq_dim = 16;
    c.text_len = 8;
    return c;
}

HostTensor context(uint32_t seed, int64_t len) { return test::random_context(seed, len, config().dims.text_dim); }

std::vector<float> roll(const WanModel& m, const RolloutOptions& o, int64_t frames,
                        const std::vector<PromptSegment>& prompts, size_t* cache_bytes) {
    return test::run_rollout(m, o, frames, kH, kW, prompts, cache_bytes);
}

using Case = test::RolloutCase;

int run(const MpiSession& mpi) {
    auto world = MpiCommunicator::world();
    const int n = world->size();
    const int me = world->rank();
    Errors e(me);
    const WanModelConfig cfg = config();
    const WanModel model = WanModel::from_weights(make_default_wan_weights(cfg.dims, 7), cfg);
    const HostTensor ctx0 = context(1, 5), ctx1 = context(2, 8);

    const std::vector<Case> cases = test::standard_rollout_cases();
    for (const Case& c : cases) {
        std::vector<PromptSegment> prompts{{0, ctx0.view}};
        if (c.switch_prompt) prompts.push_back({6, ctx1.view});
        // The reference: one rank, on rank 0, broadcast.
        std::vector<float> ref(static_cast<size_t>(c.frames * kC * kH * kW));
        size_t ref_bytes = 0;
        if (me == 0) ref = roll(model, c.opts, c.frames, prompts, &ref_bytes);
        world->broadcast(ref.data(), ref.size() * sizeof(float), 0);
        world->broadcast(&ref_bytes, sizeof(ref_bytes), 0);

        RolloutOptions so = c.opts;
        so.shard = AttentionShard{me, n, world.get()};
        size_t bytes = 0;
        const std::vector<float> got = roll(model, so, c.frames, prompts, &bytes);
        const double err = test::rel_error(got, ref, ref.size());
        bool finite = true;
        for (float x : got) finite = finite && std::isfinite(x);
        e.expect(finite, c.name + ": non-finite latents");
        e.expect(err < 1e-5, c.name + ": relative error " + std::to_string(err) + " against 1 rank");
        if (n == 1) e.expect(got == ref, c.name + ": 1-rank shard differs bitwise from the plain path");
        e.expect(bytes * n == ref_bytes, c.name + ": per-rank KV cache " + std::to_string(bytes) + " bytes x " +
                                             std::to_string(n) + " != 1-rank " + std::to_string(ref_bytes));
        e.expect(Rollout::kv_cache_bytes(model, so, RolloutShape{c.frames, kH, kW}) == bytes,
                 c.name + ": kv_cache_bytes does not report the per-rank cache");
        // Every rank got every chunk: the ranks' outputs are identical.
        std::vector<float> first(got);
        world->broadcast(first.data(), first.size() * sizeof(float), 0);
        e.expect(first == got, c.name + ": ranks disagree on the latents");
        double worst = err;
        std::vector<double> errs(static_cast<size_t>(n));
        world->all_gather(&err, errs.data(), sizeof(double));
        for (double x : errs) worst = std::max(worst, x);
        if (me == 0)
            std::printf(
                "dist_ulysses_test: %d ranks, %s: max relative error %.3g, KV cache %zu of %zu bytes per rank\n", n,
                c.name.c_str(), worst, bytes, ref_bytes);
    }

    // Single forwards without a cache (the full-sequence path), block-causal and bidirectional, on a 2 x 6
    // latent (3 tokens per frame): with 1 frame and 4 ranks the shards are 1, 1, 1 and 0 tokens.
    {
        const WanPrompt prompt = model.encode_prompt(ctx0.view);
        for (const int64_t frames : {int64_t{1}, int64_t{3}}) {
            for (const int64_t block : {int64_t{0}, int64_t{1}}) {
                const int64_t h = 2, w = 6, numel = frames * kC * h * w;
                const auto x = test::gaussian(numel, 23);
                const std::vector<float> t(static_cast<size_t>(frames), 640.0f);
                WanForwardArgs a;
                a.x = x.data();
                a.t = t.data();
                a.frames = frames;
                a.height = h;
                a.width = w;
                a.start_frame = 4;
                a.prompt = &prompt;
                a.causal_block_frames = block;
                std::vector<float> ref(static_cast<size_t>(numel)), got(ref.size());
                model.forward(a, ref.data());
                a.shard = AttentionShard{me, n, world.get()};
                model.forward(a, got.data());
                const double err = test::rel_error(got, ref, ref.size());
                e.expect(err < 1e-5, "forward without cache, " + std::to_string(frames) + " frames, block " +
                                         std::to_string(block) + ": relative error " + std::to_string(err));
            }
        }
    }

    const int64_t total = disttest::agree(*world, e);
    if (me == 0)
        std::printf("dist_ulysses_test: %d ranks, %" PRId64 " errors: %s\n", n, total, total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi); });
}
