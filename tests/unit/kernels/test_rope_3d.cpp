#include <gtest/gtest.h>

#include <complex>

#include "kernels/rope_3d.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace lr {
namespace {

using test::random_vector;

// The reference's construction: one table per part (rope_params(1024, part_dim)), concatenated, then each token
// takes row `frame` of the first, `row` of the second and `col` of the third.
std::vector<std::complex<double>> reference_factors(int64_t d, int64_t f, int64_t r, int64_t c) {
    const int64_t a = d - 4 * (d / 6), b = 2 * (d / 6);
    std::vector<std::complex<double>> out;
    auto part = [&](int64_t part_dim, int64_t pos) {
        for (int64_t j = 0; j < part_dim; j += 2) {
            const double ang = static_cast<double>(pos) * (1.0 / std::pow(10000.0, static_cast<double>(j) / part_dim));
            out.push_back(std::polar(1.0, ang));
        }
    };
    part(a, f);
    part(b, r);
    part(b, c);
    return out;
}

TEST(Rope3d, SplitOfHead128Is22And21And21) {
    EXPECT_EQ(rope_frame_pairs(128), 22);
    EXPECT_EQ(rope_spatial_pairs(128), 21);
    EXPECT_EQ(rope_frame_pairs(16), 4);  // a = 16 - 8 = 8
    EXPECT_EQ(rope_spatial_pairs(16), 2);
    EXPECT_EQ(rope_frame_pairs(12), 2);  // a = 12 - 8 = 4, b = 4
}

TEST(Rope3d, MatchesComplexReferenceIncludingPositionsPast1024) {
    for (const int64_t d : {128, 16, 12, 64}) {
        const int64_t tokens = 7, heads = 3, xs = heads * d + 4;
        const auto x = random_vector(tokens * xs, 3);
        std::vector<int64_t> pos;
        for (int64_t t = 0; t < tokens; ++t) {
            pos.push_back(t * 211 + 5);  // frames up to 1271: past the reference's 1024-row table
            pos.push_back(t % 3);
            pos.push_back(29 - t);
        }
        std::vector<float> y(static_cast<size_t>(tokens * heads * d));
        Rope3dParams p;
        p.x = x.data();
        p.y = y.data();
        p.positions = pos.data();
        p.tokens = tokens;
        p.heads = heads;
        p.head_dim = d;
        p.x_stride = xs;
        rope_3d_cpu(p);
        for (int64_t t = 0; t < tokens; ++t) {
            const auto fac = reference_factors(d, pos[3 * t], pos[3 * t + 1], pos[3 * t + 2]);
            ASSERT_EQ(static_cast<int64_t>(fac.size()), d / 2);
            for (int64_t h = 0; h < heads; ++h) {
                for (int64_t i = 0; i < d / 2; ++i) {
                    const std::complex<double> in(x[static_cast<size_t>(t * xs + h * d + 2 * i)],
                                                  x[static_cast<size_t>(t * xs + h * d + 2 * i + 1)]);
                    const std::complex<double> want = in * fac[static_cast<size_t>(i)];
                    const size_t o = static_cast<size_t>((t * heads + h) * d + 2 * i);
                    ASSERT_NEAR(y[o], want.real(), 1e-6) << d << " " << t << " " << h << " " << i;
                    ASSERT_NEAR(y[o + 1], want.imag(), 1e-6);
                }
            }
        }
    }
}

TEST(Rope3d, HandValuesForHead12) {
    // d = 12: pairs 0-1 by frame (freqs 1, 10000^(-1/2)), 2-3 by row, 4-5 by column (same freqs).
    std::vector<float> x(12);
    for (int i = 0; i < 12; ++i) x[static_cast<size_t>(i)] = (i % 2 == 0) ? 1.0f : 0.0f;  // every pair = 1 + 0i
    const int64_t pos[3] = {2, 0, 100};
    std::vector<float> y(12);
    rope_3d_cpu({x.data(), y.data(), pos, 1, 1, 12});
    EXPECT_NEAR(y[0], std::cos(2.0), 1e-7);
    EXPECT_NEAR(y[1], std::sin(2.0), 1e-7);
    EXPECT_NEAR(y[2], std::cos(0.02), 1e-7);
    EXPECT_NEAR(y[3], std::sin(0.02), 1e-7);
    EXPECT_EQ(y[4], 1.0f);  // row 0: identity
    EXPECT_EQ(y[5], 0.0f);
    EXPECT_NEAR(y[8], std::cos(100.0), 1e-7);
    EXPECT_NEAR(y[9], std::sin(100.0), 1e-7);
    EXPECT_NEAR(y[10], std::cos(1.0), 1e-7);
    EXPECT_NEAR(y[11], std::sin(1.0), 1e-7);
}

TEST(Rope3d, InPlaceEqualsOutOfPlace) {
    const int64_t tokens = 5, heads = 2, d = 24;
    auto x = random_vector(tokens * heads * d, 9);
    std::vector<int64_t> pos(static_cast<size_t>(tokens * 3));
    for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int64_t>(i * 7 % 13);
    std::vector<float> y(x.size());
    rope_3d_cpu({x.data(), y.data(), pos.data(), tokens, heads, d});
    rope_3d_cpu({x.data(), x.data(), pos.data(), tokens, heads, d});
    EXPECT_EQ(x, y);
}

}  // namespace
}  // namespace lr
