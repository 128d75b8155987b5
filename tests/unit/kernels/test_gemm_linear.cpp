#include <gtest/gtest.h>

#include <tuple>

#include "kernels/cpu_parallel.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace lr {
namespace {

using test::random_vector;
using test::rel_error;

// Naive double-precision C = (acc ? C0 : 0) + alpha * A op(B) + bias.
std::vector<double> naive_gemm(const GemmParams& g, const std::vector<float>& c0) {
    std::vector<double> c(static_cast<size_t>(g.m * g.n));
    for (int64_t i = 0; i < g.m; ++i) {
        for (int64_t j = 0; j < g.n; ++j) {
            double s = 0.0;
            for (int64_t p = 0; p < g.k; ++p) {
                const double b = g.b_transposed ? g.b[j * g.ldb + p] : g.b[p * g.ldb + j];
                s += static_cast<double>(g.a[i * g.lda + p]) * b;
            }
            double v = g.alpha * s + (g.bias ? g.bias[j] : 0.0);
            if (g.accumulate) v += c0[static_cast<size_t>(i * g.ldc + j)];
            c[static_cast<size_t>(i * g.n + j)] = v;
        }
    }
    return c;
}

class GemmShapes : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(GemmShapes, MatchesNaiveForBothLayoutsWithBiasAlphaAccumulateAndStrides) {
    const auto [m, n, k] = GetParam();
    for (const bool trans : {true, false}) {
        for (const bool acc : {false, true}) {
            const int64_t lda = k + 3, ldb = (trans ? k : n) + 5, ldc = n + 2;
            const auto a = random_vector(m * lda, 1);
            const auto b = random_vector((trans ? n : k) * ldb, 2);
            const auto bias = random_vector(n, 3);
            auto c = random_vector(m * ldc, 4);
            const auto c0 = c;
            GemmParams g;
            g.a = a.data();
            g.b = b.data();
            g.c = c.data();
            g.bias = bias.data();
            g.m = m;
            g.n = n;
            g.k = k;
            g.lda = lda;
            g.ldb = ldb;
            g.ldc = ldc;
            g.b_transposed = trans;
            g.alpha = 0.75f;
            g.accumulate = acc;
            gemm_cpu(g);
            const auto ref = naive_gemm(g, c0);
            double num = 0, den = 0;
            for (int64_t i = 0; i < m; ++i) {
                for (int64_t j = 0; j < n; ++j) {
                    const double d = c[static_cast<size_t>(i * ldc + j)] - ref[static_cast<size_t>(i * n + j)];
                    num += d * d;
                    den += ref[static_cast<size_t>(i * n + j)] * ref[static_cast<size_t>(i * n + j)];
                }
                // Padding columns between rows are untouched.
                for (int64_t j = n; j < ldc; ++j) {
                    ASSERT_EQ(c[static_cast<size_t>(i * ldc + j)], c0[static_cast<size_t>(i * ldc + j)]);
                }
            }
            EXPECT_LT(std::sqrt(num / den), 1e-6)
                << "m=" << m << " n=" << n << " k=" << k << " trans=" << trans << " acc=" << acc;
        }
    }
}

// Edges of the 6x16 register tile, of the 256-deep K blocks and of the 96-row tasks; k = 0 (bias only).
INSTANTIATE_TEST_SUITE_P(Kernels, GemmShapes,
                         ::testing::Values(std::tuple{1, 1, 1}, std::tuple{5, 17, 3}, std::tuple{6, 16, 256},
                                           std::tuple{7, 33, 257}, std::tuple{97, 130, 300}, std::tuple{200, 70, 600},
                                           std::tuple{3, 9216, 40}, std::tuple{4, 5, 0}));

TEST(Gemm, ThreadedEqualsSerialBitForBit) {
    const int64_t m = 301, n = 257, k = 513;
    const auto a = random_vector(m * k, 7);
    const auto b = random_vector(n * k, 8);
    std::vector<float> c1(static_cast<size_t>(m * n)), c2(static_cast<size_t>(m * n));
    GemmParams g;
    g.a = a.data();
    g.b = b.data();
    g.m = m;
    g.n = n;
    g.k = k;
    g.lda = k;
    g.ldb = k;
    g.ldc = n;
    g.c = c1.data();
    g.threaded = false;
    gemm_cpu(g);
    set_cpu_threads(4);
    g.c = c2.data();
    g.threaded = true;
    gemm_cpu(g);
    set_cpu_threads(0);
    // Each element is summed by one task in the same order: threading changes nothing.
    EXPECT_EQ(c1, c2);
}

TEST(Linear, MatchesNaiveWithStrides) {
    const int64_t rows = 23, in = 40, out = 19, xs = 45, ys = 21;
    const auto x = random_vector(rows * xs, 11);
    const auto w = random_vector(out * in, 12);
    const auto b = random_vector(out, 13);
    std::vector<float> y(static_cast<size_t>(rows * ys), 7.0f);
    linear_cpu({x.data(), w.data(), b.data(), y.data(), rows, in, out, xs, ys});
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t o = 0; o < out; ++o) {
            double s = b[static_cast<size_t>(o)];
            for (int64_t i = 0; i < in; ++i)
                s += static_cast<double>(x[static_cast<size_t>(r * xs + i)]) * w[static_cast<size_t>(o * in + i)];
            EXPECT_NEAR(y[static_cast<size_t>(r * ys + o)], s, 1e-5) << r << "," << o;
        }
        EXPECT_EQ(y[static_cast<size_t>(r * ys + out)], 7.0f);  // stride padding untouched
    }
    // Without bias.
    std::vector<float> y2(static_cast<size_t>(rows * out));
    linear_cpu({x.data(), w.data(), nullptr, y2.data(), rows, in, out, xs, 0});
    EXPECT_NEAR(y2[5 * out + 3] + b[3], y[static_cast<size_t>(5 * ys + 3)], 1e-5);
}

TEST(CpuParallel, CoversTheRangeOnceAndRethrows) {
    set_cpu_threads(5);
    std::vector<int> hits(1000, 0);
    parallel_for(1000, 10, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
    });
    for (int h : hits) ASSERT_EQ(h, 1);
    EXPECT_THROW(parallel_for(100, 1,
                              [](int64_t b, int64_t) {
                                  if (b > 0) throw std::runtime_error("boom");
                              }),
                 std::runtime_error);
    set_cpu_threads(0);
}

}  // namespace
}  // namespace lr
