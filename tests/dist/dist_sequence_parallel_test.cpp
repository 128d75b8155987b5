// Ulysses x spatial on the CPU path (DESIGN.md section 7): a sequence-parallel group of U x S ranks, rank (u, s)
// with u = rank % U and s = rank / U (the mesh's order), runs the linear layers on the Ulysses shard u of spatial
// rank s's blocks, attends with the heads of u over the window's blocks fetched from its S group, and keeps its
// heads of its blocks in its KV cache. Rollouts (window + sink, window-relative with a prompt switch, no window)
// equal the 1-rank rollout computed in the same process; the KV cache of a rank is its share; one forward moves
// exactly the bytes the dense block table and the all-to-alls require, computed here from the layout alone.
// Usage under mpirun: dist_sequence_parallel_test U (S = world size / U); exit 0 when every rank passed.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

// 2 x 5 patches: 10 tokens per frame in blocks of 4, 4 and 2, so that the spatial shares (6 and 4 tokens with
// S = 2) and the Ulysses shards of them (9 and 6 of a 3-frame chunk's 18 and 12 with U = 2) are uneven.
constexpr int64_t kC = 16, kH = 4, kW = 10;
constexpr int64_t kTokens = 10, kBlock = 4;

// 12 heads of 16: U in 1, 2, 3, 4, 6 divides them.
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

// Tokens of a frame that spatial rank r of s owns, counted here independently of the model.
int64_t owned_tokens(int64_t r, int64_t s) {
    int64_t n = 0;
    for (int64_t b = 0; b * kBlock < kTokens; ++b)
        if (b % s == r) n += std::min(kBlock, kTokens - b * kBlock);
    return n;
}

uint64_t u64(int64_t v) { return static_cast<uint64_t>(v); }

