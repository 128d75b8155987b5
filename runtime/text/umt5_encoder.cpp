#include "runtime/text/umt5_encoder.h"

#include <algorithm>
#include <cmath>

#include "kernels/cast.h"
#include "kernels/gelu.h"
#include "kernels/gemm.h"
#include "kernels/relative_bias_attention.h"
#include "kernels/rms_norm.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

constexpr Umt5Tensor kLayerTensors[] = {
    Umt5Tensor::kAttnNorm, Umt5Tensor::kQ,       Umt5Tensor::kK,       Umt5Tensor::kV,     Umt5Tensor::kO,
    Umt5Tensor::kRelBias,  Umt5Tensor::kFfnNorm, Umt5Tensor::kFfnGate, Umt5Tensor::kFfnUp, Umt5Tensor::kFfnDown};

void check_tensor(const SafetensorsCheckpoint& ckpt, const std::string& name, const Shape& shape) {
    const SafetensorsEntry* e = ckpt.find(name);
    LR_CHECK(e != nullptr, ckpt.path(), ": UMT5 encoder tensor '", name, "' ", shape.str(), " is missing");
    LR_CHECK(e->shape == shape, ckpt.path(), ": UMT5 encoder tensor '", name, "' has shape ", e->shape.str(),
             ", expected ", shape.str());
    LR_CHECK(e->dtype == DType::kF32 || e->dtype == DType::kBF16 || e->dtype == DType::kF16, ckpt.path(),
             ": UMT5 encoder tensor '", name, "' has dtype ", dtype_name(e->dtype),
             ", expected F32, BF16 or F16 (convert FP8 files back to BF16 first)");
}

// A tensor of the checkpoint as fp32: the mapped data itself when the file is F32, else widened into `scratch`.
const float* as_f32(const SafetensorsCheckpoint& ckpt, const std::string& name, std::vector<float>& scratch) {
    const TensorView src = ckpt.view(name);
    const float* data = nullptr;
    if (src.dtype == DType::kF32) {
        data = src.as<float>();
    } else {
        scratch.resize(static_cast<size_t>(src.numel()));
        cast(src, TensorView(scratch.data(), DType::kF32, src.shape));
        data = scratch.data();
    }
    for (int64_t i = 0; i < src.numel(); ++i) {
        LR_CHECK(std::isfinite(data[i]), ckpt.path(), ": UMT5 encoder tensor '", name, "' holds NaN or Inf");
    }
    return data;
}

// y[rows, out] (+)= x[rows, in] W^T with W [out, in].
void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out, bool accumulate) {
    GemmParams g;
    g.a = x;
    g.lda = in;
    g.b = w;
    g.ldb = in;
    g.b_transposed = true;
    g.c = y;
    g.ldc = out;
    g.m = rows;
    g.n = out;
    g.k = in;
    g.accumulate = accumulate;
    gemm_cpu(g);
}

void rms_norm(const float* x, float* y, const float* w, int64_t rows, int64_t dim, double eps) {
    RmsNormParams n;
    n.x = x;
    n.y = y;
    n.weight = w;
    n.rows = rows;
    n.dim = dim;
    n.eps = static_cast<float>(eps);
    rms_norm_cpu(n);
}

}  // namespace

Umt5Encoder::Umt5Encoder(SafetensorsCheckpoint ckpt, Umt5Naming naming, const Umt5Config& config)
    : ckpt_(std::move(ckpt)), naming_(naming), config_(config) {
    embedding_name_ = umt5_embedding_name(ckpt_, naming_);
}

Umt5Encoder Umt5Encoder::open(const std::string& path) {
    SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(path);
    const std::optional<Umt5Detection> d = detect_umt5(ckpt);
    LR_CHECK(d.has_value(), path, ": not a UMT5 text encoder: ", describe_non_umt5(ckpt),
             ". Expected Wan's models_t5_umt5-xxl-enc-bf16.pth converted by tools/convert_checkpoint.py --format umt5, "
             "or a Hugging Face UMT5EncoderModel safetensors file");
    const Umt5Config& c = d->config;
    LR_CHECK(c.num_layers >= 1 && c.d_model >= 1 && c.d_kv >= 1 && c.d_ff >= 1 && c.vocab_size >= 2 &&
                 c.num_buckets >= 4 && c.num_buckets % 2 == 0,
             path, ": implausible UMT5 sizes (vocab ", c.vocab_size, ", d_model ", c.d_model, ", ", c.num_heads,
             " heads of ", c.d_kv, ", d_ff ", c.d_ff, ", ", c.num_layers, " layers, ", c.num_buckets, " buckets)");
    check_tensor(ckpt, umt5_embedding_name(ckpt, d->naming), umt5_tensor_shape(c, Umt5Tensor::kEmbedding));
    for (int64_t l = 0; l < c.num_layers; ++l) {
        for (Umt5Tensor t : kLayerTensors)
            check_tensor(ckpt, umt5_tensor_name(d->naming, t, l), umt5_tensor_shape(c, t));
    }
    check_tensor(ckpt, umt5_tensor_name(d->naming, Umt5Tensor::kFinalNorm),
                 umt5_tensor_shape(c, Umt5Tensor::kFinalNorm));
    return Umt5Encoder(std::move(ckpt), d->naming, c);
}

