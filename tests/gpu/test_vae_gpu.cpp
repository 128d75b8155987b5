// The CUDA VAE decoder (kernels/vae_cuda.h, runtime/vae/wan_vae_cuda.h) against the CPU reference.
//
// Ops: each kernel against its CPU reference op on random inputs with odd sizes (not multiples of any tile).
// Inputs that a kernel reads as bf16 are rounded to bf16 on the host first, so the reference sees exactly what
// the GPU reads; what remains is fp32 summation order (bound 1e-4 relative on f32 outputs) and the output's
// bf16 rounding (one bf16 ulp, 2^-7 relative, per element). Pure data movement (upsample, im2col, transpose)
// and the 8-bit conversion must be exact.
//
// Decoder: the tiny embedded VAE (WanVaeDecoder::make_default) decoding random latents chunk by chunk on both
// backends, for both conv algorithms. bf16 weights and activations through ~25 convs give ~1e-2 relative error
// on the float frames (bound 3e-2) and, on the 8-bit frames, a mean |difference| under 2 levels with 99% of
// the values within 4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/conv3d.h"
#include "kernels/gemm_cuda.h"
#include "kernels/l2_norm.h"
#include "kernels/upsample_nearest.h"
#include "kernels/vae_cuda.h"
#include "runtime/core/check.h"
#include "runtime/core/det_random.h"
#include "runtime/vae/wan_vae.h"
#include "runtime/vae/wan_vae_cuda.h"
#include "tests/common/fixture_util.h"

namespace lr {
namespace {

#ifdef LONGROLL_HAS_CUDA

using test::relative_error;

std::vector<float> random_floats(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
}

// Random values that are exact in bf16, and their bf16 bits.
struct Bf16Data {
    std::vector<float> f32;
    std::vector<uint16_t> bits;
};
Bf16Data random_bf16(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    Bf16Data d;
    d.f32 = random_floats(n, seed, lo, hi);
    for (float& x : d.f32) {
        d.bits.push_back(f32_to_bf16_bits(x));
        x = bf16_bits_to_f32(d.bits.back());
    }
    return d;
}

template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
    return test::to_device(v.data(), v.size() * sizeof(T));
}

std::vector<float> bf16_to_f32(const std::vector<uint16_t>& bits) {
    std::vector<float> out(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) out[i] = bf16_bits_to_f32(bits[i]);
    return out;
}

// Elements of `got` (bf16 outputs) further than one bf16 ulp (2^-7 relative) plus `abs_tol` from `want`.
int64_t count_beyond_bf16_ulp(const std::vector<float>& got, const std::vector<float>& want, float abs_tol = 1e-6f) {
    int64_t bad = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (!(std::fabs(got[i] - want[i]) <= std::fabs(want[i]) * (1.0f / 128.0f) + abs_tol)) {
            if (++bad <= 3) ADD_FAILURE() << "element " << i << ": got " << got[i] << ", want " << want[i];
        }
    }
    return bad;
}

// ---- ops ---------------------------------------------------------------------------------------------------------

