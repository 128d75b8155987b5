// The UMT5 encoder on the GPU: its relative-bias attention and gated GELU against the CPU references on random
// inputs (bf16-rounded, so that only the GPU's own rounding and summation order differ), and the whole encoder
// against transformers' UMT5EncoderModel (the fixtures of tests/data/text, fp32) under both weight namings.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cast.h"
#include "kernels/gelu.h"
#include "kernels/relative_bias_attention.h"
#include "kernels/text_cuda.h"
#include "runtime/io/safetensors.h"
#include "runtime/text/umt5_encoder.h"
#include "runtime/text/umt5_encoder_cuda.h"
#include "tests/common/fixture_util.h"

namespace lr {
namespace {

// Random values rounded to bf16: [n] f32 and the same as bf16.
struct Bf16Data {
    std::vector<float> f32;
    HostTensor bf16;
    Bf16Data(int64_t n, uint32_t seed, float scale) : f32(static_cast<size_t>(n)), bf16(DType::kBF16, Shape{n}) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> dist(0.0f, scale);
        for (auto& v : f32) v = dist(rng);
        cast_cpu({f32.data(), bf16.view.data, DType::kF32, DType::kBF16, n});
        cast_cpu({bf16.view.data, f32.data(), DType::kBF16, DType::kF32, n});
    }
};

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        den += static_cast<double>(b[i]) * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

TEST(TextGpu, RelativeBiasAttentionMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    // head_dim 64 runs the tiled kernel (UMT5's width; 1 and 7 tokens leave key splits and query slots empty, 130
    // a partial key chunk and query tile), 32 the simple one.
    for (const int64_t D : {int64_t{64}, int64_t{32}})
        for (const int64_t len : {int64_t{1}, int64_t{7}, int64_t{130}, int64_t{512}}) {
            const int64_t H = 3, W = H * D;
            const Bf16Data q(len * W, 1, 0.5f), k(len * W, 2, 0.5f), v(len * W, 3, 1.0f);
            std::vector<float> bias(static_cast<size_t>(H * (2 * len - 1)));
            std::mt19937 rng(4);
            std::normal_distribution<float> dist(0.0f, 2.0f);
            for (auto& b : bias) b = dist(rng);
            std::vector<float> want(static_cast<size_t>(len * W));
            RelativeBiasAttentionParams cp;
            cp.q = q.f32.data();
            cp.k = k.f32.data();
            cp.v = v.f32.data();
            cp.out = want.data();
            cp.rel_bias = bias.data();
            cp.q_len = len;
            cp.kv_len = len;
            cp.heads = H;
            cp.head_dim = D;
            relative_bias_attention_cpu(cp);
            const size_t bytes = static_cast<size_t>(len * W) * 2;
            DeviceBuffer dq = test::to_device(q.bf16.view.data, bytes), dk = test::to_device(k.bf16.view.data, bytes),
                         dv = test::to_device(v.bf16.view.data, bytes), dout(bytes),
                         db = test::to_device(bias.data(), bias.size() * sizeof(float));
            RelativeBiasAttentionCudaParams gp;
            gp.q = dq.data();
            gp.k = dk.data();
            gp.v = dv.data();
            gp.out = dout.data();
            gp.rel_bias = static_cast<const float*>(db.data());
            gp.len = len;
            gp.heads = H;
            gp.head_dim = D;
            launch_relative_bias_attention(gp, nullptr);
            LR_CUDA_CHECK(cudaDeviceSynchronize());
            const auto raw = test::to_host<uint16_t>(dout, static_cast<size_t>(len * W));
            std::vector<float> got(raw.size());
            cast_cpu({raw.data(), got.data(), DType::kBF16, DType::kF32, len * W});
            const double err = rel_err(got, want);
            std::printf(
                "[ measured ] relative-bias attention, head_dim %lld, %lld tokens: relative error %.3g (bound 8e-3)\n",
                static_cast<long long>(D), static_cast<long long>(len), err);
            EXPECT_LT(err, 8e-3) << len << " tokens, head_dim " << D;  // the output's bf16 rounding alone is ~2e-3
        }
#endif
}

TEST(TextGpu, GatedGeluMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t n = 100003;
    const Bf16Data gate(n, 5, 2.0f), up(n, 6, 1.0f);
    std::vector<float> want(static_cast<size_t>(n));
    gelu_tanh_cpu({gate.f32.data(), want.data(), n});
    for (int64_t i = 0; i < n; ++i) want[static_cast<size_t>(i)] *= up.f32[static_cast<size_t>(i)];
    DeviceBuffer dg = test::to_device(gate.bf16.view.data, static_cast<size_t>(n) * 2),
                 du = test::to_device(up.bf16.view.data, static_cast<size_t>(n) * 2);
    launch_gated_gelu(dg.data(), du.data(), dg.data(), n, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto raw = test::to_host<uint16_t>(dg, static_cast<size_t>(n));
    std::vector<float> got(static_cast<size_t>(n));
    cast_cpu({raw.data(), got.data(), DType::kBF16, DType::kF32, n});
    const double err = rel_err(got, want);
    std::printf("[ measured ] gated GELU: relative error %.3g (bound 4e-3)\n", err);
    EXPECT_LT(err, 4e-3);  // one bf16 rounding of the product
#endif
}

TEST(TextGpu, EncoderMatchesTransformersUnderBothNamings) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const std::string dir = std::string(LONGROLL_SOURCE_DIR) + "/tests/data/text/";
    const SafetensorsCheckpoint f = SafetensorsCheckpoint::open(dir + "umt5_tiny_expected.safetensors");
    std::vector<std::vector<int32_t>> ids;
    std::vector<std::vector<float>> want;
    for (int i = 0; f.find("ids_" + std::to_string(i)); ++i) {
        const TensorView t = f.view("ids_" + std::to_string(i));
        ids.emplace_back(t.as<int32_t>(), t.as<int32_t>() + t.numel());
        want.push_back(test::fixture_tensor(f, "context_" + std::to_string(i)));
    }
    ASSERT_FALSE(ids.empty());
    for (const char* file : {"umt5_tiny_hf.safetensors", "umt5_tiny_wan.safetensors"}) {
        const Umt5Encoder enc = Umt5Encoder::open(dir + file);
        const std::vector<HostTensor> got = encode_umt5_cuda(enc, ids, 0);
        ASSERT_EQ(got.size(), ids.size());
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_EQ(got[i].view.numel(), static_cast<int64_t>(want[i].size()));
            const std::vector<float> g(got[i].as<float>(), got[i].as<float>() + want[i].size());
            const double err = rel_err(g, want[i]);
            std::printf(
                "[ measured ] UMT5 on the GPU vs transformers, %s prompt %zu (%zu tokens): relative error "
                "%.3g (bound 3e-2)\n",
                file, i, ids[i].size(), err);
            EXPECT_LT(err, 3e-2) << file << " prompt " << i;  // bf16 weights and activations through 2 layers
        }
        // The resident encoder runs the same kernels on the same bf16 weights: the same numbers, bit for bit.
        CudaUmt5Encoder resident = CudaUmt5Encoder::upload(enc, 0);
        const std::vector<HostTensor> again = resident.encode(ids);
        ASSERT_EQ(again.size(), got.size());
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_EQ(again[i].view.shape, got[i].view.shape);
            EXPECT_EQ(std::memcmp(again[i].view.data, got[i].view.data, static_cast<size_t>(got[i].view.nbytes())), 0)
                << file << " prompt " << i << ": the resident encoder differs from the streamed one";
        }
    }
