#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/relative_bias_attention.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace lr {
namespace {

using test::random_vector;

// softmax_j(scale q_i . k_j + bias[h, j - i + q_len - 1]) v_j per head, in double.
std::vector<double> naive(const RelativeBiasAttentionParams& p, int64_t qs, int64_t ks, int64_t vs) {
    const int64_t d = p.head_dim, offsets = p.q_len + p.kv_len - 1;
    std::vector<double> out(static_cast<size_t>(p.q_len * p.heads * d), 0.0);
    for (int64_t h = 0; h < p.heads; ++h) {
        for (int64_t i = 0; i < p.q_len; ++i) {
            std::vector<double> s(static_cast<size_t>(p.kv_len));
            double m = -1e300, sum = 0.0;
            for (int64_t j = 0; j < p.kv_len; ++j) {
                double dot = 0.0;
                for (int64_t c = 0; c < d; ++c) dot += double{p.q[i * qs + h * d + c]} * p.k[j * ks + h * d + c];
                s[static_cast<size_t>(j)] = dot * p.scale + p.rel_bias[h * offsets + j - i + p.q_len - 1];
                m = std::max(m, s[static_cast<size_t>(j)]);
            }
            for (double& x : s) sum += (x = std::exp(x - m));
            for (int64_t j = 0; j < p.kv_len; ++j) {
                for (int64_t c = 0; c < d; ++c) {
                    out[static_cast<size_t>((i * p.heads + h) * d + c)] +=
                        s[static_cast<size_t>(j)] / sum * p.v[j * vs + h * d + c];
                }
            }
        }
    }
    return out;
}

TEST(RelativeBiasAttention, MatchesNaiveWithStridesAndUnequalLengths) {
    for (const auto& [q_len, kv_len, heads, d] :
         {std::tuple<int64_t, int64_t, int64_t, int64_t>{37, 37, 3, 20}, {5, 71, 2, 16}, {1, 1, 4, 8}}) {
        const int64_t qs = heads * d + 3, ks = heads * d + 5, vs = heads * d + 1;  // padded rows
        const auto q = random_vector(q_len * qs, 1, -2.0f, 2.0f);
        const auto k = random_vector(kv_len * ks, 2, -2.0f, 2.0f);
        const auto v = random_vector(kv_len * vs, 3);
        const auto bias = random_vector(heads * (q_len + kv_len - 1), 4, -3.0f, 3.0f);
        std::vector<float> out(static_cast<size_t>(q_len * heads * d));
        RelativeBiasAttentionParams p;
        p.q = q.data();
        p.k = k.data();
        p.v = v.data();
        p.out = out.data();
        p.rel_bias = bias.data();
        p.q_len = q_len;
        p.kv_len = kv_len;
        p.heads = heads;
        p.head_dim = d;
        p.q_stride = qs;
        p.k_stride = ks;
        p.v_stride = vs;
        p.scale = 1.0f;  // T5: unscaled scores
        relative_bias_attention_cpu(p);
        const std::vector<double> ref = naive(p, qs, ks, vs);
        EXPECT_LT(test::rel_error(out, ref, out.size()), 1e-6) << q_len << "x" << kv_len;
        // The bias matters: without it the result moves far from the reference.
        std::vector<float> zero_bias(bias.size(), 0.0f), out2(out.size());
        p.rel_bias = zero_bias.data();
        p.out = out2.data();
        relative_bias_attention_cpu(p);
        if (kv_len > 1) {
            EXPECT_GT(test::rel_error(out2, ref, out.size()), 1e-2);
        }
    }
}

}  // namespace
}  // namespace lr
