// The attention seam's single-rank CPU step (runtime/model/attention_step_cpu.h): dense through the selector
// against the model's inline cache path; every policy equal to dense where it keeps every block; retention
// (Sparse Forcing's persistent blocks, Forcing-KV's changed segments) against choices recomputed here from the
// raw keys and queries; window-relative RoPE's rule for retained blocks against attention computed here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "kernels/rope_3d.h"
#include "runtime/model/attention_step_cpu.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

using test::gaussian;

constexpr int64_t kH = 8, kW = 16;  // latent: 4 x 8 patches = 32 tokens a frame

AttentionStepConfig step_config(BlockPolicyConfig policy, int64_t window, int64_t sink, int64_t run_frames,
                                RopePositions rope = RopePositions::kAbsolute) {
    const WanModelConfig m = test::tiny_config();
    AttentionStepConfig c;
    c.num_layers = m.dims.num_layers;
    c.num_heads = m.dims.num_heads;
    c.head_dim = m.dims.dim / m.dims.num_heads;
    c.grid_rows = kH / 2;
    c.grid_cols = kW / 2;
    c.block_size = 16;  // tiles of 8 x 2 patches: 4 tiles of 8 tokens a frame
    c.frames_per_chunk = 3;
    c.window_frames = window;
    c.sink_frames = sink;
    c.run_frames = run_frames;
    c.max_write_frames = 3;
    c.rope = rope;
    c.policy = policy;
    c.q_block = 16;
    return c;
}

// A rollout-shaped sequence of forwards: per chunk 2 denoising steps and a clean pass, random latents.
struct Forwards {
    const WanModel& m;
    WanPrompt prompt;
    explicit Forwards(const WanModel& model) : m(model), prompt(model.encode_prompt(test::tiny_context(3).view)) {}
    std::vector<std::vector<float>> run(int64_t chunks, AttentionStep* step, KvCache* cache, RopePositions rope) {
        std::vector<std::vector<float>> outs;
        const int64_t numel = 3 * 16 * kH * kW;
        for (int64_t c = 0; c < chunks; ++c)
            for (int64_t s = 0; s <= 2; ++s) {
                const std::vector<float> x = gaussian(numel, static_cast<uint32_t>(100 * c + s));
                const std::vector<float> t(3, s == 2 ? 0.0f : 900.0f - 300.0f * static_cast<float>(s));
                std::vector<float> out(static_cast<size_t>(numel));
                WanForwardArgs a;
                a.x = x.data();
                a.t = t.data();
                a.frames = 3;
                a.height = kH;
                a.width = kW;
                a.start_frame = 3 * c;
                a.prompt = &prompt;
                a.cache = cache;
                a.step = step;
                a.attn.chunk = c;
                a.attn.step = s == 2 ? 4 : s;
                a.rope = rope;
                m.forward(a, out.data());
                outs.push_back(std::move(out));
            }
        return outs;
    }
};

TEST(AttentionStep, DenseThroughTheSelectorEqualsTheInlineCachePath) {
    const WanModel m = test::tiny_model();
    for (const RopePositions rope : {RopePositions::kAbsolute, RopePositions::kWindowRelative}) {
        for (const auto& [window, sink] : std::vector<std::pair<int64_t, int64_t>>{{-1, 0}, {9, 3}, {6, 0}}) {
            BlockPolicyConfig dense;
            CpuAttentionStep step(step_config(dense, window, sink, 18, rope));
            KvCache cache(m.kv_cache_config(kH, kW, window, sink, window == -1 ? 18 : window));
            Forwards f(m);
            const auto a = f.run(6, &step, nullptr, rope);
            const auto b = f.run(6, nullptr, &cache, rope);
            for (size_t i = 0; i < a.size(); ++i)
                EXPECT_LT(test::rel_error(a[i], b[i], a[i].size()), 2e-6) << "forward " << i << " window " << window;
            EXPECT_EQ(step.cache().slot_frames(), cache.slot_frames());
            EXPECT_DOUBLE_EQ(step.stats().density(), 1.0);
        }
    }
}

