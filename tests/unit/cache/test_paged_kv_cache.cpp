// The paged cache's bookkeeping against KvCache: the same write sequences, then the slot -> frame map, the
// pages of live slots (distinct), and the data a kernel would see through the tables (dst_row writes into a
// host model of the pool, read back through kv_rows and the block table) must agree with KvCache's rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "cache/kv_cache.h"
#include "cache/paged_kv_cache.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

constexpr int64_t kWidth = 2;
constexpr int64_t kLayers = 2;

struct Geometry {
    int64_t tokens = 3;  // tokens per frame
    int64_t block = 2;   // block size: frames of 3 tokens take 2 blocks, the second one short
};

// Both caches plus a host model of the paged pools ([pool rows, width] per layer, K and V).
struct Pair {
    Geometry g;
    KvCache dense;
    PagedKvCache paged;
    std::vector<std::vector<float>> k, v;

    Pair(Geometry geo, int64_t window, int64_t sink, int64_t max_frames, int64_t max_write)
        : g(geo),
          dense(dense_config(geo, window, sink, max_frames)),
          paged(paged_config(geo, window, sink, max_frames, max_write)) {
        const size_t rows = static_cast<size_t>(paged.pool_blocks() * g.block);
        k.assign(kLayers, std::vector<float>(rows * kWidth, 0.0f));
        v = k;
    }

    static KvCacheConfig dense_config(Geometry g, int64_t window, int64_t sink, int64_t max_frames) {
        KvCacheConfig c;
        c.num_layers = kLayers;
        c.tokens_per_frame = g.tokens;
        c.width = kWidth;
        c.window_frames = window;
        c.sink_frames = sink;
        c.max_frames = max_frames;
        return c;
    }
    static PagedKvCacheConfig paged_config(Geometry g, int64_t window, int64_t sink, int64_t max_frames,
                                           int64_t max_write) {
        PagedKvCacheConfig c;
        c.num_layers = kLayers;
        c.tokens_per_frame = g.tokens;
        c.width = kWidth;
        c.window_frames = window;
        c.sink_frames = sink;
        c.max_frames = max_frames;
        c.block_size = g.block;
        c.max_write_frames = max_write;
        c.q_block = 4;  // several query blocks per chunk
        return c;
    }

    // Element c of token `token` of frame `frame` written by `pass` to `layer`: K = marker + c, V = -K. Exact
    // integers (below 2^24) that tell every frame, pass, token, layer and element apart.
    float marker(int64_t frame, int pass, int64_t token, int64_t layer) const {
        return static_cast<float>(frame * 100000 + pass * 1000 + token * 4 + layer * 2);
    }

