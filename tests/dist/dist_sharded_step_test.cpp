// Sequence parallelism behind the attention seam (dist/sharded_attention_step.h) on the CPU path: a group of
// U x S ranks, rank (u, s) with u = rank % U and s = rank / U (the mesh's order), runs every attention policy
// (DENSE, SINK_WINDOW, SPARSE_FORCING, LIGHT_FORCING, FORCING_KV, LVSA) through rollouts with a window and sink,
// with window-relative RoPE and a prompt switch, and without a window; each must equal the 1-rank rollout
// computed in the same process, bit for bit. The bytes every rank sends per rollout are recomputed here from
// first principles: per forward and layer, the Ulysses all-to-alls of the worker's rows, the chunk's own K/V
// rows of the spatial rank's query blocks (and, for the policies that score blocks, one mean query per such block)
// to each spatial peer, and the head's all-gathers; no cached frame ever moves. One block too many fails the test.
// With G overlap groups the exchanges run on the step's own thread, group by group: the same latents, the same bytes.
// Usage under mpirun: dist_sharded_step_test U [G] (S = world size / U); exit 0 when every rank passed.
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

// 2 x 5 patches a frame (10 tokens); KV blocks of 4 tokens are tiles of 1 x 4 patches (4 tiles a frame: 4, 1, 4,
// 1 tokens); query blocks of 4 rows: a 3-frame chunk has 30 rows in 8 query blocks, the last one short, so that
// the spatial shares (4 + 4 blocks with S = 2, 3 + 3 + 2 with S = 3) and the Ulysses shards are uneven.
constexpr int64_t kC = 16, kH = 4, kW = 10;
constexpr int64_t kTokens = 10, kBlock = 4, kQBlock = 4;
constexpr int64_t kWideQBlock = 16;  // the 1-frame case: 10 rows in one query block, so other spatial ranks get none

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

uint64_t u64(int64_t v) { return static_cast<uint64_t>(v); }

struct Case {
    std::string name;
    RolloutOptions opts;
    int64_t frames = 0;
    bool switch_prompt = false;
};

// The policies that fit a rollout case (FORCING_KV sets its own window: only without one).
std::vector<BlockPolicyConfig> policies_for(const RolloutOptions& o, int64_t heads, int64_t layers) {
    std::vector<BlockPolicyConfig> out;
    BlockPolicyConfig dense;
    out.push_back(dense);
    if (o.local_attn_size == -1) {
        BlockPolicyConfig fkv;
        fkv.kind = BlockPolicyKind::kForcingKv;
        fkv.recent_frames = 1;
        fkv.dynamic_keep_ratio = 0.5;
        for (int64_t i = 0; i < layers * heads; ++i) fkv.static_head.push_back(static_cast<uint8_t>(i % 3 == 0));
        out.push_back(fkv);
        return out;
    }
    BlockPolicyConfig sink;
    sink.kind = BlockPolicyKind::kSinkWindow;
    out.push_back(sink);
    BlockPolicyConfig sf;
    sf.kind = BlockPolicyKind::kSparseForcing;
    sf.persistent_blocks = 3;
    sf.sf_topk_blocks = 6;
    out.push_back(sf);
    BlockPolicyConfig lf;
    lf.kind = BlockPolicyKind::kLightForcing;
    lf.near_frames = 1;
    lf.topk_frames = 1;
    lf.lf_topk_blocks = 6;
    out.push_back(lf);
    BlockPolicyConfig lvsa;
    lvsa.kind = BlockPolicyKind::kLvsa;
    lvsa.lvsa_window_frames = 1;
    lvsa.anchor_interval = 2;
    out.push_back(lvsa);
    return out;
}

std::vector<Case> cases() {
    Case a{"absolute, window 9 sink 3", {}, 12, false};
    a.opts.local_attn_size = 9;
    a.opts.sink_size = 3;
    Case b{"window-relative, prompt switch", {}, 12, true};
    b.opts.local_attn_size = 9;
    b.opts.sink_size = 3;
    b.opts.rope = RopePositions::kWindowRelative;
    b.opts.denoising_steps = {1000, 500};
    Case c{"no window, 2-frame chunks", {}, 6, false};
    c.opts.frames_per_chunk = 2;
    c.opts.denoising_steps = {1000, 500};
    Case d{"1-frame chunks, one query block (ranks without rows)", {}, 4, false};
    d.opts.frames_per_chunk = 1;
    d.opts.denoising_steps = {1000, 500};
    for (Case* x : {&a, &b, &c, &d}) {
        x->opts.block_size = kBlock;
        x->opts.q_block = kQBlock;
    }
    d.opts.q_block = kWideQBlock;
    return {a, b, c, d};
}

