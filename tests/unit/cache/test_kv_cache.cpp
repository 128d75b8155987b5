#include <gtest/gtest.h>

#include <vector>

#include "cache/kv_cache.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

constexpr int64_t kTokens = 3;  // tokens per frame
constexpr int64_t kWidth = 4;

// K rows of a chunk whose every element encodes (frame, pass): frame * 100 + pass; V = -K.
std::vector<float> rows(int64_t start_frame, int64_t frames, int pass, float sign = 1.0f) {
    std::vector<float> r(static_cast<size_t>(frames * kTokens * kWidth));
    for (int64_t f = 0; f < frames; ++f) {
        for (int64_t i = 0; i < kTokens * kWidth; ++i) {
            r[static_cast<size_t>(f * kTokens * kWidth + i)] =
                sign * static_cast<float>((start_frame + f) * 100 + pass);
        }
    }
    return r;
}

// Writes frames [start, start + n) to every layer with marker `pass`, then commits.
KvWrite put(KvCache& c, int64_t start, int64_t n, int pass, bool protect = false) {
    const KvWrite w = c.plan(start, n, protect);
    const auto k = rows(start, n, pass), v = rows(start, n, pass, -1.0f);
    for (int64_t l = 0; l < c.config().num_layers; ++l) c.write(l, w, k.data(), v.data());
    c.commit(w);
    return w;
}

// The marker held by each slot in use (checks all tokens, K and V, every layer agree).
std::vector<float> markers(const KvCache& c) {
    std::vector<float> out;
    for (int64_t s = 0; s < c.frames(); ++s) {
        const float m = c.keys(0)[s * kTokens * kWidth];
        for (int64_t l = 0; l < c.config().num_layers; ++l) {
            for (int64_t i = 0; i < kTokens * kWidth; ++i) {
                EXPECT_EQ(c.keys(l)[s * kTokens * kWidth + i], m);
                EXPECT_EQ(c.values(l)[s * kTokens * kWidth + i], -m);
            }
        }
        out.push_back(m);
    }
    return out;
}

KvCacheConfig config(int64_t window, int64_t sink, int64_t max_frames) {
    KvCacheConfig c;
    c.num_layers = 2;
    c.tokens_per_frame = kTokens;
    c.width = kWidth;
    c.window_frames = window;
    c.sink_frames = sink;
    c.max_frames = max_frames;
    return c;
}

TEST(KvCache, RewritingAChunkOverwritesInPlace) {
    KvCache c(config(-1, 0, 12));
    put(c, 0, 3, 0);
    // Later denoising steps and the clean pass write the same frames again: same slots, new data.
    for (int pass = 1; pass <= 4; ++pass) {
        const KvWrite w = put(c, 0, 3, pass);
        EXPECT_EQ(w.slot_begin, 0);
        EXPECT_EQ(w.slot_end, 3);
        EXPECT_FALSE(w.recompute);  // frame 0: the reference's is_recompute needs start > 0
    }
    put(c, 3, 3, 0);
    const KvWrite w = put(c, 3, 3, 1);
    EXPECT_TRUE(w.recompute);
    EXPECT_EQ(w.slot_begin, 3);
    EXPECT_EQ(c.frames(), 6);
    EXPECT_EQ(c.end_frame(), 6);
    EXPECT_EQ(markers(c), (std::vector<float>{4, 104, 204, 301, 401, 501}));
    EXPECT_EQ(c.slot_frames(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
}

TEST(KvCache, WindowKeepsExactlyTheSinkAndTheLastFrames) {
    KvCache c(config(/*window=*/6, /*sink=*/2, 6));
    for (int64_t start = 0; start < 14; start += 2) {
        const KvWrite first = put(c, start, 2, 0);
        // Only the first write of new frames evicts; the rewrites of the same chunk do not.
        EXPECT_EQ(first.evict_frames, start >= 6 ? 2 : 0) << start;
        const KvWrite again = put(c, start, 2, 1);
        EXPECT_EQ(again.evict_frames, 0);
        EXPECT_EQ(again.slot_begin, first.slot_begin);
        EXPECT_LE(c.frames(), 6);
    }
    // Frames 0..13 written: the sink (0, 1) never moves, the window holds the last 4.
    EXPECT_EQ(c.slot_frames(), (std::vector<int64_t>{0, 1, 10, 11, 12, 13}));
    EXPECT_EQ(markers(c), (std::vector<float>{1, 101, 1001, 1101, 1201, 1301}));
    EXPECT_EQ(c.end_frame(), 14);
}

TEST(KvCache, ChunkNotAlignedWithTheWindowEvictsJustEnough) {
    KvCache c(config(7, 1, 7));
    for (int64_t start = 0; start < 9; start += 3) put(c, start, 3, 0);
    // 0..2 fill, 3..5 fill (6 slots), 6..8 evicts 2: frames 1 and 2.
    EXPECT_EQ(c.slot_frames(), (std::vector<int64_t>{0, 3, 4, 5, 6, 7, 8}));
    EXPECT_EQ(markers(c), (std::vector<float>{0, 300, 400, 500, 600, 700, 800}));
}

TEST(KvCache, RecacheAfterPromptSwitchKeepsTheSink) {
    KvCache c(config(6, 2, 6));
    for (int64_t start = 0; start < 10; start += 2) put(c, start, 2, 0);
    ASSERT_EQ(c.slot_frames(), (std::vector<int64_t>{0, 1, 6, 7, 8, 9}));
    // LongLive re-caches the last 6 frames [4, 10) under the new prompt: slots 0, 1 (the sink) are kept.
    const KvWrite w = put(c, 4, 6, 7, /*protect=*/true);
    EXPECT_TRUE(w.recompute);
    EXPECT_EQ(w.slot_begin, 0);
    EXPECT_EQ(w.write_begin, 2);
    EXPECT_EQ(markers(c), (std::vector<float>{0, 100, 607, 707, 807, 907}));
    EXPECT_EQ(c.slot_frames(), (std::vector<int64_t>{0, 1, 6, 7, 8, 9}));
    EXPECT_EQ(c.end_frame(), 10);  // indices unchanged
    EXPECT_EQ(c.frames(), 6);
    // Without protection the same rewrite replaces the sink too.
    put(c, 4, 6, 8, /*protect=*/false);
    EXPECT_EQ(markers(c), (std::vector<float>{408, 508, 608, 708, 808, 908}));
}

TEST(KvCache, RefusesWritesThatCannotFit) {
    KvCache small(config(4, 2, 4));
    put(small, 0, 2, 0);
    put(small, 2, 2, 0);
    EXPECT_THROW(small.plan(4, 3, false), InputError);  // 3 > window - sink
    KvCache unbounded(config(-1, 0, 4));
    put(unbounded, 0, 4, 0);
    EXPECT_THROW(unbounded.plan(4, 1, false), InputError);  // the planned run length is exceeded
    EXPECT_THROW(KvCache(config(4, 4, 4)), InputError);     // sink must be smaller than the window
    KvCache c(config(-1, 0, 8));
    const KvWrite w = c.plan(0, 2, false);
    c.write(0, w, rows(0, 2, 0).data(), rows(0, 2, 0).data());
    EXPECT_THROW(c.write(0, w, rows(0, 2, 0).data(), rows(0, 2, 0).data()), InternalError);  // twice for one plan
    EXPECT_THROW(c.commit(w), InternalError);  // layer 1 was never written
}

}  // namespace
}  // namespace lr