// SPARSE_FORCING, LIGHT_FORCING and LVSA over a 12-frame window of 4-tile frames (no sink), with budgets of
// `topk` blocks (Light Forcing: picking `frames` middle frames).
std::vector<BlockPolicyConfig> window_policies(int64_t topk, int64_t frames) {
    BlockPolicyConfig sf;
    sf.kind = BlockPolicyKind::kSparseForcing;
    sf.sf_topk_blocks = topk;
    sf.persistent_blocks = topk / 2;
    BlockPolicyConfig lf;
    lf.kind = BlockPolicyKind::kLightForcing;
    lf.near_frames = 1;
    lf.topk_frames = frames;
    lf.lf_topk_blocks = topk;
    BlockPolicyConfig lvsa;
    lvsa.kind = BlockPolicyKind::kLvsa;
    lvsa.lvsa_window_frames = 1;
    lvsa.anchor_interval = 3;
    return {sf, lf, lvsa};
}

// Every policy reads every block while the window holds only the chunk and what it must read: chunk 0.
TEST(AttentionStep, EveryPolicyEqualsDenseWhereItKeepsEveryBlock) {
    const WanModel m = test::tiny_model();
    Forwards f(m);
    CpuAttentionStep ref(step_config(BlockPolicyConfig{}, 12, 0, 30));
    const auto want = f.run(1, &ref, nullptr, RopePositions::kAbsolute);
    for (const BlockPolicyConfig& p : window_policies(3, 1)) {
        CpuAttentionStep step(step_config(p, 12, 0, 30));
        const auto got = f.run(1, &step, nullptr, RopePositions::kAbsolute);
        for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i]) << block_policy_name(p.kind) << " " << i;
        EXPECT_DOUBLE_EQ(step.stats().density(), 1.0);
    }
}

// Sparse once the window fills: less is read, the output moves away from dense, but not far (random weights
// attend diffusely: this bounds bugs, it does not judge a policy).
TEST(AttentionStep, SparsePoliciesReadLessAndStayNearDense) {
    const WanModel m = test::tiny_model();
    Forwards f(m);
    CpuAttentionStep ref(step_config(BlockPolicyConfig{}, 12, 0, 30));
    const auto want = f.run(6, &ref, nullptr, RopePositions::kAbsolute);
    for (const BlockPolicyConfig& p : window_policies(6, 2)) {
        CpuAttentionStep step(step_config(p, 12, 0, 30));
        const auto got = f.run(6, &step, nullptr, RopePositions::kAbsolute);
        const double err = test::rel_error(got.back(), want.back(), got.back().size());
        std::printf("[ measured ] %s: last forward's output vs dense %.3e, density %.3f\n", block_policy_name(p.kind),
                    err, step.stats().density());
        EXPECT_GT(err, 1e-5) << block_policy_name(p.kind);
        EXPECT_LT(err, 2e-2) << block_policy_name(p.kind);  // measured 1.7e-3 to 2.8e-3
        EXPECT_LT(step.stats().density(), 0.9) << block_policy_name(p.kind);
    }
}

