// The fp32 CSR attention reference and the block selection reference against brute force written here from
// first principles: softmax over the explicit key set a row's table lists; top-k by sorting every score.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include "kernels/block_select.h"
#include "kernels/block_sparse_attention.h"
#include "runtime/core/check.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace lr {
namespace {

using test::random_vector;

// Blocks of random K/V scattered in one buffer: block b starts at row start[b], len[b * H + h] rows for head h.
struct Blocks {
    int64_t heads = 0, hd = 0, width = 0, max_len = 0;
    std::vector<float> k, v;
    std::vector<int64_t> start;
    std::vector<int32_t> len;  // [blocks * heads]
    std::vector<const float*> kp, vp;
    Blocks(int64_t n, int64_t H, int64_t D, int64_t B, uint32_t seed, bool per_head_len)
        : heads(H), hd(D), width(H * D), max_len(B) {
        k = random_vector(n * B * width, seed, -2.0f, 2.0f);
        v = random_vector(n * B * width, seed + 1);
        std::mt19937 rng(seed + 2);
        for (int64_t b = 0; b < n; ++b) {
            start.push_back(b * B);
            const int32_t base = static_cast<int32_t>(1 + rng() % B);
            for (int64_t h = 0; h < H; ++h) len.push_back(per_head_len ? static_cast<int32_t>(1 + rng() % B) : base);
            kp.push_back(k.data() + b * B * width);
            vp.push_back(v.data() + b * B * width);
        }
    }
};

// Brute force: for each query row and head, softmax over the concatenated keys of the row's blocks.
std::vector<float> brute_force(const std::vector<float>& q, int64_t q_len, int64_t q_block, const Blocks& bl,
                               const std::vector<int32_t>& indptr, const std::vector<int32_t>& indices,
                               int64_t table_heads, std::vector<float>* lse) {
    const int64_t H = bl.heads, D = bl.hd, W = bl.width;
    const int64_t nqb = (q_len + q_block - 1) / q_block;
    std::vector<float> out(static_cast<size_t>(q_len * W), 0.0f);
    if (lse) lse->assign(static_cast<size_t>(q_len * H), -INFINITY);
    for (int64_t i = 0; i < q_len; ++i)
        for (int64_t h = 0; h < H; ++h) {
            const int64_t row = (table_heads == 1 ? 0 : h) * nqb + i / q_block;
            std::vector<double> s;
            std::vector<const float*> vs;
            for (int32_t e = indptr[static_cast<size_t>(row)]; e < indptr[static_cast<size_t>(row + 1)]; ++e) {
                const int32_t b = indices[static_cast<size_t>(e)];
                for (int32_t t = 0; t < bl.len[static_cast<size_t>(b * H + h)]; ++t) {
                    const float* kr = bl.k.data() + (bl.start[static_cast<size_t>(b)] + t) * W + h * D;
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d)
                        dot += static_cast<double>(q[static_cast<size_t>(i * W + h * D + d)]) * kr[d];
                    s.push_back(dot / std::sqrt(static_cast<double>(D)));
                    vs.push_back(bl.v.data() + (bl.start[static_cast<size_t>(b)] + t) * W + h * D);
                }
            }
            if (s.empty()) continue;
            const double m = *std::max_element(s.begin(), s.end());
            double sum = 0;
            for (double x : s) sum += std::exp(x - m);
            for (size_t j = 0; j < s.size(); ++j) {
                const double p = std::exp(s[j] - m) / sum;
                for (int64_t d = 0; d < D; ++d)
                    out[static_cast<size_t>(i * W + h * D + d)] += static_cast<float>(p * vs[j][d]);
            }
            if (lse) (*lse)[static_cast<size_t>(i * H + h)] = static_cast<float>(m + std::log(sum));
        }
    return out;
}

// A random table: each row a random subset (possibly empty) of the blocks in random order.
void random_table(int64_t rows, int64_t blocks, uint32_t seed, std::vector<int32_t>* indptr,
                  std::vector<int32_t>* indices) {
    std::mt19937 rng(seed);
    indptr->assign(1, 0);
    indices->clear();
    for (int64_t r = 0; r < rows; ++r) {
        std::vector<int32_t> all(static_cast<size_t>(blocks));
        std::iota(all.begin(), all.end(), 0);
        std::shuffle(all.begin(), all.end(), rng);
        const int64_t n = r % 5 == 3 ? 0 : static_cast<int64_t>(rng() % (blocks + 1));
        indices->insert(indices->end(), all.begin(), all.begin() + n);
        indptr->push_back(static_cast<int32_t>(indices->size()));
    }
}

