// paged_attention_cpu with a block length per (block, head) (block_len_heads = heads) against a brute-force
// softmax written here (double, keys gathered per head from the table row), with per-head and shared tables;
// block_len_heads = heads with every head's length equal to the block's gives today's result bit for bit; bad
// block_len_heads and lengths are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/paged_attention.h"
#include "runtime/core/check.h"
#include "runtime/core/dtype.h"

namespace lr {
namespace {

constexpr uint16_t kNaNBits = 0x7fc0;

struct Problem {
    int heads = 3, head_dim = 16, block_size = 8, q_len = 150, blocks = 12, table_heads = 3;
    std::vector<int32_t> block_len;  // [blocks, heads]
    std::vector<int32_t> indptr, indices;
    std::vector<uint16_t> q, k, v;
    int64_t width() const { return static_cast<int64_t>(heads) * head_dim; }
    int q_blocks() const { return (q_len + 127) / 128; }
};

Problem make_problem(int table_heads, uint32_t seed) {
    std::mt19937 rng(seed);
    Problem p;
    p.table_heads = table_heads;
    p.block_len.resize(static_cast<size_t>(p.blocks * p.heads));
    std::uniform_int_distribution<int> len(0, p.block_size);
    for (auto& l : p.block_len) l = len(rng);
    p.block_len[0] = 0;  // block 0 empty for head 0 only
    p.block_len[1] = p.block_size;
    p.block_len[2] = 1;
    p.indptr = {0};
    std::vector<int32_t> all(static_cast<size_t>(p.blocks));
    std::iota(all.begin(), all.end(), 0);
    const int rows = table_heads * p.q_blocks();
    for (int r = 0; r < rows; ++r) {
        const int n = r == 1 ? 0 : r == 2 ? 1 : static_cast<int>(rng() % p.blocks) + 1;  // an empty row, a 1-block row
        std::shuffle(all.begin(), all.end(), rng);
        p.indices.insert(p.indices.end(), all.begin(), all.begin() + n);
        p.indptr.push_back(static_cast<int32_t>(p.indices.size()));
    }
    std::normal_distribution<float> nd(0.0f, 1.0f);
    p.q.resize(static_cast<size_t>(p.q_len * p.width()));
    for (auto& x : p.q) x = f32_to_bf16_bits(nd(rng));
    const size_t pool = static_cast<size_t>(p.blocks) * p.block_size * p.width();
    p.k.assign(pool, kNaNBits);  // past a head's length: NaN, which must never be read
    p.v.assign(pool, kNaNBits);
    for (int b = 0; b < p.blocks; ++b) {
        for (int h = 0; h < p.heads; ++h) {
            for (int t = 0; t < p.block_len[static_cast<size_t>(b * p.heads + h)]; ++t) {
                const size_t off = (static_cast<size_t>(b) * p.block_size + t) * p.width() + h * p.head_dim;
                for (int d = 0; d < p.head_dim; ++d) {
                    p.k[off + d] = f32_to_bf16_bits(nd(rng));
                    p.v[off + d] = f32_to_bf16_bits(nd(rng));
                }
            }
        }
    }
    return p;
}

PagedAttentionParams params_of(const Problem& p, std::vector<uint16_t>& out) {
    out.assign(static_cast<size_t>(p.q_len * p.width()), 0x4242);
    PagedAttentionParams a;
    a.q = p.q.data();
    a.k = p.k.data();
    a.v = p.v.data();
    a.out = out.data();
    a.block_len = p.block_len.data();
    a.block_len_heads = p.heads;
    a.indptr = p.indptr.data();
    a.indices = p.indices.data();
    a.table_heads = p.table_heads;
    a.q_len = p.q_len;
    a.heads = p.heads;
    a.head_dim = p.head_dim;
    a.block_size = p.block_size;
    return a;
}

// softmax(q k^T / sqrt(d)) v in double over the keys of head h in row's blocks, in any order.
std::vector<double> brute_force(const Problem& p, int64_t i, int h) {
    const int64_t row = static_cast<int64_t>(p.table_heads == 1 ? 0 : h) * p.q_blocks() + i / 128;
    std::vector<double> s;
    std::vector<size_t> at;
    for (int32_t e = p.indptr[static_cast<size_t>(row)]; e < p.indptr[static_cast<size_t>(row + 1)]; ++e) {
        const int32_t b = p.indices[static_cast<size_t>(e)];
        for (int t = 0; t < p.block_len[static_cast<size_t>(b * p.heads + h)]; ++t) {
            const size_t off = (static_cast<size_t>(b) * p.block_size + t) * p.width() + h * p.head_dim;
            double dot = 0.0;
            for (int d = 0; d < p.head_dim; ++d)
                dot += static_cast<double>(
                           bf16_bits_to_f32(p.q[static_cast<size_t>(i * p.width() + h * p.head_dim + d)])) *
                       bf16_bits_to_f32(p.k[off + d]);
            s.push_back(dot / std::sqrt(static_cast<double>(p.head_dim)));
            at.push_back(off);
        }
    }
    std::vector<double> o(static_cast<size_t>(p.head_dim), 0.0);
    if (s.empty()) return o;
    const double m = *std::max_element(s.begin(), s.end());
    double sum = 0.0;
    for (size_t j = 0; j < s.size(); ++j) {
        const double w = std::exp(s[j] - m);
        sum += w;
        for (int d = 0; d < p.head_dim; ++d) o[static_cast<size_t>(d)] += w * bf16_bits_to_f32(p.v[at[j] + d]);
    }
    for (double& x : o) x /= sum;
    return o;
}

void expect_matches_brute_force(const Problem& p) {
    std::vector<uint16_t> out;
    paged_attention_cpu(params_of(p, out));
    int64_t bad = 0;
    double worst = 0.0;
    for (int64_t i = 0; i < p.q_len; ++i) {
        for (int h = 0; h < p.heads; ++h) {
            const std::vector<double> want = brute_force(p, i, h);
            for (int d = 0; d < p.head_dim; ++d) {
                const double got = bf16_bits_to_f32(out[static_cast<size_t>(i * p.width() + h * p.head_dim + d)]);
                const double err = std::fabs(got - want[static_cast<size_t>(d)]);
                worst = std::max(worst, err);
                // The bf16 rounding of the output (2^-9 relative) plus fp32 softmax arithmetic.
                if (!(err <= std::ldexp(1.0, -8) * std::fabs(want[static_cast<size_t>(d)]) + 1e-5) && ++bad <= 5)
                    ADD_FAILURE() << "row " << i << " head " << h << " dim " << d << ": " << got << " vs " << want[d];
            }
        }
    }
    EXPECT_EQ(bad, 0) << "max error " << worst;
}

TEST(PagedAttentionHeadsCpu, PerHeadLengthsPerHeadTablesMatchBruteForce) {
    expect_matches_brute_force(make_problem(3, 1));
}

TEST(PagedAttentionHeadsCpu, PerHeadLengthsSharedTableMatchBruteForce) {
    expect_matches_brute_force(make_problem(1, 2));
}

TEST(PagedAttentionHeadsCpu, EqualLengthsPerHeadGiveTheOneLengthResultBitForBit) {
    Problem p = make_problem(3, 3);
    std::vector<int32_t> per_block(static_cast<size_t>(p.blocks));
    for (int b = 0; b < p.blocks; ++b) {
        per_block[static_cast<size_t>(b)] = p.block_len[static_cast<size_t>(b * p.heads)];
        for (int h = 1; h < p.heads; ++h) p.block_len[static_cast<size_t>(b * p.heads + h)] = per_block[b];
    }
    // NaN only past head 0's length now: refill every head's valid tokens as finite.
    std::mt19937 rng(4);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (size_t e = 0; e < p.k.size(); ++e) {
        p.k[e] = f32_to_bf16_bits(nd(rng));
        p.v[e] = f32_to_bf16_bits(nd(rng));
    }
    std::vector<uint16_t> per_head_out, one_out;
    paged_attention_cpu(params_of(p, per_head_out));
    PagedAttentionParams one = params_of(p, one_out);
    one.block_len = per_block.data();
    one.block_len_heads = 1;
    paged_attention_cpu(one);
    EXPECT_EQ(per_head_out, one_out);
}

TEST(PagedAttentionHeadsCpu, RejectsBadBlockLenHeadsAndLengths) {
    Problem p = make_problem(3, 5);
    std::vector<uint16_t> out;
    PagedAttentionParams a = params_of(p, out);
    a.block_len_heads = 2;  // neither 1 nor heads
    EXPECT_THROW(paged_attention_cpu(a), InputError);
    a.block_len_heads = p.heads;
    // A length of a head other than 0 out of range, on a block some row reads.
    const int32_t b = p.indices[0];
    p.block_len[static_cast<size_t>(b * p.heads + 2)] = p.block_size + 1;
    EXPECT_THROW(paged_attention_cpu(params_of(p, out)), InputError);
}

}  // namespace
}  // namespace lr