// Drives the step directly with synthetic q/k/v: one layer of a 2-head model, 4 tiles a frame.
struct Synthetic {
    AttentionStepConfig cfg;
    CpuAttentionStep step;
    std::vector<std::vector<float>> q, k, v;  // per forward [96 tokens, 2 heads, 16]
    explicit Synthetic(const AttentionStepConfig& c) : cfg(c), step(c) {}
    int64_t W() const { return cfg.num_heads * cfg.head_dim; }
    void forward(int64_t chunk, uint32_t seed) {
        const int64_t L = 3 * 32;
        q.push_back(gaussian(L * W(), seed));
        k.push_back(gaussian(L * W(), seed + 1));
        v.push_back(gaussian(L * W(), seed + 2));
        std::vector<float> out(static_cast<size_t>(L * W()));
        AttentionForward f;
        f.start_frame = 3 * chunk;
        f.num_frames = 3;
        f.chunk = chunk;
        f.step = 4;
        step.begin(f);
        for (int64_t l = 0; l < cfg.num_layers; ++l)
            step.attend(l, q.back().data(), k.back().data(), v.back().data(), out.data());
        step.end();
    }
    // Mean over the tile's tokens of head h's keys of frame `frame` (written by forward frame / 3), raw order.
    std::vector<double> kmean(int64_t frame, int64_t tile, int64_t h) const {
        const TileLayout& t = step.tiles();
        const std::vector<float>& keys = k[static_cast<size_t>(frame / 3)];
        std::vector<double> m(static_cast<size_t>(cfg.head_dim), 0.0);
        for (int64_t j = 0; j < t.tile_len(tile); ++j) {
            const int64_t tok = (frame % 3) * 32 + t.to_raster(t.tile_start(tile) + j);
            for (int64_t d = 0; d < cfg.head_dim; ++d)
                m[static_cast<size_t>(d)] += keys[static_cast<size_t>(tok * W() + h * cfg.head_dim + d)];
        }
        for (double& x : m) x /= static_cast<double>(t.tile_len(tile));
        return m;
    }
    // Means of the last forward's query blocks (16 tiled rows each), head h.
    std::vector<std::vector<double>> qmeans(int64_t h) const {
        const TileLayout& t = step.tiles();
        std::vector<std::vector<double>> out(6, std::vector<double>(static_cast<size_t>(cfg.head_dim), 0.0));
        for (int64_t i = 0; i < 96; ++i) {
            const int64_t tok = (i / 32) * 32 + t.to_raster(i % 32);
            for (int64_t d = 0; d < cfg.head_dim; ++d)
                out[static_cast<size_t>(i / 16)][static_cast<size_t>(d)] +=
                    q.back()[static_cast<size_t>(tok * W() + h * cfg.head_dim + d)] / 16.0;
        }
        return out;
    }
};

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

TEST(AttentionStep, SparseForcingKeepsTheMostSalientOfPersistentAndEvicted) {
    BlockPolicyConfig sf;
    sf.kind = BlockPolicyKind::kSparseForcing;
    sf.sf_topk_blocks = 4;
    sf.persistent_blocks = 5;
    AttentionStepConfig cfg = step_config(sf, 6, 0, 30);
    cfg.num_layers = 1;
    Synthetic s(cfg);
    std::vector<std::set<std::pair<int64_t, int64_t>>> want(2);  // per head
    for (int64_t c = 0; c < 6; ++c) {
        if (c >= 2) {
            // Before forward c: frames 3(c-2) .. 3(c-2)+2 leave; score persistent + evicted with the last queries.
            for (int64_t h = 0; h < 2; ++h) {
                const auto qm = s.qmeans(h);
                std::vector<std::pair<double, std::pair<int64_t, int64_t>>> cands;
                auto score = [&](int64_t frame, int64_t tile) {
                    double best = -1e300;
                    for (const auto& qb : qm) best = std::max(best, dot(qb, s.kmean(frame, tile, h)));
                    return best;
                };
                for (const auto& b : want[static_cast<size_t>(h)]) cands.push_back({-score(b.first, b.second), b});
                for (int64_t f = 3 * (c - 2); f < 3 * (c - 1); ++f)
                    for (int64_t t = 0; t < 4; ++t) cands.push_back({-score(f, t), {f, t}});
                std::sort(cands.begin(), cands.end());
                want[static_cast<size_t>(h)].clear();
                for (size_t i = 0; i < std::min<size_t>(5, cands.size()); ++i)
                    want[static_cast<size_t>(h)].insert(cands[i].second);
            }
        }
        s.forward(c, static_cast<uint32_t>(10 * c + 1));
        for (int64_t h = 0; h < 2; ++h) {
            const auto got = s.step.retained(0, h);
            const std::set<std::pair<int64_t, int64_t>> got_set(got.begin(), got.end());
            EXPECT_EQ(got_set, want[static_cast<size_t>(h)]) << "chunk " << c << " head " << h;
        }
    }
    EXPECT_EQ(s.step.retained(0, 0).size(), 5u);
    // The heads kept different blocks (each its own salience): the retained slots are per head.
    EXPECT_NE(s.step.retained(0, 0), s.step.retained(0, 1));
}

