#include "runtime/text/umt5_encoder_cuda.h"

#include "runtime/core/check.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cast.h"
#include "kernels/dit_ops_cuda.h"
#include "kernels/gemm_cuda.h"
#include "kernels/text_cuda.h"
#include "kernels/vae_cuda.h"
#include "runtime/core/cuda_check.h"
#include "runtime/core/det_random.h"
#include "runtime/core/device.h"
#include "runtime/io/safetensors.h"
#endif

namespace lr {

#ifndef LONGROLL_HAS_CUDA

std::vector<HostTensor> encode_umt5_cuda(const Umt5Encoder&, const std::vector<std::vector<int32_t>>&, int) {
    detail::throw_runtime_error("the UMT5 encoder on the GPU: this longroll was built without CUDA");
}

struct CudaUmt5Encoder::Impl {};

CudaUmt5Encoder CudaUmt5Encoder::upload(const Umt5Encoder&, int) {
    detail::throw_runtime_error("the UMT5 encoder on the GPU: this longroll was built without CUDA");
}
CudaUmt5Encoder CudaUmt5Encoder::with_random_weights(const Umt5Config&, uint64_t, int) {
    detail::throw_runtime_error("the UMT5 encoder on the GPU: this longroll was built without CUDA");
}
CudaUmt5Encoder::CudaUmt5Encoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaUmt5Encoder::CudaUmt5Encoder(CudaUmt5Encoder&&) noexcept = default;
CudaUmt5Encoder& CudaUmt5Encoder::operator=(CudaUmt5Encoder&&) noexcept = default;
CudaUmt5Encoder::~CudaUmt5Encoder() = default;
const Umt5Config& CudaUmt5Encoder::config() const {
    static const Umt5Config none;
    return none;
}
size_t CudaUmt5Encoder::weight_bytes() const { return 0; }
Stream CudaUmt5Encoder::stream() const { return nullptr; }
const void* CudaUmt5Encoder::encode_async(const std::vector<int32_t>&) { return nullptr; }
std::vector<HostTensor> CudaUmt5Encoder::encode(const std::vector<std::vector<int32_t>>&) { return {}; }
void CudaUmt5Encoder::save(const std::string&) const {}

#else

namespace {

constexpr size_t kBf16 = 2;

// NaN or Inf in `v`: InputError naming the tensor. bf16 and f32 are checked on their bits, in place.
void check_finite(const TensorView& v, const std::string& file, const std::string& name) {
    const int64_t n = v.numel();
    bool ok = true;
    if (v.dtype == DType::kBF16) {
        const auto* b = static_cast<const uint16_t*>(v.data);
        for (int64_t i = 0; i < n; ++i) ok &= (b[i] & 0x7f80u) != 0x7f80u;
    } else {
        LR_ASSERT(v.dtype == DType::kF32, "check_finite: ", dtype_name(v.dtype));
        const auto* f = static_cast<const float*>(v.data);
        for (int64_t i = 0; i < n; ++i) ok &= std::isfinite(f[i]);
    }
    LR_CHECK(ok, file, ": UMT5 encoder tensor '", name, "' holds NaN or Inf");
}

// A checkpoint tensor on the device as `dtype` (kBF16 for matrices, kF32 for norm weights), checked for NaN/Inf.
// A tensor already in `dtype` (the bf16 files people have) goes from the mapped file to the device as is; others
// are cast on the host first.
DeviceBuffer upload_tensor(const SafetensorsCheckpoint& ckpt, const std::string& name, DType dtype, cudaStream_t s) {
    const TensorView src = ckpt.view(name);
    HostTensor converted;
    TensorView host = src;
    if (src.dtype != dtype) {
        HostTensor f32(DType::kF32, src.shape);
        cast(src, f32.view);
        if (dtype == DType::kF32) {
            converted = std::move(f32);
        } else {
            converted = HostTensor(dtype, src.shape);
            cast(f32.view, converted.view);
        }
        host = converted.view;
    }
    check_finite(host, ckpt.path(), name);
    DeviceBuffer buf(static_cast<size_t>(host.nbytes()));
    LR_CUDA_CHECK(
        cudaMemcpyAsync(buf.data(), host.data, static_cast<size_t>(host.nbytes()), cudaMemcpyHostToDevice, s));
    LR_CUDA_CHECK(cudaStreamSynchronize(s));  // the host copy dies here
    return buf;
}

void gemm(GemmRunner& g, const void* x, const DeviceBuffer& w, void* y, DType y_dtype, int64_t rows, int64_t in,
          int64_t out, bool accumulate, cudaStream_t s) {
    CudaGemmParams p;
    p.x = x;
    p.w = w.data();
    p.y = y;
    p.y_dtype = y_dtype;
    p.m = rows;
    p.n = out;
    p.k = in;
    p.accumulate = accumulate;
    g.run(p, s);
}

// launch_norm_rope's RMSNorm runs over the whole row (heads * head_dim); its rows are cut in "heads" of at most
// 512 elements (an even divisor of dim) only because of how the kernel tabulates RoPE, which is off here.
void rms_norm(const float* x, void* y, const DeviceBuffer& w, int64_t rows, int64_t dim, double eps, cudaStream_t s) {
    int64_t heads = 1;
    while (heads <= dim && (dim % heads != 0 || (dim / heads) % 2 != 0 || dim / heads > 512)) ++heads;
    LR_CHECK(heads <= dim, "UMT5 on the GPU: d_model ", dim, " has no even divisor of at most 512");
    NormRopeParams n;
    n.x = x;
    n.x_dtype = DType::kF32;
    n.y = y;
    n.norm_weight = static_cast<const float*>(w.data());
    n.eps = static_cast<float>(eps);
    n.rows = rows;
    n.heads = heads;
    n.head_dim = dim / heads;
    launch_norm_rope(n, s);
}

// One layer's weights on the device; the position bias [num_buckets, heads] stays on the host, where each prompt
// length's table by offset is made.
struct Layer {
    DeviceBuffer attn_norm, q, k, v, o, ffn_norm, gate, up, down;  // norms f32 [d_model], matrices bf16 [out, in]
    std::vector<float> rel_bias;                                   // [num_buckets, heads]
};

Layer upload_layer(const SafetensorsCheckpoint& ckpt, Umt5Naming naming, int64_t l, cudaStream_t s) {
    const auto name = [&](Umt5Tensor t) { return umt5_tensor_name(naming, t, l); };
    Layer w;
    w.attn_norm = upload_tensor(ckpt, name(Umt5Tensor::kAttnNorm), DType::kF32, s);
    w.q = upload_tensor(ckpt, name(Umt5Tensor::kQ), DType::kBF16, s);
    w.k = upload_tensor(ckpt, name(Umt5Tensor::kK), DType::kBF16, s);
    w.v = upload_tensor(ckpt, name(Umt5Tensor::kV), DType::kBF16, s);
    w.o = upload_tensor(ckpt, name(Umt5Tensor::kO), DType::kBF16, s);
    w.ffn_norm = upload_tensor(ckpt, name(Umt5Tensor::kFfnNorm), DType::kF32, s);
    w.gate = upload_tensor(ckpt, name(Umt5Tensor::kFfnGate), DType::kBF16, s);
    w.up = upload_tensor(ckpt, name(Umt5Tensor::kFfnUp), DType::kBF16, s);
    w.down = upload_tensor(ckpt, name(Umt5Tensor::kFfnDown), DType::kBF16, s);
    const std::string bias_name = name(Umt5Tensor::kRelBias);
    const TensorView bsrc = ckpt.view(bias_name);
    w.rel_bias.resize(static_cast<size_t>(bsrc.numel()));
    const TensorView dst(w.rel_bias.data(), DType::kF32, bsrc.shape);
    cast(bsrc, dst);
    check_finite(dst, ckpt.path(), bias_name);
    return w;
}

// The bias of every (head, offset) for a prompt of `len` tokens: out [heads, 2 len - 1], offset j - i at
// index j - i + len - 1.
void bias_table(const Umt5Config& c, const std::vector<float>& rel, int64_t len, float* out) {
    const int64_t offsets = 2 * len - 1;
    for (int64_t r = -(len - 1); r <= len - 1; ++r) {
        const int64_t bucket = umt5_relative_bucket(r, c.num_buckets, c.max_distance);
        for (int64_t hd = 0; hd < c.num_heads; ++hd)
            out[hd * offsets + r + len - 1] = rel[static_cast<size_t>(bucket * c.num_heads + hd)];
    }
}

// Activations for prompts of up to `rows` tokens (bf16).
struct Scratch {
    int64_t rows = 0;
    DeviceBuffer h, q, k, v, attn, gate, up;

