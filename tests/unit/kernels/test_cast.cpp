#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/cast.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

TEST(Cast, RoundTripErrorWithinDtypeBound) {
    const int64_t n = 4099;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> dist(-8.0f, 8.0f);
    HostTensor src(DType::kF32, Shape{n});
    for (int64_t i = 0; i < n; ++i) src.as<float>()[i] = dist(rng);
    for (auto [dt, rel] : {std::pair{DType::kBF16, 1.0f / 256}, std::pair{DType::kF16, 1.0f / 2048}}) {
        HostTensor mid(dt, Shape{n});
        HostTensor back(DType::kF32, Shape{n});
        cast(src.view, mid.view);
        cast(mid.view, back.view);
        for (int64_t i = 0; i < n; ++i) {
            const float x = src.as<float>()[i], y = back.as<float>()[i];
            ASSERT_LE(std::fabs(x - y), rel * std::fabs(x) + 1e-30f) << dtype_name(dt) << " at " << i;
        }
    }
}

TEST(Cast, RefusesUnsupportedAndMismatched) {
    HostTensor a(DType::kI32, Shape{4});
    HostTensor b(DType::kF32, Shape{4});
    HostTensor c(DType::kF32, Shape{5});
    EXPECT_THROW(cast(a.view, b.view), InputError);
    EXPECT_THROW(cast(b.view, c.view), InternalError);
#ifndef LONGROLL_HAS_CUDA
    TensorView dev = b.view;
    dev.device = Device::kCuda;
    TensorView dev2 = dev;
    EXPECT_THROW(cast(dev, dev2), RuntimeError);
#endif
}

}  // namespace
}  // namespace lr