    // Writes frames [start, start + n) with `pass` to both caches; checks the plans agree.
    void put(int64_t start, int64_t n, int pass, bool protect = false) {
        const KvWrite w = dense.plan(start, n, protect);
        const int64_t rows = n * g.tokens;
        for (int64_t l = 0; l < kLayers; ++l) {
            std::vector<float> kr(static_cast<size_t>(rows * kWidth)), vr(kr.size());
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c = 0; c < kWidth; ++c) {
                    const float m = marker(start + r / g.tokens, pass, r % g.tokens, l) + static_cast<float>(c);
                    kr[static_cast<size_t>(r * kWidth + c)] = m;
                    vr[static_cast<size_t>(r * kWidth + c)] = -m;
                }
            }
            dense.write(l, w, kr.data(), vr.data());
        }
        dense.commit(w);

        const PagedKvPlan& p = paged.write(start, n, protect);
        EXPECT_EQ(p.write.slot_begin, w.slot_begin);
        EXPECT_EQ(p.write.slot_end, w.slot_end);
        EXPECT_EQ(p.write.write_begin, w.write_begin);
        EXPECT_EQ(p.write.evict_frames, w.evict_frames);
        EXPECT_EQ(p.write.recompute, w.recompute);
        EXPECT_EQ(p.q_len, rows);
        // What the k/v store kernels do: row r of the chunk goes to pool row dst_row[r] unless negative.
        for (int64_t l = 0; l < kLayers; ++l) {
            for (int64_t r = 0; r < rows; ++r) {
                const int32_t dst = p.host.dst_row[r];
                const bool protected_row = w.slot_begin + r / g.tokens < w.write_begin;
                EXPECT_EQ(dst < 0, protected_row) << "row " << r;
                if (dst < 0) continue;
                for (int64_t c = 0; c < kWidth; ++c) {
                    const float m = marker(start + r / g.tokens, pass, r % g.tokens, l) + static_cast<float>(c);
                    k[static_cast<size_t>(l)][static_cast<size_t>(dst * kWidth + c)] = m;
                    v[static_cast<size_t>(l)][static_cast<size_t>(dst * kWidth + c)] = -m;
                }
            }
        }
        check();
    }

    // The caches agree: frames, indices, slot map; distinct pages; the keys a query block sees through the
    // table (valid rows of the listed blocks, in order) are KvCache's rows of slots [0, slot_end).
    void check() {
        ASSERT_EQ(paged.frames(), dense.frames());
        ASSERT_EQ(paged.end_frame(), dense.end_frame());
        ASSERT_EQ(paged.slot_frames(), dense.slot_frames());
        const auto& pages = paged.slot_pages();
        ASSERT_EQ(static_cast<int64_t>(pages.size()), paged.frames());
        EXPECT_EQ(std::set<int64_t>(pages.begin(), pages.end()).size(), pages.size()) << "pages of live slots repeat";
        for (int64_t pg : pages) EXPECT_TRUE(pg >= 0 && pg < paged.config().max_frames) << pg;

        const PagedKvPlan& p = paged.last_plan();
        const int64_t slots = p.write.slot_end;
        EXPECT_EQ(p.num_kv_blocks, slots * paged.blocks_per_frame());
        EXPECT_EQ(p.kv_tokens, slots * g.tokens);
        const int64_t q_block = paged.config().q_block;
        EXPECT_EQ(p.num_q_blocks, (p.q_len + q_block - 1) / q_block);
        for (int64_t qb = 0; qb < p.num_q_blocks; ++qb) {
            const int32_t begin = p.host.indptr[qb], end = p.host.indptr[qb + 1];
            ASSERT_EQ(end - begin, p.num_kv_blocks) << "query block " << qb;
            for (int64_t l = 0; l < kLayers; ++l) {
                // Gather the valid rows of the listed blocks, as the attention kernel reads them.
                std::vector<float> seen_k, seen_v;
                for (int32_t j = begin; j < end; ++j) {
                    const int32_t b = p.host.indices[j];
                    ASSERT_TRUE(b >= 0 && b < paged.pool_blocks());
                    for (int32_t t = 0; t < p.host.block_len[b]; ++t) {
                        const int64_t row = static_cast<int64_t>(b) * g.block + t;
                        for (int64_t c = 0; c < kWidth; ++c) {
                            seen_k.push_back(k[static_cast<size_t>(l)][static_cast<size_t>(row * kWidth + c)]);
                            seen_v.push_back(v[static_cast<size_t>(l)][static_cast<size_t>(row * kWidth + c)]);
                        }
                    }
                }
                const std::vector<float> want_k(dense.keys(l), dense.keys(l) + slots * g.tokens * kWidth);
                const std::vector<float> want_v(dense.values(l), dense.values(l) + slots * g.tokens * kWidth);
                ASSERT_EQ(seen_k, want_k) << "layer " << l << ", query block " << qb;
                ASSERT_EQ(seen_v, want_v) << "layer " << l << ", query block " << qb;
            }
        }
        // kv_rows: the same rows, token by token (the window-relative re-rotation reads them).
        for (int64_t l = 0; l < kLayers; ++l) {
            for (int64_t r = 0; r < p.kv_tokens; ++r) {
                const int32_t row = p.host.kv_rows[r];
                for (int64_t c = 0; c < kWidth; ++c) {
                    ASSERT_EQ(k[static_cast<size_t>(l)][static_cast<size_t>(row * kWidth + c)],
                              dense.keys(l)[r * kWidth + c])
                        << "kv_rows[" << r << "]";
                }
            }
        }
    }
};

