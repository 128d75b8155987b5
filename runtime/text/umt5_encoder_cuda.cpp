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
#include "runtime/core/cuda_check.h"
#include "runtime/core/device.h"
#endif

namespace lr {

#ifndef LONGROLL_HAS_CUDA

std::vector<HostTensor> encode_umt5_cuda(const Umt5Encoder&, const std::vector<std::vector<int32_t>>&, int) {
    detail::throw_runtime_error("the UMT5 encoder on the GPU: this longroll was built without CUDA");
}

#else

namespace {

// A checkpoint tensor on the device as `dtype` (kBF16 for matrices, kF32 for norm weights), checked for NaN/Inf.
DeviceBuffer upload(const SafetensorsCheckpoint& ckpt, const std::string& name, DType dtype, cudaStream_t s) {
    const TensorView src = ckpt.view(name);
    HostTensor f32(DType::kF32, src.shape);
    cast(src, f32.view);
    const float* v = f32.as<float>();
    for (int64_t i = 0; i < src.numel(); ++i)
        LR_CHECK(std::isfinite(v[i]), ckpt.path(), ": UMT5 encoder tensor '", name, "' holds NaN or Inf");
    HostTensor host(dtype, src.shape);
    if (dtype == DType::kF32) {
        host = std::move(f32);
    } else {
        cast(f32.view, host.view);
    }
    DeviceBuffer buf(static_cast<size_t>(host.view.nbytes()));
    LR_CUDA_CHECK(cudaMemcpyAsync(buf.data(), host.view.data, static_cast<size_t>(host.view.nbytes()),
                                  cudaMemcpyHostToDevice, s));
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

}  // namespace

std::vector<HostTensor> encode_umt5_cuda(const Umt5Encoder& enc, const std::vector<std::vector<int32_t>>& prompts,
                                         int device) {
    const Umt5Config& c = enc.config();
    const SafetensorsCheckpoint& ckpt = enc.checkpoint();
    const Umt5Naming naming = enc.naming();
    const int64_t d = c.d_model, inner = c.inner_dim(), H = c.num_heads;
    LR_CHECK(d % 2 == 0, ckpt.path(), ": the GPU encoder needs an even d_model, found ", d);
    cuda_use_device(device);
    cudaStream_t s = nullptr;
    LR_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    struct StreamGuard {
        cudaStream_t s;
        ~StreamGuard() { cudaStreamDestroy(s); }
    } guard{s};
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

    // Scratch for the longest prompt (bf16 activations, the bias table).
    const size_t bf = 2;
    DeviceBuffer h(static_cast<size_t>(max_len * d) * bf), q(static_cast<size_t>(max_len * inner) * bf), k(q.size()),
        v(q.size()), attn(q.size()), gate(static_cast<size_t>(max_len * c.d_ff) * bf), up(gate.size()),
        bias_dev(static_cast<size_t>(H * (2 * max_len - 1)) * sizeof(float));
    std::vector<float> bias_host(static_cast<size_t>(H * (2 * max_len - 1)));

    for (int64_t l = 0; l < c.num_layers; ++l) {
        const auto name = [&](Umt5Tensor t) { return umt5_tensor_name(naming, t, l); };
        const DeviceBuffer attn_norm = upload(ckpt, name(Umt5Tensor::kAttnNorm), DType::kF32, s);
        const DeviceBuffer wq = upload(ckpt, name(Umt5Tensor::kQ), DType::kBF16, s);
        const DeviceBuffer wk = upload(ckpt, name(Umt5Tensor::kK), DType::kBF16, s);
        const DeviceBuffer wv = upload(ckpt, name(Umt5Tensor::kV), DType::kBF16, s);
        const DeviceBuffer wo = upload(ckpt, name(Umt5Tensor::kO), DType::kBF16, s);
        const DeviceBuffer ffn_norm = upload(ckpt, name(Umt5Tensor::kFfnNorm), DType::kF32, s);
        const DeviceBuffer wgate = upload(ckpt, name(Umt5Tensor::kFfnGate), DType::kBF16, s);
        const DeviceBuffer wup = upload(ckpt, name(Umt5Tensor::kFfnUp), DType::kBF16, s);
        const DeviceBuffer wdown = upload(ckpt, name(Umt5Tensor::kFfnDown), DType::kBF16, s);
        // The relative position bias [num_buckets, heads] stays on the host: each prompt's table by offset.
        const std::string bias_name = name(Umt5Tensor::kRelBias);
        const TensorView bsrc = ckpt.view(bias_name);
        HostTensor rel(DType::kF32, bsrc.shape);
        cast(bsrc, rel.view);
        for (int64_t i = 0; i < bsrc.numel(); ++i)
            LR_CHECK(std::isfinite(rel.as<float>()[i]), ckpt.path(), ": UMT5 encoder tensor '", bias_name,
                     "' holds NaN or Inf");
        for (size_t pi = 0; pi < xs.size(); ++pi) {
            float* x = static_cast<float*>(xs[pi].data());
            const int64_t len = lens[pi], offsets = 2 * len - 1;
            for (int64_t r = -(len - 1); r <= len - 1; ++r) {
                const int64_t bucket = umt5_relative_bucket(r, c.num_buckets, c.max_distance);
                for (int64_t hd = 0; hd < H; ++hd)
                    bias_host[static_cast<size_t>(hd * offsets + r + len - 1)] = rel.as<float>()[bucket * H + hd];
            }
            LR_CUDA_CHECK(cudaMemcpyAsync(bias_dev.data(), bias_host.data(),
                                          static_cast<size_t>(H * offsets) * sizeof(float), cudaMemcpyHostToDevice, s));
            // Self-attention with this layer's relative position bias, unscaled.
            rms_norm(x, h.data(), attn_norm, len, d, c.eps, s);
            gemm(g, h.data(), wq, q.data(), DType::kBF16, len, d, inner, false, s);
            gemm(g, h.data(), wk, k.data(), DType::kBF16, len, d, inner, false, s);
            gemm(g, h.data(), wv, v.data(), DType::kBF16, len, d, inner, false, s);
            RelativeBiasAttentionCudaParams ap;
            ap.q = q.data();
            ap.k = k.data();
            ap.v = v.data();
            ap.out = attn.data();
            ap.rel_bias = static_cast<const float*>(bias_dev.data());
            ap.len = len;
            ap.heads = H;
            ap.head_dim = c.d_kv;
            launch_relative_bias_attention(ap, s);
            gemm(g, attn.data(), wo, x, DType::kF32, len, inner, d, /*accumulate=*/true, s);
            // Gated-GELU FFN.
            rms_norm(x, h.data(), ffn_norm, len, d, c.eps, s);
            gemm(g, h.data(), wgate, gate.data(), DType::kBF16, len, d, c.d_ff, false, s);
            gemm(g, h.data(), wup, up.data(), DType::kBF16, len, d, c.d_ff, false, s);
            launch_gated_gelu(gate.data(), up.data(), gate.data(), len * c.d_ff, s);
            gemm(g, gate.data(), wdown, x, DType::kF32, len, c.d_ff, d, /*accumulate=*/true, s);
            // bias_host is rewritten for the next prompt: its upload must be done.
            LR_CUDA_CHECK(cudaStreamSynchronize(s));
        }
    }
    const DeviceBuffer final_norm = upload(ckpt, umt5_tensor_name(naming, Umt5Tensor::kFinalNorm), DType::kF32, s);
    std::vector<HostTensor> out;
    for (size_t pi = 0; pi < xs.size(); ++pi) {
        const int64_t len = lens[pi];
        rms_norm(static_cast<const float*>(xs[pi].data()), h.data(), final_norm, len, d, c.eps, s);
        HostTensor b16(DType::kBF16, Shape{len, d});
        LR_CUDA_CHECK(cudaMemcpyAsync(b16.view.data, h.data(), static_cast<size_t>(b16.view.nbytes()),
                                      cudaMemcpyDeviceToHost, s));
        LR_CUDA_CHECK(cudaStreamSynchronize(s));
        HostTensor f32(DType::kF32, Shape{len, d});
        cast(b16.view, f32.view);
        out.push_back(std::move(f32));
    }
    return out;
}

#endif

}  // namespace lr
