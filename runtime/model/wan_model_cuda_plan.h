// The device memory plan of CudaWanModel (internal to wan_model_cuda.cpp): which buffers exist, their shapes,
// and how many bytes they take. One layout function per group walks the buffers in a fixed order through a
// Planner, which either only counts (the plan: CudaWanModel::device_bytes, the fit check) or hands out memory
// from the model's arena; counting and allocating therefore cannot disagree. Plain arithmetic: it compiles
// without CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/paged_kv_cache.h"
#include "runtime/core/tensor.h"
#include "runtime/model/wan_model_cuda.h"

namespace lr::wan_cuda {

constexpr size_t kAlign = 256;                       // Arena's alignment
constexpr size_t kGemmWorkspace = size_t{32} << 20;  // cuBLASLt workspace (GemmRunner)
constexpr size_t kHeadroom = size_t{64} << 20;       // cuBLASLt handle, kernels' static data: not in the plan
constexpr int64_t kQBlock = 128;                     // query rows per block-table row (the attention kernel's)

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// InputError naming the first model number or option the CUDA path cannot run.
void check_options(const WanModelConfig& cfg, const CudaModelOptions& o);
int64_t tokens_per_frame_of(const WanModelConfig& cfg, const CudaModelOptions& o);
// The sparse step (CudaModelOptions::policy other than DENSE / SINK_WINDOW) and its policy for these options.
bool sparse_step(const CudaModelOptions& o);
std::unique_ptr<BlockPolicy> make_policy(const WanModelConfig& cfg, const CudaModelOptions& o);
// The sparse step's device buffers (summaries, tables), outside the activation arena.
struct SparseSizes {
    int64_t layers = 0, heads = 0, head_dim = 0, pool_blocks = 0, max_q_blocks = 0, window_blocks = 0, retained = 0,
            row_cap = 0, frames = 0, tiles = 0;
    int64_t kmean = 0, change = 0, qmean = 0, indices = 0, scores = 0;  // elements
    int64_t staging_ints = 0;                                           // per-forward tables uploaded in one copy
    size_t bytes() const;
};
SparseSizes sparse_sizes(const WanModelConfig& cfg, const CudaModelOptions& o);
PagedKvCacheConfig paged_config(const WanModelConfig& cfg, const CudaModelOptions& o);
// Blocks of CudaPrompt::kCrossBlock rows the prompt's text_len rows take.
int64_t text_blocks(const WanModelConfig& cfg);
// Ulysses: whether the forward exchanges through shard.comm, and the largest token shard (ceil(L / U) of the
// largest forward, L: the rank's tokens of the chunk, all of them without spatial sharding) and exchange (bytes per
// buffer: the q/k/v all-to-all or the head's all-gather).
inline bool head_sharded(const CudaModelOptions& o) { return o.shard.comm != nullptr; }
int64_t max_shard_tokens(const WanModelConfig& cfg, const CudaModelOptions& o);
size_t exchange_bytes(const WanModelConfig& cfg, const CudaModelOptions& o);

// Spatial sharding (CudaModelOptions.spatial with a communicator): who owns which blocks, and the scratch pool
// in which a layer's K/V of the window are assembled. Global block b (of `block` tokens; nb per frame, the last
// one short when tpf is not a multiple) belongs to rank b % S as its local block b / S; rank r has nbl[r] blocks
// and rpf[r] tokens per frame, and its paged cache holds frames of rpf[r] tokens (its blocks, in order: only
// the frame's last block can be short, and it is its owner's last). The scratch pool has one segment per rank
// of `slots` frames: slot j of rank r's blocks is at block seg_base(r) + j * nbl[r] (rank r's cache page of
// slot j, copied whole), so a rank's pages of slots [0, k) are one contiguous range: what it sends.
struct SpatialLayout {
    bool on = false;  // a spatial communicator is set (even of size 1)
    int S = 1, s = 0;
    int64_t block = 0, tpf = 0, nb = 0;
    std::vector<int64_t> rpf, nbl;  // per rank
    int64_t max_rpf = 0, nbmax = 0;
    int64_t slots = 0;  // frames of the cache (its max_frames)
    int64_t seg_blocks() const { return slots * nbmax; }
    int64_t seg_base(int64_t r) const { return r * seg_blocks(); }
    int64_t scratch_blocks() const { return S * seg_blocks(); }
    // Scratch block of global block b of slot j.
    int64_t scratch_block(int64_t j, int64_t b) const { return seg_base(b % S) + j * nbl[b % S] + b / S; }
    int64_t my_rpf() const { return rpf[static_cast<size_t>(s)]; }
    int64_t my_nbl() const { return nbl[static_cast<size_t>(s)]; }
};
inline bool spatial_sharded(const CudaModelOptions& o) { return o.spatial.comm != nullptr; }
// slots: the cache's frames (paged_config's max_frames raised to the window: KvWindow::max_frames()).
SpatialLayout spatial_layout(const WanModelConfig& cfg, const CudaModelOptions& o, int64_t slots);
// Tokens of a frame this rank computes and caches: its spatial blocks' (rpf), or the whole frame.
int64_t rank_tokens_per_frame(const WanModelConfig& cfg, const CudaModelOptions& o);
int64_t max_cache_frames(const WanModelConfig& cfg, const CudaModelOptions& o);

// Hands out device memory in a fixed order: only counting (no arena) or from an arena, optionally zeroing what
// it hands out.
class Planner {
  public:
    explicit Planner(Arena* arena) : arena_(arena) {}
    void* take(size_t bytes, const char* what);
    float* f32(int64_t n, const char* what) { return static_cast<float*>(take(static_cast<size_t>(n) * 4, what)); }
    void* bf16(int64_t n, const char* what) { return take(static_cast<size_t>(n) * 2, what); }
    int32_t* i32(int64_t n, const char* what) { return static_cast<int32_t*>(take(static_cast<size_t>(n) * 4, what)); }
    size_t total() const { return total_; }
    bool zero = false;