TEST(VaeGpuOps, DenormLatentIsExactAgainstCpuLoop) {
    LR_REQUIRE_GPU();
    const WanVaeConfig cfg;
    const int64_t c = cfg.z_dim, n = 7 * 11;
    const auto z = random_floats(c * n, 1, -3.0f, 3.0f);
    std::vector<float> inv;
    for (float s : cfg.latents_std) inv.push_back(1.0f / s);
    DeviceBuffer dz = upload(z), dmean = upload(cfg.latents_mean), dinv = upload(inv), dy(n * c * 2);
    launch_vae_denorm_latent({static_cast<const float*>(dz.data()), static_cast<const float*>(dmean.data()),
                              static_cast<const float*>(dinv.data()), dy.data(), n, c},
                             nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = test::to_host<uint16_t>(dy, static_cast<size_t>(n * c));
    for (int64_t p = 0; p < n; ++p) {
        for (int64_t ch = 0; ch < c; ++ch) {
            // VaeStream's loop: z / (1 / std) + mean in fp32.
            const float want = z[ch * n + p] / inv[ch] + cfg.latents_mean[ch];
            ASSERT_EQ(got[p * c + ch], f32_to_bf16_bits(want)) << "pixel " << p << " channel " << ch;
        }
    }
    // A row split's rows of the whole frame: pixels [first, first + count) of the planes, z_stride = n apart.
    const int64_t first = 13, count = 29;
    launch_vae_denorm_latent({.z = static_cast<const float*>(dz.data()) + first,
                              .mean = static_cast<const float*>(dmean.data()),
                              .inv_std = static_cast<const float*>(dinv.data()),
                              .y = dy.data(),
                              .pixels = count,
                              .channels = c,
                              .z_stride = n},
                             nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto rows = test::to_host<uint16_t>(dy, static_cast<size_t>(count * c));
    for (int64_t p = 0; p < count; ++p) {
        for (int64_t ch = 0; ch < c; ++ch) {
            ASSERT_EQ(rows[p * c + ch], got[(first + p) * c + ch]) << "pixel " << first + p << " channel " << ch;
        }
    }
}

TEST(VaeGpuOps, RmsNormMatchesCpu) {
    LR_REQUIRE_GPU();
    struct Case {
        int64_t rows, dim, x_stride, y_stride;
        bool silu, bias, copy;
    };
    // 96, 192, 384 and 8 take the register path (16-byte loads, 8, 16, 32 and 1 lanes per pixel); 30, the odd y
    // stride and 2 the general one.
    for (const Case& k : {Case{1037, 96, 100, 96, true, false, true}, Case{333, 384, 384, 392, false, true, false},
                          Case{259, 192, 192, 192, true, true, true}, Case{77, 8, 8, 12, true, false, true},
                          Case{65, 30, 30, 30, true, true, true}, Case{31, 384, 384, 390, true, false, false},
                          Case{3, 2, 2, 2, false, false, false}}) {
        SCOPED_TRACE(str_cat("rows ", k.rows, " dim ", k.dim));
        const auto x = random_floats(k.rows * k.x_stride, 2, -4.0f, 4.0f);
        const auto gamma = random_floats(k.dim, 3, 0.5f, 1.5f);
        const auto bias = random_floats(k.dim, 4, -0.1f, 0.1f);
        std::vector<float> want(static_cast<size_t>(k.rows * k.y_stride), 0.0f);
        L2NormParams c;
        c.x = x.data();
        c.y = want.data();
        c.gamma = gamma.data();
        c.bias = k.bias ? bias.data() : nullptr;
        c.rows = k.rows;
        c.dim = k.dim;
        c.x_stride = k.x_stride;
        c.y_stride = k.y_stride;
        c.silu = k.silu;
        l2_norm_cpu(c);

        DeviceBuffer dx = upload(x), dg = upload(gamma), db = upload(bias);
        DeviceBuffer dy(static_cast<size_t>(k.rows * k.y_stride) * 2), dcopy(static_cast<size_t>(k.rows * k.dim) * 2);
        LR_CUDA_CHECK(cudaMemset(dy.data(), 0, dy.size()));
        VaeRmsNormParams g;
        g.x = static_cast<const float*>(dx.data());
        g.y = dy.data();
        g.x_copy = k.copy ? dcopy.data() : nullptr;
        g.gamma = static_cast<const float*>(dg.data());
        g.bias = k.bias ? static_cast<const float*>(db.data()) : nullptr;
        g.rows = k.rows;
        g.dim = k.dim;
        g.x_stride = k.x_stride;
        g.y_stride = k.y_stride;
        g.silu = k.silu;
        launch_vae_rms_norm(g, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        const auto got = bf16_to_f32(test::to_host<uint16_t>(dy, want.size()));
        EXPECT_EQ(count_beyond_bf16_ulp(got, want), 0);
        const double rel = relative_error(got.data(), want.data(), want.size());
        EXPECT_LT(rel, 4e-3);
        if (k.copy) {
            const auto copy = test::to_host<uint16_t>(dcopy, static_cast<size_t>(k.rows * k.dim));
            for (int64_t r = 0; r < k.rows; ++r) {
                for (int64_t i = 0; i < k.dim; ++i) {
                    ASSERT_EQ(copy[r * k.dim + i], f32_to_bf16_bits(x[r * k.x_stride + i])) << r << ", " << i;
                }
            }
        }
    }
}

TEST(VaeGpuOps, UpsampleIsExactForF32SliceAndBf16Source) {
    LR_REQUIRE_GPU();
    const int64_t h = 5, w = 7, c = 6, stride = 14;  // a channel slice of a 14-channel frame
    for (DType dt : {DType::kF32, DType::kBF16}) {
        const Bf16Data x = random_bf16(h * w * stride, 5);
        std::vector<float> want(static_cast<size_t>(4 * h * w * c));
        upsample_nearest2x_cpu({x.f32.data() + 4, want.data(), h, w, c, stride});
        DeviceBuffer dx = dt == DType::kF32 ? upload(x.f32) : upload(x.bits);
        DeviceBuffer dy(want.size() * 2);
        const size_t offset = 4 * static_cast<size_t>(dtype_size(dt));
        launch_vae_upsample_nearest2x({static_cast<const char*>(dx.data()) + offset, dt, dy.data(), h, w, c, stride},
                                      nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        const auto got = bf16_to_f32(test::to_host<uint16_t>(dy, want.size()));
        EXPECT_EQ(got, want) << dtype_name(dt);
    }
}

// The im2col of conv3d_cpu, naively: col[i][((dt * kh + dy) * kw + dx) * c + ch].
std::vector<float> naive_im2col(const std::vector<const float*>& frames, int64_t h, int64_t w, int64_t c, int64_t kh,
                                int64_t kw, int64_t p0, int64_t n) {
    const int64_t kt = static_cast<int64_t>(frames.size()), k = kt * kh * kw * c;
    std::vector<float> col(static_cast<size_t>(n * k), 0.0f);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t y = (p0 + i) / w, x = (p0 + i) % w;
        for (int64_t dt = 0; dt < kt; ++dt) {
            for (int64_t dy = 0; dy < kh; ++dy) {
                for (int64_t dx = 0; dx < kw; ++dx) {
                    const int64_t yy = y + dy - kh / 2, xx = x + dx - kw / 2;
                    if (!frames[dt] || yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                    for (int64_t ch = 0; ch < c; ++ch) {
                        col[i * k + ((dt * kh + dy) * kw + dx) * c + ch] = frames[dt][(yy * w + xx) * c + ch];
                    }
                }
            }
        }
    }
    return col;
}

TEST(VaeGpuOps, Im2colIsExact) {
    LR_REQUIRE_GPU();
    struct Case {
        int64_t c, kt, kh, kw, p0, n;
    };
    const int64_t h = 9, w = 13;
    // 24 channels take the 16-byte path, 6 the pair path; the first frame of the window is missing (causal
    // padding); bands start and end inside rows.
    for (const Case& k :
         {Case{24, 3, 3, 3, 17, 50}, Case{6, 3, 3, 3, 0, 117}, Case{24, 3, 1, 1, 100, 17}, Case{8, 1, 3, 3, 5, 60}}) {
        SCOPED_TRACE(str_cat("c ", k.c, " kernel ", k.kt, "x", k.kh, "x", k.kw));
        const Bf16Data f1 = random_bf16(h * w * k.c, 6), f2 = random_bf16(h * w * k.c, 7);
        std::vector<const float*> frames;
        if (k.kt == 3) frames = {nullptr, f1.f32.data(), f2.f32.data()};
        if (k.kt == 1) frames = {f2.f32.data()};
        const auto want = naive_im2col(frames, h, w, k.c, k.kh, k.kw, k.p0, k.n);
        DeviceBuffer d1 = upload(f1.bits), d2 = upload(f2.bits), dcol(want.size() * 2);
        VaeIm2colParams p;
        if (k.kt == 3) {
            p.frames[1] = d1.data();
            p.frames[2] = d2.data();
        } else {
            p.frames[0] = d2.data();
        }
        p.col = dcol.data();
        p.height = h;
        p.width = w;
        p.channels = k.c;
        p.kt = k.kt;
        p.kh = k.kh;
        p.kw = k.kw;
        p.pixel0 = k.p0;
        p.pixels = k.n;
        launch_vae_im2col(p, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        EXPECT_EQ(bf16_to_f32(test::to_host<uint16_t>(dcol, want.size())), want);
    }
}

// One conv case for both GPU paths: the implicit GEMM kernel and im2col bands + GemmRunner.
struct ConvCase {
    int64_t in, out, kt, kh, kw, h, w;
    int missing;  // leading frames of the window that are null (causal zero padding)
    DType y_dtype;
    bool accumulate;
};

// The implicit GEMM as dispatched (wgmma for widths divisible by 96 on an H100) and forced to mma.sync, and
// im2col + GemmRunner.
enum class ConvPath { kImplicit, kImplicitMmaSync, kIm2colGemm };

const char* path_name(ConvPath path) {
    switch (path) {
        case ConvPath::kImplicit:
            return "implicit";
        case ConvPath::kImplicitMmaSync:
            return "implicit mma.sync";
        case ConvPath::kIm2colGemm:
            break;
    }
    return "im2col+gemm";
}

void check_conv(const ConvCase& k, ConvPath path, GemmRunner& gemm) {
    SCOPED_TRACE(str_cat(path_name(path), ": in ", k.in, " out ", k.out, " kernel ", k.kt, "x", k.kh, "x", k.kw,
                         " frame ", k.h, "x", k.w, " missing ", k.missing, " y ", dtype_name(k.y_dtype), " accumulate ",
                         k.accumulate));
    const int64_t pixels = k.h * k.w, kk = k.kt * k.kh * k.kw * k.in;
    std::vector<Bf16Data> frames;
    for (int64_t t = 0; t < k.kt; ++t) frames.push_back(random_bf16(pixels * k.in, 10 + static_cast<uint32_t>(t)));
    // The packed CPU weight [kt, kh, kw, in, out] and the GPU's [out, K] hold the same bf16 values.
    const Bf16Data wk = random_bf16(kk * k.out, 20, -0.1f, 0.1f);
    std::vector<uint16_t> w_gpu(static_cast<size_t>(k.out * kk));
    for (int64_t r = 0; r < kk; ++r) {
        for (int64_t o = 0; o < k.out; ++o) w_gpu[o * kk + r] = wk.bits[r * k.out + o];
    }
    const auto bias = random_floats(k.out, 21, -0.5f, 0.5f);
    const auto init = random_floats(pixels * k.out, 22);  // y before an accumulating conv
    // GemmRunner rounds the bias to bf16 for a bf16 y (kernels/gemm_cuda.cu says why); the reference does too.
    std::vector<float> ref_bias = bias;
    if (path == ConvPath::kIm2colGemm && k.y_dtype == DType::kBF16) {
        for (float& b : ref_bias) b = bf16_bits_to_f32(f32_to_bf16_bits(b));
    }

    std::vector<float> want = k.accumulate ? init : std::vector<float>(static_cast<size_t>(pixels * k.out));
    std::vector<const float*> fptr;
    for (int64_t t = 0; t < k.kt; ++t) fptr.push_back(t < k.missing ? nullptr : frames[t].f32.data());
    Conv3dParams c;
    c.frames = fptr.data();
    c.weight = wk.f32.data();
    c.bias = ref_bias.data();
    c.out = want.data();
    c.height = k.h;
    c.width = k.w;
    c.in_ch = k.in;
    c.out_ch = k.out;
    c.kt = k.kt;
    c.kh = k.kh;
    c.kw = k.kw;
    c.accumulate = k.accumulate;
    conv3d_cpu(c);

    std::vector<DeviceBuffer> dframes;
    for (const Bf16Data& f : frames) dframes.push_back(upload(f.bits));
    const void* dptr[3] = {nullptr, nullptr, nullptr};
    for (int64_t t = k.missing; t < k.kt; ++t) dptr[t] = dframes[static_cast<size_t>(t)].data();
    DeviceBuffer dw = upload(w_gpu), db = upload(bias);
    const size_t y_bytes = static_cast<size_t>(dtype_size(k.y_dtype));
    DeviceBuffer dy = upload(init);  // big enough for either dtype
    if (k.y_dtype == DType::kBF16) LR_CUDA_CHECK(cudaMemset(dy.data(), 0xff, dy.size()));
    if (path != ConvPath::kIm2colGemm) {
        VaeConvParams p;
        std::copy(dptr, dptr + 3, p.frames);
        p.weight = dw.data();
        p.bias = static_cast<const float*>(db.data());
        p.y = dy.data();
        p.y_dtype = k.y_dtype;
        p.accumulate = k.accumulate;
        p.height = k.h;
        p.width = k.w;
        p.in_ch = k.in;
        p.out_ch = k.out;
        p.kt = k.kt;
        p.kh = k.kh;
        p.kw = k.kw;
        p.kernel = path == ConvPath::kImplicit ? VaeConvKernel::kAuto : VaeConvKernel::kMmaSync;
        launch_vae_conv(p, nullptr);
    } else {
        // Bands of 128 pixels (the stream's alignment) so that several bands and a ragged last one run.
        const int64_t band = 128;
        DeviceBuffer dcol(static_cast<size_t>(band * kk) * 2);
        for (int64_t p0 = 0; p0 < pixels; p0 += band) {
            VaeIm2colParams ip;
            std::copy(dptr, dptr + 3, ip.frames);
            ip.col = dcol.data();
            ip.height = k.h;
            ip.width = k.w;
            ip.channels = k.in;
            ip.kt = k.kt;
            ip.kh = k.kh;
            ip.kw = k.kw;
            ip.pixel0 = p0;
            ip.pixels = std::min(band, pixels - p0);
            launch_vae_im2col(ip, nullptr);
            CudaGemmParams g;
            g.x = dcol.data();
            g.w = dw.data();
            g.bias = static_cast<const float*>(db.data());
            g.y = static_cast<char*>(dy.data()) + static_cast<size_t>(p0 * k.out) * y_bytes;
            g.y_dtype = k.y_dtype;
            g.m = ip.pixels;
            g.n = k.out;
            g.k = kk;
            g.epilogue = GemmEpilogue::kBias;
            g.accumulate = k.accumulate;
            gemm.run(g, nullptr);
        }
    }
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> got;
    if (k.y_dtype == DType::kF32) {
        got = test::to_host<float>(dy, want.size());
        const double rel = relative_error(got.data(), want.data(), want.size());
        EXPECT_LT(rel, 1e-4);
    } else {
        got = bf16_to_f32(test::to_host<uint16_t>(dy, want.size()));
        EXPECT_EQ(count_beyond_bf16_ulp(got, want, 1e-4f), 0);
    }
}

const ConvCase kConvCases[] = {
    // decoder.conv1's shape: a 96-wide tile, 247 pixels in one ragged 256-pixel M tile
    {16, 96, 3, 3, 3, 13, 19, 1, DType::kF32, false},
    {32, 200, 3, 3, 3, 9, 17, 0, DType::kF32, true},     // two N tiles of 128, the second ragged; residual add
    {8, 8, 3, 3, 3, 11, 10, 2, DType::kF32, false},      // the first frame of a stream; K = 216, a ragged K step
    {24, 48, 1, 3, 3, 15, 15, 0, DType::kBF16, false},   // resample conv, 64-wide tiles, bf16 out
    {40, 80, 3, 1, 1, 7, 9, 1, DType::kBF16, false},     // time conv
    {96, 96, 3, 3, 3, 24, 40, 0, DType::kF32, true},     // full-resolution block shape, 41 K steps of 64
    {96, 8, 3, 3, 3, 16, 24, 0, DType::kF32, false},     // RGB head padded to 8 outputs
    {192, 384, 3, 3, 3, 12, 20, 0, DType::kF32, false},  // 2 N tiles of 192, K = 5184
    {192, 192, 3, 3, 3, 17, 23, 1, DType::kF32, true},   // one 192 tile, 4 M tiles, the last ragged
    {64, 768, 3, 1, 1, 9, 15, 0, DType::kBF16, false},   // the real time conv's width: 4 N tiles of 192
    {32, 128, 1, 3, 3, 10, 13, 0, DType::kF32, false},   // 128-wide tiles
};

TEST(VaeGpuOps, ImplicitGemmConvMatchesCpu) {
    LR_REQUIRE_GPU();
    GemmRunner gemm;
    for (const ConvCase& k : kConvCases) {
        check_conv(k, ConvPath::kImplicit, gemm);
        check_conv(k, ConvPath::kImplicitMmaSync, gemm);
    }
}

TEST(VaeGpuOps, Im2colGemmConvMatchesCpu) {
    LR_REQUIRE_GPU();
    GemmRunner gemm;
    for (const ConvCase& k : kConvCases) check_conv(k, ConvPath::kIm2colGemm, gemm);
}

void check_softmax(int64_t rows, int64_t cols, int64_t stride, int64_t out_stride) {
    SCOPED_TRACE(str_cat(rows, " rows of ", cols));
    const float scale = 0.05f;
    const auto s = random_floats(rows * stride, 30, -60.0f, 60.0f);
    DeviceBuffer ds = upload(s), dp(static_cast<size_t>(rows * out_stride) * 2);
    launch_vae_softmax_rows({static_cast<const float*>(ds.data()), dp.data(), rows, cols, stride, out_stride, scale},
                            nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = test::to_host<uint16_t>(dp, static_cast<size_t>(rows * out_stride));
    std::vector<float> g, want;
    for (int64_t r = 0; r < rows; ++r) {
        double m = -1e300, sum = 0.0;
        for (int64_t j = 0; j < cols; ++j) m = std::max(m, static_cast<double>(s[r * stride + j]));
        for (int64_t j = 0; j < cols; ++j) sum += std::exp(scale * (s[r * stride + j] - m));
        for (int64_t j = 0; j < cols; ++j) {
            want.push_back(static_cast<float>(std::exp(scale * (s[r * stride + j] - m)) / sum));
            g.push_back(bf16_bits_to_f32(got[r * out_stride + j]));
        }
    }
    EXPECT_EQ(count_beyond_bf16_ulp(g, want, 1e-7f), 0);
}

// Rows held in registers (up to 32768 columns) and the three-pass kernel for longer ones.
TEST(VaeGpuOps, SoftmaxRowsMatchesDoubleReference) {
    LR_REQUIRE_GPU();
    check_softmax(37, 1000, 1008, 1003);
    check_softmax(5, 32640, 32640, 32648);
    check_softmax(3, 40001, 40008, 40001);
}

TEST(VaeGpuOps, TransposeIsExact) {
    LR_REQUIRE_GPU();
    const int64_t rows = 70, cols = 45, x_stride = 50, y_stride = 72;
    const Bf16Data x = random_bf16(rows * x_stride, 31);
    DeviceBuffer dx = upload(x.bits), dy(static_cast<size_t>(cols * y_stride) * 2);
    launch_vae_transpose({dx.data(), dy.data(), rows, cols, x_stride, y_stride}, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = test::to_host<uint16_t>(dy, static_cast<size_t>(cols * y_stride));
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(got[c * y_stride + r], x.bits[r * x_stride + c]) << r << ", " << c;
    }
}

TEST(VaeGpuOps, RgbOutMatchesCpuConversionExactly) {
    LR_REQUIRE_GPU();
    const int64_t pixels = 1001, stride = 8;
    auto rgb = random_floats(pixels * stride, 40, -1.3f, 1.3f);
    const float specials[] = {-2.0f,
                              -1.0f,
                              -0.999f,
                              0.0f,
                              0.5f,
                              0.996f,
                              0.99999f,
                              1.0f,
                              3.0f,
                              std::nanf(""),
                              std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity()};
    for (size_t i = 0; i < std::size(specials); ++i) rgb[i * stride + i % 3] = specials[i];  // pixel i, channel i % 3
    std::vector<float> packed(static_cast<size_t>(pixels * 3));
    for (int64_t p = 0; p < pixels; ++p) {
        for (int64_t c = 0; c < 3; ++c) packed[p * 3 + c] = rgb[p * stride + c];
    }
    std::vector<uint8_t> want_u8(packed.size());
    vae_rgb_to_u8(packed.data(), want_u8.data(), static_cast<int64_t>(packed.size()));
    DeviceBuffer drgb = upload(rgb), du8(packed.size()), dplanar(packed.size() * 4);
    launch_vae_rgb_out(
        {static_cast<const float*>(drgb.data()), pixels, stride, static_cast<uint8_t*>(du8.data()), nullptr}, nullptr);
    launch_vae_rgb_out(
        {static_cast<const float*>(drgb.data()), pixels, stride, nullptr, static_cast<float*>(dplanar.data())},
        nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(test::to_host<uint8_t>(du8, packed.size()), want_u8);
    const auto planar = test::to_host<float>(dplanar, packed.size());
    for (int64_t p = 0; p < pixels; ++p) {
        for (int64_t c = 0; c < 3; ++c) {
            const float want = std::clamp(packed[p * 3 + c], -1.0f, 1.0f), got = planar[c * pixels + p];
            ASSERT_TRUE(got == want || (std::isnan(got) && std::isnan(want))) << p << ", " << c;
        }
    }
    // A row split's rank 0 writes its first `rows_px` pixels into planes of the whole frame (planar_stride).
    const int64_t rows_px = 377;
    DeviceBuffer dwhole(packed.size() * 4);
    LR_CUDA_CHECK(cudaMemset(dwhole.data(), 0, packed.size() * 4));
    launch_vae_rgb_out({.rgb = static_cast<const float*>(drgb.data()),
                        .pixels = rows_px,
                        .rgb_stride = stride,
                        .planar = static_cast<float*>(dwhole.data()),
                        .planar_stride = pixels},
                       nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto whole = test::to_host<float>(dwhole, packed.size());
    for (int64_t c = 0; c < 3; ++c) {
        for (int64_t p = 0; p < pixels; ++p) {
            const float got = whole[c * pixels + p], want = p < rows_px ? planar[c * pixels + p] : 0.0f;
            ASSERT_TRUE(got == want || (std::isnan(got) && std::isnan(want))) << p << ", " << c;
        }
    }
}

TEST(VaeGpuOps, FillUniformFollowsTheHostGenerator) {
    LR_REQUIRE_GPU();
    const int64_t n = 4099;
    const uint64_t key = tensor_stream_key(7, "decoder.conv1.weight");
    DeviceBuffer d(n * 4);
    launch_vae_fill_uniform({d.data(), DType::kF32, n, key, 1.0f, 0.25f}, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = test::to_host<float>(d, static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(got[i], 1.0f + 0.25f * uniform_pm1(key, static_cast<uint64_t>(i)), 1e-6f) << i;
    }
}

// ---- the decoder -------------------------------------------------------------------------------------------------

struct Decoded {
    std::vector<float> planar;  // [frames, 3, H, W]
    std::vector<uint8_t> rgb;   // [frames, H, W, 3]
    int64_t frames = 0;
};

Decoded decode_cpu(const WanVaeDecoder& vae, const std::vector<float>& z, int64_t h, int64_t w,
                   const std::vector<int64_t>& chunks, VaeFrameFormat format) {
    VaeStream s(vae, format);
    Decoded d;
    int64_t done = 0;
    for (const int64_t n : chunks) {
        s.decode(z.data() + done * 16 * h * w, n, h, w, [&](const VaeFrame& f) {
            const int64_t px = f.height * f.width;
            if (f.planar) d.planar.insert(d.planar.end(), f.planar, f.planar + 3 * px);
            if (f.rgb24) d.rgb.insert(d.rgb.end(), f.rgb24, f.rgb24 + 3 * px);
            ++d.frames;
        });
        done += n;
    }
    return d;
}

Decoded decode_gpu(CudaVaeStream& s, const float* z, int64_t h, int64_t w, const std::vector<int64_t>& chunks,
                   bool on_device = false) {
    Decoded d;
    int64_t done = 0;
    for (const int64_t n : chunks) {
        const int64_t expect = s.frames_for(n), before = d.frames;
        s.decode(
            z + done * 16 * h * w, n,
            [&](const VaeFrame& f) {
                EXPECT_EQ(f.index, d.frames);
                EXPECT_EQ(f.height, 8 * h);
                EXPECT_EQ(f.width, 8 * w);
                const int64_t px = f.height * f.width;
                if (f.planar) d.planar.insert(d.planar.end(), f.planar, f.planar + 3 * px);
                if (f.rgb24) d.rgb.insert(d.rgb.end(), f.rgb24, f.rgb24 + 3 * px);
                ++d.frames;
            },
            on_device);
        EXPECT_EQ(d.frames - before, expect);
        done += n;
    }
    EXPECT_EQ(s.latent_frames_decoded(), done);
    EXPECT_EQ(s.frames_emitted(), d.frames);
    return d;
}

struct DecoderCase {
    int64_t h, w;
    std::vector<int64_t> chunks;
    VaeConvAlgo algo;
};

TEST(VaeGpuDecoder, TinyVaeMatchesCpuStream) {
    LR_REQUIRE_GPU();
    const WanVaeDecoder vae = WanVaeDecoder::make_default();
    for (const DecoderCase& k : {DecoderCase{8, 12, {1, 3, 3}, VaeConvAlgo::kImplicitGemm},
                                 DecoderCase{10, 14, {4, 3}, VaeConvAlgo::kImplicitGemm},
                                 DecoderCase{8, 12, {1, 3, 3}, VaeConvAlgo::kIm2colGemm},
                                 DecoderCase{10, 14, {4, 3}, VaeConvAlgo::kIm2colGemm}}) {
        const char* algo = k.algo == VaeConvAlgo::kImplicitGemm ? "implicit" : "im2col";
        SCOPED_TRACE(str_cat("latent ", k.h, "x", k.w, ", ", k.chunks.size(), " chunks, ", algo));
        std::mt19937 rng(static_cast<uint32_t>(k.h * 100 + k.w));
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> z(static_cast<size_t>(7 * 16 * k.h * k.w));
        for (float& v : z) v = normal(rng);

        const Decoded want = decode_cpu(vae, z, k.h, k.w, k.chunks, VaeFrameFormat::kFloatPlanar);
        CudaVaeStream gpu(vae, k.h, k.w, VaeFrameFormat::kFloatPlanar);
        gpu.set_conv_algo(k.algo);
        const Decoded got = decode_gpu(gpu, z.data(), k.h, k.w, k.chunks);
        ASSERT_EQ(got.frames, 25);
        ASSERT_EQ(got.frames, want.frames);
        ASSERT_EQ(got.planar.size(), want.planar.size());
        const double rel = relative_error(got.planar.data(), want.planar.data(), want.planar.size());
        std::printf("[ vae gpu ] %lldx%lld %s float frames: rel error %.3g (bound 3e-2), max abs %.3g\n",
                    static_cast<long long>(k.h), static_cast<long long>(k.w), algo, rel,
                    test::max_abs_error(got.planar.data(), want.planar.data(), want.planar.size()));
        EXPECT_LT(rel, 3e-2);
        for (float v : got.planar) ASSERT_TRUE(v >= -1.0f && v <= 1.0f);

        const Decoded want8 = decode_cpu(vae, z, k.h, k.w, k.chunks, VaeFrameFormat::kRgb24);
        CudaVaeStream gpu8(vae, k.h, k.w, VaeFrameFormat::kRgb24);
        gpu8.set_conv_algo(k.algo);
        const Decoded got8 = decode_gpu(gpu8, z.data(), k.h, k.w, k.chunks);
        ASSERT_EQ(got8.rgb.size(), want8.rgb.size());
        double sum = 0.0;
        int64_t within4 = 0;
        for (size_t i = 0; i < want8.rgb.size(); ++i) {
            const int d = std::abs(int{got8.rgb[i]} - int{want8.rgb[i]});
            sum += d;
            within4 += d <= 4;
        }
        const double mean = sum / static_cast<double>(want8.rgb.size());
        const double share4 = static_cast<double>(within4) / static_cast<double>(want8.rgb.size());
        std::printf("[ vae gpu ] %lldx%lld %s rgb24: mean |diff| %.3f (bound 2), %.4f within 4 (bound 0.99)\n",
                    static_cast<long long>(k.h), static_cast<long long>(k.w), algo, mean, share4);
        EXPECT_LT(mean, 2.0);
        EXPECT_GE(share4, 0.99);
    }
}

// Chunking, device-resident latents and reset() change nothing: the same frames bit for bit.
TEST(VaeGpuDecoder, DeviceLatentsChunkingAndResetGiveIdenticalFrames) {
    LR_REQUIRE_GPU();
    const WanVaeDecoder vae = WanVaeDecoder::make_default();
    const int64_t h = 6, w = 10;
    const auto z = random_floats(7 * 16 * h * w, 50, -2.0f, 2.0f);
    CudaVaeStream gpu(vae, h, w);
    EXPECT_EQ(gpu.frames_for(3), 9);
    const Decoded first = decode_gpu(gpu, z.data(), h, w, {7});
    EXPECT_EQ(first.frames, 25);
    EXPECT_EQ(gpu.frames_for(3), 12);
    gpu.reset();
    DeviceBuffer dz = upload(z);
    const Decoded again = decode_gpu(gpu, static_cast<const float*>(dz.data()), h, w, {1, 1, 2, 3}, true);
    EXPECT_EQ(again.rgb, first.rgb);
    gpu.reset();
    gpu.decode(z.data(), 0, [](const VaeFrame&) { FAIL() << "no frames expected"; });
    EXPECT_THROW(gpu.decode(nullptr, 1, [](const VaeFrame&) {}), InputError);
    EXPECT_EQ(gpu.frames_emitted(), 0);
}

// A plan beyond the device is refused with the bytes needed and free, before anything is allocated.
TEST(VaeGpuDecoder, PlanTooBigIsRefused) {
    LR_REQUIRE_GPU();
    const WanVaeConfig real;
    size_t free_before = 0, total = 0;
    LR_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
    const size_t needed = CudaVaeStream::device_bytes(real, 4096, 4096);
    ASSERT_GT(needed, total);
    try {
        CudaVaeStream::with_random_weights(real, 4096, 4096, 1);
        FAIL() << "a " << needed << "-byte plan was accepted";
    } catch (const InputError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(std::to_string(needed)), std::string::npos) << msg;
        EXPECT_NE(msg.find("free"), std::string::npos) << msg;
    }
    const WanVaeDecoder tiny = WanVaeDecoder::make_default();
    EXPECT_THROW(CudaVaeStream(tiny, 4096, 4096), InputError);
    EXPECT_THROW(CudaVaeStream(tiny, 0, 8), InputError);
    size_t free_after = 0;
    LR_CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
    EXPECT_LT(free_before > free_after ? free_before - free_after : 0, size_t{64} << 20);
}

// The benchmark path: real channel counts, weights drawn on the device; the frames are finite, inside [-1, 1] and
// not constant, and the byte accounting adds up.
TEST(VaeGpuDecoder, RandomRealSizeWeightsDecode) {
    LR_REQUIRE_GPU();
    const WanVaeConfig real;
    const int64_t h = 6, w = 10;
    CudaVaeStream gpu = CudaVaeStream::with_random_weights(real, h, w, 3, VaeFrameFormat::kFloatPlanar);
    const size_t frame_bytes = static_cast<size_t>(3 * 64 * h * w) * sizeof(float);
    EXPECT_EQ(CudaVaeStream::device_bytes(real, h, w), gpu.state_bytes() + gpu.weight_bytes() - frame_bytes);
    // ~73M decoder parameters in bf16.
    EXPECT_GT(gpu.weight_bytes(), size_t{100} << 20);
    const auto z = random_floats(2 * 16 * h * w, 60, -2.0f, 2.0f);
    const Decoded d = decode_gpu(gpu, z.data(), h, w, {2});
    ASSERT_EQ(d.frames, 5);
    double sum = 0.0, sq = 0.0;
    for (float v : d.planar) {
        ASSERT_TRUE(std::isfinite(v) && v >= -1.0f && v <= 1.0f);
        sum += v;
        sq += static_cast<double>(v) * v;
    }
    const double n = static_cast<double>(d.planar.size()), var = sq / n - (sum / n) * (sum / n);
    EXPECT_GT(var, 1e-4);
}

#endif  // LONGROLL_HAS_CUDA

}  // namespace
}  // namespace lr