std::vector<HostTensor> Umt5Encoder::encode(const std::vector<std::vector<int32_t>>& prompts) const {
    const Umt5Config& c = config_;
    const int64_t d = c.d_model;
    const int64_t inner = c.inner_dim();
    int64_t max_len = 0;
    for (const auto& ids : prompts) {
        LR_ASSERT(!ids.empty(), "Umt5Encoder::encode: an empty token sequence");
        for (int32_t id : ids) LR_ASSERT(id >= 0 && id < c.vocab_size, "token id ", id, " outside the vocabulary");
        max_len = std::max<int64_t>(max_len, static_cast<int64_t>(ids.size()));
    }

    // x = embedding rows of the ids (only those rows are widened: the XXL table alone is 4 GB in fp32).
    std::vector<HostTensor> xs;
    const TensorView table = ckpt_.view(embedding_name_);  // [vocab, d_model]
    const int64_t row_bytes = d * dtype_size(table.dtype);
    for (const auto& ids : prompts) {
        const auto len = static_cast<int64_t>(ids.size());
        HostTensor x(DType::kF32, Shape{len, d});  // [L, d_model]
        for (int64_t i = 0; i < len; ++i) {
            const TensorView src(static_cast<char*>(table.data) + ids[static_cast<size_t>(i)] * row_bytes, table.dtype,
                                 Shape{d});
            cast(src, TensorView(x.as<float>() + i * d, DType::kF32, Shape{d}));
        }
        for (int64_t i = 0; i < len * d; ++i) {
            LR_CHECK(std::isfinite(x.as<float>()[i]), ckpt_.path(), ": UMT5 encoder tensor '", embedding_name_,
                     "' holds NaN or Inf in a row the prompt uses");
        }
        xs.push_back(std::move(x));
    }

    // Scratch for the longest prompt, shared by all of them.
    std::vector<float> h(static_cast<size_t>(max_len * d));            // [L, d_model]
    std::vector<float> qkv(static_cast<size_t>(3 * max_len * inner));  // q, k, v: [L, heads, d_kv] each
    std::vector<float> attn(static_cast<size_t>(max_len * inner));     // [L, heads, d_kv]
    std::vector<float> gate(static_cast<size_t>(max_len * c.d_ff));    // [L, d_ff]
    std::vector<float> up(static_cast<size_t>(max_len * c.d_ff));      // [L, d_ff]
    std::vector<float> rel_bias(static_cast<size_t>(c.num_heads * (2 * max_len - 1)));  // [heads, 2L - 1]
    std::vector<std::vector<float>> scratch(std::size(kLayerTensors));

    for (int64_t l = 0; l < c.num_layers; ++l) {
        const float* w[std::size(kLayerTensors)];
        for (size_t t = 0; t < std::size(kLayerTensors); ++t) {
            w[t] = as_f32(ckpt_, umt5_tensor_name(naming_, kLayerTensors[t], l), scratch[t]);
        }
        const float *attn_norm = w[0], *wq = w[1], *wk = w[2], *wv = w[3], *wo = w[4], *bias = w[5], *ffn_norm = w[6],
                    *wgate = w[7], *wup = w[8], *wdown = w[9];
        for (HostTensor& xt : xs) {
            float* x = xt.as<float>();
            const int64_t len = xt.view.size(0);
            float* q = qkv.data();
            float* k = q + len * inner;
            float* v = k + len * inner;
            // Self-attention with this layer's relative position bias, unscaled.
            rms_norm(x, h.data(), attn_norm, len, d, c.eps);
            matmul(h.data(), wq, q, len, d, inner, false);
            matmul(h.data(), wk, k, len, d, inner, false);
            matmul(h.data(), wv, v, len, d, inner, false);
            const int64_t offsets = 2 * len - 1;
            for (int64_t r = -(len - 1); r <= len - 1; ++r) {
                const int64_t bucket = umt5_relative_bucket(r, c.num_buckets, c.max_distance);
                for (int64_t hd = 0; hd < c.num_heads; ++hd) {
                    rel_bias[static_cast<size_t>(hd * offsets + r + len - 1)] = bias[bucket * c.num_heads + hd];
                }
            }
            RelativeBiasAttentionParams ap;
            ap.q = q;
            ap.k = k;
            ap.v = v;
            ap.out = attn.data();
            ap.rel_bias = rel_bias.data();
            ap.q_len = len;
            ap.kv_len = len;
            ap.heads = c.num_heads;
            ap.head_dim = c.d_kv;
            ap.scale = 1.0f;
            relative_bias_attention_cpu(ap);
            matmul(attn.data(), wo, x, len, inner, d, /*accumulate=*/true);
            // Gated-GELU FFN.
            rms_norm(x, h.data(), ffn_norm, len, d, c.eps);
            matmul(h.data(), wgate, gate.data(), len, d, c.d_ff, false);
            matmul(h.data(), wup, up.data(), len, d, c.d_ff, false);
            GeluParams g;
            g.x = gate.data();
            g.y = gate.data();
            g.n = len * c.d_ff;
            gelu_tanh_cpu(g);
            for (int64_t i = 0; i < len * c.d_ff; ++i) gate[static_cast<size_t>(i)] *= up[static_cast<size_t>(i)];
            matmul(gate.data(), wdown, x, len, c.d_ff, d, /*accumulate=*/true);
        }
    }
    std::vector<float> final_scratch;
    const float* final_norm = as_f32(ckpt_, umt5_tensor_name(naming_, Umt5Tensor::kFinalNorm), final_scratch);
    for (HostTensor& xt : xs) rms_norm(xt.as<float>(), xt.as<float>(), final_norm, xt.view.size(0), d, c.eps);
    return xs;
}

}  // namespace lr
