#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "kernels/attention.h"
#include "kernels/cpu_parallel.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace lr {
namespace {

using test::random_vector;

// softmax(scale q k^T) v per head, in double, over keys [b, e) of each query.
std::vector<double> naive_attention(const AttentionParams& p, int64_t qs, int64_t ks, int64_t vs) {
    std::vector<double> out(static_cast<size_t>(p.q_len * p.heads * p.head_dim), 0.0);
    const double scale = p.scale != 0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(p.head_dim));
    for (int64_t h = 0; h < p.heads; ++h) {
        for (int64_t i = 0; i < p.q_len; ++i) {
            const int64_t b = p.kv_begin ? p.kv_begin[i] : 0, e = p.kv_end ? p.kv_end[i] : p.kv_len;
            if (b >= e) continue;
            std::vector<double> s(static_cast<size_t>(e - b));
            double m = -1e300;
            for (int64_t j = b; j < e; ++j) {
                double dot = 0;
                for (int64_t c = 0; c < p.head_dim; ++c) {
                    dot += static_cast<double>(p.q[i * qs + h * p.head_dim + c]) * p.k[j * ks + h * p.head_dim + c];
                }
                s[static_cast<size_t>(j - b)] = dot * scale;
                m = std::max(m, dot * scale);
            }
            double sum = 0;
            for (double& x : s) sum += (x = std::exp(x - m));
            for (int64_t j = b; j < e; ++j) {
                for (int64_t c = 0; c < p.head_dim; ++c) {
                    out[static_cast<size_t>((i * p.heads + h) * p.head_dim + c)] +=
                        s[static_cast<size_t>(j - b)] / sum * p.v[j * vs + h * p.head_dim + c];
                }
            }
        }
    }
    return out;
}

class AttentionShapes : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t, int64_t>> {};

TEST_P(AttentionShapes, MatchesNaiveSoftmax) {
    const auto [lq, lk, heads, d] = GetParam();
    const int64_t qs = heads * d + 3, ks = heads * d + 1, vs = heads * d;
    // Wide score range: the online softmax must rescale across key tiles without overflow.
    const auto q = random_vector(lq * qs, 1, -3.0f, 3.0f);
    const auto k = random_vector(lk * ks, 2, -3.0f, 3.0f);
    const auto v = random_vector(lk * vs, 3);
    std::vector<float> out(static_cast<size_t>(lq * heads * d));
    AttentionParams p;
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.out = out.data();
    p.q_len = lq;
    p.kv_len = lk;
    p.heads = heads;
    p.head_dim = d;
    p.q_stride = qs;
    p.k_stride = ks;
    p.v_stride = vs;
    attention_cpu(p);
    const auto ref = naive_attention(p, qs, ks, vs);
    EXPECT_LT(test::rel_error(out, ref, out.size()), 1e-5);
    EXPECT_LT(test::max_abs_diff(out, ref, out.size()), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Kernels, AttentionShapes,
                         ::testing::Values(std::tuple{1, 1, 1, 8}, std::tuple{70, 300, 2, 16},
                                           std::tuple{64, 256, 3, 12}, std::tuple{130, 600, 2, 128},
                                           std::tuple{5, 1030, 1, 24}));

TEST(Attention, PerQueryKeyRangesMaskLikeBlockCausal) {
    const int64_t lq = 90, lk = 90, heads = 2, d = 16, block = 30;
    const auto q = random_vector(lq * heads * d, 4, -2.0f, 2.0f);
    const auto k = random_vector(lk * heads * d, 5, -2.0f, 2.0f);
    const auto v = random_vector(lk * heads * d, 6);
    std::vector<int64_t> begin(lq), end(lq);
    for (int64_t i = 0; i < lq; ++i) {
        end[static_cast<size_t>(i)] = (i / block + 1) * block;  // block-causal
        begin[static_cast<size_t>(i)] = i >= 60 ? 30 : 0;       // and a window for the last block
    }
    begin[3] = end[3] = 10;  // a query that sees nothing
    std::vector<float> out(static_cast<size_t>(lq * heads * d), 5.0f);
    AttentionParams p;
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.out = out.data();
    p.q_len = lq;
    p.kv_len = lk;
    p.heads = heads;
    p.head_dim = d;
    p.scale = 0.3f;
    p.kv_begin = begin.data();
    p.kv_end = end.data();
    set_cpu_threads(3);
    attention_cpu(p);
    set_cpu_threads(0);
    const auto ref = naive_attention(p, heads * d, heads * d, heads * d);
    EXPECT_LT(test::max_abs_diff(out, ref, out.size()), 1e-5);
    for (int64_t c = 0; c < heads * d; ++c) EXPECT_EQ(out[static_cast<size_t>(3 * heads * d + c)], 0.0f);
}

TEST(Attention, OneKeyCopiesItsValue) {
    const auto q = random_vector(4 * 8, 7);
    const auto k = random_vector(8, 8);
    const auto v = random_vector(8, 9);
    std::vector<float> out(32);
    attention_cpu({q.data(), k.data(), v.data(), out.data(), 4, 1, 1, 8, 8, 8, 8, 8});
    for (int64_t i = 0; i < 4; ++i) {
        for (int64_t c = 0; c < 8; ++c) EXPECT_FLOAT_EQ(out[static_cast<size_t>(i * 8 + c)], v[static_cast<size_t>(c)]);
    }
}

}  // namespace
}  // namespace lr
