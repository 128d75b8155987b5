// The VAE's CPU ops (kernels/conv3d, upsample_nearest, l2_norm) against naive loops on random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/conv3d.h"
#include "kernels/cpu_parallel.h"
#include "kernels/l2_norm.h"
#include "kernels/upsample_nearest.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace lr {
namespace {

using test::max_abs_diff;
using test::random_vector;
using test::rel_error;

// Restores the thread count when a test changes it.
struct ThreadScope {
    explicit ThreadScope(int n) { set_cpu_threads(n); }
    ~ThreadScope() { set_cpu_threads(0); }
};

struct ConvCase {
    int64_t out_frames, height, width, in_ch, out_ch, kt, kh, kw;
    std::vector<bool> null_frames;  // per input frame: pass nullptr (zeros)
    bool bias;
    bool accumulate;
    int threads;
};

// out[t][y][x][o] = bias[o] + sum w[o][i][dt][dy][dx] * in_{t+dt}[y+dy-kh/2][x+dx-kw/2][i], in double, PyTorch
// weight layout.
std::vector<double> naive_conv(const ConvCase& c, const std::vector<std::vector<float>>& frames,
                               const std::vector<float>& w_oi, const std::vector<float>& bias,
                               const std::vector<float>& init) {
    const int64_t hw = c.height * c.width;
    std::vector<double> out(static_cast<size_t>(c.out_frames * hw * c.out_ch));
    for (int64_t t = 0; t < c.out_frames; ++t) {
        for (int64_t y = 0; y < c.height; ++y) {
            for (int64_t x = 0; x < c.width; ++x) {
                for (int64_t o = 0; o < c.out_ch; ++o) {
                    const size_t idx = static_cast<size_t>(((t * c.height + y) * c.width + x) * c.out_ch + o);
                    double s = c.accumulate ? init[idx] : 0.0;
                    if (c.bias) s += bias[static_cast<size_t>(o)];
                    for (int64_t dt = 0; dt < c.kt; ++dt) {
                        if (c.null_frames[static_cast<size_t>(t + dt)]) continue;
                        const std::vector<float>& f = frames[static_cast<size_t>(t + dt)];
                        for (int64_t dy = 0; dy < c.kh; ++dy) {
                            const int64_t yy = y + dy - c.kh / 2;
                            if (yy < 0 || yy >= c.height) continue;
                            for (int64_t dx = 0; dx < c.kw; ++dx) {
                                const int64_t xx = x + dx - c.kw / 2;
                                if (xx < 0 || xx >= c.width) continue;
                                for (int64_t i = 0; i < c.in_ch; ++i) {
                                    const double wv = w_oi[static_cast<size_t>(
                                        (((o * c.in_ch + i) * c.kt + dt) * c.kh + dy) * c.kw + dx)];
                                    s += wv * f[static_cast<size_t>((yy * c.width + xx) * c.in_ch + i)];
                                }
                            }
                        }
                    }
                    out[idx] = s;
                }
            }
        }
    }
    return out;
}

void check_conv(const ConvCase& c, uint32_t seed) {
    ThreadScope threads(c.threads);
    const int64_t n_in = c.out_frames + c.kt - 1;
    ASSERT_EQ(static_cast<int64_t>(c.null_frames.size()), n_in);
    std::vector<std::vector<float>> frames;
    std::vector<const float*> ptrs;
    for (int64_t j = 0; j < n_in; ++j) {
        frames.push_back(random_vector(c.height * c.width * c.in_ch, seed + static_cast<uint32_t>(j)));
        ptrs.push_back(c.null_frames[static_cast<size_t>(j)] ? nullptr : frames.back().data());
    }
    const int64_t taps = c.kt * c.kh * c.kw;
    const auto w = random_vector(c.out_ch * c.in_ch * taps, seed + 100, -0.5f, 0.5f);
    std::vector<float> w_packed(w.size());
    conv3d_pack_weight(w.data(), w_packed.data(), c.out_ch, c.in_ch, c.kt, c.kh, c.kw);
    const auto bias = random_vector(c.out_ch, seed + 101);
    const auto init = random_vector(c.out_frames * c.height * c.width * c.out_ch, seed + 102);
    std::vector<float> out = init;
    Conv3dParams p;
    p.frames = ptrs.data();
    p.weight = w_packed.data();
    p.bias = c.bias ? bias.data() : nullptr;
    p.out = out.data();
    p.out_frames = c.out_frames;
    p.height = c.height;
    p.width = c.width;
    p.in_ch = c.in_ch;
    p.out_ch = c.out_ch;
    p.kt = c.kt;
    p.kh = c.kh;
    p.kw = c.kw;
    p.accumulate = c.accumulate;
    conv3d_cpu(p);
    const auto want = naive_conv(c, frames, w, bias, init);
    EXPECT_LT(rel_error(out, want, out.size()), 2e-6);
    EXPECT_LT(max_abs_diff(out, want, out.size()), 2e-5);
}

TEST(Conv3d, CausalThreeByThreeByThree) {
    // The residual-block conv with a full cache, then the first frame of a stream (two zero frames).
    check_conv({1, 5, 7, 8, 12, 3, 3, 3, {false, false, false}, true, false, 1}, 1);
    check_conv({1, 5, 7, 8, 12, 3, 3, 3, {true, true, false}, true, false, 1}, 2);
    check_conv({1, 5, 7, 8, 12, 3, 3, 3, {true, false, false}, true, true, 1}, 3);  // fused residual add
}

TEST(Conv3d, SeveralOutputFrames) {
    check_conv({3, 4, 6, 5, 7, 3, 3, 3, {true, false, false, false, false}, true, false, 1}, 4);
}

TEST(Conv3d, TimeConvAndPointwise) {
    check_conv({1, 6, 5, 16, 32, 3, 1, 1, {false, false, false}, true, false, 1}, 5);  // upsample3d's time_conv
    check_conv({1, 6, 5, 16, 32, 3, 1, 1, {true, true, false}, true, false, 1}, 6);
    check_conv({2, 6, 5, 16, 9, 1, 1, 1, {false, false}, true, true, 1}, 7);  // shortcut / proj with residual
    check_conv({1, 6, 5, 16, 9, 1, 1, 1, {false}, false, false, 1}, 8);
}

TEST(Conv3d, TwoDimensionalAndWideKernels) {
    check_conv({1, 9, 11, 6, 3, 1, 3, 3, {false}, true, false, 1}, 9);         // the resample Conv2d / RGB head shape
    check_conv({1, 4, 3, 2, 5, 2, 5, 5, {false, false}, true, false, 1}, 10);  // kernel wider than the frame
    check_conv({1, 1, 1, 3, 4, 3, 3, 3, {false, false, false}, true, false, 1}, 11);
}

TEST(Conv3d, AllZeroWindowGivesBias) {
    check_conv({1, 3, 4, 5, 6, 3, 3, 3, {true, true, true}, true, false, 1}, 12);
    check_conv({1, 3, 4, 5, 6, 3, 3, 3, {true, true, true}, true, true, 1}, 13);
}

TEST(Conv3d, ParallelTilesMatchSerial) {
    // 48 x 40 pixels of 24 channels: several im2col tiles, spread over threads; also the few-tiles path.
    for (int threads : {1, 3, 4}) {
        check_conv({1, 48, 40, 24, 20, 3, 3, 3, {false, true, false}, true, true, threads}, 20 + threads);
        check_conv({1, 7, 9, 24, 20, 3, 3, 3, {false, false, false}, true, false, threads}, 30 + threads);
    }
    // Bitwise the same for any thread count: each output element is one GEMM dot product in a fixed order.
    auto run = [](int threads) {
        ThreadScope scope(threads);
        const auto a = random_vector(40 * 36 * 16, 40), b = random_vector(40 * 36 * 16, 41);
        const auto w = random_vector(24 * 16 * 27, 42, -0.3f, 0.3f);
        const auto bias = random_vector(24, 43);
        const float* frames[3] = {a.data(), nullptr, b.data()};
        std::vector<float> out(static_cast<size_t>(40 * 36 * 24));
        Conv3dParams p;
        p.frames = frames;
        p.weight = w.data();
        p.bias = bias.data();
        p.out = out.data();
        p.height = 40;
        p.width = 36;
        p.in_ch = 16;
        p.out_ch = 24;
        p.kt = p.kh = p.kw = 3;
        conv3d_cpu(p);
        return out;
    };
    EXPECT_EQ(run(1), run(4));
}

TEST(Conv3d, WeightPacking) {
    const int64_t o = 3, i = 4, kt = 2, kh = 3, kw = 5;
    const auto w = random_vector(o * i * kt * kh * kw, 50);
    std::vector<float> cl(w.size());
    conv3d_pack_weight(w.data(), cl.data(), o, i, kt, kh, kw);
    for (int64_t a = 0; a < o; ++a)
        for (int64_t b = 0; b < i; ++b)
            for (int64_t t = 0; t < kt; ++t)
                for (int64_t y = 0; y < kh; ++y)
                    for (int64_t x = 0; x < kw; ++x)
                        ASSERT_EQ(cl[static_cast<size_t>((((t * kh + y) * kw + x) * i + b) * o + a)],
                                  w[static_cast<size_t>((((a * i + b) * kt + t) * kh + y) * kw + x)]);
}

TEST(UpsampleNearest2x, MatchesNaiveWithStride) {
    for (int threads : {1, 3}) {
        ThreadScope scope(threads);
        const int64_t h = 37, w = 23, c = 5, stride = 11;  // a channel slice [3, 8) of 11-channel pixels
        const auto x = random_vector(h * w * stride, 60);
        std::vector<float> y(static_cast<size_t>(4 * h * w * c), -7.0f);
        UpsampleNearest2xParams p;
        p.x = x.data() + 3;
        p.y = y.data();
        p.height = h;
        p.width = w;
        p.channels = c;
        p.x_pixel_stride = stride;
        upsample_nearest2x_cpu(p);
        for (int64_t i = 0; i < 2 * h; ++i)
            for (int64_t j = 0; j < 2 * w; ++j)
                for (int64_t k = 0; k < c; ++k)
                    ASSERT_EQ(y[static_cast<size_t>((i * 2 * w + j) * c + k)],
                              x[static_cast<size_t>(((i / 2) * w + j / 2) * stride + 3 + k)]);
    }
}

TEST(L2Norm, MatchesNaiveWithSiluBiasAndStrides) {
    const int64_t rows = 300, dim = 24;
    const auto x = random_vector(rows * (dim + 3), 70, -3.0f, 2.0f);
    const auto gamma = random_vector(dim, 71, 0.5f, 1.5f);
    const auto bias = random_vector(dim, 72);
    for (int mode = 0; mode < 3; ++mode) {
        std::vector<float> y(static_cast<size_t>(rows * dim));
        L2NormParams p;
        p.x = x.data();
        p.x_stride = dim + 3;
        p.y = y.data();
        p.gamma = gamma.data();
        p.bias = mode == 1 ? bias.data() : nullptr;
        p.rows = rows;
        p.dim = dim;
        p.silu = mode == 2;
        l2_norm_cpu(p);
        for (int64_t r = 0; r < rows; ++r) {
            const float* xr = x.data() + r * (dim + 3);
            double sq = 0;
            for (int64_t i = 0; i < dim; ++i) sq += static_cast<double>(xr[i]) * xr[i];
            for (int64_t i = 0; i < dim; ++i) {
                double v = xr[i] / std::sqrt(sq) * std::sqrt(static_cast<double>(dim)) * gamma[static_cast<size_t>(i)];
                if (mode == 1) v += bias[static_cast<size_t>(i)];
                if (mode == 2) v = v / (1.0 + std::exp(-v));
                ASSERT_NEAR(y[static_cast<size_t>(r * dim + i)], v, 2e-6 * (1 + std::fabs(v))) << mode << " " << r;
            }
        }
    }
}

TEST(L2Norm, InPlaceAndZeroRow) {
    const int64_t dim = 8;
    std::vector<float> x = random_vector(2 * dim, 80);
    std::fill(x.begin() + dim, x.end(), 0.0f);  // F.normalize clamps the norm at eps: zeros stay zeros
    const std::vector<float> x0 = x;
    const std::vector<float> gamma(dim, 1.0f);
    L2NormParams p;
    p.x = x.data();
    p.y = x.data();
    p.gamma = gamma.data();
    p.rows = 2;
    p.dim = dim;
    l2_norm_cpu(p);
    double sq = 0;
    for (int64_t i = 0; i < dim; ++i) sq += x[static_cast<size_t>(i)] * x[static_cast<size_t>(i)];
    EXPECT_NEAR(sq, static_cast<double>(dim), 1e-4);  // unit RMS
    for (int64_t i = dim; i < 2 * dim; ++i) EXPECT_EQ(x[static_cast<size_t>(i)], 0.0f);
    EXPECT_NEAR(x[0] / x[1], x0[0] / x0[1], 1e-5);
}

}  // namespace
}  // namespace lr
