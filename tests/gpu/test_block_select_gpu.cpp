// launch_block_select against block_select_cpu, and launch_segment_mean_bf16 against segment_mean_cpu, on random
// inputs shaped like the policies' (a window of frames of tiles: a sink frame, competing middle frames, the
// chunk's own frames as MUST, retained blocks per head as extras).
//
// The GPU computes every score with the CPU's roundings (block_select_cuda.cu), so the two must choose the same
// blocks in the same order. Where a row differs anyway, the test accepts it only when every block one side took
// and the other did not is explained by a near tie (CPU scores, or the group means that decided, within 1e-5
// relative); rows with exact ties (duplicated key summaries) must match exactly, since ties go to the lower
// candidate (group) index on both sides.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/block_select.h"
#include "runtime/core/dtype.h"

namespace lr {
namespace {

// A selection problem on the host.
struct SelectCase {
    int64_t heads = 0, head_dim = 0, num_q_blocks = 0, num_blocks = 0;
    std::vector<int32_t> cand_block, cand_group;
    std::vector<uint8_t> cand_kind, group_competes;
    int64_t topk_groups = 0, topk_blocks = 0;
    bool extras = false;
    std::vector<int32_t> extra_indptr, extra_block;
    std::vector<float> q_mean, k_mean;  // [heads, num_q_blocks, head_dim], [num_blocks, heads, head_dim]

