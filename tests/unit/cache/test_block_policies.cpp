// Tiles and the block policies' candidate sets against rules written here from the papers' definitions
// (DESIGN.md section 6), and their refusals of configs that would be dense or impossible.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "cache/block_policy.h"
#include "cache/tile_layout.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

TEST(TileLayout, TilesPartitionTheFrameInto2dRectangles) {
    for (const auto& [gh, gw, block] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {30, 52, 128}, {68, 120, 128}, {4, 8, 64}, {16, 28, 64}, {7, 5, 64}}) {
        const TileLayout t(gh, gw, tile_shape_for_block(block));
        std::vector<int> seen(static_cast<size_t>(gh * gw), 0);
        int64_t covered = 0;
        for (int64_t i = 0; i < t.tiles_per_frame(); ++i) {
            EXPECT_EQ(t.tile_start(i), covered);
            EXPECT_LE(t.tile_len(i), block);
            // Every token of tile i lies in the tile's rectangle of the grid.
            const int64_t ty = i / t.tiles_x(), tx = i % t.tiles_x();
            for (int64_t j = 0; j < t.tile_len(i); ++j) {
                const int64_t r = t.to_raster(t.tile_start(i) + j);
                ++seen[static_cast<size_t>(r)];
                EXPECT_EQ(r / gw / t.tile().rows, ty);
                EXPECT_EQ(r % gw / t.tile().cols, tx);
                EXPECT_EQ(t.to_tiled(r), t.tile_start(i) + j);
                EXPECT_EQ(t.tile_of_tiled(t.tile_start(i) + j), i);
            }
            covered += t.tile_len(i);
        }
        EXPECT_EQ(covered, gh * gw);
        EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
    }
    EXPECT_EQ(tile_shape_for_block(128).rows, 8);
    EXPECT_EQ(tile_shape_for_block(128).cols, 16);
    EXPECT_EQ(TileLayout(30, 52, tile_shape_for_block(128)).tiles_per_frame(), 16);
    EXPECT_THROW(TileLayout(0, 4, {8, 8}), InputError);
}

BlockPolicyGeometry geometry(int64_t window, int64_t sink, int64_t run = 60) {
    BlockPolicyGeometry g;
    g.num_layers = 2;
    g.num_heads = 3;
    g.tiles_per_frame = 4;
    g.frames_per_chunk = 3;
    g.window_frames = window;
    g.sink_frames = sink;
    g.max_frames = window == -1 ? run : window;
    g.run_frames = run;
    return g;
}

// slot_frames for a full window: sink frames 0.., then consecutive frames ending at the chunk.
std::vector<int64_t> window_frames(int64_t slots, int64_t sink, int64_t last) {
    std::vector<int64_t> f;
    for (int64_t s = 0; s < sink; ++s) f.push_back(s);
    for (int64_t x = last - (slots - sink) + 1; x <= last; ++x) f.push_back(x);
    return f;
}

std::set<int64_t> slots_of(const WindowSelection& s, int64_t tiles, CandidateKind kind) {
    std::set<int64_t> out;
    for (size_t i = 0; i < s.cand_block.size(); ++i)
        if (s.cand_kind[i] == static_cast<uint8_t>(kind)) out.insert(s.cand_block[i] / tiles);
    return out;
}

TEST(BlockPolicies, DenseAndSinkWindowReadTheWholeWindow) {
    for (const BlockPolicyKind kind : {BlockPolicyKind::kDense, BlockPolicyKind::kSinkWindow}) {
        BlockPolicyConfig c;
        c.kind = kind;
        const auto p = make_block_policy(c, geometry(12, 3));
        const std::vector<int64_t> frames = window_frames(12, 3, 40);
        WindowSelection sel;
        p->select({}, {frames.data(), 12, 9}, &sel);
        EXPECT_EQ(sel.cand_block.size(), 48u);
        EXPECT_FALSE(sel.scores_needed());
        EXPECT_EQ(p->max_retained(), 0);
        EXPECT_EQ(p->page_window_frames(), 12);
    }
}

