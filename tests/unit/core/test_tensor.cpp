#include <gtest/gtest.h>

#include <cstdint>

#include "runtime/core/check.h"
#include "runtime/core/tensor.h"

namespace lr {
namespace {

TEST(Shape, NumelEqualityAndString) {
    const Shape s{2, 3, 4};
    EXPECT_EQ(s.ndim, 3);
    EXPECT_EQ(s.numel(), 24);
    EXPECT_EQ(s.str(), "[2, 3, 4]");
    EXPECT_EQ(s, (Shape{2, 3, 4}));
    EXPECT_FALSE(s == (Shape{2, 3}));
    EXPECT_FALSE(s == (Shape{2, 3, 5}));
    EXPECT_EQ(Shape{}.numel(), 1);  // a scalar
    const int64_t seven[7] = {1, 1, 1, 1, 1, 1, 1};
    EXPECT_THROW(Shape::from_span(seven), InputError);
}

TEST(TensorView, ContiguousStridesReshapeSlice) {
    HostTensor t(DType::kF32, Shape{4, 3, 2});
    float* p = t.as<float>();
    for (int i = 0; i < 24; ++i) p[i] = static_cast<float>(i) * 0.5f + 1.0f;
    EXPECT_TRUE(t.view.is_contiguous());
    EXPECT_EQ(t.view.strides[0], 6);
    EXPECT_EQ(t.view.strides[1], 2);
    EXPECT_EQ(t.view.strides[2], 1);
    EXPECT_EQ(t.view.nbytes(), 96);
    const TensorView r = t.view.reshape(Shape{12, 2});
    EXPECT_EQ(r.as<float>()[5], p[5]);
    EXPECT_THROW(t.view.reshape(Shape{5, 5}), InternalError);
    const TensorView s = t.view.slice0(1, 3);
    EXPECT_EQ(s.shape, (Shape{2, 3, 2}));
    EXPECT_EQ(s.as<float>()[0], p[6]);
    EXPECT_THROW(t.view.slice0(2, 5), InternalError);
    TensorView strided = t.view;
    strided.strides[0] = 12;  // every other row
    EXPECT_FALSE(strided.is_contiguous());
    EXPECT_EQ(t.view.str(), "F32[4, 3, 2] cpu");
}

TEST(HostBuffer, AlignedAndMovable) {
    HostBuffer a(1000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
    void* p = a.data();
    HostBuffer b(std::move(a));
    EXPECT_EQ(b.data(), p);
    EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
    EXPECT_EQ(b.size(), 1000u);
}

TEST(Arena, BumpAllocatesAlignedAndRefusesPastPlan) {
    Arena arena(Device::kCpu, 4096);
    const TensorView a = arena.alloc(DType::kBF16, Shape{10}, "a");
    const TensorView b = arena.alloc(DType::kF32, Shape{100}, "b");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data) % 256, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data) % 256, 0u);
    EXPECT_GE(static_cast<char*>(b.data) - static_cast<char*>(a.data), 20);
    const size_t m = arena.mark();
    arena.alloc(DType::kF32, Shape{500}, "c");
    EXPECT_GT(arena.used(), m);
    arena.release_to(m);
    EXPECT_EQ(arena.used(), m);
    EXPECT_GE(arena.high_water(), m + 2000);
    try {
        arena.alloc(DType::kF32, Shape{2000}, "too_big");
        FAIL() << "expected the arena to refuse";
    } catch (const InternalError& e) {
        EXPECT_NE(std::string(e.what()).find("too_big"), std::string::npos) << e.what();
    }
}

TEST(DeviceBuffer, WithoutCudaSaysSo) {
#ifndef LONGROLL_HAS_CUDA
    EXPECT_THROW(DeviceBuffer(16), RuntimeError);
#else
    GTEST_SKIP() << "CUDA build: device buffers are covered by the gpu tests";
#endif
}

TEST(FormatBytes, Units) {
    EXPECT_EQ(format_bytes(512), "512 B");
    EXPECT_EQ(format_bytes(1536), "1.50 KiB");
    EXPECT_EQ(format_bytes(3ull << 30), "3.00 GiB");
}

}  // namespace
}  // namespace lr
