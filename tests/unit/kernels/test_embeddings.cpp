#include <gtest/gtest.h>

#include <cmath>

#include "kernels/linear.h"
#include "kernels/patchify.h"
#include "kernels/timestep_embedding.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace lr {
namespace {

using test::random_vector;

TEST(TimestepEmbedding, CosThenSinWithWanFrequencies) {
    const float t[3] = {0.0f, 1.0f, 937.5f};
    std::vector<float> out(3 * 4);
    timestep_embedding_cpu({t, out.data(), 3, 4});
    // half = 2: f = [1, 10000^(-1/2) = 0.01]
    const float want0[4] = {1, 1, 0, 0};
    const float want1[4] = {static_cast<float>(std::cos(1.0)), static_cast<float>(std::cos(0.01)),
                            static_cast<float>(std::sin(1.0)), static_cast<float>(std::sin(0.01))};
    for (int j = 0; j < 4; ++j) {
        EXPECT_EQ(out[static_cast<size_t>(j)], want0[j]);
        EXPECT_EQ(out[static_cast<size_t>(4 + j)], want1[j]);
    }
    // Large angle, computed in double: cos(937.5) to fp32 rounding.
    EXPECT_EQ(out[8], static_cast<float>(std::cos(937.5)));
    EXPECT_EQ(out[10], static_cast<float>(std::sin(937.5)));

    // freq_dim 256 at t = 625: f_j = 10000^(-j/128).
    const float t2 = 625.0f;
    std::vector<float> e(256);
    timestep_embedding_cpu({&t2, e.data(), 1, 256});
    for (int j = 0; j < 128; j += 17) {
        const double a = 625.0 * std::pow(10000.0, -j / 128.0);
        EXPECT_EQ(e[static_cast<size_t>(j)], static_cast<float>(std::cos(a))) << j;
        EXPECT_EQ(e[static_cast<size_t>(128 + j)], static_cast<float>(std::sin(a))) << j;
    }
}

// patchify + linear with the Conv3d weight viewed as [dim, C*pt*ph*pw] == Conv3d(kernel = stride = patch).
TEST(Patchify, LinearOverPatchesEqualsStridedConv3d) {
    PatchShape s;
    s.frames = 4;
    s.channels = 3;
    s.height = 6;
    s.width = 8;
    s.pt = 2;  // exercise pt > 1 too
    s.ph = 2;
    s.pw = 2;
    const int64_t dim = 5;
    const auto x = random_vector(s.frames * s.channels * s.height * s.width, 1);
    const auto w = random_vector(dim * s.patch_size(), 2);  // [dim, C, pt, ph, pw]
    const auto b = random_vector(dim, 3);
    std::vector<float> patches(static_cast<size_t>(s.tokens() * s.patch_size()));
    patchify_cpu({x.data(), patches.data(), s});
    std::vector<float> y(static_cast<size_t>(s.tokens() * dim));
    linear_cpu({patches.data(), w.data(), b.data(), y.data(), s.tokens(), s.patch_size(), dim});
    const int64_t gf = 2, gh = 3, gw = 4;
    for (int64_t f = 0; f < gf; ++f) {
        for (int64_t i = 0; i < gh; ++i) {
            for (int64_t j = 0; j < gw; ++j) {
                for (int64_t o = 0; o < dim; ++o) {
                    double acc = b[static_cast<size_t>(o)];
                    for (int64_t c = 0; c < 3; ++c) {
                        for (int64_t kt = 0; kt < 2; ++kt) {
                            for (int64_t kh = 0; kh < 2; ++kh) {
                                for (int64_t kw = 0; kw < 2; ++kw) {
                                    const double wv =
                                        w[static_cast<size_t>((((o * 3 + c) * 2 + kt) * 2 + kh) * 2 + kw)];
                                    const double xv = x[static_cast<size_t>(
                                        (((2 * f + kt) * 3 + c) * 6 + 2 * i + kh) * 8 + 2 * j + kw)];
                                    acc += wv * xv;
                                }
                            }
                        }
                    }
                    const int64_t token = (f * gh + i) * gw + j;  // frame, row, column
                    ASSERT_NEAR(y[static_cast<size_t>(token * dim + o)], acc, 1e-5);
                }
            }
        }
    }
}

// unpatchify follows the reference's einsum 'fhwpqrc->cfphqwr' (then frames first).
TEST(Patchify, UnpatchifyChannelFastestOrder) {
    PatchShape s;
    s.frames = 2;
    s.channels = 3;
    s.height = 4;
    s.width = 6;
    const auto patches = random_vector(s.tokens() * s.patch_size(), 4);
    std::vector<float> x(static_cast<size_t>(s.frames * s.channels * s.height * s.width));
    unpatchify_cpu({patches.data(), x.data(), s});
    const int64_t gh = 2, gw = 3;
    for (int64_t f = 0; f < 2; ++f) {
        for (int64_t c = 0; c < 3; ++c) {
            for (int64_t r = 0; r < 4; ++r) {
                for (int64_t col = 0; col < 6; ++col) {
                    // u[f, h, w, p, q, r, c] with h = r / 2, q = r % 2, w = col / 2, r' = col % 2, p = 0.
                    const int64_t token = (f * gh + r / 2) * gw + col / 2;
                    const int64_t inner = ((0 * 2 + r % 2) * 2 + col % 2) * 3 + c;
                    ASSERT_EQ(x[static_cast<size_t>(((f * 3 + c) * 4 + r) * 6 + col)],
                              patches[static_cast<size_t>(token * 12 + inner)]);
                }
            }
        }
    }
}

}  // namespace
}  // namespace lr
