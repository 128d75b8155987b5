// GemmRunner (cuBLASLt, bf16 in, fp32 accumulate) against a double-accumulated CPU reference on random bf16
// inputs: odd tiny shapes, strided and unaligned views, every epilogue, bf16 and f32 outputs, the residual
// accumulate, the DiT's real shapes, the plan cache, and the math of cuBLASLt's GELU epilogue.
//
// The inputs are rounded to bf16 on the host first, so the reference sees exactly what the GPU multiplies; the
// remaining differences are fp32 accumulation order and the output rounding, hence the bound
// |got - want| <= 1e-2 |want| + 1e-2 rms(want). The DiT shapes check an evenly spread sample of rows (every
// column of each) because a full double-precision reference of a 4680 x 8960 x 1536 product takes minutes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/gemm_cuda.h"
#include "runtime/core/check.h"
#include "runtime/core/dtype.h"

namespace lr {
namespace {

#ifdef LONGROLL_HAS_CUDA

constexpr uint16_t kBf16NaN = 0x7fc0;

double gelu_tanh_ref(double x) {
    const double kSqrt2OverPi = std::sqrt(2.0 / std::numbers::pi);
    return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
}

double gelu_erf_ref(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

struct GemmCase {
    int64_t m = 0, n = 0, k = 0;
    int64_t ldx = 0, ldw = 0, ldy = 0;  // 0: dense
    int64_t x_offset = 0;               // x starts this many elements into its buffer (a column view)
    DType y_dtype = DType::kBF16;
    GemmEpilogue epilogue = GemmEpilogue::kNone;
    bool accumulate = false;
    int64_t sample_rows = 0;  // rows checked against the reference, evenly spread; 0: all
};

std::string describe(const GemmCase& c) {
    static const char* kEpilogue[] = {"none", "bias", "bias+gelu"};
    return str_cat("m ", c.m, " n ", c.n, " k ", c.k, " ldx ", c.ldx, " ldw ", c.ldw, " ldy ", c.ldy, " x_offset ",
                   c.x_offset, " y ", dtype_name(c.y_dtype), " epilogue ", kEpilogue[static_cast<int>(c.epilogue)],
                   " accumulate ", c.accumulate);
}

// Runs one case on `runner` and checks it; the matrices' padding holds NaN (inputs) or a sentinel (output)
// so that reading or writing outside the views shows.
void check_gemm(GemmRunner& runner, const GemmCase& c, uint32_t seed) {
    SCOPED_TRACE(describe(c));
    const int64_t ldx = c.ldx ? c.ldx : c.k, ldw = c.ldw ? c.ldw : c.k, ldy = c.ldy ? c.ldy : c.n;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    const float w_scale = std::sqrt(3.0f / static_cast<float>(c.k));  // keeps y ~ O(1)

    const int64_t x_elems = c.x_offset + c.m * ldx;
    std::vector<uint16_t> x_bits(static_cast<size_t>(x_elems), kBf16NaN);
    std::vector<float> x(static_cast<size_t>(c.m * c.k));  // the bf16 values as floats, dense
    for (int64_t r = 0; r < c.m; ++r) {
        for (int64_t j = 0; j < c.k; ++j) {
            const uint16_t b = f32_to_bf16_bits(unit(rng));
            x_bits[static_cast<size_t>(c.x_offset + r * ldx + j)] = b;
            x[static_cast<size_t>(r * c.k + j)] = bf16_bits_to_f32(b);
        }
    }
    std::vector<uint16_t> w_bits(static_cast<size_t>(c.n * ldw), kBf16NaN);
    std::vector<float> w(static_cast<size_t>(c.n * c.k));
    for (int64_t r = 0; r < c.n; ++r) {
        for (int64_t j = 0; j < c.k; ++j) {
            const uint16_t b = f32_to_bf16_bits(w_scale * unit(rng));
            w_bits[static_cast<size_t>(r * ldw + j)] = b;
            w[static_cast<size_t>(r * c.k + j)] = bf16_bits_to_f32(b);
        }
    }
    std::vector<float> bias(static_cast<size_t>(c.n));
    for (auto& v : bias) v = 0.5f * unit(rng);

    // y before the call: random values where an accumulate reads them, a sentinel elsewhere.
    const int ysz = dtype_size(c.y_dtype);
    const float kSentinel = 77.0f;  // exact in bf16
    std::vector<float> y0(static_cast<size_t>(c.m * ldy));
    for (int64_t r = 0; r < c.m; ++r) {
        for (int64_t j = 0; j < ldy; ++j) y0[static_cast<size_t>(r * ldy + j)] = j < c.n ? unit(rng) : kSentinel;
    }
    std::vector<uint8_t> y_host(static_cast<size_t>(c.m * ldy * ysz));
    for (int64_t i = 0; i < c.m * ldy; ++i) store_from_f32(y_host.data(), c.y_dtype, i, y0[static_cast<size_t>(i)]);

    DeviceBuffer d_x = test::to_device(x_bits.data(), x_bits.size() * 2);
    DeviceBuffer d_w = test::to_device(w_bits.data(), w_bits.size() * 2);
    DeviceBuffer d_bias = test::to_device(bias.data(), bias.size() * 4);
    DeviceBuffer d_y = test::to_device(y_host.data(), y_host.size());

    CudaGemmParams p;
    p.x = static_cast<const uint16_t*>(d_x.data()) + c.x_offset;
    p.w = d_w.data();
    p.bias = c.epilogue == GemmEpilogue::kNone ? nullptr : static_cast<const float*>(d_bias.data());
    p.y = d_y.data();
    p.y_dtype = c.y_dtype;
    p.m = c.m;
    p.n = c.n;
    p.k = c.k;
    p.ldx = c.ldx;
    p.ldw = c.ldw;
    p.ldy = c.ldy;
    p.epilogue = c.epilogue;
    p.accumulate = c.accumulate;
    runner.run(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got_bytes = test::to_host<uint8_t>(d_y, y_host.size());

    std::vector<int64_t> rows;
    if (c.sample_rows <= 0 || c.sample_rows >= c.m) {
        for (int64_t r = 0; r < c.m; ++r) rows.push_back(r);
    } else {
        for (int64_t i = 0; i < c.sample_rows; ++i) rows.push_back(i * (c.m - 1) / (c.sample_rows - 1));
    }
    std::vector<double> want(rows.size() * static_cast<size_t>(c.n));
    double sum_sq = 0;
    for (size_t ri = 0; ri < rows.size(); ++ri) {
        const float* xr = &x[static_cast<size_t>(rows[ri] * c.k)];
        for (int64_t col = 0; col < c.n; ++col) {
            const float* wr = &w[static_cast<size_t>(col * c.k)];
            double acc = 0;
            for (int64_t j = 0; j < c.k; ++j) acc += static_cast<double>(xr[j]) * static_cast<double>(wr[j]);
            if (c.epilogue != GemmEpilogue::kNone) acc += bias[static_cast<size_t>(col)];
            if (c.epilogue == GemmEpilogue::kBiasGeluTanh) acc = gelu_tanh_ref(acc);
            if (c.accumulate) acc += y0[static_cast<size_t>(rows[ri] * ldy + col)];
            want[ri * static_cast<size_t>(c.n) + static_cast<size_t>(col)] = acc;
            sum_sq += acc * acc;
        }
    }
    const double rms = std::sqrt(sum_sq / static_cast<double>(want.size()));
    ASSERT_GT(rms, 0.1);  // the test data are not degenerate

    int64_t bad = 0;
    double max_err = 0;
    for (size_t ri = 0; ri < rows.size(); ++ri) {
        const int64_t r = rows[ri];
        for (int64_t col = 0; col < ldy; ++col) {
            const double got = load_as_f32(got_bytes.data(), c.y_dtype, r * ldy + col);
            if (col >= c.n) {
                if (got != kSentinel && ++bad <= 5) ADD_FAILURE() << "padding y[" << r << ", " << col << "] written";
                continue;
            }
            const double ref = want[ri * static_cast<size_t>(c.n) + static_cast<size_t>(col)];
            const double err = std::fabs(got - ref);
            max_err = std::max(max_err, err);
            if (!(err <= 1e-2 * std::fabs(ref) + 1e-2 * rms) && ++bad <= 5) {
                ADD_FAILURE() << "y[" << r << ", " << col << "]: got " << got << ", want " << ref;
            }
        }
    }
    EXPECT_EQ(bad, 0) << "max |error| " << max_err << ", rms(want) " << rms;
}

#endif  // LONGROLL_HAS_CUDA

TEST(GemmGpu, TinyOddShapeEveryEpilogueAndOutput) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    GemmRunner runner;
    uint32_t seed = 1;
    for (const DType y : {DType::kBF16, DType::kF32}) {
        for (const GemmEpilogue e : {GemmEpilogue::kNone, GemmEpilogue::kBias, GemmEpilogue::kBiasGeluTanh}) {
            GemmCase c;
            c.m = 37;
            c.n = 24;
            c.k = 40;
            c.y_dtype = y;
            c.epilogue = e;
            check_gemm(runner, c, seed++);
        }
    }
#endif
}

// Views into wider buffers: x is a column window (16-byte but not 256-byte aligned), w and y have padded rows.
TEST(GemmGpu, StridedAndUnalignedViews) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    GemmRunner runner;
    uint32_t seed = 100;
    for (const DType y : {DType::kBF16, DType::kF32}) {
        for (const GemmEpilogue e : {GemmEpilogue::kNone, GemmEpilogue::kBias, GemmEpilogue::kBiasGeluTanh}) {
            GemmCase c;
            c.m = 37;
            c.n = 24;
            c.k = 40;
            c.ldx = 64;
            c.x_offset = 8;
            c.ldw = 48;
            c.ldy = 40;
            c.y_dtype = y;
            c.epilogue = e;
            check_gemm(runner, c, seed++);
        }
    }
#endif
}

TEST(GemmGpu, AccumulateIntoF32) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    GemmRunner runner;
    uint32_t seed = 200;
    for (const GemmEpilogue e : {GemmEpilogue::kNone, GemmEpilogue::kBias}) {
        GemmCase c;
        c.m = 37;
        c.n = 24;
        c.k = 40;
        c.ldy = 32;
        c.y_dtype = DType::kF32;
        c.epilogue = e;
        c.accumulate = true;
        check_gemm(runner, c, seed++);
    }
#endif
}

// The 1.3B model's Linear shapes at 480p (3 frames x 1560 tokens): q/k/v/o, FFN up with GELU, FFN down as a
// residual accumulate.
TEST(GemmGpu, DitShapes) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    GemmRunner runner;
    GemmCase attn;
    attn.m = 4680;
    attn.n = 1536;
    attn.k = 1536;
    attn.epilogue = GemmEpilogue::kBias;
    attn.sample_rows = 97;
    check_gemm(runner, attn, 300);

