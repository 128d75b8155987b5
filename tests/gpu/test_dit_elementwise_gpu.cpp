// The DiT's elementwise CUDA ops against their CPU references on random inputs of odd sizes. Bounds follow what
// each op's math allows: permutations and fixed-rounding arithmetic (add_broadcast, patchify, unpatchify,
// flow_to_x0) are bit-exact; add_noise is within 1 ulp; the timestep sinusoid, computed in double on both
// sides, differs only where a float rounding flips (1e-6 absolute); SiLU / GELU use fp32 library functions
// that differ by an ulp or two (1e-5 relative plus 2e-6 absolute in f32, one bf16 ulp in bf16).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/dit_ops_cuda.h"
#include "kernels/gelu.h"
#include "kernels/patchify.h"
#include "kernels/silu.h"
#include "kernels/timestep_embedding.h"
#include "runtime/core/dtype.h"
#include "runtime/rollout/scheduler.h"

namespace lr {
namespace {

#ifdef LONGROLL_HAS_CUDA

std::vector<float> random_floats(size_t n, uint32_t seed, float stddev) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

DeviceBuffer floats_to_device(const std::vector<float>& v) { return test::to_device(v.data(), v.size() * 4); }

// Distance in representable floats between two finite floats of any sign.
int64_t ulp_distance(float a, float b) {
    const auto ordered = [](float f) {
        int32_t i;
        std::memcpy(&i, &f, 4);
        return i < 0 ? int64_t{INT32_MIN} - i : int64_t{i};
    };
    return std::llabs(ordered(a) - ordered(b));
}

// Counts and reports elements where got != want bit for bit.
int64_t count_bit_mismatches(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
    int64_t bad = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (std::memcmp(&got[i], &want[i], 4) != 0 && ++bad <= 5) {
            ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
        }
    }
    return bad;
}

#endif  // LONGROLL_HAS_CUDA

TEST(DitElementwiseGpu, AddBroadcastIsExact) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t groups = 7, n = 6 * 1536 + 5;
    const auto base = random_floats(static_cast<size_t>(n), 1, 1.0f);
    const auto rows = random_floats(static_cast<size_t>(groups * n), 2, 1.0f);
    std::vector<float> want(rows.size());
    for (int64_t g = 0; g < groups; ++g) {
        for (int64_t i = 0; i < n; ++i) {
            want[static_cast<size_t>(g * n + i)] = base[static_cast<size_t>(i)] + rows[static_cast<size_t>(g * n + i)];
        }
    }
    DeviceBuffer d_base = floats_to_device(base), d_rows = floats_to_device(rows);
    DeviceBuffer d_out(rows.size() * 4);
    AddBroadcastParams p;
    p.base = static_cast<const float*>(d_base.data());
    p.rows = static_cast<const float*>(d_rows.data());
    p.out = static_cast<float*>(d_out.data());
    p.groups = groups;
    p.n = n;
    launch_add_broadcast(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(count_bit_mismatches(test::to_host<float>(d_out, rows.size()), want, "out"), 0);

    p.out = static_cast<float*>(d_rows.data());  // in place over rows
    launch_add_broadcast(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(count_bit_mismatches(test::to_host<float>(d_rows, rows.size()), want, "in place"), 0);
#endif
}

TEST(DitElementwiseGpu, UnaryMatchesCpuForEveryOpAndDtype) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t n = 100003;
    auto x_f32 = random_floats(static_cast<size_t>(n), 3, 3.0f);
    x_f32[0] = 0.0f;
    x_f32[1] = -12.0f;  // GELU and SiLU underflow towards 0
    x_f32[2] = 30.0f;
    x_f32[3] = -2.7f;  // where GELU's tanh form and erf form differ most
    for (const UnaryOp op : {UnaryOp::kSilu, UnaryOp::kGeluTanh}) {
        for (const DType x_dtype : {DType::kF32, DType::kBF16}) {
            for (const DType y_dtype : {DType::kF32, DType::kBF16}) {
                SCOPED_TRACE(testing::Message() << (op == UnaryOp::kSilu ? "silu " : "gelu ") << dtype_name(x_dtype)
                                                << " -> " << dtype_name(y_dtype));
                // The CPU sees the input as the GPU does (rounded to bf16 when x is bf16).
                std::vector<uint8_t> x_host(static_cast<size_t>(n * dtype_size(x_dtype)));
                std::vector<float> x_seen(static_cast<size_t>(n)), want(static_cast<size_t>(n));
                for (int64_t i = 0; i < n; ++i) {
                    store_from_f32(x_host.data(), x_dtype, i, x_f32[static_cast<size_t>(i)]);
                    x_seen[static_cast<size_t>(i)] = load_as_f32(x_host.data(), x_dtype, i);
                }
                if (op == UnaryOp::kSilu) {
                    silu_cpu({x_seen.data(), want.data(), n});
                } else {
                    gelu_tanh_cpu({x_seen.data(), want.data(), n});
                }
                DeviceBuffer d_x = test::to_device(x_host.data(), x_host.size());
                DeviceBuffer d_y(static_cast<size_t>(n * dtype_size(y_dtype)));
                UnaryParams p;
                p.x = d_x.data();
                p.x_dtype = x_dtype;
                p.y = d_y.data();
                p.y_dtype = y_dtype;
                p.n = n;
                p.op = op;
                launch_unary(p, nullptr);
                LR_CUDA_CHECK(cudaDeviceSynchronize());
                const auto got = test::to_host<uint8_t>(d_y, static_cast<size_t>(n * dtype_size(y_dtype)));
                int64_t bad = 0;
                for (int64_t i = 0; i < n; ++i) {
                    const float w = want[static_cast<size_t>(i)];
                    const float g = load_as_f32(got.data(), y_dtype, i);
                    // bf16: the CPU value rounded to bf16, give or take the one ulp a last-bit difference can flip.
                    const double ref = y_dtype == DType::kBF16 ? bf16_bits_to_f32(f32_to_bf16_bits(w)) : w;
                    const double tol =
                        y_dtype == DType::kBF16 ? 8e-3 * std::fabs(ref) + 1e-6 : 1e-5 * std::fabs(ref) + 2e-6;
                    if (!(std::fabs(g - ref) <= tol) && ++bad <= 5) {
                        ADD_FAILURE() << "x " << x_seen[static_cast<size_t>(i)] << ": got " << g << ", want " << ref;
                    }
                }
                EXPECT_EQ(bad, 0);
            }
        }
    }
    // In place, f32.
    std::vector<float> want(x_f32.size());
    silu_cpu({x_f32.data(), want.data(), n});
    DeviceBuffer d = floats_to_device(x_f32);
    launch_unary({d.data(), DType::kF32, d.data(), DType::kF32, n, UnaryOp::kSilu}, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = test::to_host<float>(d, x_f32.size());
    for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + 2e-6) << "in place, element " << i;
    }
#endif
}

