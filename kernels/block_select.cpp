#include "kernels/block_select.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "runtime/core/check.h"

namespace lr {

BlockSelectCounts block_select_counts(const BlockSelectParams& p) {
    LR_CHECK(p.heads > 0 && p.num_q_blocks >= 0 && p.num_cand >= 0 && p.topk_blocks >= 0 && p.topk_groups >= 0,
             "block select: heads ", p.heads, ", query blocks ", p.num_q_blocks, ", candidates ", p.num_cand,
             ", top-k ", p.topk_blocks, " blocks / ", p.topk_groups, " groups");
    BlockSelectCounts c;
    std::vector<int64_t> per_group(static_cast<size_t>(p.num_groups), 0);
    int64_t scored_free = 0;  // SCORED blocks outside competing groups
    int64_t competing = 0;
    for (int64_t g = 0; g < p.num_groups; ++g) competing += p.group_competes[g] ? 1 : 0;
    for (int64_t i = 0; i < p.num_cand; ++i) {
        const int32_t g = p.cand_group ? p.cand_group[i] : -1;
        LR_CHECK(g >= -1 && g < p.num_groups, "block select: candidate ", i, " in group ", g, " of ", p.num_groups);
        LR_CHECK(p.cand_block[i] >= 0 && p.cand_block[i] < p.num_blocks, "block select: candidate ", i, " is block ",
                 p.cand_block[i], " of ", p.num_blocks);
        const bool comp = g >= 0 && p.group_competes[g];
        if (p.cand_kind[i] == static_cast<uint8_t>(CandidateKind::kMust)) {
            LR_CHECK(!comp, "block select: MUST candidate ", i, " is in competing group ", g);
            ++c.must;
        } else if (comp) {
            ++per_group[static_cast<size_t>(g)];
        } else {
            ++scored_free;
        }
    }
    int64_t group_size = -1;
    for (int64_t g = 0; g < p.num_groups; ++g) {
        if (!p.group_competes[g]) continue;
        LR_CHECK(group_size < 0 || per_group[static_cast<size_t>(g)] == group_size,
                 "block select: competing groups must hold equally many blocks (", group_size, " and ",
                 per_group[static_cast<size_t>(g)], ")");
        group_size = per_group[static_cast<size_t>(g)];
    }
    c.groups_kept = std::min(p.topk_groups, competing);
    const int64_t eligible = scored_free + c.groups_kept * std::max<int64_t>(group_size, 0);
    c.scored_kept = std::min(p.topk_blocks, eligible);
    return c;
}

void block_select_indptr(const BlockSelectParams& p, int32_t* indptr) {
    const BlockSelectCounts c = block_select_counts(p);
    int64_t at = 0;
    indptr[0] = 0;
    for (int64_t h = 0; h < p.heads; ++h) {
        const int64_t extra = p.extra_indptr ? p.extra_indptr[h + 1] - p.extra_indptr[h] : 0;
        for (int64_t qb = 0; qb < p.num_q_blocks; ++qb) {
            at += extra + c.must + c.scored_kept;
            indptr[h * p.num_q_blocks + qb + 1] = static_cast<int32_t>(at);
        }
    }
}

void block_select_cpu(const BlockSelectParams& p) {
    const BlockSelectCounts c = block_select_counts(p);
    const bool scoring = c.scored_kept > 0;
    LR_CHECK(!scoring || (p.q_mean && p.k_mean), "block select: scoring needs the query and key summaries");
    std::vector<float> score(static_cast<size_t>(p.num_cand));
    std::vector<float> gscore(static_cast<size_t>(p.num_groups));
    std::vector<int64_t> order;
    std::vector<uint8_t> take(static_cast<size_t>(p.num_cand)), gtake(static_cast<size_t>(p.num_groups));
    const int64_t hd = p.head_dim;
    for (int64_t h = 0; h < p.heads; ++h) {
        for (int64_t qb = 0; qb < p.num_q_blocks; ++qb) {
            const int64_t row = h * p.num_q_blocks + qb;
            int32_t* out = p.indices + p.indptr[row];
            int64_t n = 0;
            if (p.extra_indptr)
                for (int32_t e = p.extra_indptr[h]; e < p.extra_indptr[h + 1]; ++e) out[n++] = p.extra_block[e];
            std::fill(take.begin(), take.end(), uint8_t{0});
            if (scoring) {
                const float* q = p.q_mean + (h * p.num_q_blocks + qb) * hd;
                std::vector<float> gsum(static_cast<size_t>(p.num_groups), 0.0f);
                std::vector<int64_t> gcount(static_cast<size_t>(p.num_groups), 0);
                for (int64_t i = 0; i < p.num_cand; ++i) {
                    if (p.cand_kind[i] != static_cast<uint8_t>(CandidateKind::kScored)) continue;
                    const float* k = p.k_mean + (static_cast<int64_t>(p.cand_block[i]) * p.heads + h) * hd;
                    float s = 0.0f;
                    for (int64_t d = 0; d < hd; ++d) s += q[d] * k[d];
                    score[static_cast<size_t>(i)] = s;
                    const int32_t g = p.cand_group ? p.cand_group[i] : -1;
                    if (g >= 0) {
                        gsum[static_cast<size_t>(g)] += s;
                        ++gcount[static_cast<size_t>(g)];
                    }
                }
                // Stage 1: the competing groups with the highest mean score.
                std::fill(gtake.begin(), gtake.end(), uint8_t{0});
                order.clear();
                for (int64_t g = 0; g < p.num_groups; ++g) {
                    if (!p.group_competes[g]) continue;
                    gscore[static_cast<size_t>(g)] = gcount[static_cast<size_t>(g)]
                                                         ? gsum[static_cast<size_t>(g)] / gcount[static_cast<size_t>(g)]
                                                         : 0.0f;
                    order.push_back(g);
                }
                std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
                    return gscore[static_cast<size_t>(a)] > gscore[static_cast<size_t>(b)];
                });
                for (int64_t j = 0; j < c.groups_kept; ++j)
                    gtake[static_cast<size_t>(order[static_cast<size_t>(j)])] = 1;
                // Stage 2: the eligible SCORED blocks with the highest scores.
                order.clear();
                for (int64_t i = 0; i < p.num_cand; ++i) {
                    if (p.cand_kind[i] != static_cast<uint8_t>(CandidateKind::kScored)) continue;
                    const int32_t g = p.cand_group ? p.cand_group[i] : -1;
                    if (g >= 0 && p.group_competes[g] && !gtake[static_cast<size_t>(g)]) continue;
                    order.push_back(i);
                }
                std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
                    return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)];
                });
                for (int64_t j = 0; j < c.scored_kept; ++j)
                    take[static_cast<size_t>(order[static_cast<size_t>(j)])] = 1;
            }
            for (int64_t i = 0; i < p.num_cand; ++i)
                if (p.cand_kind[i] == static_cast<uint8_t>(CandidateKind::kMust) || take[static_cast<size_t>(i)])
                    out[n++] = p.cand_block[i];
            LR_ASSERT(n == p.indptr[row + 1] - p.indptr[row], "block select: row ", row, " got ", n,
                      " blocks, planned ", p.indptr[row + 1] - p.indptr[row]);
        }
    }
}

void segment_mean_cpu(const SegmentMeanParams& p) {
    const int64_t width = p.heads * p.head_dim;
    const int64_t xs = p.x_row_stride ? p.x_row_stride : width;
    const int64_t os = p.out_stride ? p.out_stride : width;
    for (int64_t s = 0; s < p.segments; ++s) {
        float* o = p.out + s * os;
        std::fill(o, o + width, 0.0f);
        const int64_t len = p.seg_len[s];
        if (len <= 0) continue;
        // Accumulate in double: a mean of a few hundred rows then matches any summation order to fp32 rounding.
        std::vector<double> acc(static_cast<size_t>(width), 0.0);
        for (int64_t r = 0; r < len; ++r) {
            const float* x = p.x + (p.seg_begin[s] + r) * xs;
            for (int64_t c = 0; c < width; ++c) acc[static_cast<size_t>(c)] += x[c];
        }
        for (int64_t c = 0; c < width; ++c)
            o[c] = static_cast<float>(acc[static_cast<size_t>(c)] / static_cast<double>(len));
    }
}

}  // namespace lr