int run(int ulysses) {
    auto world = MpiCommunicator::world();
    const int n = world->size();
    const int me = world->rank();
    Errors e(me);
    if (ulysses < 1 || n % ulysses != 0) {
        if (me == 0) std::fprintf(stderr, "dist_sequence_parallel_test: U = %d does not divide %d ranks\n", ulysses, n);
        return 1;
    }
    const int U = ulysses, S = n / U;
    const int u = me % U, s = me / U;
    const std::unique_ptr<Communicator> ucomm = world->split(s, u);  // same spatial index: the heads' all-to-all
    const std::unique_ptr<Communicator> scomm = world->split(u, s);  // same Ulysses index: the KV-block exchange
    const AttentionShard shard{u, U, ucomm.get()};
    const SpatialShard spatial{s, S, scomm.get(), kBlock};
    const WanModelConfig cfg = config();
    const WanModel model = WanModel::from_weights(make_default_wan_weights(cfg.dims, 7), cfg);
    const HostTensor ctx0 = test::random_context(1, 5, cfg.dims.text_dim);
    const HostTensor ctx1 = test::random_context(2, 8, cfg.dims.text_dim);
    const std::string tag = "U" + std::to_string(U) + " x S" + std::to_string(S);

    std::vector<test::RolloutCase> cases = test::standard_rollout_cases();
    cases[2].opts.denoising_steps = {1000, 500};  // 4 ranks on 2 cores: the longest case, shortened
    for (const test::RolloutCase& c : cases) {
        std::vector<PromptSegment> prompts{{0, ctx0.view}};
        if (c.switch_prompt) prompts.push_back({6, ctx1.view});
        std::vector<float> ref(static_cast<size_t>(c.frames * kC * kH * kW));
        size_t ref_bytes = 0;
        if (me == 0) ref = test::run_rollout(model, c.opts, c.frames, kH, kW, prompts, &ref_bytes);
        world->broadcast(ref.data(), ref.size() * sizeof(float), 0);
        world->broadcast(&ref_bytes, sizeof(ref_bytes), 0);

        RolloutOptions so = c.opts;
        so.shard = shard;
        so.spatial = spatial;
        size_t bytes = 0;
        const std::vector<float> got = test::run_rollout(model, so, c.frames, kH, kW, prompts, &bytes);
        const double err = test::rel_error(got, ref, ref.size());
        bool finite = true;
        for (float x : got) finite = finite && std::isfinite(x);
        e.expect(finite, c.name + ": non-finite latents");
        e.expect(err < 1e-5, c.name + ": relative error " + std::to_string(err) + " against 1 rank");
        if (n == 1) e.expect(got == ref, c.name + ": the 1 x 1 group differs bitwise from the plain path");
        // Its heads (1/U of the width) of its blocks.
        e.expect(bytes * kTokens * u64(U) == ref_bytes * u64(owned_tokens(s, S)),
                 c.name + ": per-rank KV cache " + std::to_string(bytes) + " bytes is not its share of " +
                     std::to_string(ref_bytes));
        e.expect(Rollout::kv_cache_bytes(model, so, RolloutShape{c.frames, kH, kW}) == bytes,
                 c.name + ": kv_cache_bytes does not report the per-rank cache");
        std::vector<float> first(got);
        world->broadcast(first.data(), first.size() * sizeof(float), 0);
        e.expect(first == got, c.name + ": ranks disagree on the latents");
        double worst = err;
        std::vector<double> errs(static_cast<size_t>(n));
        world->all_gather(&err, errs.data(), sizeof(double));
        for (double x : errs) worst = std::max(worst, x);
        if (me == 0)
            std::printf(
                "dist_sequence_parallel_test: %s, %s: max relative error %.3g, KV cache %zu of %zu bytes on "
                "rank 0\n",
                tag.c_str(), c.name.c_str(), worst, bytes, ref_bytes);
    }

    // Forwards by hand (window 6, sink 3, chunks of 3): each one's traffic per rank is what the layout requires.
    {
        const WanPrompt prompt = model.encode_prompt(ctx0.view);
        const int64_t F = 3, window = 6, sink = 3, frames = 12;
        const int64_t dim = cfg.dims.dim, layers = cfg.dims.num_layers, w = dim / U, f32 = sizeof(float);
        const int64_t head_out = 2 * 2 * kC;  // patch 1 x 2 x 2, out_dim channels
        KvCache ref_cache(model.kv_cache_config(kH, kW, window, sink, window));
        KvCache cache(model.kv_cache_config(kH, kW, window, sink, window, U, spatial));
        int64_t max_owned = 0;
        for (int64_t r = 0; r < S; ++r) max_owned = std::max(max_owned, owned_tokens(r, S));
        const int64_t mine = F * owned_tokens(s, S);  // spatial s's tokens of the chunk
        const int64_t shard_rows = (mine + U - 1) / U;
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
            a.shard = shard;
            a.spatial = spatial;
            ucomm->reset_byte_counters();
            scomm->reset_byte_counters();
            model.forward(a, got.data());
            worst = std::max(worst, test::rel_error(got, ref, ref.size()));
            // KV blocks: its blocks of every key frame, K and V of its heads, to each other rank of its S group.
            const uint64_t kv = u64((S - 1) * key_frames * owned_tokens(s, S) * 2 * w * f32 * layers);
            // All-to-alls per layer: q, k, v out and the attention output back, each a shard of ceil(mine / U)
            // rows of w floats to every other rank of its U group.
            const uint64_t a2a = u64((U - 1) * 4 * shard_rows * w * f32 * layers);
            // The head's rows: the Ulysses shard to the U group, then the spatial share (padded to the largest)
            // to the S group.
            const uint64_t gather_u = u64((U - 1) * shard_rows * head_out * f32);
            const uint64_t gather_s = u64((S - 1) * F * max_owned * head_out * f32);
            const uint64_t got_kv = scomm->bytes_sent(CommOp::kSendRecv);
            const uint64_t got_a2a = ucomm->bytes_sent(CommOp::kAllToAll);
            const uint64_t got_gu = ucomm->bytes_sent(CommOp::kAllGather);
            const uint64_t got_gs = scomm->bytes_sent(CommOp::kAllGather);
            const std::string at = "forward at " + std::to_string(start) + ": ";
            e.expect(got_kv == kv,
                     at + "KV blocks sent " + std::to_string(got_kv) + ", expected " + std::to_string(kv));
            e.expect(got_a2a == a2a,
                     at + "all-to-all sent " + std::to_string(got_a2a) + ", expected " + std::to_string(a2a));
            e.expect(got_gu == gather_u && got_gs == gather_s,
                     at + "head all-gathers sent " + std::to_string(got_gu) + " + " + std::to_string(got_gs) +
                         ", expected " + std::to_string(gather_u) + " + " + std::to_string(gather_s));
            e.expect(ucomm->bytes_sent_total() == got_a2a + got_gu && scomm->bytes_sent_total() == got_kv + got_gs,
                     at + "other traffic than the all-to-alls, the KV exchange and the head gathers");
            // Over all ranks, the KV exchange is exactly what the queries need: every rank's heads of the remote
            // blocks of every key frame.
            int64_t need[2] = {static_cast<int64_t>(key_frames * (kTokens - owned_tokens(s, S)) * 2 * w * f32 * layers),
                               static_cast<int64_t>(got_kv)};
            world->all_reduce_sum(need, 2);
            e.expect(need[0] == need[1], at + "all ranks sent " + std::to_string(need[1]) +
                                             " bytes of KV blocks, the queries need " + std::to_string(need[0]));
            if (me == 0)
                std::printf("dist_sequence_parallel_test: %s, forward at frame %" PRId64 ": %" PRId64
                            " key frames; rank 0 sent KV %" PRIu64 ", all-to-all %" PRIu64 ", gathers %" PRIu64
                            " + %" PRIu64 " bytes; all ranks KV %" PRId64 " (needed %" PRId64 ")\n",
                            tag.c_str(), start, key_frames, got_kv, got_a2a, got_gu, got_gs, need[1], need[0]);
        }
        e.expect(worst < 1e-5, "forwards by hand: relative error " + std::to_string(worst));
    }

    // Without a cache (block-causal and bidirectional, 1 and 3 frames): the chunk's own K/V are exchanged.
    {
        const WanPrompt prompt = model.encode_prompt(ctx0.view);
        for (const int64_t frames : {int64_t{1}, int64_t{3}}) {
            for (const int64_t block : {int64_t{0}, int64_t{1}}) {
                const int64_t numel = frames * kC * kH * kW;
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
                a.shard = shard;
                a.spatial = spatial;
                model.forward(a, got.data());
                const double err = test::rel_error(got, ref, ref.size());
                e.expect(err < 1e-5, "forward without cache, " + std::to_string(frames) + " frames, block " +
                                         std::to_string(block) + ": relative error " + std::to_string(err));
            }
        }
    }

    const int64_t total = disttest::agree(*world, e);
    if (me == 0)
        std::printf("dist_sequence_parallel_test: %s, %" PRId64 " errors: %s\n", tag.c_str(), total,
                    total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    lr::MpiSession mpi;
    const int ulysses = argc > 1 ? std::atoi(argv[1]) : 1;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(ulysses); });
}