TEST(AttentionStep, ForcingKvPrunesTheCacheToRingPlusChangedSegments) {
    BlockPolicyConfig fkv;
    fkv.kind = BlockPolicyKind::kForcingKv;
    fkv.recent_frames = 1;
    fkv.dynamic_keep_ratio = 0.25;  // 3 of the 12 departing blocks
    fkv.static_head = {1, 0};       // head 0 static, head 1 dynamic
    AttentionStepConfig cfg = step_config(fkv, -1, 1, 30);
    cfg.num_layers = 1;
    Synthetic s(cfg);
    for (int64_t c = 0; c < 5; ++c) {
        s.forward(c, static_cast<uint32_t>(7 * c + 3));
        // Window pages: sink 1 + ring 1 + chunk 3.
        EXPECT_LE(s.step.cache().frames(), 5);
        EXPECT_TRUE(s.step.retained(0, 0).empty());
        if (c < 2) continue;
        // Forward c evicted the 3 frames after the sink before the ring's one: frames 3(c-1)-1 .. 3(c-1)+1
        // (forward 1 evicted frame 1 alone: the window held 3 frames of its 5).
        std::vector<std::pair<double, std::pair<int64_t, int64_t>>> cands;
        for (int64_t f = 3 * (c - 1) - 1; f <= 3 * (c - 1) + 1; ++f)
            for (int64_t t = 0; t < 4; ++t) {
                const auto a = s.kmean(f, t, 1), b = s.kmean(f - 1, t, 1);
                const double cos = dot(a, b) / std::sqrt(dot(a, a) * dot(b, b));
                cands.push_back({-(1.0 - cos), {f, t}});
            }
        std::sort(cands.begin(), cands.end());
        std::set<std::pair<int64_t, int64_t>> want;
        for (size_t i = 0; i < 3; ++i) want.insert(cands[i].second);
        const auto got = s.step.retained(0, 1);
        const std::set<std::pair<int64_t, int64_t>> got_set(got.begin(), got.end());
        EXPECT_EQ(got_set, want) << "chunk " << c;
    }
    // KV held: 5 frames x 2 heads + 3 blocks of 8 rows for head 1, vs dense over the whole run.
    EXPECT_EQ(s.step.stats().kv_bytes_held, 4 * 2 * (5 * 32 * 32 + 3 * 8 * 16));
    BlockPolicyConfig dense;
    AttentionStepConfig dcfg = step_config(dense, -1, 1, 30);
    dcfg.num_layers = 1;
    EXPECT_LT(CpuAttentionStep::kv_bytes_for(cfg), CpuAttentionStep::kv_bytes_for(dcfg) / 4);
}