TEST(BlockPolicies, SparseForcingScoresTheWindowOutsideTheChunk) {
    BlockPolicyConfig c;
    c.kind = BlockPolicyKind::kSparseForcing;
    c.sf_topk_blocks = 10;
    c.persistent_blocks = 5;
    const auto p = make_block_policy(c, geometry(12, 2));
    const std::vector<int64_t> frames = window_frames(12, 2, 50);
    WindowSelection sel;
    p->select({}, {frames.data(), 12, 9}, &sel);
    EXPECT_EQ(slots_of(sel, 4, CandidateKind::kMust), (std::set<int64_t>{9, 10, 11}));
    std::set<int64_t> scored;
    for (int64_t s = 0; s < 9; ++s) scored.insert(s);
    EXPECT_EQ(slots_of(sel, 4, CandidateKind::kScored), scored);
    EXPECT_EQ(sel.topk_blocks, 10);
    EXPECT_EQ(p->retained_capacity(1, 2), 5);
    EXPECT_EQ(p->retention_score(), RetentionScore::kSalience);
    // The top C of persistent + evicted by score, ties to the older block.
    const std::vector<RetentionCandidate> cands = {{3, 0, 0.5f, true},  {3, 1, 0.9f, true},  {7, 0, 0.1f, false},
                                                   {7, 1, 0.9f, false}, {7, 2, 0.7f, false}, {7, 3, 0.6f, false},
                                                   {8, 0, 0.55f, false}};
    EXPECT_EQ(p->retain(0, 0, cands), (std::vector<int64_t>{1, 3, 4, 5, 6}));
    // Budgets: zero, or the window's every block outside the chunk (dense), are refused; so is no window.
    c.sf_topk_blocks = 36;
    EXPECT_THROW(make_block_policy(c, geometry(12, 2)), InputError);
    c.sf_topk_blocks = 0;
    EXPECT_THROW(make_block_policy(c, geometry(12, 2)), InputError);
    c.sf_topk_blocks = 4;
    EXPECT_THROW(make_block_policy(c, geometry(-1, 0)), InputError);
}

TEST(BlockPolicies, LightForcingFirstChunkDenseThenHierarchicalWithGrowth) {
    BlockPolicyConfig c;
    c.kind = BlockPolicyKind::kLightForcing;
    c.near_frames = 2;
    c.topk_frames = 2;
    c.lf_topk_blocks = 8;
    c.chunk_aware_growth = true;
    const BlockPolicyGeometry g = geometry(15, 1, 60);  // 20 chunks
    const auto p = make_block_policy(c, g);
    const std::vector<int64_t> first = {0, 1, 2};
    WindowSelection sel;
    p->select({.chunk = 0}, {first.data(), 3, 0}, &sel);
    EXPECT_FALSE(sel.scores_needed());
    EXPECT_EQ(sel.cand_block.size(), 12u);

    const std::vector<int64_t> frames = window_frames(15, 1, 44);
    // Budgets K_i = K alpha_i / mean(alpha_j, j >= 1), alpha_i = 1 / sqrt(3 (i + 1)): computed here.
    double mean = 0;
    for (int64_t j = 1; j < 20; ++j) mean += 1.0 / std::sqrt(3.0 * (j + 1));
    mean /= 19;
    for (const int64_t chunk : {int64_t{1}, int64_t{5}, int64_t{14}}) {
        p->select({.chunk = chunk}, {frames.data(), 15, 12}, &sel);
        EXPECT_EQ(slots_of(sel, 4, CandidateKind::kMust), (std::set<int64_t>{12, 13, 14}));
        // Sink (slot 0) and near (10, 11) always eligible (no group); middle slots 1..9 one competing group each.
        std::set<int64_t> free_slots, grouped;
        for (size_t i = 0; i < sel.cand_block.size(); ++i) {
            if (sel.cand_kind[i] != static_cast<uint8_t>(CandidateKind::kScored)) continue;
            (sel.cand_group[i] < 0 ? free_slots : grouped).insert(sel.cand_block[i] / 4);
        }
        EXPECT_EQ(free_slots, (std::set<int64_t>{0, 10, 11}));
        EXPECT_EQ(grouped.size(), 9u);
        EXPECT_EQ(sel.group_competes.size(), 9u);
        EXPECT_EQ(sel.topk_groups, 2);
        const double alpha = 1.0 / std::sqrt(3.0 * (chunk + 1));
        EXPECT_EQ(sel.topk_blocks, std::max<int64_t>(1, std::llround(8 * alpha / mean))) << chunk;
    }
    // Later chunks are sparser (the KV grows), the first later ones denser than K.
    p->select({.chunk = 1}, {frames.data(), 15, 12}, &sel);
    const int64_t k1 = sel.topk_blocks;
    p->select({.chunk = 19}, {frames.data(), 15, 12}, &sel);
    EXPECT_GT(k1, 8);
    EXPECT_LT(sel.topk_blocks, 8);
    c.topk_frames = 9;  // every middle frame
    EXPECT_THROW(make_block_policy(c, g), InputError);
}