    GemmCase ffn_up = attn;
    ffn_up.n = 8960;
    ffn_up.epilogue = GemmEpilogue::kBiasGeluTanh;
    check_gemm(runner, ffn_up, 301);

    GemmCase ffn_down = attn;
    ffn_down.k = 8960;
    ffn_down.y_dtype = DType::kF32;
    ffn_down.accumulate = true;
    check_gemm(runner, ffn_down, 302);
#endif
}

TEST(GemmGpu, PlansAreCachedPerShape) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    GemmRunner runner;
    GemmCase c;
    c.m = 37;
    c.n = 24;
    c.k = 40;
    check_gemm(runner, c, 400);
    EXPECT_EQ(runner.cached_plans(), 1u);
    check_gemm(runner, c, 401);  // same shape, new buffers of the same alignment: the plan is reused
    EXPECT_EQ(runner.cached_plans(), 1u);
    c.epilogue = GemmEpilogue::kBias;
    check_gemm(runner, c, 402);
    EXPECT_EQ(runner.cached_plans(), 2u);
    c.m = 38;
    check_gemm(runner, c, 403);
    EXPECT_EQ(runner.cached_plans(), 3u);
#endif
}

// Which GELU does cuBLASLt's GELU_BIAS epilogue compute? Pre-activations here are exact in fp32 (bf16 inputs on
// a 1/16 grid, few terms), so y - gelu(z) is the epilogue's own error. It must be close to the tanh form
// (within what a hardware tanh approximation gives) and closer to it than to the erf form, which differs by up
// to 4.7e-4 near |z| = 2.7.
TEST(GemmGpu, GeluEpilogueIsTheTanhForm) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t m = 512, n = 64, k = 16;
    std::mt19937 rng(500);
    std::uniform_int_distribution<int> x_grid(-32, 32), w_grid(-2, 2), b_grid(-16, 16);
    std::vector<uint16_t> x_bits(static_cast<size_t>(m * k)), w_bits(static_cast<size_t>(n * k));
    std::vector<float> x(x_bits.size()), w(w_bits.size()), bias(static_cast<size_t>(n));
    for (size_t i = 0; i < x.size(); ++i) {
        x[i] = static_cast<float>(x_grid(rng)) / 16.0f;
        x_bits[i] = f32_to_bf16_bits(x[i]);
    }
    for (size_t i = 0; i < w.size(); ++i) {
        w[i] = static_cast<float>(w_grid(rng)) / 2.0f;
        w_bits[i] = f32_to_bf16_bits(w[i]);
    }
    for (auto& b : bias) b = static_cast<float>(b_grid(rng)) / 16.0f;
    DeviceBuffer d_x = test::to_device(x_bits.data(), x_bits.size() * 2);
    DeviceBuffer d_w = test::to_device(w_bits.data(), w_bits.size() * 2);
    DeviceBuffer d_bias = test::to_device(bias.data(), bias.size() * 4);
    DeviceBuffer d_y(static_cast<size_t>(m * n) * 4);
    GemmRunner runner;
    CudaGemmParams p;
    p.x = d_x.data();
    p.w = d_w.data();
    p.bias = static_cast<const float*>(d_bias.data());
    p.y = d_y.data();
    p.y_dtype = DType::kF32;
    p.m = m;
    p.n = n;
    p.k = k;
    p.epilogue = GemmEpilogue::kBiasGeluTanh;
    runner.run(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto y = test::to_host<float>(d_y, static_cast<size_t>(m * n));

    double ss_tanh = 0, ss_erf = 0, max_tanh = 0, max_erf = 0, max_z = 0;
    int64_t bad = 0;
    for (int64_t r = 0; r < m; ++r) {
        for (int64_t c = 0; c < n; ++c) {
            double z = bias[static_cast<size_t>(c)];
            for (int64_t j = 0; j < k; ++j) z += x[static_cast<size_t>(r * k + j)] * w[static_cast<size_t>(c * k + j)];
            max_z = std::max(max_z, std::fabs(z));
            const double got = y[static_cast<size_t>(r * n + c)];
            const double e_tanh = got - gelu_tanh_ref(z), e_erf = got - gelu_erf_ref(z);
            ss_tanh += e_tanh * e_tanh;
            ss_erf += e_erf * e_erf;
            max_tanh = std::max(max_tanh, std::fabs(e_tanh));
            max_erf = std::max(max_erf, std::fabs(e_erf));
            if (!(std::fabs(e_tanh) <= 1e-3 * (1.0 + std::fabs(z))) && ++bad <= 5) {
                ADD_FAILURE() << "gelu(" << z << "): got " << got << ", tanh form " << gelu_tanh_ref(z);
            }
        }
    }
    const double count = static_cast<double>(m * n);
    std::printf("cuBLASLt GELU epilogue vs tanh form: max %.3g rms %.3g; vs erf form: max %.3g rms %.3g (|z| <= %g)\n",
                max_tanh, std::sqrt(ss_tanh / count), max_erf, std::sqrt(ss_erf / count), max_z);
    EXPECT_GT(max_z, 4.0);  // the grid reaches where the two forms differ most
    EXPECT_EQ(bad, 0);
    EXPECT_LT(ss_tanh, ss_erf);
#endif
}

TEST(GemmGpu, RejectsBadParameters) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    GemmRunner runner;
    DeviceBuffer d(4096);
    CudaGemmParams good;
    good.x = d.data();
    good.w = d.data();
    good.y = d.data();
    good.m = 8;
    good.n = 8;
    good.k = 8;
    auto bad = good;
    bad.accumulate = true;  // with a bf16 y
    EXPECT_THROW(runner.run(bad, nullptr), InternalError);
    bad = good;
    bad.epilogue = GemmEpilogue::kBias;  // no bias
    EXPECT_THROW(runner.run(bad, nullptr), InternalError);
    bad = good;
    bad.ldx = 4;  // shorter than k
    EXPECT_THROW(runner.run(bad, nullptr), InternalError);
    bad = good;
    bad.y_dtype = DType::kF32;
    bad.accumulate = true;
    bad.bias = static_cast<const float*>(d.data());
    bad.epilogue = GemmEpilogue::kBiasGeluTanh;  // gelu would see the residual
    EXPECT_THROW(runner.run(bad, nullptr), InternalError);
    EXPECT_EQ(runner.cached_plans(), 0u);
#endif
}

}  // namespace
}  // namespace lr