#endif
}

TEST(TextGpu, EmbeddingRowsMatchTable) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t vocab = 37, dim = 300;
    const std::vector<int32_t> ids{0, 36, 5, 5, 17, 1};
    const auto len = static_cast<int64_t>(ids.size());
    for (const DType dtype : {DType::kBF16, DType::kF32}) {
        const Bf16Data table(vocab * dim, 7, 1.0f);  // bf16-exact values: both dtypes hold the same numbers
        HostTensor host(dtype, Shape{vocab, dim});
        cast_cpu({table.f32.data(), host.view.data, DType::kF32, dtype, vocab * dim});
        const DeviceBuffer d_table = test::to_device(host.view.data, static_cast<size_t>(host.view.nbytes()));
        const DeviceBuffer d_ids = test::to_device(ids.data(), ids.size() * sizeof(int32_t));
        const DeviceBuffer d_out(static_cast<size_t>(len * dim) * sizeof(float));
        EmbeddingRowsCudaParams p;
        p.table = d_table.data();
        p.table_dtype = dtype;
        p.ids = static_cast<const int32_t*>(d_ids.data());
        p.out = static_cast<float*>(d_out.data());
        p.len = len;
        p.dim = dim;
        launch_embedding_rows(p, nullptr);
        const std::vector<float> got = test::to_host<float>(d_out, static_cast<size_t>(len * dim));
        for (int64_t i = 0; i < len; ++i) {
            for (int64_t c = 0; c < dim; ++c) {
                ASSERT_EQ(got[static_cast<size_t>(i * dim + c)],
                          table.f32[static_cast<size_t>(ids[static_cast<size_t>(i)] * dim + c)])
                    << dtype_name(dtype) << " row " << i << " column " << c;
            }
        }
    }
#endif
}

}  // namespace
}  // namespace lr