    BlockSelectParams params() const {
        BlockSelectParams p;
        p.q_mean = q_mean.data();
        p.k_mean = k_mean.data();
        p.heads = heads;
        p.head_dim = head_dim;
        p.num_q_blocks = num_q_blocks;
        p.num_blocks = num_blocks;
        p.cand_block = cand_block.data();
        p.cand_group = cand_group.empty() ? nullptr : cand_group.data();
        p.cand_kind = cand_kind.data();
        p.num_cand = static_cast<int64_t>(cand_block.size());
        p.group_competes = group_competes.data();
        p.num_groups = static_cast<int64_t>(group_competes.size());
        p.topk_groups = topk_groups;
        p.topk_blocks = topk_blocks;
        p.extra_indptr = extras ? extra_indptr.data() : nullptr;
        p.extra_block = extras ? extra_block.data() : nullptr;
        return p;
    }
};

// Window shape: `frames` frames of `tiles` blocks each, in frame-major candidate order (shuffled within a frame
// when `shuffle`); frame 0 (sink) SCORED in a non-competing group, frames [1, frames - must_frames) SCORED in
// competing groups (when `groups`, else no group), the last `must_frames` MUST. Blocks beyond the window
// (num_blocks - frames * tiles of them) are retained: each head gets `extras_per_head` (random, head 1 none).
SelectCase window_case(int64_t heads, int64_t head_dim, int64_t q_blocks, int frames, int tiles, int must_frames,
                       bool groups, int retained, int extras_per_head, uint32_t seed, bool shuffle = true) {
    std::mt19937 rng(seed);
    SelectCase c;
    c.heads = heads;
    c.head_dim = head_dim;
    c.num_q_blocks = q_blocks;
    c.num_blocks = static_cast<int64_t>(frames) * tiles + retained;
    // Block ids of the window are a permutation of the pool: the cache's slots are not in frame order.
    std::vector<int32_t> slot(static_cast<size_t>(c.num_blocks));
    std::iota(slot.begin(), slot.end(), 0);
    std::shuffle(slot.begin(), slot.end(), rng);
    for (int f = 0; f < frames; ++f) {
        std::vector<int32_t> order(static_cast<size_t>(tiles));
        std::iota(order.begin(), order.end(), 0);
        if (shuffle) std::shuffle(order.begin(), order.end(), rng);
        for (int t : order) {
            c.cand_block.push_back(slot[static_cast<size_t>(f * tiles + t)]);
            const bool must = f >= frames - must_frames;
            c.cand_kind.push_back(static_cast<uint8_t>(must ? CandidateKind::kMust : CandidateKind::kScored));
            c.cand_group.push_back(groups ? f : -1);
        }
    }
    if (groups) {
        for (int f = 0; f < frames; ++f) c.group_competes.push_back(f > 0 && f < frames - must_frames ? 1 : 0);
    }
    if (extras_per_head > 0) {
        c.extras = true;
        c.extra_indptr = {0};
        for (int64_t h = 0; h < heads; ++h) {
            std::vector<int32_t> pool(slot.begin() + frames * tiles, slot.end());
            std::shuffle(pool.begin(), pool.end(), rng);
            const int n = h == 1 ? 0 : std::min<int>(extras_per_head, static_cast<int>(pool.size()));
            c.extra_block.insert(c.extra_block.end(), pool.begin(), pool.begin() + n);
            c.extra_indptr.push_back(static_cast<int32_t>(c.extra_block.size()));
        }
    }
    std::normal_distribution<float> nd(0.0f, 1.0f);
    c.q_mean.resize(static_cast<size_t>(heads * q_blocks * head_dim));
    for (float& x : c.q_mean) x = nd(rng);
    c.k_mean.resize(static_cast<size_t>(c.num_blocks * heads * head_dim));
    for (float& x : c.k_mean) x = nd(rng);
    return c;
}

std::vector<int32_t> indptr_of(const SelectCase& c) {
    std::vector<int32_t> indptr(static_cast<size_t>(c.heads * c.num_q_blocks + 1));
    block_select_indptr(c.params(), indptr.data());
    return indptr;
}

std::vector<int32_t> run_cpu(const SelectCase& c, const std::vector<int32_t>& indptr) {
    std::vector<int32_t> indices(static_cast<size_t>(indptr.back()), -7);
    BlockSelectParams p = c.params();
    p.indptr = indptr.data();
    p.indices = indices.data();
    block_select_cpu(p);
    return indices;
}

#ifdef LONGROLL_HAS_CUDA
template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
    const std::vector<T> one(1);  // a valid pointer for empty arrays
    const std::vector<T>& src = v.empty() ? one : v;
    return test::to_device(src.data(), src.size() * sizeof(T));
}

// The GPU's indices, with one guard slot past the end that must stay untouched.
std::vector<int32_t> run_gpu(const SelectCase& c, const std::vector<int32_t>& indptr) {
    const DeviceBuffer q = upload(c.q_mean), k = upload(c.k_mean), cb = upload(c.cand_block), cg = upload(c.cand_group),
                       ck = upload(c.cand_kind), gc = upload(c.group_competes), ei = upload(c.extra_indptr),
                       eb = upload(c.extra_block), ip = upload(indptr);
    const std::vector<int32_t> init(static_cast<size_t>(indptr.back()) + 1, -7);
    const DeviceBuffer out = upload(init);
    BlockSelectParams p = c.params();
    p.q_mean = static_cast<const float*>(q.data());
    p.k_mean = static_cast<const float*>(k.data());
    p.cand_block = static_cast<const int32_t*>(cb.data());
    p.cand_group = c.cand_group.empty() ? nullptr : static_cast<const int32_t*>(cg.data());
    p.cand_kind = static_cast<const uint8_t*>(ck.data());
    p.group_competes = static_cast<const uint8_t*>(gc.data());
    p.extra_indptr = c.extras ? static_cast<const int32_t*>(ei.data()) : nullptr;
    p.extra_block = c.extras ? static_cast<const int32_t*>(eb.data()) : nullptr;
    p.indptr = static_cast<const int32_t*>(ip.data());
    p.indices = static_cast<int32_t*>(out.data());
    launch_block_select(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    return test::to_host<int32_t>(out, init.size());
}
#endif

// Scores in double for row (h, qb) of every window block, and the mean of each group's.
struct RowScores {
    std::vector<double> block;  // by block id (0 where not a SCORED candidate)
    std::vector<double> group;
    std::vector<int32_t> group_of;  // by block id, -1: none
};

RowScores row_scores(const SelectCase& c, int64_t h, int64_t qb) {
    RowScores r;
    r.block.assign(static_cast<size_t>(c.num_blocks), 0.0);
    r.group_of.assign(static_cast<size_t>(c.num_blocks), -1);
    r.group.assign(c.group_competes.size(), 0.0);
    std::vector<int> count(c.group_competes.size(), 0);
    const float* q = c.q_mean.data() + (h * c.num_q_blocks + qb) * c.head_dim;
    for (size_t i = 0; i < c.cand_block.size(); ++i) {
        if (c.cand_kind[i] != static_cast<uint8_t>(CandidateKind::kScored)) continue;
        const int32_t b = c.cand_block[i];
        const float* k = c.k_mean.data() + (static_cast<int64_t>(b) * c.heads + h) * c.head_dim;
        double s = 0.0;
        for (int64_t d = 0; d < c.head_dim; ++d) s += static_cast<double>(q[d]) * k[d];
        r.block[static_cast<size_t>(b)] = s;
        const int32_t g = c.cand_group.empty() ? -1 : c.cand_group[i];
        r.group_of[static_cast<size_t>(b)] = g;
        if (g >= 0) {
            r.group[static_cast<size_t>(g)] += s;
            ++count[static_cast<size_t>(g)];
        }
    }
    for (size_t g = 0; g < r.group.size(); ++g) r.group[g] /= std::max(count[g], 1);
    return r;
}

bool near(double a, double b) { return std::fabs(a - b) <= 1e-5 * std::max({std::fabs(a), std::fabs(b), 1e-30}); }

// Compares every row; returns the number of rows that differ (each one explained by near ties, or a failure).
int64_t expect_same_selection(const SelectCase& c, const std::vector<int32_t>& indptr, const std::vector<int32_t>& cpu,
                              const std::vector<int32_t>& gpu, bool exact) {
    EXPECT_EQ(gpu.back(), -7) << "the GPU wrote past the table";
    int64_t differing = 0, unexplained = 0;
    for (int64_t h = 0; h < c.heads; ++h) {
        for (int64_t qb = 0; qb < c.num_q_blocks; ++qb) {
            const int64_t row = h * c.num_q_blocks + qb;
            const auto b = cpu.begin() + indptr[static_cast<size_t>(row)];
            const auto e = cpu.begin() + indptr[static_cast<size_t>(row + 1)];
            const auto g = gpu.begin() + indptr[static_cast<size_t>(row)];
            if (std::equal(b, e, g)) continue;
            ++differing;
            if (exact) {
                if (++unexplained <= 3) ADD_FAILURE() << "row (head " << h << ", query block " << qb << ") differs";
                continue;
            }
            const std::set<int32_t> cs(b, e), gs(g, g + (e - b));
            std::vector<int32_t> only_cpu, only_gpu;
            std::set_difference(cs.begin(), cs.end(), gs.begin(), gs.end(), std::back_inserter(only_cpu));
            std::set_difference(gs.begin(), gs.end(), cs.begin(), cs.end(), std::back_inserter(only_gpu));
            const RowScores s = row_scores(c, h, qb);
            bool ok = !only_cpu.empty() && only_cpu.size() == only_gpu.size();
            for (int32_t x : only_cpu) {
                for (int32_t y : only_gpu) {
                    const int32_t gx = s.group_of[static_cast<size_t>(x)], gy = s.group_of[static_cast<size_t>(y)];
                    const bool group_tie = gx >= 0 && gy >= 0 && gx != gy &&
                                           near(s.group[static_cast<size_t>(gx)], s.group[static_cast<size_t>(gy)]);
                    ok = ok && (near(s.block[static_cast<size_t>(x)], s.block[static_cast<size_t>(y)]) || group_tie);
                }
            }
            if (!ok && ++unexplained <= 3) {
                ADD_FAILURE() << "row (head " << h << ", query block " << qb << "): " << only_cpu.size()
                              << " blocks differ and are not near ties";
            }
        }
    }
    EXPECT_EQ(unexplained, 0) << differing << " rows differ";
    return differing;
}

void check_case(const SelectCase& c, bool exact = false) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const std::vector<int32_t> indptr = indptr_of(c);
    const std::vector<int32_t> cpu = run_cpu(c, indptr);
    const std::vector<int32_t> gpu = run_gpu(c, indptr);
    const int64_t differing = expect_same_selection(c, indptr, cpu, gpu, exact);
    std::printf("  %lld rows, %d entries, %lld rows differ (near ties)\n",
                static_cast<long long>(c.heads * c.num_q_blocks), indptr.back(), static_cast<long long>(differing));
#endif
}

TEST(BlockSelectGpu, NoGroupsNoExtras) {
    SelectCase c = window_case(3, 64, 5, 6, 10, 1, false, 0, 0, 1);
    c.topk_blocks = 17;
    check_case(c);
}

TEST(BlockSelectGpu, GroupsMustAndExtras) {
    // 12 frames of 16 tiles: sink, 9 competing middle frames (3 kept), 2 MUST frames; 20 blocks of the eligible
    // 4 x 16; 30 retained blocks, 7 extras per head (head 1 none).
    SelectCase c = window_case(4, 128, 9, 12, 16, 2, true, 30, 7, 2);
    c.topk_groups = 3;
    c.topk_blocks = 20;
    check_case(c);
}

TEST(BlockSelectGpu, TopkZeroKeepsMustAndExtras) {
    SelectCase c = window_case(2, 128, 4, 8, 12, 3, true, 10, 4, 3);
    c.topk_groups = 2;
    c.topk_blocks = 0;
    check_case(c);
}

TEST(BlockSelectGpu, TopkAtLeastEligibleKeepsEveryEligibleBlock) {
    SelectCase c = window_case(2, 128, 4, 8, 12, 1, true, 5, 3, 4);
    c.topk_groups = 4;
    c.topk_blocks = 1000;  // > sink 12 + 4 x 12
    check_case(c);
    c.topk_groups = 100;  // every group competes and is kept
    check_case(c);
}

TEST(BlockSelectGpu, EmptyCandidateList) {
    SelectCase c = window_case(3, 128, 3, 0, 0, 0, false, 12, 5, 5);
    c.topk_blocks = 10;
    check_case(c);
    c.extras = false;  // no extras either: every row is empty
    check_case(c);
}

TEST(BlockSelectGpu, HeadDimNotMultipleOfFourAndOddTail) {
    // head_dim 6 takes the scalar loads; 45 query blocks x 12 heads runs 2 query blocks per CTA with a tail.
    SelectCase c = window_case(12, 6, 45, 10, 9, 1, true, 3, 2, 6);
    c.topk_groups = 5;
    c.topk_blocks = 31;
    check_case(c);
}

TEST(BlockSelectGpu, FourQueryBlocksPerCtaWithTail) {
    SelectCase c = window_case(12, 128, 101, 21, 16, 3, true, 40, 9, 7);
    c.topk_groups = 8;
    c.topk_blocks = 84;
    check_case(c);
}

TEST(BlockSelectGpu, ExactTiesGoToTheLowerIndex) {
    // Every frame's tiles share 5 key summaries (tile t of each frame = base[t % 5]), and the candidates are in
    // the same tile order in every frame: block scores tie in groups and every group's mean ties exactly, on
    // both sides (the same fp32 operations), so only the index rule decides, which must agree exactly.
    SelectCase c = window_case(4, 128, 6, 9, 10, 1, true, 0, 0, 8, /*shuffle=*/false);
    const int64_t w = c.heads * c.head_dim;
    for (size_t i = 0; i < c.cand_block.size(); ++i) {
        const int64_t tile = static_cast<int64_t>(i) % 10 % 5;
        const int32_t base = c.cand_block[static_cast<size_t>(tile)];
        std::copy_n(c.k_mean.begin() + base * w, w, c.k_mean.begin() + c.cand_block[i] * w);
    }
    for (int64_t topk_groups : {1, 3, 7}) {
        for (int64_t topk_blocks : {1, 3, 7, 16, 25}) {
            c.topk_groups = topk_groups;
            c.topk_blocks = topk_blocks;
            check_case(c, /*exact=*/true);
        }
    }
    // Zero queries: every score is 0 (+0 and -0 alike), every block ties.
    std::fill(c.q_mean.begin(), c.q_mean.end(), 0.0f);
    std::mt19937 rng(9);
    for (size_t i = 0; i < c.q_mean.size(); i += 7) c.q_mean[i] = rng() % 2 ? 0.0f : -0.0f;
    c.topk_groups = 3;
    c.topk_blocks = 11;
    check_case(c, /*exact=*/true);
}

TEST(BlockSelectGpu, ManyCandidatesOneQueryBlockPerCta) {
    // 8192 candidates (no groups) and 2048 in 64 groups: the shared-memory layout at its largest.
    SelectCase c = window_case(2, 64, 3, 64, 128, 1, false, 0, 0, 10);
    c.topk_blocks = 2000;
    check_case(c);
    SelectCase g = window_case(2, 128, 5, 64, 32, 2, true, 16, 16, 11);
    g.topk_groups = 20;
    g.topk_blocks = 333;
    check_case(g);
}

TEST(BlockSelectGpu, Shape1088pWindow) {
    // 1088p: 72 tiles per frame, a 21-frame window (1512 candidates), 12 heads, 192 query blocks of the 3-frame
    // chunk; the chunk's 3 frames are MUST, the sink scored, 17 middle frames compete for 6, a quarter of the
    // window's blocks kept; 24 retained blocks per head.
    SelectCase c = window_case(12, 128, 192, 21, 72, 3, true, 200, 24, 12);
    c.topk_groups = 6;
    c.topk_blocks = 378 - 3 * 72;
    check_case(c);
    // Without groups: a plain top-k of a quarter of the window.
    SelectCase d = window_case(12, 128, 192, 21, 72, 0, false, 0, 0, 13);
    d.topk_blocks = 378;
    check_case(d);
}

// ---- segment mean ------------------------------------------------------------------------------------------

// out_stride / out_head_stride 0: the defaults. The CPU writes [segments, heads, head_dim] densely; the GPU's
// slots are compared through its strides, and every slot it must not write stays at 123.
void check_segment_mean(int64_t rows, int64_t heads, int64_t head_dim, int64_t x_stride, int64_t out_stride,
                        int64_t out_head_stride, const std::vector<int32_t>& seg_begin,
                        const std::vector<int32_t>& seg_len, uint32_t seed) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t width = heads * head_dim;
    const int64_t xs = x_stride ? x_stride : width, os = out_stride ? out_stride : width;
    const int64_t hs = out_head_stride ? out_head_stride : head_dim;
    const auto segments = static_cast<int64_t>(seg_begin.size());
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<uint16_t> x(static_cast<size_t>(rows * xs));
    std::vector<float> xf(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        // A per-column offset: sums grow (a mean of keys is not centred), so the rounding of fp32 sums shows.
        const float offset = static_cast<float>(static_cast<int64_t>(i) % xs % 7) - 3.0f;
        x[i] = f32_to_bf16_bits(offset + nd(rng));
        xf[i] = bf16_bits_to_f32(x[i]);
    }
    const std::vector<int64_t> begin64(seg_begin.begin(), seg_begin.end()), len64(seg_len.begin(), seg_len.end());
    std::vector<float> want(static_cast<size_t>(segments * width));
    SegmentMeanParams cp;
    cp.x = xf.data();
    cp.out = want.data();
    cp.seg_begin = begin64.data();
    cp.seg_len = len64.data();
    cp.segments = segments;
    cp.heads = heads;
    cp.head_dim = head_dim;
    cp.x_row_stride = x_stride;
    segment_mean_cpu(cp);