TEST(BlockSparseAttention, MatchesBruteForceOnRandomTables) {
    for (const bool per_head : {false, true}) {
        for (const int64_t table_heads : {int64_t{1}, int64_t{3}}) {
            const int64_t H = 3, D = 16, B = 8, n = 9, q_len = 37, q_block = 8;
            const Blocks bl(n, H, D, B, 11, per_head);
            const std::vector<float> q = random_vector(q_len * H * D, 5);
            std::vector<int32_t> indptr, indices;
            random_table(table_heads * ((q_len + q_block - 1) / q_block), n, 17, &indptr, &indices);
            std::vector<float> out(q.size()), lse(static_cast<size_t>(q_len * H));
            BlockSparseAttentionParams p;
            p.q = q.data();
            p.out = out.data();
            p.lse = lse.data();
            p.k_blocks = bl.kp.data();
            p.v_blocks = bl.vp.data();
            p.block_len = bl.len.data();
            p.block_len_heads = H;
            p.indptr = indptr.data();
            p.indices = indices.data();
            p.num_blocks = n;
            p.q_len = q_len;
            p.heads = H;
            p.head_dim = D;
            p.q_block = q_block;
            p.table_heads = table_heads;
            block_sparse_attention_cpu(p);
            std::vector<float> want_lse;
            const std::vector<float> want = brute_force(q, q_len, q_block, bl, indptr, indices, table_heads, &want_lse);
            EXPECT_LT(test::max_abs_diff(out, want, out.size()), 2e-6) << per_head << table_heads;
            for (size_t i = 0; i < lse.size(); ++i) {
                if (std::isinf(want_lse[i])) {
                    EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << i;
                } else {
                    EXPECT_NEAR(lse[i], want_lse[i], 2e-5) << i;
                }
            }
        }
    }
}

// A worker computing its share of the query blocks (dist/sharded_attention_step.h): masked-in blocks equal the
// brute force, bit for bit the unmasked run, and the other rows are not touched.
TEST(BlockSparseAttention, QueryBlockMaskComputesOnlyItsBlocks) {
    const int64_t H = 2, D = 16, B = 8, n = 7, q_len = 29, q_block = 4;
    const int64_t nqb = (q_len + q_block - 1) / q_block;
    const Blocks bl(n, H, D, B, 21, true);
    const std::vector<float> q = random_vector(q_len * H * D, 6);
    std::vector<int32_t> indptr, indices;
    random_table(H * nqb, n, 23, &indptr, &indices);
    std::vector<uint8_t> mask(static_cast<size_t>(nqb));
    for (int64_t b = 0; b < nqb; ++b) mask[static_cast<size_t>(b)] = static_cast<uint8_t>(b % 3 == 1);
    const float sentinel = 12345.0f;
    std::vector<float> full(q.size()), part(q.size(), sentinel);
    BlockSparseAttentionParams p;
    p.q = q.data();
    p.k_blocks = bl.kp.data();
    p.v_blocks = bl.vp.data();
    p.block_len = bl.len.data();
    p.block_len_heads = H;
    p.indptr = indptr.data();
    p.indices = indices.data();
    p.num_blocks = n;
    p.q_len = q_len;
    p.heads = H;
    p.head_dim = D;
    p.q_block = q_block;
    p.table_heads = H;
    p.out = full.data();
    block_sparse_attention_cpu(p);
    p.out = part.data();
    p.q_block_mask = mask.data();
    block_sparse_attention_cpu(p);
    const std::vector<float> want = brute_force(q, q_len, q_block, bl, indptr, indices, H, nullptr);
    int64_t computed = 0;
    for (int64_t i = 0; i < q_len; ++i)
        for (int64_t c = 0; c < H * D; ++c) {
            const size_t at = static_cast<size_t>(i * H * D + c);
            if (mask[static_cast<size_t>(i / q_block)]) {
                ++computed;
                EXPECT_EQ(part[at], full[at]) << "row " << i;
                EXPECT_NEAR(part[at], want[at], 2e-6) << "row " << i;
            } else {
                EXPECT_EQ(part[at], sentinel) << "row " << i << " outside the mask was written";
            }
        }
    EXPECT_GT(computed, 0);
}

