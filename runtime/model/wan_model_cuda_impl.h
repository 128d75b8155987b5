// CudaWanModel's implementation state (internal to runtime/model/wan_model_cuda*.cpp, CUDA builds only): the
// buffers of the plan, the launch helpers, the Ulysses and spatial exchanges. wan_model_cuda.cpp holds the
// construction and the forward; wan_model_cuda_spatial.cpp the spatial sharding's tables and exchanges.
#pragma once

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "kernels/block_select.h"
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
using wan_cuda::head_sharded;
using wan_cuda::kQBlock;
using wan_cuda::PlanBytes;
using wan_cuda::SpatialLayout;

struct CudaWanModel::Impl {
    wan_cuda::OwnedStream stream;
    WanModelConfig cfg;
    CudaModelOptions opts;
    int64_t gh = 0, gw = 0, tpf = 0;
    PlanBytes bytes;
    Arena arena;
    DevWeights w;
    Activations act;
    std::unique_ptr<PagedKvCache> cache;
    std::unique_ptr<GemmRunner> gemm;
    PinnedStaging forward_staging;  // timesteps f32 [F] then positions int32 [F * tpf, 3]
    PinnedStaging prompt_staging;   // bf16 [text_len, text_dim]
    WanDumpFn dump;
    // Ulysses exchange: xsend / xrecv are act.xsend / act.xrecv (device) for a device-buffer communicator, else
    // the pinned host buffers below; the events order the model's stream and the communicator's.
    void* xsend = nullptr;
    void* xrecv = nullptr;
    PinnedStaging xsend_host, xrecv_host;
    cudaEvent_t comm_ready = nullptr, comm_done = nullptr;
    // Spatial sharding (wan_model_cuda_spatial.cpp): the layout, the per-forward tables' host side (uploaded into
    // act.s_tables) and, for a host communicator, pinned mirrors of the scratch K and V and of the head gather.
    SpatialLayout sl;
    PinnedStaging spatial_staging;
    PinnedStaging skv_host;      // [2 (K, V), scratch rows, width] bf16
    PinnedStaging sgather_host;  // [S, F * max_rpf, head_out] f32

    // The sparse step (wan_model_cuda_sparse.cpp; CudaModelOptions::policy): summaries, per-forward tables in
    // one pinned staging (int32 offsets below, fixed), the retained blocks of every (layer, head) on the host.
    struct Sparse {
        bool on = false;
        std::unique_ptr<BlockPolicy> policy;
        wan_cuda::SparseSizes z;
        DeviceBuffer buf;
        float* kmean = nullptr;      // [layers][pool_blocks][heads][head_dim]
        float* change = nullptr;     // [layers][pool_blocks][heads]
        float* qmean = nullptr;      // [layers][heads][q blocks of the last forward][head_dim]
        int32_t* indices = nullptr;  // one layer's table
        float* scores = nullptr;
        int32_t* dev = nullptr;  // the staging's device copy
        PinnedStaging staging;
        int64_t o_qperm = 0, o_cand_block = 0, o_cand_group = 0, o_cand_kind = 0, o_competes = 0, o_extra_indptr = 0,
                o_extra = 0, o_indptr = 0, o_seg_begin = 0, o_seg_len = 0, o_qseg_begin = 0, o_qseg_len = 0, o_copy = 0,
                o_change = 0, o_sal = 0;
        std::vector<int64_t> ret_frame, ret_tile;  // [layers][heads][retained]: -1 empty
        WindowSelection sel;
        BlockSelectCounts counts;
        int64_t num_cand = 0, nqb = 0, last_nqb = 0, written = 0, n_change = 0;
        bool summaries = false;  // the policy scores, or retention reads the summaries
        AttentionStats stats;
        int32_t* host(int64_t offset) { return static_cast<int32_t*>(staging.data()) + offset; }
        int32_t* device(int64_t offset) const { return dev + offset; }
    } sp;
    void init_sparse();
    void sparse_retain(const KvWrite& w);
    void sparse_tables(const PagedKvPlan& plan, const CudaForwardArgs& a);
    void sparse_attend(int64_t l, int64_t L);
    void sparse_after_layers();

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
        if (comm_ready) cudaEventDestroy(comm_ready);
        if (comm_done) cudaEventDestroy(comm_done);
    }

    int64_t heads() const { return cfg.dims.num_heads; }
    int64_t head_dim() const { return cfg.dims.dim / cfg.dims.num_heads; }
    bool sharded() const { return head_sharded(opts); }
    bool spatial() const { return sl.on; }

    void upload_static_tables();
    void encode(const TensorView& context, CudaPrompt& p);

    // What one forward's launches depend on besides the arguments: filled by prepare() on the host.
    struct Geometry {
        int64_t F = 0, L = 0;    // frames, tokens of the chunk
        int64_t Ls = 0, t0 = 0;  // Ulysses: tokens per shard, this rank's first token
        int64_t n = 0, lh = 0;   // this rank's tokens and heads
        int64_t ns = 0;          // the spatial rank's tokens of the chunk (its s-list; L without spatial sharding)
        int64_t rpg = 0;         // s-list tokens per frame: the rows of one frame's modulation
        bool relative = false, sharded = false, spatial = false;
        const float* d_t = nullptr;      // timesteps on the device [F]
        const int32_t* d_pos = nullptr;  // positions of the s-list's tokens on the device [ns, 3]
        const PagedKvPlan* plan = nullptr;
        // Spatial: the key slots of the dense table, and the device tables (SpatialLayout, Activations).
        int64_t slot_end = 0;
        const int32_t* s_rows = nullptr;  // [S * F * max_rpf]: chunk token of each gathered row (-1: padding)
        const int32_t* s_indptr = nullptr;
        const int32_t* s_indices = nullptr;
    };
    void forward(const CudaForwardArgs& a);
    Geometry prepare(const CudaForwardArgs& a);
    void launch(const CudaForwardArgs& a, const Geometry& g);
    void launch_graph(const CudaForwardArgs& a, const Geometry& g);

    // ---- Ulysses exchange (sharded() only); L: the s-list's tokens, Ls: per shard, n: this rank's.
    // Runs `op` (an operation of `comm`, on xsend / xrecv or the spatial buffers) after the work enqueued so far on
    // the model's stream, and before the work enqueued after it (see the definition).
    void collective(Communicator* comm, cudaStream_t comm_stream, const std::function<void()>& op);
    void collective(const std::function<void()>& op) { collective(opts.shard.comm, opts.comm_stream, op); }
    void to_heads(int64_t L, int64_t Ls, int64_t n);
    void to_tokens(int64_t L, int64_t Ls, int64_t n);
    void gather_head(int64_t L, int64_t Ls, int64_t n, int64_t head_out);

    // ---- Spatial sharding (spatial() only; wan_model_cuda_spatial.cpp).
    void init_spatial();                           // layout, staging, static scratch tables
    void prepare_spatial(Geometry& g, int64_t F);  // per forward: the s-list's tables, uploaded
    // Layer l's K/V of the key slots from every spatial rank into the scratch pools; returns the keys to attend
    // (the scratch K, or its re-rotated copy).
    const void* assemble_kv(int64_t l, const Geometry& g);
    // act.tmp [n rows of the s-list, head_out] (all ns rows after the Ulysses gather) -> [L, head_out] rows of
    // the whole chunk in token order.
    void gather_head_spatial(const Geometry& g, int64_t head_out);
    void copy(void* dst, const void* src, size_t bytes) {
        if (bytes > 0) LR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream.s));
    }
    void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t rows) {
        if (width > 0 && rows > 0)
            LR_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDefault, stream.s));
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