// Bytes rank (u, s) of a U x S group sends in one forward of `frames` frames, from the layout alone: query blocks
// of q_block rows of the forward's frames * kTokens rows, block b belonging to spatial rank b % S.
struct Expected {
    uint64_t all_to_all = 0, kv = 0, gather_u = 0, gather_s = 0;
};
// `means`: the policy scores blocks (SPARSE_FORCING, LIGHT_FORCING, FORCING_KV), so each query block's mean query
// travels too; DENSE, SINK_WINDOW and LVSA list every block they keep and exchange K/V only.
Expected expected_bytes(int64_t frames, int64_t u, int64_t U, int64_t s, int64_t S, int64_t dim, int64_t layers,
                        bool means, int64_t q_block) {
    const int64_t rows = frames * kTokens, blocks = (rows + q_block - 1) / q_block;
    std::vector<int64_t> rows_of(static_cast<size_t>(S), 0), blocks_of(static_cast<size_t>(S), 0);
    for (int64_t b = 0; b < blocks; ++b) {
        rows_of[static_cast<size_t>(b % S)] += std::min(q_block, rows - b * q_block);
        ++blocks_of[static_cast<size_t>(b % S)];
    }
    const int64_t mine = rows_of[static_cast<size_t>(s)], shard = (mine + U - 1) / U;
    (void)u;
    const int64_t w = dim / U, f32 = sizeof(float), head_out = 2 * 2 * kC;
    int64_t longest = 0;
    for (int64_t r : rows_of) longest = std::max(longest, r);
    Expected e;
    // Per layer: q, k, v to the heads' owners and the output back, a padded shard of rows to each other rank.
    e.all_to_all = u64((U - 1) * 4 * shard * w * f32 * layers);
    // Per layer: the K and V rows of its query blocks (and one mean query per block), to each other spatial rank.
    e.kv = u64((S - 1) * (2 * mine + (means ? blocks_of[static_cast<size_t>(s)] : 0)) * w * f32 * layers);
    e.gather_u = u64((U - 1) * shard * head_out * f32);
    e.gather_s = u64((S - 1) * longest * head_out * f32);
    return e;
}

