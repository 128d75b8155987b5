#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/rollout/noise.h"
#include "runtime/rollout/scheduler.h"

namespace lr {
namespace {

TEST(Scheduler, SelfForcingTablesAndWarpedSteps) {
    const FlowMatchScheduler s(5.0);
    ASSERT_EQ(s.sigmas().size(), 1000u);
    EXPECT_EQ(s.sigmas()[0], 1.0f);
    EXPECT_EQ(s.timesteps()[0], 1000.0f);
    // sigma_i = 1 - i/1000 shifted: 5 s / (1 + 4 s).
    for (int i : {1, 250, 500, 750, 999}) {
        const double sigma = 1.0 - i / 1000.0;
        EXPECT_NEAR(s.sigmas()[static_cast<size_t>(i)], 5 * sigma / (1 + 4 * sigma), 2e-7) << i;
        EXPECT_EQ(s.timesteps()[static_cast<size_t>(i)], s.sigmas()[static_cast<size_t>(i)] * 1000.0f);
    }
    // Descending.
    for (size_t i = 1; i < 1000; ++i) ASSERT_LT(s.timesteps()[i], s.timesteps()[i - 1]);
    const auto w = s.warp({1000, 750, 500, 250});
    ASSERT_EQ(w.size(), 4u);
    EXPECT_EQ(w[0], 1000.0f);
    EXPECT_NEAR(w[1], 937.5, 1e-4);
    EXPECT_NEAR(w[2], 833.3333, 1e-3);
    EXPECT_NEAR(w[3], 625.0, 1e-4);
    EXPECT_EQ(s.warp({0})[0], 0.0f);
    EXPECT_THROW(s.warp({1001}), InputError);
    // Shift 1: no warp.
    EXPECT_NEAR(FlowMatchScheduler(1.0).warp({750})[0], 750.0, 1e-3);
}

TEST(Scheduler, SigmaLookupX0AndAddNoise) {
    const FlowMatchScheduler s(5.0);
    EXPECT_EQ(s.index_of(1000.0), 0);
    EXPECT_EQ(s.index_of(937.5), 250);
    EXPECT_EQ(s.index_of(625.0), 750);
    EXPECT_NEAR(s.sigma_at(937.5), 0.9375, 1e-7);
    EXPECT_EQ(s.index_of(0.0), 999);  // nearest entry: the smallest timestep
    const float xt[3] = {0.5f, -1.25f, 2.0f};
    const float flow[3] = {1.5f, 0.25f, -3.0f};
    float x0[3];
    s.flow_to_x0(flow, xt, 937.5, x0, 3);
    for (int i = 0; i < 3; ++i) EXPECT_FLOAT_EQ(x0[i], static_cast<float>(xt[i] - 0.9375 * flow[i]));
    const float noise[3] = {0.1f, -0.2f, 0.3f};
    float y[3];
    s.add_noise(x0, noise, 625.0, y, 3);
    const float sg = s.sigma_at(625.0);
    EXPECT_NEAR(sg, 0.625f, 1e-6);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(y[i], (1.0f - sg) * x0[i] + sg * noise[i]);
}

// Known-answer vectors of Random123's philox4x32-10.// The flow-matching ODE: on x_t = (1 - s) x0 + s eps with the
// exact flow eps - x0, an Euler step is exact (the path is a straight line), so it must land on (1 - s') x0 + s' eps.
// Written from that identity, not from the code.
TEST(Scheduler, EulerStepOnTheExactFlowLandsOnTheNextPointOfTheLine) {
    const FlowMatchScheduler s(2.0);
    const auto ts = s.warp({1000, 750, 500, 250});
    const int64_t n = 257;
    std::vector<double> x0(n), eps(n);
    for (int64_t i = 0; i < n; ++i) {
        x0[i] = std::sin(0.37 * static_cast<double>(i)) * 1.7;
        eps[i] = std::cos(1.31 * static_cast<double>(i) + 0.2) * 1.1;
    }
    for (size_t k = 0; k + 1 < ts.size(); ++k) {
        const double a = s.sigma_at(ts[k]), b = s.sigma_at(ts[k + 1]);
        ASSERT_GT(a, b);
        std::vector<float> x(n), flow(n);
        for (int64_t i = 0; i < n; ++i) {
            x[i] = static_cast<float>((1.0 - a) * x0[i] + a * eps[i]);
            flow[i] = static_cast<float>(eps[i] - x0[i]);
        }
        s.euler_step(flow.data(), ts[k], ts[k + 1], x.data(), n);
        double worst = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double want = (1.0 - b) * x0[i] + b * eps[i];
            worst = std::max(worst, std::fabs(static_cast<double>(x[i]) - want));
        }
        // Three fp32 roundings (x, flow, the result) of values below 3 in magnitude: under 1e-6.
        EXPECT_LT(worst, 1e-6) << "step " << k;
        EXPECT_EQ(s.euler_dsigma(ts[k], ts[k + 1]), b - a);
    }
}

TEST(Noise, PhiloxKnownAnswers) {
    auto check = [](std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key, std::array<uint32_t, 4> want) {
        uint32_t out[4];
        philox4x32(ctr.data(), key.data(), out);
        for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], want[static_cast<size_t>(i)]) << std::hex << out[i];
    };
    check({0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    check({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
          {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    check({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
          {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST(Noise, SeededIsDeterministicPerFrameAndStepAndOrderFree) {
    const int64_t n = 16 * 6 * 10;
    const SeededNoise a(7, 16, 6, 10), b(7, 16, 6, 10), c(8, 16, 6, 10);
    std::vector<float> f5(n), f5b(n), f0(n), f5c(n), s0(n), s1(n), s0b(n);
    b.initial(0, f0.data());  // another frame first: no state, order does not matter
    a.initial(5, f5.data());
    b.initial(5, f5b.data());
    c.initial(5, f5c.data());
    a.step(0, 5, s0.data());
    a.step(1, 5, s1.data());
    b.step(0, 5, s0b.data());
    EXPECT_EQ(f5, f5b);
    EXPECT_EQ(s0, s0b);
    EXPECT_NE(f5, f0);
    EXPECT_NE(f5, f5c);
    EXPECT_NE(f5, s0);
    EXPECT_NE(s0, s1);
    // Standard normal.
    const SeededNoise big(1, 16, 60, 104);
    std::vector<float> v(16 * 60 * 104);
    big.initial(3, v.data());
    double mean = 0, var = 0;
    for (float x : v) mean += x;
    mean /= static_cast<double>(v.size());
    for (float x : v) var += (x - mean) * (x - mean);
    var /= static_cast<double>(v.size());
    EXPECT_NEAR(mean, 0.0, 0.01);
    EXPECT_NEAR(var, 1.0, 0.02);
    for (float x : v) ASSERT_TRUE(std::isfinite(x));
}

TEST(Noise, ReplayChecksShapesAndReplays) {
    const int64_t T = 3, S = 4, C = 2, H = 2, W = 2;
    HostTensor noise(DType::kF32, Shape{T, C, H, W});
    HostTensor steps(DType::kF32, Shape{S - 1, T, C, H, W});
    for (int64_t i = 0; i < noise.view.numel(); ++i) noise.as<float>()[i] = static_cast<float>(i);
    for (int64_t i = 0; i < steps.view.numel(); ++i) steps.as<float>()[i] = static_cast<float>(-i);
    const ReplayNoise r(noise.view, steps.view, T, S, C, H, W);
    std::vector<float> out(8);
    r.initial(2, out.data());
    EXPECT_EQ(out[0], 16.0f);
    r.step(1, 2, out.data());
    EXPECT_EQ(out[7], -static_cast<float>((1 * T + 2) * 8 + 7));
    EXPECT_THROW(ReplayNoise(noise.view, steps.view, T, S + 1, C, H, W), InputError);
    EXPECT_THROW(ReplayNoise(noise.view, steps.view, T + 1, S, C, H, W), InputError);
}

}  // namespace
}  // namespace lr