TEST(BlockPolicies, LvsaWindowPlusRotatingAnchors) {
    BlockPolicyConfig c;
    c.kind = BlockPolicyKind::kLvsa;
    c.lvsa_window_frames = 2;
    c.anchor_interval = 4;
    const auto p = make_block_policy(c, geometry(18, 1));
    const std::vector<int64_t> frames = window_frames(18, 1, 62);  // slot 0: frame 0; slots 1..17: frames 46..62
    for (int64_t step = 0; step < 5; ++step) {
        WindowSelection sel;
        p->select({.step = step}, {frames.data(), 18, 15}, &sel);
        EXPECT_FALSE(sel.scores_needed());
        std::set<int64_t> want;
        for (int64_t s = 0; s < 18; ++s) {
            const int64_t f = frames[static_cast<size_t>(s)];
            if (s == 0 || s >= 13 || (f - step % 4) % 4 == 0) want.insert(s);
        }
        EXPECT_EQ(slots_of(sel, 4, CandidateKind::kMust), want) << step;
    }
    c.anchor_interval = 1;
    EXPECT_THROW(make_block_policy(c, geometry(18, 1)), InputError);
    c.anchor_interval = 4;
    c.lvsa_window_frames = 14;  // sink + window cover every past frame: dense
    EXPECT_THROW(make_block_policy(c, geometry(18, 1)), InputError);
}

TEST(BlockPolicies, ForcingKvShortRingAndDynamicHeadsOnly) {
    BlockPolicyConfig c;
    c.kind = BlockPolicyKind::kForcingKv;
    c.recent_frames = 1;
    c.dynamic_keep_ratio = 0.33;
    c.static_head = {1, 0, 1, 0, 0, 1};  // 2 layers x 3 heads
    const auto p = make_block_policy(c, geometry(-1, 1));
    EXPECT_EQ(p->page_window_frames(), 1 + 1 + 3);
    EXPECT_EQ(p->retained_capacity(0, 0), 0);
    EXPECT_EQ(p->retained_capacity(0, 1), std::llround(0.33 * 3 * 4));
    EXPECT_EQ(p->max_retained(), 4);
    EXPECT_EQ(p->retention_score(), RetentionScore::kChange);
    // Forcing-KV overwrites its dynamic buffer: only the blocks just evicted compete.
    const std::vector<RetentionCandidate> cands = {{1, 0, 0.99f, true}, {2, 0, 0.2f, false}, {2, 1, 0.5f, false},
                                                   {3, 0, 0.4f, false}, {3, 1, 0.1f, false}, {4, 2, 0.3f, false}};
    EXPECT_EQ(p->retain(0, 1, cands), (std::vector<int64_t>{1, 2, 3, 5}));
    EXPECT_TRUE(p->retain(0, 0, cands).empty());
    c.static_head.pop_back();
    EXPECT_THROW(make_block_policy(c, geometry(-1, 1)), InputError);
    c.static_head.push_back(0);
    EXPECT_THROW(make_block_policy(c, geometry(21, 1)), InputError);  // the window is the policy's
}

}  // namespace
}  // namespace lr