    void reserve(const Umt5Config& c, int64_t len) {
        if (len <= rows) return;
        rows = len;
        const auto n = [&](int64_t width) { return static_cast<size_t>(len * width) * kBf16; };
        h = DeviceBuffer(n(c.d_model));
        q = DeviceBuffer(n(c.inner_dim()));
        k = DeviceBuffer(n(c.inner_dim()));
        v = DeviceBuffer(n(c.inner_dim()));
        attn = DeviceBuffer(n(c.inner_dim()));
        gate = DeviceBuffer(n(c.d_ff));
        up = DeviceBuffer(n(c.d_ff));
    }
};

// x [len, d_model] f32 += the layer's attention, then its FFN; `bias` [heads, 2 len - 1] on the device.
void run_layer(GemmRunner& g, const Umt5Config& c, const Layer& w, float* x, int64_t len, const float* bias, Scratch& t,
               cudaStream_t s) {
    const int64_t d = c.d_model, inner = c.inner_dim();
    // Self-attention with this layer's relative position bias, unscaled.
    rms_norm(x, t.h.data(), w.attn_norm, len, d, c.eps, s);
    gemm(g, t.h.data(), w.q, t.q.data(), DType::kBF16, len, d, inner, false, s);
    gemm(g, t.h.data(), w.k, t.k.data(), DType::kBF16, len, d, inner, false, s);
    gemm(g, t.h.data(), w.v, t.v.data(), DType::kBF16, len, d, inner, false, s);
    RelativeBiasAttentionCudaParams ap;
    ap.q = t.q.data();
    ap.k = t.k.data();
    ap.v = t.v.data();
    ap.out = t.attn.data();
    ap.rel_bias = bias;
    ap.len = len;
    ap.heads = c.num_heads;
    ap.head_dim = c.d_kv;
    launch_relative_bias_attention(ap, s);
    gemm(g, t.attn.data(), w.o, x, DType::kF32, len, inner, d, /*accumulate=*/true, s);
    // Gated-GELU FFN.
    rms_norm(x, t.h.data(), w.ffn_norm, len, d, c.eps, s);
    gemm(g, t.h.data(), w.gate, t.gate.data(), DType::kBF16, len, d, c.d_ff, false, s);
    gemm(g, t.h.data(), w.up, t.up.data(), DType::kBF16, len, d, c.d_ff, false, s);
    launch_gated_gelu(t.gate.data(), t.up.data(), t.gate.data(), len * c.d_ff, s);
    gemm(g, t.gate.data(), w.down, x, DType::kF32, len, c.d_ff, d, /*accumulate=*/true, s);
}

// The final norm's bf16 [len, d_model] on the device, widened to F32 on the host.
HostTensor download_f32(const void* dev, int64_t len, int64_t d, cudaStream_t s) {
    HostTensor b16(DType::kBF16, Shape{len, d});
    LR_CUDA_CHECK(
        cudaMemcpyAsync(b16.view.data, dev, static_cast<size_t>(b16.view.nbytes()), cudaMemcpyDeviceToHost, s));
    LR_CUDA_CHECK(cudaStreamSynchronize(s));
    HostTensor f32(DType::kF32, Shape{len, d});
    cast(b16.view, f32.view);
    return f32;
}

struct StreamGuard {
    cudaStream_t s = nullptr;
    StreamGuard() { LR_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
    ~StreamGuard() {
        if (s) cudaStreamDestroy(s);
    }
    StreamGuard(const StreamGuard&) = delete;
    StreamGuard& operator=(const StreamGuard&) = delete;
};

}  // namespace

std::vector<HostTensor> encode_umt5_cuda(const Umt5Encoder& enc, const std::vector<std::vector<int32_t>>& prompts,
                                         int device) {
    const Umt5Config& c = enc.config();
    const SafetensorsCheckpoint& ckpt = enc.checkpoint();
    const int64_t d = c.d_model, H = c.num_heads;
    LR_CHECK(d % 2 == 0, ckpt.path(), ": the GPU encoder needs an even d_model, found ", d);
    cuda_use_device(device);
    const StreamGuard guard;
    const cudaStream_t s = guard.s;
    GemmRunner g;

    // Per prompt: the residual stream x (f32, from the embedding rows the prompt uses) and its length.
    const TensorView table = ckpt.view(enc.embedding_name());
    const int64_t row_bytes = d * dtype_size(table.dtype);
    int64_t max_len = 0;
    std::vector<DeviceBuffer> xs;
    std::vector<int64_t> lens;
    for (const auto& ids : prompts) {
        LR_ASSERT(!ids.empty(), "encode_umt5_cuda: an empty token sequence");
        const auto len = static_cast<int64_t>(ids.size());
        HostTensor x(DType::kF32, Shape{len, d});
        for (int64_t i = 0; i < len; ++i) {
            const int32_t id = ids[static_cast<size_t>(i)];
            LR_ASSERT(id >= 0 && id < c.vocab_size, "token id ", id, " outside the vocabulary");
            cast(TensorView(static_cast<char*>(table.data) + id * row_bytes, table.dtype, Shape{d}),
                 TensorView(x.as<float>() + i * d, DType::kF32, Shape{d}));
        }
        for (int64_t i = 0; i < len * d; ++i)
            LR_CHECK(std::isfinite(x.as<float>()[i]), ckpt.path(), ": UMT5 encoder tensor '", enc.embedding_name(),
                     "' holds NaN or Inf in a row the prompt uses");
        DeviceBuffer buf(static_cast<size_t>(x.view.nbytes()));
        LR_CUDA_CHECK(
            cudaMemcpyAsync(buf.data(), x.view.data, static_cast<size_t>(x.view.nbytes()), cudaMemcpyHostToDevice, s));
        LR_CUDA_CHECK(cudaStreamSynchronize(s));
        xs.push_back(std::move(buf));
        lens.push_back(len);
        max_len = std::max(max_len, len);
    }

    Scratch scratch;
    scratch.reserve(c, max_len);
    DeviceBuffer bias_dev(static_cast<size_t>(H * (2 * max_len - 1)) * sizeof(float));
    std::vector<float> bias_host(static_cast<size_t>(H * (2 * max_len - 1)));
    for (int64_t l = 0; l < c.num_layers; ++l) {
        const Layer w = upload_layer(ckpt, enc.naming(), l, s);
        for (size_t pi = 0; pi < xs.size(); ++pi) {
            const int64_t len = lens[pi];
            bias_table(c, w.rel_bias, len, bias_host.data());
            LR_CUDA_CHECK(cudaMemcpyAsync(bias_dev.data(), bias_host.data(),
                                          static_cast<size_t>(H * (2 * len - 1)) * sizeof(float),
                                          cudaMemcpyHostToDevice, s));
            run_layer(g, c, w, static_cast<float*>(xs[pi].data()), len, static_cast<const float*>(bias_dev.data()),
                      scratch, s);
            // bias_host is rewritten for the next prompt: its upload must be done.
            LR_CUDA_CHECK(cudaStreamSynchronize(s));
        }
    }
    const DeviceBuffer final_norm =
        upload_tensor(ckpt, umt5_tensor_name(enc.naming(), Umt5Tensor::kFinalNorm), DType::kF32, s);
    std::vector<HostTensor> out;
    for (size_t pi = 0; pi < xs.size(); ++pi) {
        rms_norm(static_cast<const float*>(xs[pi].data()), scratch.h.data(), final_norm, lens[pi], d, c.eps, s);
        out.push_back(download_f32(scratch.h.data(), lens[pi], d, s));
    }
    return out;
}

// ---- the resident encoder -------------------------------------------------------------------------------------

struct CudaUmt5Encoder::Impl {
    Umt5Config config;
    int device = 0;
    StreamGuard stream;
    GemmRunner gemm;
    DeviceBuffer embedding;  // bf16 [vocab, d_model]
    std::vector<Layer> layers;
    DeviceBuffer final_norm;  // f32 [d_model]
    size_t weight_bytes = 0;
    // Per prompt length: every layer's bias table, [layers, heads, 2 len - 1] f32.
    std::map<int64_t, DeviceBuffer> bias_tables;
    Scratch scratch;
    DeviceBuffer ids;  // int32 [scratch.rows]
    DeviceBuffer x;    // f32 [scratch.rows, d_model]