    const int64_t out_size = (segments - 1) * os + (heads - 1) * hs + head_dim;
    std::vector<uint8_t> covered(static_cast<size_t>(out_size), 0);
    const DeviceBuffer dx = upload(x), db = upload(seg_begin), dl = upload(seg_len);
    const std::vector<float> init(static_cast<size_t>(out_size), 123.0f);
    const DeviceBuffer dout = upload(init);
    SegmentMeanBf16Params gp;
    gp.x = dx.data();
    gp.out = static_cast<float*>(dout.data());
    gp.seg_begin = static_cast<const int32_t*>(db.data());
    gp.seg_len = static_cast<const int32_t*>(dl.data());
    gp.segments = segments;
    gp.heads = heads;
    gp.head_dim = head_dim;
    gp.x_row_stride = x_stride;
    gp.out_stride = out_stride;
    gp.out_head_stride = out_head_stride;
    launch_segment_mean_bf16(gp, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> got = test::to_host<float>(dout, init.size());

    // fp32 sums of len terms in order: |error| <= (len - 1) 2^-24 sum |x| for the sum, plus the division's
    // rounding; relative to mean |x|, (len + 1) 2^-24. Bound (len + 4) 2^-24 mean |x|.
    double worst_ratio = 0.0, worst_abs = 0.0;
    int64_t bad = 0;
    for (int64_t s = 0; s < segments; ++s) {
        const int32_t len = std::max(seg_len[static_cast<size_t>(s)], 0);
        for (int64_t e = 0; e < width; ++e) {
            const int64_t at = s * os + (e / head_dim) * hs + e % head_dim;
            covered[static_cast<size_t>(at)] = 1;
            double mean_abs = 0.0;
            for (int32_t r = 0; r < len; ++r)
                mean_abs += std::fabs(xf[static_cast<size_t>((seg_begin[static_cast<size_t>(s)] + r) * xs + e)]);
            mean_abs /= std::max(len, 1);
            const double bound = (len + 4) * std::ldexp(1.0, -24) * mean_abs + 1e-30;
            const float w = want[static_cast<size_t>(s * width + e)], g = got[static_cast<size_t>(at)];
            const double err = std::fabs(static_cast<double>(g) - w);
            worst_abs = std::max(worst_abs, err);
            worst_ratio = std::max(worst_ratio, err / bound);
            if (!(err <= bound) && ++bad <= 5)
                ADD_FAILURE() << "segment " << s << " col " << e << ": cpu " << w << ", gpu " << g;
        }
    }
    int64_t stray = 0;
    for (int64_t at = 0; at < out_size; ++at)
        stray += !covered[static_cast<size_t>(at)] && got[static_cast<size_t>(at)] != 123.0f;
    EXPECT_EQ(bad, 0);
    EXPECT_EQ(stray, 0) << "slots outside the output written";
    std::printf("  segment mean: max |gpu - cpu| %.3g, max error / bound %.3f\n", worst_abs, worst_ratio);
#endif
}

TEST(SegmentMeanGpu, Bf16StridedSegmentsMatchCpu) {
    // Blocks of a pool (128 rows), short and single-row segments, an empty and a negative-length one,
    // overlapping segments, a 300-row one; strided rows and outputs.
    const std::vector<int32_t> begin = {0, 128, 256, 5, 700, 17, 300, 299, 400, 0};
    const std::vector<int32_t> len = {128, 128, 24, 1, 0, 300, 64, 2, -3, 650};
    check_segment_mean(720, 12, 128, 12 * 128 + 64, 12 * 128 + 4, 0, begin, len, 21);
}

TEST(SegmentMeanGpu, OddWidthScalarPath) {
    const std::vector<int32_t> begin = {0, 3, 50, 99};
    const std::vector<int32_t> len = {3, 47, 49, 1};
    check_segment_mean(100, 3, 5, 0, 0, 0, begin, len, 22);  // width 15: one column per thread
}

TEST(SegmentMeanGpu, HeadMajorOutputForBlockSelect) {
    // Query blocks of 128 rows into [heads, segments, head_dim] (block_select's q_mean); head_dim 7 makes bf16
    // pairs straddle two heads.
    std::vector<int32_t> begin, len;
    for (int32_t r = 0; r < 700; r += 128) {
        begin.push_back(r);
        len.push_back(std::min(128, 700 - r));
    }
    const auto segments = static_cast<int64_t>(begin.size());
    check_segment_mean(700, 12, 128, 0, 128, segments * 128, begin, len, 24);
    check_segment_mean(700, 4, 7, 0, 7, segments * 7, begin, len, 25);
}

TEST(SegmentMeanGpu, ManyBlocksOfAFrame) {
    // The keys of a 480p frame in 16 tiles of up to 128 tokens (8 x 16 patches of a 30 x 52 grid).
    std::vector<int32_t> begin, len;
    int32_t at = 0;
    for (int ty = 0; ty < 30; ty += 8) {
        for (int tx = 0; tx < 52; tx += 16) {
            const int32_t n = std::min(8, 30 - ty) * std::min(16, 52 - tx);
            begin.push_back(at);
            len.push_back(n);
            at += n;
        }
    }
    ASSERT_EQ(at, 1560);
    check_segment_mean(1560, 12, 128, 0, 0, 0, begin, len, 23);
}

// A layer's summaries in one launch (launch_segment_means_bf16): jobs of different widths, strides, paths (pairs
// and scalar) and output layouts, one without segments. Each job's output must be bit-identical to its own launch
// (the same sums in the same order), within the fp32 bound of segment_mean_cpu's means, and no other slot of the
// shared output buffer may change.
TEST(SegmentMeanGpu, BatchedJobsEqualSeparateLaunches) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    struct Job {
        int64_t rows, heads, head_dim, x_stride, out_stride, out_head_stride;
        std::vector<int32_t> begin, len;
    };
    const std::vector<Job> jobs = {
        {400, 12, 128, 0, 0, 0, {0, 128, 256, 384}, {128, 128, 128, 16}},               // a frame's keys
        {400, 12, 128, 12 * 128 + 64, 0, 0, {0, 100, 7}, {100, 300, 1}},                // strided rows
        {300, 12, 128, 0, 128, 5 * 128, {0, 64, 128, 192, 256}, {64, 64, 64, 64, 44}},  // head-major
        {50, 3, 5, 0, 0, 0, {0, 10, 49}, {10, 39, 1}},                                  // width 15: scalar
        {10, 12, 128, 0, 0, 0, {}, {}},                                                 // no segments
        {200, 2, 128, 0, 0, 0, {0, 3}, {3, 197}},
    };
    std::mt19937 rng(31);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<DeviceBuffer> keep;
    std::vector<std::vector<float>> xf(jobs.size());
    std::vector<int64_t> out_at(jobs.size()), out_len(jobs.size());
    int64_t total_out = 0;
    std::vector<SegmentMeanBf16Params> params(jobs.size());
    for (size_t j = 0; j < jobs.size(); ++j) {
        const Job& jb = jobs[j];
        const int64_t width = jb.heads * jb.head_dim, xs = jb.x_stride ? jb.x_stride : width;
        std::vector<uint16_t> x(static_cast<size_t>(jb.rows * xs));
        xf[j].resize(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
            x[i] = f32_to_bf16_bits(static_cast<float>(static_cast<int64_t>(i) % xs % 5) - 2.0f + nd(rng));
            xf[j][i] = bf16_bits_to_f32(x[i]);
        }
        keep.push_back(upload(x));
        const auto segs = static_cast<int64_t>(jb.begin.size());
        const int64_t os = jb.out_stride ? jb.out_stride : width,
                      hs = jb.out_head_stride ? jb.out_head_stride : jb.head_dim;
        out_at[j] = total_out;
        out_len[j] = segs ? (segs - 1) * os + (jb.heads - 1) * hs + jb.head_dim : 0;
        total_out += out_len[j] + 3;  // a gap of untouched slots between jobs
        SegmentMeanBf16Params& p = params[j];
        p.x = keep.back().data();
        if (segs) {
            keep.push_back(upload(jb.begin));
            p.seg_begin = static_cast<const int32_t*>(keep.back().data());
            keep.push_back(upload(jb.len));
            p.seg_len = static_cast<const int32_t*>(keep.back().data());
        }
        p.segments = segs;
        p.heads = jb.heads;
        p.head_dim = jb.head_dim;
        p.x_row_stride = jb.x_stride;
        p.out_stride = jb.out_stride;
        p.out_head_stride = jb.out_head_stride;
    }
    const std::vector<float> init(static_cast<size_t>(total_out), 123.0f);
    const DeviceBuffer separate = upload(init), batched = upload(init);
    for (size_t j = 0; j < jobs.size(); ++j) {
        SegmentMeanBf16Params p = params[j];
        p.out = static_cast<float*>(separate.data()) + out_at[j];
        if (p.segments) launch_segment_mean_bf16(p, nullptr);
        params[j].out = static_cast<float*>(batched.data()) + out_at[j];
    }
    launch_segment_means_bf16(params.data(), static_cast<int>(params.size()), nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> a = test::to_host<float>(separate, init.size());
    const std::vector<float> b = test::to_host<float>(batched, init.size());
    int64_t differ = 0, bad = 0, written = 0;
    std::vector<uint8_t> covered(init.size(), 0);
    for (size_t j = 0; j < jobs.size(); ++j) {
        const Job& jb = jobs[j];
        const int64_t width = jb.heads * jb.head_dim, xs = jb.x_stride ? jb.x_stride : width;
        const int64_t os = jb.out_stride ? jb.out_stride : width,
                      hs = jb.out_head_stride ? jb.out_head_stride : jb.head_dim;
        for (size_t s = 0; s < jb.begin.size(); ++s) {
            for (int64_t e = 0; e < width; ++e) {
                const auto at = static_cast<size_t>(out_at[j] + static_cast<int64_t>(s) * os + (e / jb.head_dim) * hs +
                                                    e % jb.head_dim);
                covered[at] = 1;
                ++written;
                differ += std::memcmp(&a[at], &b[at], sizeof(float)) != 0;
                // From first principles: the mean of the segment's rows in double.
                double sum = 0.0, sum_abs = 0.0;
                for (int32_t r = 0; r < jb.len[s]; ++r) {
                    const float v = xf[j][static_cast<size_t>((jb.begin[s] + r) * xs + e)];
                    sum += v;
                    sum_abs += std::fabs(v);
                }
                const double bound = (jb.len[s] + 4) * std::ldexp(1.0, -24) * sum_abs / jb.len[s] + 1e-30;
                if (!(std::fabs(b[at] - sum / jb.len[s]) <= bound) && ++bad <= 5)
                    ADD_FAILURE() << "job " << j << " segment " << s << " col " << e << ": gpu " << b[at] << ", want "
                                  << sum / jb.len[s];
            }
        }
    }
    int64_t stray = 0;
    for (size_t at = 0; at < init.size(); ++at) stray += !covered[at] && (a[at] != 123.0f || b[at] != 123.0f);
    EXPECT_GT(written, 0);
    EXPECT_EQ(differ, 0) << "batched and separate launches differ";
    EXPECT_EQ(bad, 0);
    EXPECT_EQ(stray, 0) << "slots outside the jobs' outputs written";
    std::printf("  [ measured ] %lld summary values of %zu jobs in one launch: %lld differ from separate launches\n",
                static_cast<long long>(written), jobs.size(), static_cast<long long>(differ));
    SegmentMeanBf16Params too_many[kMaxSegmentMeanJobs + 1];
    EXPECT_THROW(launch_segment_means_bf16(too_many, kMaxSegmentMeanJobs + 1, nullptr), Error);
#endif
}

}  // namespace
}  // namespace lr