TEST(BlockSparseAttention, MergeOfDisjointHalvesEqualsTheUnion) {
    const int64_t H = 2, D = 8, B = 4, n = 6, q_len = 10, q_block = 4;
    const Blocks bl(n, H, D, B, 3, false);
    const std::vector<float> q = random_vector(q_len * H * D, 4);
    const int64_t rows = (q_len + q_block - 1) / q_block;
    // Row tables: blocks {0, 2, 4} | {1, 3, 5} and their union.
    std::vector<int32_t> ia, ib, iu, pa{0}, pb{0}, pu{0};
    for (int64_t r = 0; r < rows; ++r) {
        for (int32_t b : {0, 2, 4}) ia.push_back(b);
        for (int32_t b : {1, 3, 5}) ib.push_back(b);
        for (int32_t b = 0; b < 6; ++b) iu.push_back(b);
        pa.push_back(static_cast<int32_t>(ia.size()));
        pb.push_back(static_cast<int32_t>(ib.size()));
        pu.push_back(static_cast<int32_t>(iu.size()));
    }
    std::vector<float> oa(q.size()), ob(q.size()), ou(q.size()), om(q.size());
    std::vector<float> la(static_cast<size_t>(q_len * H)), lb(la.size()), lu(la.size()), lm(la.size());
    const auto run = [&](const std::vector<int32_t>& ptr, const std::vector<int32_t>& idx, float* o, float* l) {
        BlockSparseAttentionParams p;
        p.q = q.data();
        p.out = o;
        p.lse = l;
        p.k_blocks = bl.kp.data();
        p.v_blocks = bl.vp.data();
        p.block_len = bl.len.data();
        p.block_len_heads = H;
        p.indptr = ptr.data();
        p.indices = idx.data();
        p.num_blocks = n;
        p.q_len = q_len;
        p.heads = H;
        p.head_dim = D;
        p.q_block = q_block;
        block_sparse_attention_cpu(p);
    };
    run(pa, ia, oa.data(), la.data());
    run(pb, ib, ob.data(), lb.data());
    run(pu, iu, ou.data(), lu.data());
    merge_attention_cpu(oa.data(), la.data(), ob.data(), lb.data(), om.data(), lm.data(), q_len, H, D);
    EXPECT_LT(test::max_abs_diff(om, ou, om.size()), 1e-6);
    EXPECT_LT(test::max_abs_diff(lm, lu, lm.size()), 1e-5);
}

TEST(BlockSparseAttention, RejectsOutOfRangeBlocks) {
    const Blocks bl(2, 1, 4, 4, 1, false);
    const std::vector<float> q = random_vector(4, 2);
    std::vector<float> out(4);
    const std::vector<int32_t> indptr{0, 1}, indices{2};
    BlockSparseAttentionParams p;
    p.q = q.data();
    p.out = out.data();
    p.k_blocks = bl.kp.data();
    p.v_blocks = bl.vp.data();
    p.block_len = bl.len.data();
    p.indptr = indptr.data();
    p.indices = indices.data();
    p.num_blocks = 2;
    p.q_len = 1;
    p.heads = 1;
    p.head_dim = 4;
    EXPECT_THROW(block_sparse_attention_cpu(p), InputError);
}