TEST(PagedKvCache, RewritesInPlaceLikeKvCache) {
    Pair c(Geometry{}, -1, 0, 12, 3);
    for (int pass = 0; pass <= 4; ++pass) c.put(0, 3, pass);
    c.put(3, 3, 0);
    c.put(3, 3, 1);
    EXPECT_EQ(c.paged.slot_frames(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
    EXPECT_EQ(c.paged.slot_pages(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));  // lowest pages first
}

TEST(PagedKvCache, WindowEvictionFreesPagesWithoutMovingData) {
    Pair c(Geometry{}, /*window=*/6, /*sink=*/2, 6, 2);
    for (int64_t start = 0; start < 14; start += 2) {
        const std::vector<int64_t> before = c.paged.slot_pages();
        c.put(start, 2, 0);
        if (start >= 6) {
            // Frames after the sink keep their pages, shifted left; the new frames reuse the evicted pages.
            const auto& after = c.paged.slot_pages();
            EXPECT_EQ(after[0], before[0]);
            EXPECT_EQ(after[1], before[1]);
            EXPECT_EQ(after[2], before[4]);
            EXPECT_EQ(after[3], before[5]);
            EXPECT_EQ(std::set<int64_t>({after[4], after[5]}), std::set<int64_t>({before[2], before[3]}));
        }
        c.put(start, 2, 1);
    }
    EXPECT_EQ(c.paged.slot_frames(), (std::vector<int64_t>{0, 1, 10, 11, 12, 13}));
    EXPECT_EQ(c.paged.pool_blocks(), 6 * 2);
}

TEST(PagedKvCache, UnalignedChunksAndLargeFrames) {
    // 130 tokens per frame in blocks of 128: two blocks per frame, the second holds 2 tokens.
    Pair big(Geometry{130, 128}, 7, 1, 7, 3);
    for (int64_t start = 0; start < 12; start += 3) {
        big.put(start, 3, 0);
        big.put(start, 3, 1);
    }
    EXPECT_EQ(big.paged.blocks_per_frame(), 2);
    EXPECT_EQ(big.paged.last_plan().host.block_len[1], 2);
    EXPECT_EQ(big.paged.last_plan().host.block_len[2], 128);
    Pair c(Geometry{5, 2}, 7, 1, 7, 3);  // 3 blocks per frame
    for (int64_t start = 0; start < 9; start += 3) c.put(start, 3, 0);
    EXPECT_EQ(c.paged.slot_frames(), (std::vector<int64_t>{0, 3, 4, 5, 6, 7, 8}));
}

TEST(PagedKvCache, RecacheAfterPromptSwitchKeepsTheSink) {
    Pair c(Geometry{}, 6, 2, 6, 6);
    for (int64_t start = 0; start < 10; start += 2) c.put(start, 2, 0);
    ASSERT_EQ(c.paged.slot_frames(), (std::vector<int64_t>{0, 1, 6, 7, 8, 9}));
    const std::vector<int64_t> pages = c.paged.slot_pages();
    c.put(4, 6, 7, /*protect=*/true);        // the sink rows get dst_row -1, checked in put()
    EXPECT_EQ(c.paged.slot_pages(), pages);  // a recompute takes no page
    c.put(4, 6, 8, /*protect=*/false);       // without protection the sink slots now hold frames 4 and 5
    c.put(10, 2, 0);
    EXPECT_EQ(c.paged.slot_frames(), (std::vector<int64_t>{4, 5, 8, 9, 10, 11}));
}

// A LongLive-like run: chunks of 3, window 9 with a sink of 3, a re-cache after two prompt switches (frames
// [S - window + sink, S) protected, as Rollout::recache writes them), and the first-chunk rewrite semantics.
TEST(PagedKvCache, LongRolloutWithSwitchesMatchesKvCache) {
    Pair c(Geometry{7, 4}, 9, 3, 9, 9);
    for (int64_t start = 0; start < 45; start += 3) {
        if (start == 12 || start == 30) {
            // At 12 as Rollout::recache does (the sink frames skipped); at 30 the whole window, so that the sink
            // slots' rows are protected (dst_row -1).
            const int64_t first = start == 12 ? start - 9 + 3 : start - 9;
            c.put(first, start - first, 50, /*protect=*/true);
        }
        for (int pass = 0; pass < 5; ++pass) c.put(start, 3, pass);
    }
    EXPECT_EQ(c.paged.frames(), 9);
    EXPECT_EQ(c.paged.end_frame(), 45);
    // Reset forgets everything and hands every page back.
    c.paged.reset(0);
    c.dense.reset(0);
    EXPECT_EQ(c.paged.frames(), 0);
    c.put(0, 3, 0);
    EXPECT_EQ(c.paged.slot_pages(), (std::vector<int64_t>{0, 1, 2}));
}

TEST(PagedKvCache, RefusesWhatCannotFit) {
    PagedKvCacheConfig cfg = Pair::paged_config(Geometry{}, 4, 2, 4, 2);
    PagedKvCache small(cfg);
    small.write(0, 2);
    small.write(2, 2);
    EXPECT_THROW(small.write(4, 3), InputError);  // more than the tables were planned for
    cfg.max_write_frames = 3;
    PagedKvCache small3(cfg);
    small3.write(0, 2);
    small3.write(2, 2);
    EXPECT_THROW(small3.write(4, 3), InputError);  // 3 > window - sink
    PagedKvCache unbounded(Pair::paged_config(Geometry{}, -1, 0, 4, 4));
    unbounded.write(0, 4);
    EXPECT_THROW(unbounded.write(4, 1), InputError);  // the planned run length is exceeded
    EXPECT_THROW(PagedKvCache(Pair::paged_config(Geometry{}, 4, 4, 4, 2)), InputError);
    EXPECT_THROW(PagedKvCache(Pair::paged_config(Geometry{}, 4, 0, 4, 5)), InputError);  // write > storage
    PagedKvCacheConfig huge = Pair::paged_config(Geometry{8160, 128}, -1, 0, 1 << 20, 3);
    EXPECT_THROW(PagedKvCache::device_bytes(huge), InputError);  // rows overflow int32
}

TEST(PagedKvCache, DeviceBytesCountPoolsAndTables) {
    PagedKvCacheConfig cfg = Pair::paged_config(Geometry{1560, 128}, 21, 3, 21, 3);
    cfg.width = 1536;
    const size_t pool = static_cast<size_t>(21 * 13 * 128 * 1536) * 2;  // 13 blocks per 1560-token frame
    EXPECT_EQ(PagedKvCache::pool_bytes(cfg), pool * 2 * kLayers);
    EXPECT_GT(PagedKvCache::device_bytes(cfg), PagedKvCache::pool_bytes(cfg));
    cfg.rotated_keys = true;
    EXPECT_EQ(PagedKvCache::pool_bytes(cfg), pool * (2 * kLayers + 1));
}

}  // namespace
}  // namespace lr