TEST(DitElementwiseGpu, TimestepEmbeddingMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    std::vector<float> t = {0.0f, 1000.0f, 937.5f, 833.3333f, 625.0f, 1.0f, 999.9f};
    std::mt19937 rng(4);
    std::uniform_real_distribution<float> dist(0.0f, 1000.0f);
    for (int i = 0; i < 10; ++i) t.push_back(dist(rng));
    const int64_t n = static_cast<int64_t>(t.size());
    for (const int64_t dim : {int64_t{256}, int64_t{34}}) {  // freq_dim, and an odd half
        SCOPED_TRACE(testing::Message() << "dim " << dim);
        std::vector<float> want(static_cast<size_t>(n * dim));
        timestep_embedding_cpu({t.data(), want.data(), n, dim});
        DeviceBuffer d_t = floats_to_device(t);
        DeviceBuffer d_out(want.size() * 4);
        launch_timestep_embedding({static_cast<const float*>(d_t.data()), static_cast<float*>(d_out.data()), n, dim},
                                  nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        const auto got = test::to_host<float>(d_out, want.size());
        double max_err = 0;
        for (size_t i = 0; i < want.size(); ++i) max_err = std::max(max_err, std::fabs(double{got[i]} - want[i]));
        // An fp32 angle would be off by ~1e-4 at t = 1000.
        EXPECT_LE(max_err, 1e-6);
    }
#endif
}

TEST(DitElementwiseGpu, PatchifyAndUnpatchifyMatchCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    PatchShape wan;  // Wan's (1, 2, 2) patches on an odd-sized latent
    wan.frames = 3;
    wan.channels = 16;
    wan.height = 10;
    wan.width = 14;
    PatchShape odd;  // every patch dimension different, so a swapped index shows
    odd.frames = 4;
    odd.channels = 3;
    odd.height = 9;
    odd.width = 10;
    odd.pt = 2;
    odd.ph = 3;
    odd.pw = 5;
    uint32_t seed = 10;
    for (const PatchShape& s : {wan, odd}) {
        SCOPED_TRACE(testing::Message() << "latent [" << s.frames << ", " << s.channels << ", " << s.height << ", "
                                        << s.width << "] patch (" << s.pt << ", " << s.ph << ", " << s.pw << ")");
        const size_t latent = static_cast<size_t>(s.frames * s.channels * s.height * s.width);
        const size_t patches = static_cast<size_t>(s.tokens() * s.patch_size());
        ASSERT_EQ(latent, patches);

        const auto x = random_floats(latent, seed++, 1.0f);
        std::vector<float> want(patches);
        patchify_cpu({x.data(), want.data(), s});
        DeviceBuffer d_x = floats_to_device(x);
        DeviceBuffer d_p(patches * 2);
        launch_patchify({static_cast<const float*>(d_x.data()), d_p.data(), s}, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        const auto got_bits = test::to_host<uint16_t>(d_p, patches);
        int64_t bad = 0;
        for (size_t i = 0; i < patches; ++i) {
            if (got_bits[i] != f32_to_bf16_bits(want[i]) && ++bad <= 5) {
                ADD_FAILURE() << "patch element " << i << ": got " << bf16_bits_to_f32(got_bits[i]) << ", want "
                              << want[i];
            }
        }
        EXPECT_EQ(bad, 0);

        const auto head = random_floats(patches, seed++, 1.0f);
        std::vector<float> want_x(latent);
        unpatchify_cpu({head.data(), want_x.data(), s});
        DeviceBuffer d_head = floats_to_device(head);
        DeviceBuffer d_out(latent * 4);
        launch_unpatchify({static_cast<const float*>(d_head.data()), static_cast<float*>(d_out.data()), s}, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        EXPECT_EQ(count_bit_mismatches(test::to_host<float>(d_out, latent), want_x, "unpatchify"), 0);
    }
#endif
}

// copy_rows gathers (src_row), scatters (dst_row) or both, with strided rows and skipped (negative) entries: the
// device copy equals copy_rows_cpu byte for byte, and rows never named keep their previous contents.
TEST(DitElementwiseGpu, CopyRowsMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    constexpr int64_t kSrcRows = 37, kDstRows = 41, kRowBytes = 132, kSrcStride = 140, kDstStride = 148;
    std::mt19937 rng(17);
    std::vector<uint8_t> src(static_cast<size_t>(kSrcRows * kSrcStride)),
        dst0(static_cast<size_t>(kDstRows * kDstStride));
    for (auto& b : src) b = static_cast<uint8_t>(rng());
    for (auto& b : dst0) b = static_cast<uint8_t>(rng());
    const int64_t rows = 29;
    std::vector<int32_t> src_row(rows), dst_row(rows);
    std::vector<int32_t> perm(kDstRows);
    for (int64_t i = 0; i < kDstRows; ++i) perm[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);  // distinct destinations: the result does not depend on order
    for (int64_t r = 0; r < rows; ++r) {
        src_row[static_cast<size_t>(r)] = r % 7 == 3 ? -1 : static_cast<int32_t>(rng() % kSrcRows);
        dst_row[static_cast<size_t>(r)] = r % 11 == 5 ? -1 : perm[static_cast<size_t>(r)];
    }
    DeviceBuffer d_src = test::to_device(src.data(), src.size());
    DeviceBuffer d_srow = test::to_device(src_row.data(), src_row.size() * 4);
    DeviceBuffer d_drow = test::to_device(dst_row.data(), dst_row.size() * 4);
    for (int mode = 0; mode < 3; ++mode) {  // gather, scatter, both
        SCOPED_TRACE(testing::Message() << "mode " << mode);
        CopyRowsParams p;
        p.rows = rows;
        p.row_bytes = kRowBytes;
        p.src_stride = kSrcStride;
        p.dst_stride = kDstStride;
        std::vector<uint8_t> want = dst0;
        p.src = src.data();
        p.dst = want.data();
        p.src_row = mode != 1 ? src_row.data() : nullptr;
        p.dst_row = mode != 0 ? dst_row.data() : nullptr;
        copy_rows_cpu(p);
        DeviceBuffer d_dst = test::to_device(dst0.data(), dst0.size());
        p.src = d_src.data();
        p.dst = d_dst.data();
        p.src_row = mode != 1 ? static_cast<const int32_t*>(d_srow.data()) : nullptr;
        p.dst_row = mode != 0 ? static_cast<const int32_t*>(d_drow.data()) : nullptr;
        launch_copy_rows(p, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        const auto got = test::to_host<uint8_t>(d_dst, dst0.size());
        EXPECT_TRUE(got == want);
        EXPECT_FALSE(want == dst0);  // the case copies something
    }
#endif
}

TEST(DitElementwiseGpu, FlowMatchStepMatchesScheduler) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t n = 3 * 16 * 60 * 104 + 7;
    const FlowMatchScheduler sched(5.0);
    const auto flow = random_floats(static_cast<size_t>(n), 20, 1.0f);
    const auto xt = random_floats(static_cast<size_t>(n), 21, 1.0f);
    const auto noise = random_floats(static_cast<size_t>(n), 22, 1.0f);
    DeviceBuffer d_flow = floats_to_device(flow), d_xt = floats_to_device(xt), d_noise = floats_to_device(noise);
    DeviceBuffer d_x0(static_cast<size_t>(n) * 4), d_out(static_cast<size_t>(n) * 4);
    for (const float t : sched.warp({1000, 750, 500, 250})) {
        SCOPED_TRACE(testing::Message() << "t " << t);
        const float sigma = sched.sigma_at(t);
        std::vector<float> x0(static_cast<size_t>(n)), out(static_cast<size_t>(n));
        sched.flow_to_x0(flow.data(), xt.data(), t, x0.data(), n);
        sched.add_noise(x0.data(), noise.data(), t, out.data(), n);

        launch_flow_to_x0(static_cast<const float*>(d_flow.data()), static_cast<const float*>(d_xt.data()), sigma,
                          static_cast<float*>(d_x0.data()), n, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        const auto got_x0 = test::to_host<float>(d_x0, static_cast<size_t>(n));
        EXPECT_EQ(count_bit_mismatches(got_x0, x0, "x0"), 0);

        // From the CPU's x0, so that this checks add_noise alone; once into out, once in place over x0.
        DeviceBuffer d_cpu_x0 = floats_to_device(x0);
        launch_add_noise(static_cast<const float*>(d_cpu_x0.data()), static_cast<const float*>(d_noise.data()), sigma,
                         static_cast<float*>(d_out.data()), n, nullptr);
        launch_add_noise(static_cast<const float*>(d_cpu_x0.data()), static_cast<const float*>(d_noise.data()), sigma,
                         static_cast<float*>(d_cpu_x0.data()), n, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        for (const DeviceBuffer* d : {&d_out, &d_cpu_x0}) {
            const auto got = test::to_host<float>(*d, static_cast<size_t>(n));
            int64_t bad = 0;
            for (size_t i = 0; i < out.size(); ++i) {
                if (ulp_distance(got[i], out[i]) > 1 && ++bad <= 5) {
                    ADD_FAILURE() << "add_noise[" << i << "]: got " << got[i] << ", want " << out[i];
                }
            }
            EXPECT_EQ(bad, 0);
        }
    }
#endif
}

// rollout.sampler EULER on the device: x += (sigma' - sigma) * flow in place, bit for bit the scheduler's CPU step
// (both in double without an fma), at every pair of consecutive warped timesteps.
TEST(DitElementwiseGpu, EulerStepMatchesScheduler) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t n = 3 * 16 * 60 * 104 + 7;
    const FlowMatchScheduler sched(2.0);
    const auto flow = random_floats(static_cast<size_t>(n), 30, 1.0f);
    const auto x_in = random_floats(static_cast<size_t>(n), 31, 1.0f);
    const DeviceBuffer d_flow = floats_to_device(flow);
    const auto ts = sched.warp({1000, 875, 750, 625, 500, 375, 250, 125});
    for (size_t k = 0; k + 1 < ts.size(); ++k) {
        SCOPED_TRACE(testing::Message() << "t " << ts[k] << " -> " << ts[k + 1]);
        std::vector<float> want = x_in;
        sched.euler_step(flow.data(), ts[k], ts[k + 1], want.data(), n);
        DeviceBuffer d_x = floats_to_device(x_in);
        launch_euler_step(static_cast<const float*>(d_flow.data()), sched.euler_dsigma(ts[k], ts[k + 1]),
                          static_cast<float*>(d_x.data()), n, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        EXPECT_EQ(count_bit_mismatches(test::to_host<float>(d_x, static_cast<size_t>(n)), want, "x"), 0);
        EXPECT_NE(want, x_in);  // the step moved x
    }
#endif
}

}  // namespace
}  // namespace lr