// ---- Selection: scores from the raw keys and queries of each block, top-k by a full sort, written here.
struct SelectCase {
    int64_t H = 2, D = 8, nqb = 3, frames = 6, tiles = 4, B = 5;
    std::vector<float> q, k;  // raw: q [H][nqb][B][D], k [blocks][B][H][D]
    std::vector<float> qmean, kmean;
    std::vector<int32_t> cand_block, cand_group;
    std::vector<uint8_t> cand_kind, competes;
    std::vector<int32_t> extra_indptr, extra;
    explicit SelectCase(uint32_t seed) {
        const int64_t nb = frames * tiles;
        q = random_vector(H * nqb * B * D, seed);
        k = random_vector(nb * B * H * D, seed + 1);
        qmean.assign(static_cast<size_t>(H * nqb * D), 0.0f);
        kmean.assign(static_cast<size_t>(nb * H * D), 0.0f);
        for (int64_t h = 0; h < H; ++h)
            for (int64_t r = 0; r < nqb; ++r)
                for (int64_t t = 0; t < B; ++t)
                    for (int64_t d = 0; d < D; ++d)
                        qmean[static_cast<size_t>((h * nqb + r) * D + d)] +=
                            q[static_cast<size_t>(((h * nqb + r) * B + t) * D + d)] / B;
        for (int64_t b = 0; b < nb; ++b)
            for (int64_t t = 0; t < B; ++t)
                for (int64_t h = 0; h < H; ++h)
                    for (int64_t d = 0; d < D; ++d)
                        kmean[static_cast<size_t>((b * H + h) * D + d)] +=
                            k[static_cast<size_t>(((b * B + t) * H + h) * D + d)] / B;
    }
    // Frame 0 sink (scored, no group), frames 1..3 competing groups, frame 4 scored free, frame 5 MUST.
    void layout() {
        competes = {1, 1, 1};
        for (int64_t f = 0; f < frames; ++f)
            for (int64_t t = 0; t < tiles; ++t) {
                cand_block.push_back(static_cast<int32_t>(f * tiles + t));
                cand_group.push_back(f >= 1 && f <= 3 ? static_cast<int32_t>(f - 1) : -1);
                cand_kind.push_back(static_cast<uint8_t>(f == 5 ? CandidateKind::kMust : CandidateKind::kScored));
            }
        extra_indptr = {0, 1, 3};
        extra = {24, 26, 25};  // ids past the window (retained), not scored
    }
    double raw_score(int64_t h, int64_t r, int64_t b) const {  // mean q . mean k from the raw rows, in double
        double s = 0;
        for (int64_t d = 0; d < D; ++d) {
            double qm = 0, km = 0;
            for (int64_t t = 0; t < B; ++t) {
                qm += q[static_cast<size_t>(((h * nqb + r) * B + t) * D + d)];
                km += k[static_cast<size_t>(((b * B + t) * H + h) * D + d)];
            }
            s += (qm / B) * (km / B);
        }
        return s;
    }
};

std::vector<int32_t> run_select(SelectCase& c, int64_t topk_groups, int64_t topk_blocks, std::vector<int32_t>* indptr) {
    BlockSelectParams p;
    p.q_mean = c.qmean.data();
    p.k_mean = c.kmean.data();
    p.heads = c.H;
    p.head_dim = c.D;
    p.num_q_blocks = c.nqb;
    p.num_blocks = c.frames * c.tiles + 3;
    p.cand_block = c.cand_block.data();
    p.cand_group = c.cand_group.data();
    p.cand_kind = c.cand_kind.data();
    p.num_cand = static_cast<int64_t>(c.cand_block.size());
    p.group_competes = c.competes.data();
    p.num_groups = static_cast<int64_t>(c.competes.size());
    p.topk_groups = topk_groups;
    p.topk_blocks = topk_blocks;
    p.extra_indptr = c.extra_indptr.data();
    p.extra_block = c.extra.data();
    indptr->resize(static_cast<size_t>(c.H * c.nqb + 1));
    block_select_indptr(p, indptr->data());
    std::vector<int32_t> indices(static_cast<size_t>(indptr->back()));
    p.indptr = indptr->data();
    p.indices = indices.data();
    block_select_cpu(p);
    return indices;
}