    const float* bias_for(int64_t len) {
        auto it = bias_tables.find(len);
        if (it != bias_tables.end()) return static_cast<const float*>(it->second.data());
        const int64_t per_layer = config.num_heads * (2 * len - 1);
        std::vector<float> host(static_cast<size_t>(per_layer * config.num_layers));
        for (int64_t l = 0; l < config.num_layers; ++l)
            bias_table(config, layers[static_cast<size_t>(l)].rel_bias, len, host.data() + l * per_layer);
        DeviceBuffer buf(host.size() * sizeof(float));
        LR_CUDA_CHECK(cudaMemcpyAsync(buf.data(), host.data(), buf.size(), cudaMemcpyHostToDevice, stream.s));
        LR_CUDA_CHECK(cudaStreamSynchronize(stream.s));  // `host` dies here
        it = bias_tables.emplace(len, std::move(buf)).first;
        return static_cast<const float*>(it->second.data());
    }

    void count_bytes() {
        weight_bytes = embedding.size() + final_norm.size();
        for (const Layer& w : layers) {
            for (const DeviceBuffer* b : {&w.attn_norm, &w.q, &w.k, &w.v, &w.o, &w.ffn_norm, &w.gate, &w.up, &w.down})
                weight_bytes += b->size();
        }
    }
};

CudaUmt5Encoder::CudaUmt5Encoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaUmt5Encoder::CudaUmt5Encoder(CudaUmt5Encoder&&) noexcept = default;
CudaUmt5Encoder& CudaUmt5Encoder::operator=(CudaUmt5Encoder&&) noexcept = default;
CudaUmt5Encoder::~CudaUmt5Encoder() = default;

CudaUmt5Encoder CudaUmt5Encoder::upload(const Umt5Encoder& host, int device) {
    cuda_use_device(device);
    auto m = std::make_unique<Impl>();
    m->config = host.config();
    m->device = device;
    LR_CHECK(m->config.d_model % 2 == 0, host.path(), ": the GPU encoder needs an even d_model, found ",
             m->config.d_model);
    const SafetensorsCheckpoint& ckpt = host.checkpoint();
    const cudaStream_t s = m->stream.s;
    m->embedding = upload_tensor(ckpt, host.embedding_name(), DType::kBF16, s);
    for (int64_t l = 0; l < m->config.num_layers; ++l) m->layers.push_back(upload_layer(ckpt, host.naming(), l, s));
    m->final_norm = upload_tensor(ckpt, umt5_tensor_name(host.naming(), Umt5Tensor::kFinalNorm), DType::kF32, s);
    m->count_bytes();
    return CudaUmt5Encoder(std::move(m));
}

CudaUmt5Encoder CudaUmt5Encoder::with_random_weights(const Umt5Config& c, uint64_t seed, int device) {
    cuda_use_device(device);
    auto m = std::make_unique<Impl>();
    m->config = c;
    m->device = device;
    LR_CHECK(c.d_model % 2 == 0, "the GPU encoder needs an even d_model, found ", c.d_model);
    const cudaStream_t s = m->stream.s;
    const auto fill = [&](DeviceBuffer& b, DType dtype, const Shape& shape, const std::string& name, float offset,
                          float scale) {
        b = DeviceBuffer(static_cast<size_t>(shape.numel() * dtype_size(dtype)));
        VaeFillUniformParams p;
        p.data = b.data();
        p.dtype = dtype;
        p.n = shape.numel();
        p.key = tensor_stream_key(seed, name);
        p.offset = offset;
        p.scale = scale;
        launch_vae_fill_uniform(p, s);
    };
    const Umt5Naming hf = Umt5Naming::kHuggingFace;
    fill(m->embedding, DType::kBF16, umt5_tensor_shape(c, Umt5Tensor::kEmbedding),
         umt5_tensor_name(hf, Umt5Tensor::kEmbedding), 0.0f, 1.0f);
    for (int64_t l = 0; l < c.num_layers; ++l) {
        Layer w;
        const auto matrix = [&](DeviceBuffer& b, Umt5Tensor t) {
            const Shape shape = umt5_tensor_shape(c, t);
            fill(b, DType::kBF16, shape, umt5_tensor_name(hf, t, l), 0.0f,
                 std::sqrt(3.0f / static_cast<float>(shape[1])));  // unit variance out of unit variance in
        };
        const auto norm = [&](DeviceBuffer& b, Umt5Tensor t) {
            fill(b, DType::kF32, umt5_tensor_shape(c, t), umt5_tensor_name(hf, t, l), 1.0f, 0.2f);
        };
        norm(w.attn_norm, Umt5Tensor::kAttnNorm);
        matrix(w.q, Umt5Tensor::kQ);
        matrix(w.k, Umt5Tensor::kK);
        matrix(w.v, Umt5Tensor::kV);
        matrix(w.o, Umt5Tensor::kO);
        norm(w.ffn_norm, Umt5Tensor::kFfnNorm);
        matrix(w.gate, Umt5Tensor::kFfnGate);
        matrix(w.up, Umt5Tensor::kFfnUp);
        matrix(w.down, Umt5Tensor::kFfnDown);
        const uint64_t key = tensor_stream_key(seed, umt5_tensor_name(hf, Umt5Tensor::kRelBias, l));
        w.rel_bias.resize(static_cast<size_t>(c.num_buckets * c.num_heads));
        for (size_t i = 0; i < w.rel_bias.size(); ++i) w.rel_bias[i] = 2.0f * uniform_pm1(key, i);
        m->layers.push_back(std::move(w));
    }
    fill(m->final_norm, DType::kF32, umt5_tensor_shape(c, Umt5Tensor::kFinalNorm),
         umt5_tensor_name(hf, Umt5Tensor::kFinalNorm), 1.0f, 0.2f);
    LR_CUDA_CHECK(cudaStreamSynchronize(s));
    m->count_bytes();
    return CudaUmt5Encoder(std::move(m));
}

const Umt5Config& CudaUmt5Encoder::config() const { return impl_->config; }
size_t CudaUmt5Encoder::weight_bytes() const { return impl_->weight_bytes; }
Stream CudaUmt5Encoder::stream() const { return impl_->stream.s; }

const void* CudaUmt5Encoder::encode_async(const std::vector<int32_t>& ids) {
    Impl& m = *impl_;
    const Umt5Config& c = m.config;
    const auto len = static_cast<int64_t>(ids.size());
    LR_ASSERT(len > 0, "CudaUmt5Encoder::encode_async: an empty token sequence");
    for (int32_t id : ids) LR_ASSERT(id >= 0 && id < c.vocab_size, "token id ", id, " outside the vocabulary");
    cuda_use_device(m.device);
    const cudaStream_t s = m.stream.s;
    if (len > m.scratch.rows) {
        LR_CUDA_CHECK(cudaStreamSynchronize(s));  // the old buffers may still be in use
        m.scratch.reserve(c, len);
        m.ids = DeviceBuffer(static_cast<size_t>(len) * sizeof(int32_t));
        m.x = DeviceBuffer(static_cast<size_t>(len * c.d_model) * sizeof(float));
    }
    const float* bias = m.bias_for(len);
    // From pageable memory: the call returns once the ids are staged, so `ids` may go.
    LR_CUDA_CHECK(cudaMemcpyAsync(m.ids.data(), ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    auto* x = static_cast<float*>(m.x.data());
    EmbeddingRowsCudaParams ep;
    ep.table = m.embedding.data();
    ep.ids = static_cast<const int32_t*>(m.ids.data());
    ep.out = x;
    ep.len = len;
    ep.dim = c.d_model;
    launch_embedding_rows(ep, s);
    const int64_t per_layer = c.num_heads * (2 * len - 1);
    for (int64_t l = 0; l < c.num_layers; ++l)
        run_layer(m.gemm, c, m.layers[static_cast<size_t>(l)], x, len, bias + l * per_layer, m.scratch, s);
    rms_norm(x, m.scratch.h.data(), m.final_norm, len, c.d_model, c.eps, s);
    return m.scratch.h.data();
}

std::vector<HostTensor> CudaUmt5Encoder::encode(const std::vector<std::vector<int32_t>>& prompts) {
    std::vector<HostTensor> out;
    for (const auto& ids : prompts) {
        const void* y = encode_async(ids);
        out.push_back(download_f32(y, static_cast<int64_t>(ids.size()), impl_->config.d_model, impl_->stream.s));
    }
    return out;
}

void CudaUmt5Encoder::save(const std::string& path) const {
    const Impl& m = *impl_;
    const Umt5Config& c = m.config;
    const Umt5Naming hf = Umt5Naming::kHuggingFace;
    std::vector<HostTensor> host;
    std::vector<NamedTensor> named;
    host.reserve(2 + static_cast<size_t>(c.num_layers) * 10);
    const auto add = [&](const DeviceBuffer& b, DType dtype, Umt5Tensor t, int64_t l) {
        HostTensor h(dtype, umt5_tensor_shape(c, t));
        LR_ASSERT(static_cast<size_t>(h.view.nbytes()) == b.size(), "CudaUmt5Encoder::save: size of ",
                  umt5_tensor_name(hf, t, l));
        LR_CUDA_CHECK(cudaMemcpy(h.view.data, b.data(), b.size(), cudaMemcpyDeviceToHost));
        host.push_back(std::move(h));
        named.push_back({umt5_tensor_name(hf, t, l), host.back().view});
    };
    add(m.embedding, DType::kBF16, Umt5Tensor::kEmbedding, 0);
    for (int64_t l = 0; l < c.num_layers; ++l) {
        const Layer& w = m.layers[static_cast<size_t>(l)];
        add(w.attn_norm, DType::kF32, Umt5Tensor::kAttnNorm, l);
        add(w.q, DType::kBF16, Umt5Tensor::kQ, l);
        add(w.k, DType::kBF16, Umt5Tensor::kK, l);
        add(w.v, DType::kBF16, Umt5Tensor::kV, l);
        add(w.o, DType::kBF16, Umt5Tensor::kO, l);
        add(w.ffn_norm, DType::kF32, Umt5Tensor::kFfnNorm, l);
        add(w.gate, DType::kBF16, Umt5Tensor::kFfnGate, l);
        add(w.up, DType::kBF16, Umt5Tensor::kFfnUp, l);
        add(w.down, DType::kBF16, Umt5Tensor::kFfnDown, l);
        HostTensor bias(DType::kF32, umt5_tensor_shape(c, Umt5Tensor::kRelBias));
        std::memcpy(bias.view.data, w.rel_bias.data(), w.rel_bias.size() * sizeof(float));
        host.push_back(std::move(bias));
        named.push_back({umt5_tensor_name(hf, Umt5Tensor::kRelBias, l), host.back().view});
    }
    add(m.final_norm, DType::kF32, Umt5Tensor::kFinalNorm, 0);
    const std::string meta =
        str_cat("{\"relative_attention_max_distance\": ", c.max_distance, ", \"layer_norm_epsilon\": ", c.eps, "}");
    write_safetensors(path, named, {{"config", meta}});
}

#endif

}  // namespace lr
