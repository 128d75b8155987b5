// CudaWanModel's implementation state (internal to runtime/model/wan_model_cuda.cpp, CUDA builds only): the
// buffers of the plan, the attention step the forwards go through, the launch helpers.
#pragma once

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dit_ops_cuda.h"
#include "kernels/gemm_cuda.h"
#include "kernels/paged_attention.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"
#include "runtime/model/wan_model_cuda.h"
#include "runtime/model/wan_model_cuda_plan.h"

namespace lr {

namespace wan_cuda {

// Owns the stream; destroyed last (declared first in Impl), after the work on it has finished.
struct OwnedStream {
    cudaStream_t s = nullptr;
    // The highest priority: a VAE decoding on the same GPU (lowest priority) runs in the DiT's gaps instead of
    // slowing every DiT kernel down.
    OwnedStream() {
        int least = 0, greatest = 0;
        LR_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        LR_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, greatest));
    }
    ~OwnedStream() {
        if (s) {
            cudaStreamSynchronize(s);
            cudaStreamDestroy(s);
        }
    }
    OwnedStream(const OwnedStream&) = delete;
    OwnedStream& operator=(const OwnedStream&) = delete;
};

}  // namespace wan_cuda

using wan_cuda::Activations;
using wan_cuda::DevLinear;
using wan_cuda::DevWeights;
using wan_cuda::kQBlock;
using wan_cuda::PlanBytes;

struct CudaWanModel::Impl {
    wan_cuda::OwnedStream stream;
    WanModelConfig cfg;
    CudaModelOptions opts;
    int64_t gh = 0, gw = 0, tpf = 0;
    PlanBytes bytes;
    Arena arena;
    DevWeights w;
    Activations act;
    // The attention seam: the step the model built (CudaModelOptions::step null), and the one it uses.
    std::unique_ptr<CudaLocalAttentionStep> own_step;
    CudaAttentionStep* step = nullptr;
    std::unique_ptr<GemmRunner> gemm;
    PinnedStaging forward_staging;  // timesteps f32 [F], positions int32 [F * tpf, 3], tokens int32 [F * tpf]
    PinnedStaging prompt_staging;   // bf16 [text_len, text_dim]
    WanDumpFn dump;

    // CUDA graphs of the forward's launches (see forward()): one per key, least recently used evicted.
    struct GraphKey {
        int64_t frames = 0;
        const void* x = nullptr;
        const void* out = nullptr;
        const void* prompt = nullptr;
        int64_t kv_tokens = 0;  // window-relative RoPE re-rotates this many cached rows (a launch size)
        bool operator==(const GraphKey&) const = default;
    };
    struct CachedGraph {
        GraphKey key;
        cudaGraphExec_t exec = nullptr;  // null: seen once, run eagerly
        uint64_t last_use = 0;
    };
    static constexpr size_t kMaxGraphs = 16;
    bool use_graphs = true;
    std::vector<CachedGraph> graphs;
    uint64_t graph_clock = 0;
    CudaGraphStats graph_stats;

    Impl(const WanModelConfig& c, const CudaModelOptions& o, const WanModel* host, uint64_t seed);
    ~Impl() {  // before the members' memory goes
        cudaStreamSynchronize(stream.s);
        for (CachedGraph& g : graphs)
            if (g.exec) cudaGraphExecDestroy(g.exec);
    }

    int64_t heads() const { return cfg.dims.num_heads; }
    int64_t head_dim() const { return cfg.dims.dim / cfg.dims.num_heads; }

    void upload_static_tables();
    void encode(const TensorView& context, CudaPrompt& p);

    // What one forward's launches depend on besides the arguments: filled by prepare() on the host.
    struct Geometry {
        int64_t F = 0, L = 0;  // frames, tokens of the chunk
        int64_t n = 0;         // this worker's tokens (L unless the step shares tokens)
        bool relative = false, shares = false;
        const float* d_t = nullptr;         // timesteps on the device [F]
        const int32_t* d_pos = nullptr;     // positions of the worker's tokens on the device [n, 3]
        const int32_t* d_tokens = nullptr;  // the worker's tokens on the device [n] (shares only)
        // The worker's rows by frame, for the per-frame modulation: rows [row0, row0 + rows) take frame `frame`'s
        // (then row0 + rows_per_group further on). One run of every frame's rows (rows_per_group tpf) unless the
        // step shares tokens, whose rows come frame by frame in uneven counts.
        struct Run {
            int64_t row0 = 0, rows = 0, frame = 0, rows_per_group = 1;
        };
        std::vector<Run> runs;
    };
    void forward(const CudaForwardArgs& a);
    Geometry prepare(const CudaForwardArgs& a);
    void launch(const CudaForwardArgs& a, const Geometry& g);
    void launch_graph(const CudaForwardArgs& a, const Geometry& g);
    // y (bf16) = LN(x) * (1 + scale_f) + shift_f over the worker's rows, frame by frame (mod: frame f's shift at
    // shift + f * mod_stride, likewise scale); x += y * gate_f.
    void modulated_norm(const float* x, void* y, const Geometry& g, const float* shift, const float* scale,
                        int64_t mod_stride) {
        for (const Geometry::Run& r : g.runs)
            layer_norm(x + r.row0 * cfg.dims.dim,
                       static_cast<char*>(y) + static_cast<size_t>(r.row0 * cfg.dims.dim) * 2, r.rows, nullptr, nullptr,
                       shift + r.frame * mod_stride, scale + r.frame * mod_stride, r.rows_per_group, mod_stride);
    }
    void gated_residual(float* x, const float* y, const Geometry& g, const float* gate, int64_t mod_stride) {
        for (const Geometry::Run& r : g.runs)
            residual(x + r.row0 * cfg.dims.dim, y + r.row0 * cfg.dims.dim, r.rows, gate + r.frame * mod_stride,
                     mod_stride, 0, r.rows_per_group);
    }

