// CUDA cast against the CPU reference on random inputs: both round to nearest even, so results must be
// bit-identical for every supported dtype pair.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "gpu_test_util.h"
#include "kernels/cast.h"

namespace lr {
namespace {

TEST(CastGpu, MatchesCpuBitExactForEveryPair) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t n = 1 << 20 | 37;  // not a multiple of the block size
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 300.0f);
    std::vector<float> src_f32(static_cast<size_t>(n));
    for (auto& v : src_f32) v = dist(rng);
    src_f32[3] = 1e-7f;  // f16 subnormal
    src_f32[4] = 7e4f;   // f16 overflow
    src_f32[5] = -0.0f;
    for (DType from : {DType::kF32, DType::kBF16, DType::kF16}) {
        // Inputs in `from`, made by the CPU cast.
        HostTensor src(from, Shape{n});
        cast_cpu({src_f32.data(), src.view.data, DType::kF32, from, n});
        for (DType to : {DType::kF32, DType::kBF16, DType::kF16}) {
            HostTensor want(to, Shape{n});
            cast_cpu({src.view.data, want.view.data, from, to, n});
            DeviceBuffer d_src = test::to_device(src.view.data, static_cast<size_t>(src.view.nbytes()));
            DeviceBuffer d_dst(static_cast<size_t>(want.view.nbytes()));
            launch_cast({d_src.data(), d_dst.data(), from, to, n}, nullptr);
            LR_CUDA_CHECK(cudaDeviceSynchronize());
            const auto got = test::to_host<uint8_t>(d_dst, static_cast<size_t>(want.view.nbytes()));
            int64_t mismatches = 0;
            for (int64_t i = 0; i < n; ++i) {
                const int sz = dtype_size(to);
                if (std::memcmp(got.data() + i * sz, static_cast<const uint8_t*>(want.view.data) + i * sz, sz) != 0) {
                    if (++mismatches < 5) {
                        ADD_FAILURE() << dtype_name(from) << "->" << dtype_name(to) << " element " << i << ": cpu "
                                      << load_as_f32(want.view.data, to, i) << ", gpu "
                                      << load_as_f32(got.data(), to, i);
                    }
                }
            }
            EXPECT_EQ(mismatches, 0) << dtype_name(from) << "->" << dtype_name(to);
        }
    }
#endif
}

TEST(CastGpu, TensorApiDispatchesToDevice) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    std::vector<float> h = {1.0f, -2.5f, 3.25f, 1e-3f};
    DeviceBuffer d_src = test::to_device(h.data(), h.size() * 4);
    DeviceBuffer d_dst(h.size() * 2);
    cast(TensorView(d_src.data(), DType::kF32, Shape{4}, Device::kCuda),
         TensorView(d_dst.data(), DType::kBF16, Shape{4}, Device::kCuda));
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = test::to_host<uint16_t>(d_dst, 4);
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(got[i], f32_to_bf16_bits(h[i]));
#endif
}

}  // namespace
}  // namespace lr