TEST(BlockSelect, HierarchicalTopKMatchesBruteForce) {
    for (uint32_t seed : {1u, 2u, 3u}) {
        SelectCase c(seed);
        c.layout();
        for (const auto& [kg, kb] :
             std::vector<std::pair<int64_t, int64_t>>{{1, 3}, {2, 5}, {3, 16}, {0, 2}, {2, 100}}) {
            std::vector<int32_t> indptr;
            const std::vector<int32_t> got = run_select(c, kg, kb, &indptr);
            for (int64_t h = 0; h < c.H; ++h)
                for (int64_t r = 0; r < c.nqb; ++r) {
                    // Groups: frames 1..3 by the mean of their tiles' raw scores.
                    std::vector<std::pair<double, int64_t>> gs;
                    for (int64_t g = 0; g < 3; ++g) {
                        double s = 0;
                        for (int64_t t = 0; t < c.tiles; ++t) s += c.raw_score(h, r, (g + 1) * c.tiles + t);
                        gs.push_back({-s / c.tiles, g});
                    }
                    std::sort(gs.begin(), gs.end());
                    std::set<int64_t> kept_groups;
                    for (int64_t j = 0; j < std::min<int64_t>(kg, 3); ++j)
                        kept_groups.insert(gs[static_cast<size_t>(j)].second);
                    // Eligible scored blocks: frame 0, frame 4, and the kept groups' frames.
                    std::vector<std::pair<double, int64_t>> bs;
                    for (int64_t f = 0; f < 5; ++f) {
                        if (f >= 1 && f <= 3 && !kept_groups.count(f - 1)) continue;
                        for (int64_t t = 0; t < c.tiles; ++t)
                            bs.push_back({-c.raw_score(h, r, f * c.tiles + t), f * c.tiles + t});
                    }
                    std::sort(bs.begin(), bs.end());
                    std::set<int64_t> want;
                    for (int64_t j = 0; j < std::min<int64_t>(kb, static_cast<int64_t>(bs.size())); ++j)
                        want.insert(bs[static_cast<size_t>(j)].second);
                    for (int64_t t = 0; t < c.tiles; ++t) want.insert(5 * c.tiles + t);  // MUST
                    // Row: extras first, in order, then window blocks ascending.
                    std::vector<int32_t> row(got.begin() + indptr[static_cast<size_t>(h * c.nqb + r)],
                                             got.begin() + indptr[static_cast<size_t>(h * c.nqb + r + 1)]);
                    const std::vector<int32_t> ex(c.extra.begin() + c.extra_indptr[static_cast<size_t>(h)],
                                                  c.extra.begin() + c.extra_indptr[static_cast<size_t>(h + 1)]);
                    ASSERT_GE(row.size(), ex.size());
                    EXPECT_EQ(std::vector<int32_t>(row.begin(), row.begin() + static_cast<int64_t>(ex.size())), ex);
                    const std::vector<int32_t> win(row.begin() + static_cast<int64_t>(ex.size()), row.end());
                    EXPECT_EQ(std::set<int64_t>(win.begin(), win.end()), want)
                        << "h " << h << " r " << r << " kg " << kg;
                    EXPECT_TRUE(std::is_sorted(win.begin(), win.end()));
                }
        }
    }
}

TEST(BlockSelect, EverythingKeptIsTheFullCandidateList) {
    SelectCase c(9);
    c.layout();
    std::vector<int32_t> indptr;
    const std::vector<int32_t> got = run_select(c, 3, 1000, &indptr);
    for (int64_t r = 0; r < c.H * c.nqb; ++r)
        EXPECT_EQ(indptr[static_cast<size_t>(r + 1)] - indptr[static_cast<size_t>(r)],
                  c.extra_indptr[static_cast<size_t>(r / c.nqb + 1)] - c.extra_indptr[static_cast<size_t>(r / c.nqb)] +
                      c.frames * c.tiles);
}

TEST(BlockSelect, RejectsInconsistentCandidates) {
    SelectCase c(4);
    c.layout();
    c.cand_kind[static_cast<size_t>(c.tiles)] = static_cast<uint8_t>(CandidateKind::kMust);  // MUST in a group
    std::vector<int32_t> indptr;
    EXPECT_THROW(run_select(c, 1, 2, &indptr), InputError);
}

TEST(SegmentMean, MeansOfRowRanges) {
    const int64_t H = 2, D = 3, rows = 10;
    const std::vector<float> x = random_vector(rows * H * D, 8);
    const std::vector<int64_t> begin{0, 4, 9, 2}, len{4, 5, 1, 0};
    std::vector<float> out(static_cast<size_t>(4 * H * D), 7.0f);
    segment_mean_cpu({x.data(), out.data(), begin.data(), len.data(), 4, H, D, 0, 0});
    for (int64_t s = 0; s < 4; ++s)
        for (int64_t c = 0; c < H * D; ++c) {
            double want = 0;
            for (int64_t r = begin[static_cast<size_t>(s)];
                 r < begin[static_cast<size_t>(s)] + len[static_cast<size_t>(s)]; ++r)
                want += x[static_cast<size_t>(r * H * D + c)];
            if (len[static_cast<size_t>(s)] > 0) want /= static_cast<double>(len[static_cast<size_t>(s)]);
            EXPECT_NEAR(out[static_cast<size_t>(s * H * D + c)], want, 1e-6);
        }
}

}  // namespace
}  // namespace lr