// Window-relative RoPE: retained blocks are attended with their keys rotated at frame position 0.
TEST(AttentionStep, RelativeRopeRotatesRetainedBlocksAtTheWindowStart) {
    BlockPolicyConfig sf;
    sf.kind = BlockPolicyKind::kSparseForcing;
    sf.sf_topk_blocks = 11;  // all but one of the window's 12 blocks outside the chunk
    sf.persistent_blocks = 2;
    AttentionStepConfig cfg = step_config(sf, 6, 0, 30, RopePositions::kWindowRelative);
    cfg.num_layers = 1;
    Synthetic s(cfg);
    for (int64_t c = 0; c < 3; ++c) s.forward(c, static_cast<uint32_t>(5 * c + 2));
    // Recompute one query row of the last forward by brute force over the blocks its table row lists.
    const auto& table = s.step.last_table(0);
    const TileLayout& t = s.step.tiles();
    const int64_t h = 1, i = 20;  // tiled row 20: query block 1
    const int64_t row = h * 6 + i / 16;
    const int64_t W = s.W(), D = 16;
    std::vector<double> sc;
    std::vector<std::vector<float>> vals;
    const auto retained = s.step.retained(0, h);
    const std::vector<int64_t> frames = s.step.cache().slot_frames();  // after the forward: frames 3..8
    int64_t extra_seen = 0;
    const int64_t tok_i = (i / 32) * 32 + t.to_raster(i % 32);
    const float* qi = s.q.back().data() + tok_i * W + h * D;
    for (int32_t e = table.indptr[static_cast<size_t>(row)]; e < table.indptr[static_cast<size_t>(row + 1)]; ++e) {
        const int32_t b = table.indices[static_cast<size_t>(e)];
        int64_t frame, tile, pos_frame;
        if (b >= table.window_blocks) {  // retained: in (frame, tile) order
            frame = retained[static_cast<size_t>(extra_seen)].first;
            tile = retained[static_cast<size_t>(extra_seen++)].second;
            pos_frame = 0;
        } else {
            const int64_t slot = b / 4;
            frame = frames[static_cast<size_t>(slot)];
            tile = b % 4;
            pos_frame = slot;
        }
        for (int64_t j = 0; j < t.tile_len(tile); ++j) {
            const int64_t r = t.to_raster(t.tile_start(tile) + j);
            const int64_t tok = (frame % 3) * 32 + r;
            const float* kr = s.k[static_cast<size_t>(frame / 3)].data() + tok * W + h * D;
            std::vector<float> rot(static_cast<size_t>(D));
            const int64_t pos[3] = {pos_frame, r / 8, r % 8};
            rope_3d_cpu({kr, rot.data(), pos, 1, 1, D});
            double d = 0;
            for (int64_t x = 0; x < D; ++x) d += static_cast<double>(qi[x]) * rot[static_cast<size_t>(x)];
            sc.push_back(d / 4.0);
            const float* vr = s.v[static_cast<size_t>(frame / 3)].data() + tok * W + h * D;
            vals.emplace_back(vr, vr + D);
        }
    }
    EXPECT_EQ(extra_seen, 2);
    // The step's output for that row: run the last forward's attention again through a fresh call is not
    // possible (the cache moved), so compare with what attend() returned: recompute it via a replay.
    const double m = *std::max_element(sc.begin(), sc.end());
    double sum = 0;
    for (double x : sc) sum += std::exp(x - m);
    std::vector<double> want(static_cast<size_t>(D), 0.0);
    for (size_t j = 0; j < sc.size(); ++j)
        for (int64_t x = 0; x < D; ++x)
            want[static_cast<size_t>(x)] += std::exp(sc[j] - m) / sum * vals[j][static_cast<size_t>(x)];
    // Replay the three forwards on a second step and capture the last output.
    CpuAttentionStep replay(cfg);
    std::vector<float> out(static_cast<size_t>(96 * W));
    for (int64_t c = 0; c < 3; ++c) {
        AttentionForward f;
        f.start_frame = 3 * c;
        f.num_frames = 3;
        f.chunk = c;
        f.step = 4;
        replay.begin(f);
        replay.attend(0, s.q[static_cast<size_t>(c)].data(), s.k[static_cast<size_t>(c)].data(),
                      s.v[static_cast<size_t>(c)].data(), out.data());
        replay.end();
    }
    for (int64_t x = 0; x < D; ++x)
        EXPECT_NEAR(out[static_cast<size_t>(tok_i * W + h * D + x)], want[static_cast<size_t>(x)], 2e-5);
}

}  // namespace
}  // namespace lr