  private:
    Arena* arena_;
    size_t total_ = 0;
};

struct DevLinear {
    void* w = nullptr;   // bf16 [out, in]
    float* b = nullptr;  // f32 [out]
    int64_t out = 0;
    int64_t in = 0;
};

struct DevBlock {
    float* modulation = nullptr;  // [6, dim]
    DevLinear qkv;                // self-attention q, k, v fused: [3 dim, dim], rows q then k then v
    DevLinear self_o;
    float* norm_q = nullptr;
    float* norm_k = nullptr;
    float* norm3_w = nullptr;
    float* norm3_b = nullptr;
    DevLinear cross_q, cross_k, cross_v, cross_o;
    float* cross_norm_q = nullptr;
    float* cross_norm_k = nullptr;
    DevLinear ffn0, ffn2;
};

// bf16 matrices (Linear weights, the patch embedding's Conv3d as [dim, in_dim * pt * ph * pw]), f32 vectors.
struct DevWeights {
    DevLinear patch, text0, text2, time0, time2, time_proj, head;
    float* head_modulation = nullptr;  // [2, dim]
    std::vector<DevBlock> blocks;
};

void lay_out_weights(Planner& p, const WanModelConfig& cfg, DevWeights& w);

// Activations for max_forward_frames (rows rounded up to whole 128-query blocks: the attention kernel's tiles
// may read the last block's rows past q_len), the per-forward inputs, the static tables and prompt scratch.
struct Activations {
    int64_t rows = 0;                    // Lp: max_forward_frames * tokens_per_frame, rounded up to 128
    int64_t tmp_width = 0;               // columns of tmp
    float* x = nullptr;                  // [rows, dim] the residual stream
    void* h = nullptr;                   // bf16 [rows, dim] normed input of the GEMMs
    float* tmp = nullptr;                // [rows, tmp_width] GEMM outputs: q|k|v, o-proj, FFN out, head out
    void* q = nullptr;                   // bf16 [rows, dim]
    void* attn = nullptr;                // bf16 [rows, dim] attention output
    void* ffn = nullptr;                 // bf16 [rows, ffn_dim]
    void* patches = nullptr;             // bf16 [rows, in_dim * pt * ph * pw]
    float* sinusoid = nullptr;           // [F, freq_dim]
    void* sinusoid_bf = nullptr;         // bf16 [F, freq_dim]
    float* t_hidden = nullptr;           // [F, dim]
    void* t_act = nullptr;               // bf16 [F, dim] silu(...) feeding a GEMM
    float* e = nullptr;                  // [F, dim]
    float* e0 = nullptr;                 // [F, 6, dim]
    float* mod = nullptr;                // [F, 6, dim] a block's modulation + e0
    float* head_shift = nullptr;         // [F, dim]
    float* head_scale = nullptr;         // [F, dim]
    float* forward_in = nullptr;         // timesteps f32 [F] then positions int32 [F * tokens_per_frame, 3]
    int32_t* slot_positions = nullptr;   // [max_frames * tokens_per_frame, 3] (window-relative RoPE only)
    int32_t* cross_block_len = nullptr;  // the prompt's K/V as blocks of 128 rows: [text blocks]
    int32_t* cross_indptr = nullptr;     // [max q blocks + 1]
    int32_t* cross_indices = nullptr;    // [max q blocks * text blocks]
    void* ctx = nullptr;                 // bf16 [text_len, text_dim]
    void* text_hidden = nullptr;         // bf16 [text_len, dim]
    void* text = nullptr;                // bf16 [text_len, dim]
    float* text_tmp = nullptr;           // [text_len, dim]
    // Ulysses (head_sharded) only: all tokens of the rank's heads, rows rounded as `rows` and to U whole shards
    // (oh is the all-to-all's send layout as it stands), and, for a device-buffer communicator, the exchange
    // buffers (for another communicator they are pinned host memory, outside the device plan).
    int64_t head_rows = 0;  // max(rows, U * max_shard_tokens)
    void* qh = nullptr;     // bf16 [head_rows, dim / U]
    void* kh = nullptr;
    void* vh = nullptr;
    void* oh = nullptr;
    void* xsend = nullptr;  // [exchange_bytes]
    void* xrecv = nullptr;
    // Spatial sharding (SpatialLayout) only: the assembled K and V of one layer (bf16 [scratch_blocks * block,
    // dim / U]), the re-rotated keys (window-relative RoPE), the scratch blocks' lengths and, for RoPE, every
    // scratch row's (slot, row, col); per forward the block table over the scratch and the gathered order's
    // chunk tokens; the head's all-gather over the spatial ranks.
    void* sk = nullptr;
    void* sv = nullptr;
    void* sk_rot = nullptr;
    int32_t* s_block_len = nullptr;  // [scratch_blocks]
    int32_t* s_positions = nullptr;  // [scratch_blocks * block, 3]
    int64_t s_table_rows = 0;        // query blocks of the largest forward's s-list
    int64_t s_table_cols = 0;        // slots * nb
    int32_t* s_tables = nullptr;     // s_rows [S * F * max_rpf] | indptr [s_table_rows + 1] | indices [rows * cols]
    float* s_gather = nullptr;       // f32 [S * F * max_rpf, head_out]
};
// Int32 elements of Activations::s_tables.
int64_t spatial_table_ints(const WanModelConfig& cfg, const CudaModelOptions& o, int64_t slots);

// max_frames: the KV cache's frames (its config after raising max_frames to the window).
void lay_out_activations(Planner& p, const WanModelConfig& cfg, const CudaModelOptions& o, int64_t max_frames,
                         Activations& a);

struct PlanBytes {
    size_t weights = 0, activations = 0, kv = 0, kv_pools = 0, workspace = kGemmWorkspace, prompt = 0, sparse = 0;
    size_t total() const { return weights + activations + kv + workspace + prompt + sparse; }
};

// The whole plan; InputError for options the CUDA path cannot run.
PlanBytes plan_bytes(const WanModelConfig& cfg, const CudaModelOptions& o);

}  // namespace lr::wan_cuda