    // ---- launch helpers (stream-ordered) ----
    void linear(const void* x, const DevLinear& l, int64_t m, void* y, DType y_dtype,
                GemmEpilogue ep = GemmEpilogue::kBias, bool accumulate = false) {
        CudaGemmParams p;
        p.x = x;
        p.w = l.w;
        p.bias = l.b;
        p.y = y;
        p.y_dtype = y_dtype;
        p.m = m;
        p.n = l.out;
        p.k = l.in;
        p.epilogue = ep;
        p.accumulate = accumulate;
        gemm->run(p, stream.s);
    }
    // y (bf16) = LN(x) [* weight + bias] [* (1 + scale_g) + shift_g], g = row / rows_per_group.
    void layer_norm(const float* x, void* y, int64_t rows, const float* weight, const float* bias, const float* shift,
                    const float* scale, int64_t rows_per_group, int64_t mod_stride, int64_t row0 = 0) {
        LayerNormModParams p;
        p.x = x;
        p.y = y;
        p.rows = rows;
        p.dim = cfg.dims.dim;
        p.eps = static_cast<float>(cfg.eps);
        p.weight = weight;
        p.bias = bias;
        p.shift = shift;
        p.scale = scale;
        p.rows_per_group = rows_per_group;
        p.mod_stride = mod_stride;
        p.row0 = row0;
        launch_layer_norm_mod(p, stream.s);
    }
    // Per row: [RMSNorm] [RoPE at positions] -> bf16, row r from x row src_row[r] to y row dst_row[r]. Rows are
    // `heads` heads wide (0: all of the model's).
    void norm_rope(const void* x, DType x_dtype, int64_t x_stride, const int32_t* src_row, void* y,
                   const int32_t* dst_row, const float* norm_weight, const int32_t* positions, int64_t rows,
                   int64_t heads_ = 0) {
        NormRopeParams p;
        p.x = x;
        p.x_dtype = x_dtype;
        p.x_stride = x_stride;
        p.src_row = src_row;
        p.y = y;
        p.dst_row = dst_row;
        p.norm_weight = norm_weight;
        p.eps = static_cast<float>(cfg.eps);
        p.positions = positions;
        p.rows = rows;
        p.heads = heads_ > 0 ? heads_ : heads();
        p.head_dim = head_dim();
        launch_norm_rope(p, stream.s);
    }
    // x += y * gate_g (g = (row0 + row) / rows_per_group, gate rows mod_stride apart), or x += y without a gate.
    void residual(float* x, const float* y, int64_t rows, const float* gate, int64_t mod_stride, int64_t row0,
                  int64_t rows_per_group) {
        GatedResidualParams p;
        p.x = x;
        p.y = y;
        p.y_dtype = DType::kF32;
        p.rows = rows;
        p.dim = cfg.dims.dim;
        p.gate = gate;
        p.rows_per_group = rows_per_group;
        p.mod_stride = mod_stride;
        p.row0 = row0;
        launch_gated_residual(p, stream.s);
    }
    void silu_to_bf16(const float* x, void* y, int64_t n) {
        UnaryParams p;
        p.x = x;
        p.x_dtype = DType::kF32;
        p.y = y;
        p.y_dtype = DType::kBF16;
        p.n = n;
        p.op = UnaryOp::kSilu;
        launch_unary(p, stream.s);
    }
    void attention(const void* q, void* out, const void* k, const void* v, const int32_t* block_len,
                   const int32_t* indptr, const int32_t* indices, int64_t q_len, int64_t block_size,
                   int64_t heads_ = 0) {
        PagedAttentionParams p;
        p.q = q;
        p.out = out;
        p.k = k;
        p.v = v;
        p.block_len = block_len;
        p.indptr = indptr;
        p.indices = indices;
        p.table_heads = 1;
        p.q_len = static_cast<int>(q_len);
        p.heads = static_cast<int>(heads_ > 0 ? heads_ : heads());
        p.head_dim = static_cast<int>(head_dim());
        p.block_size = static_cast<int>(block_size);
        p.q_block = static_cast<int>(kQBlock);
        launch_paged_attention(p, stream.s);
    }
    // Copies a device tensor to the host as f32 and hands it to the dump hook (synchronous; tests only).
    void dump_device(const std::string& name, const void* data, DType dtype, const Shape& shape) {
        LR_CUDA_CHECK(cudaStreamSynchronize(stream.s));
        const int64_t n = shape.numel();
        std::vector<float> host(static_cast<size_t>(n));
        if (dtype == DType::kF32) {
            LR_CUDA_CHECK(cudaMemcpy(host.data(), data, host.size() * 4, cudaMemcpyDeviceToHost));
        } else {
            std::vector<uint16_t> bf(static_cast<size_t>(n));
            LR_CUDA_CHECK(cudaMemcpy(bf.data(), data, bf.size() * 2, cudaMemcpyDeviceToHost));
            for (size_t i = 0; i < bf.size(); ++i) host[i] = bf16_bits_to_f32(bf[i]);
        }
        dump(name, host.data(), shape);
    }
};

}  // namespace lr

#endif  // LONGROLL_HAS_CUDA