namespace lr {
namespace {

// A 13 x 10 patch frame in tiles of 8 x 8 (4 blocks, two short), a window of 4 frames, 3 retained blocks, 2 heads.
PagedKvCacheConfig tile_config() {
    PagedKvCacheConfig c;
    c.num_layers = 1;
    c.tokens_per_frame = 13 * 10;
    c.grid_cols = 10;
    c.tile = {8, 8};
    c.width = 4;
    c.window_frames = 4;
    c.max_frames = 4;
    c.block_size = 64;
    c.max_write_frames = 2;
    c.retained_blocks = 3;
    c.heads = 2;
    return c;
}

// Tile mode (the sparse step): every raster token of a frame lands in its tile's block, tiles are blocks of
// their own length, and retained blocks after the frame pages carry a length per head.
TEST(PagedKvCacheTiles, TokensLandInTheirTilesBlocks) {
    const PagedKvCacheConfig c = tile_config();
    PagedKvCache cache(c);
    const TileLayout t(13, 10, {8, 8});
    ASSERT_EQ(cache.blocks_per_frame(), 4);
    EXPECT_EQ(cache.pool_blocks(), 4 * 4 + 3);
    EXPECT_EQ(cache.block_len_heads(), 2);
    const PagedKvPlan& p = cache.write(0, 2);
    std::set<int32_t> rows;
    for (int64_t f = 0; f < 2; ++f) {
        const int64_t page = cache.slot_pages()[static_cast<size_t>(f)];
        for (int64_t r = 0; r < 130; ++r) {
            const int32_t row = p.host.dst_row[f * 130 + r];
            rows.insert(row);
            const int64_t block = row / 64, off = row % 64;
            // Raster token (y, x) belongs to tile (y / 8, x / 8).
            EXPECT_EQ(block, page * 4 + (r / 10 / 8) * 2 + (r % 10) / 8) << r;
            EXPECT_LT(off, t.tile_len(block % 4));
        }
    }
    EXPECT_EQ(rows.size(), 260u);
    for (int64_t b = 0; b < 16; ++b)
        for (int64_t h = 0; h < 2; ++h) EXPECT_EQ(p.host.block_len[b * 2 + h], t.tile_len(b % 4));
    for (int64_t h = 0; h < 2; ++h) EXPECT_EQ(p.host.block_len[cache.retained_block(1) * 2 + h], 0);
    cache.set_retained_len(1, 1, 40);
    EXPECT_EQ(cache.last_plan().host.block_len[cache.retained_block(1) * 2 + 1], 40);
    EXPECT_EQ(cache.last_plan().host.block_len[cache.retained_block(1) * 2], 0);
}

// reset() starts a new run: the retained blocks are empty again (length 0 for every head, so no table of the next
// run reads them), the frame pages keep their lengths, and the pages are handed out as in a fresh cache.
TEST(PagedKvCacheTiles, ResetEmptiesTheRetainedBlocks) {
    const PagedKvCacheConfig c = tile_config();
    PagedKvCache fresh(c), reused(c);
    const PagedKvPlan& want = fresh.write(0, 2);
    const std::vector<int32_t> want_len(want.host.block_len, want.host.block_len + fresh.pool_blocks() * 2);
    for (int64_t s = 0; s < 4; s += 2) reused.write(s, 2);
    reused.write(4, 2);  // evicts: the step would retain some of the departing blocks
    reused.set_retained_len(0, 0, 64);
    reused.set_retained_len(2, 1, 16);
    reused.reset(0);
    const PagedKvPlan& got = reused.write(0, 2);
    EXPECT_EQ(std::vector<int32_t>(got.host.block_len, got.host.block_len + reused.pool_blocks() * 2), want_len);
    EXPECT_EQ(reused.slot_pages(), fresh.slot_pages());
    EXPECT_EQ(reused.slot_frames(), fresh.slot_frames());
}

}  // namespace
}  // namespace lr
