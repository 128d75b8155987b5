// Spatial parallelism on the CPU path (DESIGN.md section 7): each of S ranks owns the blocks b % S == rank of
// every latent frame (32 tokens per frame in 4 blocks of 8), for its tokens and its KV cache, and gathers the
// other ranks' blocks of the window with one grouped send_recv per layer. A rollout with a window and a sink
// on S ranks equals the 1-rank rollout computed in the same process, and one forward moves exactly the bytes
// the dense block table requires. Run under mpirun with S in 1..4; exit 0 when every rank passed.
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

constexpr int64_t kC = 16, kH = 8, kW = 16;  // patch 2x2: 4 x 8 = 32 tokens per frame
constexpr int64_t kTokens = 32, kBlock = 8;  // 4 blocks per frame

WanModelConfig config() {
    WanModelConfig c;
    c.dims.dim = 64;
    c.dims.ffn_dim = 96;
    c.dims.num_heads = 2;
    c.dims.num_layers = 2;
    c.dims.text_dim = 32;
    c.dims.freq_dim = 16;
    c.text_len = 8;
    return c;
}

HostTensor context(uint32_t seed, int64_t len) { return test::random_context(seed, len, config().dims.text_dim); }

// Tokens of a frame that rank r of s owns, counted here independently of the model.
int64_t owned_tokens(int r, int s) {
    int64_t n = 0;
    for (int64_t b = 0; b * kBlock < kTokens; ++b)
        if (b % s == r) n += std::min(kBlock, kTokens - b * kBlock);
    return n;
}

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
    const SpatialShard spatial{me, n, world.get(), kBlock};
    const int64_t dim = cfg.dims.dim, layers = cfg.dims.num_layers;

    // Rollouts against the 1-rank rollout.
    const std::vector<Case> cases = test::standard_rollout_cases();
    for (const Case& c : cases) {
        std::vector<PromptSegment> prompts{{0, ctx0.view}};
        if (c.switch_prompt) prompts.push_back({6, ctx1.view});
        std::vector<float> ref(static_cast<size_t>(c.frames * kC * kH * kW));
        size_t ref_bytes = 0;
        if (me == 0) ref = roll(model, c.opts, c.frames, prompts, &ref_bytes);
        world->broadcast(ref.data(), ref.size() * sizeof(float), 0);
        world->broadcast(&ref_bytes, sizeof(ref_bytes), 0);

        RolloutOptions so = c.opts;
        so.spatial = spatial;
        size_t bytes = 0;
        const std::vector<float> got = roll(model, so, c.frames, prompts, &bytes);
        const double err = test::rel_error(got, ref, ref.size());
        bool finite = true;
        for (float x : got) finite = finite && std::isfinite(x);
        e.expect(finite, c.name + ": non-finite latents");
        e.expect(err < 1e-5, c.name + ": relative error " + std::to_string(err) + " against 1 rank");
        if (n == 1) e.expect(got == ref, c.name + ": 1-rank spatial shard differs bitwise from the plain path");
        // The rank's cache holds its blocks only.
        e.expect(bytes * kTokens == ref_bytes * static_cast<size_t>(owned_tokens(me, n)),
                 c.name + ": per-rank KV cache " + std::to_string(bytes) + " bytes is not its share of " +
                     std::to_string(ref_bytes));
        std::vector<float> first(got);
        world->broadcast(first.data(), first.size() * sizeof(float), 0);
        e.expect(first == got, c.name + ": ranks disagree on the latents");
        std::vector<double> errs(static_cast<size_t>(n));
        world->all_gather(&err, errs.data(), sizeof(double));
        double worst = 0;
        for (double x : errs) worst = std::max(worst, x);
        if (me == 0)
            std::printf(
                "dist_spatial_test: %d ranks, %s: max relative error %.3g, KV cache %zu of %zu bytes on rank 0\n", n,
                c.name.c_str(), worst, bytes, ref_bytes);
    }

    // Forwards by hand (window 6, sink 3, chunks of 3 from frame 0): the last one evicts; its exchange volume
    // is what the dense table requires.
    {
        const WanPrompt prompt = model.encode_prompt(ctx0.view);
        const int64_t F = 3, window = 6, sink = 3, frames = 15;
        KvCache ref_cache(model.kv_cache_config(kH, kW, window, sink, window));
        KvCache cache(model.kv_cache_config(kH, kW, window, sink, window, 1, spatial));
        double worst = 0;
        for (int64_t start = 0; start < frames; start += F) {
            const auto x = test::gaussian(F * kC * kH * kW, static_cast<uint32_t>(100 + start));
            const std::vector<float> t(static_cast<size_t>(F), 750.0f);
            WanForwardArgs a;
            a.x = x.data();
            a.t = t.data();
            a.frames = F;
            a.height = kH;
            a.width = kW;
            a.start_frame = start;
            a.prompt = &prompt;
            std::vector<float> ref(x.size()), got(x.size());
            a.cache = &ref_cache;
            model.forward(a, ref.data());
            const int64_t key_frames = cache.plan(start, F).slot_end;  // window frames + the chunk
            a.cache = &cache;
            a.spatial = spatial;
            world->reset_byte_counters();
            model.forward(a, got.data());
            const uint64_t sent = world->bytes_sent(CommOp::kSendRecv);
            worst = std::max(worst, test::rel_error(got, ref, ref.size()));
            // Per rank: its own blocks of every key frame, K and V, to each of the other ranks.
            const uint64_t unit = 2 * static_cast<uint64_t>(dim) * sizeof(float) * static_cast<uint64_t>(layers);
            const uint64_t expect_sent = static_cast<uint64_t>((n - 1) * key_frames * owned_tokens(me, n)) * unit;
            // Per rank: what its queries need from remote blocks (window frames' + chunk's remote tokens).
            int64_t need[2] = {static_cast<int64_t>(key_frames * (kTokens - owned_tokens(me, n)) * unit),
                               static_cast<int64_t>(sent)};
            world->all_reduce_sum(need, 2);
            e.expect(sent == expect_sent, "forward at " + std::to_string(start) + ": sent " + std::to_string(sent) +
                                              " bytes, the dense table needs " + std::to_string(expect_sent));
            e.expect(need[0] == need[1], "forward at " + std::to_string(start) + ": all ranks sent " +
                                             std::to_string(need[1]) + " bytes, the queries need " +
                                             std::to_string(need[0]));
            // Moving the whole cache of the run (no window: every frame so far) to every other rank.
            const int64_t everything = (start + F) * kTokens * static_cast<int64_t>(unit) * (n - 1);
            if (n > 1 && start + F > window)
                e.expect(need[1] < everything, "forward at " + std::to_string(start) + ": moved " +
                                                   std::to_string(need[1]) + " >= whole cache x (S-1) " +
                                                   std::to_string(everything));
            if (me == 0)
                std::printf("dist_spatial_test: %d ranks, forward at frame %" PRId64 ": %" PRId64
                            " key frames, sent %" PRIu64 " bytes (expected %" PRIu64 "), all ranks %" PRId64
                            " (needed %" PRId64 ", whole cache x (S-1) %" PRId64 ")\n",
                            n, start, key_frames, sent, expect_sent, need[1], need[0], everything);
        }
        e.expect(worst < 1e-5, "forwards by hand: relative error " + std::to_string(worst));
        if (me == 0) std::printf("dist_spatial_test: %d ranks, forwards by hand: relative error %.3g\n", n, worst);
    }

    // Without a cache (block-causal and bidirectional): the chunk's own K/V are exchanged.
    {
        const WanPrompt prompt = model.encode_prompt(ctx0.view);
        for (const int64_t block : {int64_t{0}, int64_t{1}}) {
            const int64_t frames = 3, numel = frames * kC * kH * kW;
            const auto x = test::gaussian(numel, 23);
            const std::vector<float> t(static_cast<size_t>(frames), 640.0f);
            WanForwardArgs a;
            a.x = x.data();
            a.t = t.data();
            a.frames = frames;
            a.height = kH;
            a.width = kW;
            a.start_frame = 4;
            a.prompt = &prompt;
            a.causal_block_frames = block;
            std::vector<float> ref(static_cast<size_t>(numel)), got(ref.size());
            model.forward(a, ref.data());
            a.spatial = spatial;
            model.forward(a, got.data());
            const double err = test::rel_error(got, ref, ref.size());
            e.expect(err < 1e-5, "forward without cache, block " + std::to_string(block) + ": relative error " +
                                     std::to_string(err));
        }
    }

    const int64_t total = disttest::agree(*world, e);
    if (me == 0)
        std::printf("dist_spatial_test: %d ranks, %" PRId64 " errors: %s\n", n, total, total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi); });
}