int run(int ulysses, int groups) {
    auto world = MpiCommunicator::world();
    const int n = world->size();
    const int me = world->rank();
    Errors e(me);
    if (ulysses < 1 || n % ulysses != 0) {
        if (me == 0) std::fprintf(stderr, "dist_sharded_step_test: U = %d does not divide %d ranks\n", ulysses, n);
        return 1;
    }
    const int U = ulysses, S = n / U;
    const int u = me % U, s = me / U;
    const std::unique_ptr<Communicator> ucomm = world->split(s, u);  // same spatial index: the heads' all-to-all
    const std::unique_ptr<Communicator> scomm = world->split(u, s);  // same Ulysses index: the chunk's K/V
    const WanModelConfig cfg = config();
    const WanModel model = WanModel::from_weights(make_default_wan_weights(cfg.dims, 7), cfg);
    const HostTensor ctx0 = test::random_context(1, 5, cfg.dims.text_dim);
    const HostTensor ctx1 = test::random_context(2, 8, cfg.dims.text_dim);
    const std::string tag = "U" + std::to_string(U) + " x S" + std::to_string(S) +
                            (groups > 1 ? ", " + std::to_string(groups) + " overlap groups" : "");

    for (const Case& c : cases()) {
        std::vector<PromptSegment> prompts{{0, ctx0.view}};
        if (c.switch_prompt) prompts.push_back({6, ctx1.view});
        for (const BlockPolicyConfig& policy : policies_for(c.opts, cfg.dims.num_heads, cfg.dims.num_layers)) {
            const std::string name = c.name + ", " + block_policy_name(policy.kind);
            RolloutOptions o = c.opts;
            o.policy = policy;
            std::vector<float> ref(static_cast<size_t>(c.frames * kC * kH * kW));
            double ref_density = 0;
            if (me == 0) {
                const SeededNoise noise(17, kC, kH, kW);
                Rollout r(model, o, RolloutShape{c.frames, kH, kW});
                HostTensor lat(DType::kF32, Shape{c.frames, kC, kH, kW});
                r.run(prompts, noise, collect_latents(lat));
                std::copy_n(lat.as<float>(), ref.size(), ref.data());
                ref_density = r.attention().stats().density();
            }
            world->broadcast(ref.data(), ref.size() * sizeof(float), 0);
            world->broadcast(&ref_density, sizeof(ref_density), 0);

            RolloutOptions so = o;
            so.mesh = SequenceMesh{u, U, ucomm.get(), s, S, scomm.get(), groups};
            ucomm->reset_byte_counters();
            scomm->reset_byte_counters();
            const SeededNoise noise(17, kC, kH, kW);
            Rollout r(model, so, RolloutShape{c.frames, kH, kW});
            HostTensor lat(DType::kF32, Shape{c.frames, kC, kH, kW});
            r.run(prompts, noise, collect_latents(lat));
            const std::vector<float> got(lat.as<float>(), lat.as<float>() + ref.size());
            const double err = test::rel_error(got, ref, ref.size());
            e.expect(err <= 1e-5, name + ": relative error " + std::to_string(err) + " against 1 rank");
            e.expect(got == ref, name + ": differs bitwise from 1 rank (relative error " + std::to_string(err) + ")");
            std::vector<float> first(got);
            world->broadcast(first.data(), first.size() * sizeof(float), 0);
            e.expect(first == got, name + ": ranks disagree on the latents");
            // The KV cache of a rank: its heads of the whole window (spatial ranks hold replicas).
            e.expect(r.cache().config().width == cfg.dims.dim / (U * groups),
                     name + ": the rank's (first head group's) cache holds width " +
                         std::to_string(r.cache().config().width));
            // Overlap: the exchanges ran on their own thread (busy), and the attention waited for part of them.
            const ExchangeTime t = r.exchange_time();
            e.expect(n == 1 || (t.busy_seconds > 0 && t.exposed_seconds >= 0), name + ": no exchange time recorded");
            if (groups == 1)
                e.expect(t.exposed_seconds == t.busy_seconds, name + ": in turn, every exchange second is exposed");

            // Bytes: every forward of the rollout (no prompt switch: chunks x (steps + clean pass)).
            if (!c.switch_prompt) {
                Expected want;
                const bool means = policy.kind == BlockPolicyKind::kSparseForcing ||
                                   policy.kind == BlockPolicyKind::kLightForcing ||
                                   policy.kind == BlockPolicyKind::kForcingKv;
                const int64_t fpc = o.frames_per_chunk, passes = static_cast<int64_t>(o.denoising_steps.size()) + 1;
                for (int64_t start = 0; start < c.frames; start += fpc) {
                    const Expected f = expected_bytes(std::min(fpc, c.frames - start), u, U, s, S, cfg.dims.dim,
                                                      cfg.dims.num_layers, means, o.q_block);
                    want.all_to_all += u64(passes) * f.all_to_all;
                    want.kv += u64(passes) * f.kv;
                    want.gather_u += u64(passes) * f.gather_u;
                    want.gather_s += u64(passes) * f.gather_s;
                }
                const uint64_t a2a = ucomm->bytes_sent(CommOp::kAllToAll), kv = scomm->bytes_sent(CommOp::kSendRecv);
                const uint64_t gu = ucomm->bytes_sent(CommOp::kAllGather), gs = scomm->bytes_sent(CommOp::kAllGather);
                e.expect(a2a == want.all_to_all, name + ": all-to-all sent " + std::to_string(a2a) + ", expected " +
                                                     std::to_string(want.all_to_all));
                e.expect(kv == want.kv, name + ": K/V + query means sent " + std::to_string(kv) + ", expected " +
                                            std::to_string(want.kv));
                e.expect(gu == want.gather_u && gs == want.gather_s,
                         name + ": head gathers sent " + std::to_string(gu) + " + " + std::to_string(gs) +
                             ", expected " + std::to_string(want.gather_u) + " + " + std::to_string(want.gather_s));
                e.expect(ucomm->bytes_sent_total() == a2a + gu && scomm->bytes_sent_total() == kv + gs,
                         name + ": other traffic than the all-to-alls, the chunk exchange and the head gathers");
                if (me == 0)
                    std::printf("dist_sharded_step_test: %s, %s: bitwise %s; rank 0 sent all-to-all %" PRIu64
                                ", K/V + means %" PRIu64 ", gathers %" PRIu64 " + %" PRIu64
                                " bytes; density %.3f (1 rank %.3f); exchange %.1f ms, %.1f ms exposed\n",
                                tag.c_str(), name.c_str(), got == ref ? "equal" : "DIFFERENT", a2a, kv, gu, gs,
                                r.attention().stats().density(), ref_density, 1e3 * t.busy_seconds,
                                1e3 * t.exposed_seconds);
            } else if (me == 0) {
                std::printf("dist_sharded_step_test: %s, %s: bitwise %s (relative error %.3g)\n", tag.c_str(),
                            name.c_str(), got == ref ? "equal" : "DIFFERENT", err);
            }
        }
    }

    const int64_t total = disttest::agree(*world, e);
    if (me == 0)
        std::printf("dist_sharded_step_test: %s, %" PRId64 " errors: %s\n", tag.c_str(), total,
                    total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    lr::MpiSession mpi;
    const int ulysses = argc > 1 ? std::atoi(argv[1]) : 1;
    const int groups = argc > 2 ? std::atoi(argv[2]) : 1;  // parallel.overlap_groups
    return lr::run_rank_guarded(mpi, [&] { return lr::run(ulysses, groups); });
}
