#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "runtime/core/check.h"
#include "runtime/core/dtype.h"

namespace lr {
namespace {

TEST(DType, NamesRoundTripAndSizes) {
    for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kF8E5M2, DType::kI64,
                    DType::kI32, DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
        const auto back = dtype_from_name(dtype_name(d));
        ASSERT_TRUE(back.has_value()) << dtype_name(d);
        EXPECT_EQ(*back, d);
    }
    EXPECT_EQ(dtype_size(DType::kBF16), 2);
    EXPECT_EQ(dtype_size(DType::kF64), 8);
    EXPECT_EQ(dtype_size(DType::kF8E4M3), 1);
    EXPECT_FALSE(dtype_from_name("F31").has_value());
    EXPECT_FALSE(dtype_from_name("f32").has_value());  // safetensors names are upper case
}

// bf16 rounding checked against the definition: the nearest of the two neighbouring bf16 values, ties to even.
TEST(DType, Bf16RoundsToNearestEven) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> dist(-1e4f, 1e4f);
    for (int i = 0; i < 100000; ++i) {
        const float x = dist(rng);
        uint32_t u;
        std::memcpy(&u, &x, 4);
        const uint16_t lo = static_cast<uint16_t>(u >> 16);
        const float a = bf16_bits_to_f32(lo), b = bf16_bits_to_f32(static_cast<uint16_t>(lo + 1));
        const uint16_t got = f32_to_bf16_bits(x);
        const float da = std::fabs(x - a), db = std::fabs(x - b);
        const uint16_t want = da < db ? lo : db < da ? static_cast<uint16_t>(lo + 1) : ((lo & 1) ? lo + 1 : lo);
        ASSERT_EQ(got, want) << x;
    }
    EXPECT_TRUE(std::isnan(bf16_bits_to_f32(f32_to_bf16_bits(std::nanf("")))));
    EXPECT_EQ(bf16_bits_to_f32(f32_to_bf16_bits(1.0f)), 1.0f);
}

// Every f16 value converts to f32 and back unchanged; f32 -> f16 picks the nearest f16.
TEST(DType, F16ExhaustiveRoundTripAndNearest) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = f16_bits_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(f)) {
            EXPECT_TRUE(std::isnan(f16_bits_to_f32(f32_to_f16_bits(f))));
            continue;
        }
        ASSERT_EQ(f32_to_f16_bits(f), h) << std::hex << h;
    }
    std::mt19937 rng(2);
    std::uniform_real_distribution<float> dist(-70000.f, 70000.f);
    for (int i = 0; i < 50000; ++i) {
        const float x = (i % 2) ? dist(rng) : dist(rng) * 1e-6f;  // also subnormal territory
        const float y = f16_bits_to_f32(f32_to_f16_bits(x));
        if (std::fabs(x) >= 65520.f) {
            ASSERT_TRUE(std::isinf(y)) << x;
            continue;
        }
        // No f16 value lies strictly closer than y.
        const uint16_t hy = f32_to_f16_bits(x);
        for (int d : {-1, 1}) {
            const float n = f16_bits_to_f32(static_cast<uint16_t>(hy + d));
            if (!std::isfinite(n)) continue;
            ASSERT_LE(std::fabs(x - y), std::fabs(x - n)) << x;
        }
    }
}

TEST(DType, LoadStoreThroughF32) {
    float buf_f32[4];
    uint16_t buf_bf16[4];
    const float vals[4] = {1.5f, -2.25f, 0.0f, 1024.0f};
    for (int i = 0; i < 4; ++i) {
        store_from_f32(buf_f32, DType::kF32, i, vals[i]);
        store_from_f32(buf_bf16, DType::kBF16, i, vals[i]);
    }
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(load_as_f32(buf_f32, DType::kF32, i), vals[i]);
        EXPECT_EQ(load_as_f32(buf_bf16, DType::kBF16, i), vals[i]);  // exactly representable
    }
    int32_t ints[2] = {7, -3};
    EXPECT_EQ(load_as_f32(ints, DType::kI32, 1), -3.0f);
    EXPECT_THROW(store_from_f32(ints, DType::kI32, 0, 1.0f), InputError);
}

}  // namespace
}  // namespace lr
