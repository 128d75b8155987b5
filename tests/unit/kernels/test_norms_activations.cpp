#include <gtest/gtest.h>

#include <cmath>

#include "kernels/gelu.h"
#include "kernels/layer_norm.h"
#include "kernels/rms_norm.h"
#include "kernels/silu.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace lr {
namespace {

using test::random_vector;

TEST(LayerNorm, PlainAffineAndModulatedMatchNaive) {
    const int64_t rows = 12, dim = 40, per_group = 4, groups = 3, mod_stride = 6 * dim;
    auto x = random_vector(rows * dim, 1, -2.0f, 3.0f);
    const auto w = random_vector(dim, 2, 0.5f, 1.5f);
    const auto b = random_vector(dim, 3);
    const auto table = random_vector(groups * mod_stride, 4);  // like the [frames, 6, dim] modulation
    const float* shift = table.data() + 3 * dim;               // slot 3 (shift_ff) ...
    const float* scale = table.data() + 4 * dim;               // ... and slot 4 (scale_ff)
    const float eps = 1e-6f;
    for (int mode = 0; mode < 3; ++mode) {
        std::vector<float> y(static_cast<size_t>(rows * dim));
        LayerNormParams p;
        p.x = x.data();
        p.y = y.data();
        p.rows = rows;
        p.dim = dim;
        p.eps = eps;
        if (mode == 1) {
            p.weight = w.data();
            p.bias = b.data();
        }
        if (mode == 2) {
            p.shift = shift;
            p.scale = scale;
            p.rows_per_group = per_group;
            p.mod_stride = mod_stride;
        }
        layer_norm_cpu(p);
        for (int64_t r = 0; r < rows; ++r) {
            double mean = 0, var = 0;
            for (int64_t i = 0; i < dim; ++i) mean += x[static_cast<size_t>(r * dim + i)];
            mean /= dim;
            for (int64_t i = 0; i < dim; ++i) var += std::pow(x[static_cast<size_t>(r * dim + i)] - mean, 2);
            var /= dim;
            const int64_t g = r / per_group;
            for (int64_t i = 0; i < dim; ++i) {
                double v = (x[static_cast<size_t>(r * dim + i)] - mean) / std::sqrt(var + eps);
                if (mode == 1) v = v * w[static_cast<size_t>(i)] + b[static_cast<size_t>(i)];
                if (mode == 2) v = v * (1.0 + scale[g * mod_stride + i]) + shift[g * mod_stride + i];
                ASSERT_NEAR(y[static_cast<size_t>(r * dim + i)], v, 2e-6 * (1 + std::fabs(v))) << mode << " " << r;
            }
        }
    }
    // In place.
    std::vector<float> y(static_cast<size_t>(rows * dim));
    layer_norm_cpu({x.data(), y.data(), rows, dim, eps});
    layer_norm_cpu({x.data(), x.data(), rows, dim, eps});
    EXPECT_EQ(x, y);
}

TEST(RmsNorm, MatchesNaiveOverTheWholeDimWithStrides) {
    const int64_t rows = 9, dim = 48, xs = 50;
    const auto x = random_vector(rows * xs, 5, -3.0f, 3.0f);
    const auto w = random_vector(dim, 6, 0.5f, 1.5f);
    std::vector<float> y(static_cast<size_t>(rows * dim));
    RmsNormParams p;
    p.x = x.data();
    p.y = y.data();
    p.weight = w.data();
    p.rows = rows;
    p.dim = dim;
    p.x_stride = xs;
    p.eps = 1e-6f;
    rms_norm_cpu(p);
    for (int64_t r = 0; r < rows; ++r) {
        double ms = 0;
        for (int64_t i = 0; i < dim; ++i) ms += std::pow(x[static_cast<size_t>(r * xs + i)], 2);
        ms /= dim;
        for (int64_t i = 0; i < dim; ++i) {
            const double v = x[static_cast<size_t>(r * xs + i)] / std::sqrt(ms + 1e-6) * w[static_cast<size_t>(i)];
            ASSERT_NEAR(y[static_cast<size_t>(r * dim + i)], v, 2e-6 * (1 + std::fabs(v)));
        }
    }
}

TEST(Activations, GeluTanhAndSiluMatchFormulas) {
    const auto x = random_vector(1000, 7, -6.0f, 6.0f);
    std::vector<float> g(x.size()), s(x.size());
    gelu_tanh_cpu({x.data(), g.data(), static_cast<int64_t>(x.size())});
    silu_cpu({x.data(), s.data(), static_cast<int64_t>(x.size())});
    for (size_t i = 0; i < x.size(); ++i) {
        const double v = x[i];
        const double gr = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        const double sr = v / (1 + std::exp(-v));
        ASSERT_NEAR(g[i], gr, 1e-6 * (1 + std::fabs(gr)));
        ASSERT_NEAR(s[i], sr, 1e-6 * (1 + std::fabs(sr)));
    }
    // Hand values: gelu_tanh(1) = 0.841192, silu(1) = 0.731059.
    const float one = 1.0f;
    float out = 0;
    gelu_tanh_cpu({&one, &out, 1});
    EXPECT_NEAR(out, 0.8411920, 1e-6);
    silu_cpu({&one, &out, 1});
    EXPECT_NEAR(out, 0.7310586, 1e-6);
}

}  // namespace
}  // namespace lr
