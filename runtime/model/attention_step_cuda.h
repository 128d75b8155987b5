// The attention seam of the CUDA model (DESIGN.md section 2; attention_step.h is the CPU twin). Per layer the
// model writes its tokens' q, k, v (bf16, after RMSNorm; q after RoPE, k after RoPE in absolute mode) where the
// step asks (qkv()), then calls attend(), which leaves the tokens' attention output in the model's buffer. The
// model never learns which policy runs, how the cache is laid out, or how many ranks share the work:
//
//   CudaLocalAttentionStep (here): one GPU. The paged KV cache (cache/paged_kv_cache.h) with the dense table
//     (DENSE, SINK_WINDOW) or the sparse step (every other policy: device summaries, selection and per-head
//     tables, attention_step_cuda_sparse.cpp). q/k/v go straight into its buffers and pools (no copy), its
//     launches are stream-ordered and, for the dense table, graph-capturable.
//   ShardedCudaAttentionStep (dist/sharded_attention_step_cuda.h): a worker of a U x S sequence-parallel group;
//     it gives the model a share of the tokens and owns every exchange.
//
// A step that shares tokens (shares_tokens()) lists the forward's tokens this worker computes (tokens(): model
// order, frame by frame, row by row, in its rows' order); the model runs its per-token layers on them only and
// calls gather() once per forward to assemble every worker's head rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/block_policy.h"
#include "cache/paged_kv_cache.h"
#include "cache/tile_layout.h"
#include "runtime/core/stream.h"
#include "runtime/core/tensor.h"
#include "runtime/model/attention_step.h"
#include "runtime/model/wan_model.h"

namespace lr {

// Query rows per block-table row: the attention kernel's query tile, and the unit spatial ranks share.
constexpr int64_t kCudaQBlock = 128;

// Where the model writes layer l's q, k and v: row r of its tokens goes to row q_row[r] of q and row kv_row[r]
// of k and v (null: row r; a negative entry skips the row, LongLive's protected sink). Rows are heads * head_dim
// bf16 wide.
struct CudaQkvTarget {
    void* q = nullptr;
    const int32_t* q_row = nullptr;
    void* k = nullptr;
    void* v = nullptr;
    const int32_t* kv_row = nullptr;
};

class CudaAttentionStep {
  public:
    virtual ~CudaAttentionStep() = default;
    // Host: plans the forward (evictions, retention, tables) and enqueues its uploads on `stream`, the model's,
    // on which every later call of the forward enqueues too. Returns where the frames land (window-relative RoPE
    // positions count from slot_begin).
    virtual KvWrite begin(const AttentionForward& f, Stream stream) = 0;
    virtual bool shares_tokens() const { return false; }
    // After begin(), shares_tokens() only.
    virtual const std::vector<int64_t>& tokens() const { return no_tokens_; }
    virtual CudaQkvTarget qkv(int64_t layer) = 0;
    // out: bf16 [n, heads * head_dim], this worker's tokens (all of the forward's unless shares_tokens()). A
    // worker with no tokens still calls it: its peers exchange with it.
    virtual void attend(int64_t layer, void* out) = 0;
    // After the layers (still on the forward's stream).
    virtual void end() {}
    // mine: device f32 [tokens().size(), width] -> all: device f32 [forward tokens, width] in model order, on
    // every worker (shares_tokens() only).
    virtual void gather(const float* mine, int64_t width, float* all) {
        (void)mine;
        (void)width;
        (void)all;
    }
    // Whether the forward's launches may be captured in a CUDA graph, and what, besides the model's buffers and
    // the frame count, their sizes depend on (graph_key: window-relative RoPE re-rotates that many cached rows).
    virtual bool capturable() const { return false; }
    virtual int64_t graph_key() const { return 0; }
    virtual AttentionStats stats() const = 0;
    virtual int64_t num_heads() const = 0;  // the model's heads (the width of qkv() rows)
    virtual RopePositions rope() const = 0;
    // Frames the step's cache holds after the last forward, and how many it can hold (metrics).
    virtual int64_t cached_frames() const = 0;
    virtual int64_t max_cached_frames() const = 0;
    // Device bytes of K/V the step planned (the pools, retained blocks included).
    virtual size_t kv_bytes() const = 0;
    // A new run whose first frame is `first_frame` (CudaRollout::run: a new video, a resume): the cache, the
    // retained blocks of every (layer, head) and the stats are forgotten. A prompt switch's re-cache does not reset.
    virtual void reset(int64_t first_frame = 0) = 0;

  private:
    std::vector<int64_t> no_tokens_;
};

// One GPU's step (see the header): what the model needs to plan it.
struct CudaAttentionStepConfig {
    int64_t num_layers = 0;
    int64_t num_heads = 0;
    int64_t head_dim = 0;
    int64_t grid_rows = 0;  // patches per frame: rows x cols
    int64_t grid_cols = 0;
    int64_t block_size = 128;  // tokens per KV block (a multiple of 64 when head_dim is 128)
    // The KV cache, as KvCacheConfig: window (local_attn_size, -1 = never evict), sink, storage in frames.
    int64_t window_frames = -1;
    int64_t sink_frames = 0;
    int64_t max_frames = 0;
    int64_t max_write_frames = 3;  // the largest forward
    RopePositions rope = RopePositions::kAbsolute;
    // Block-sparse attention: every policy but DENSE / SINK_WINDOW runs the sparse step (absolute or window-relative
    // RoPE), its geometry from frames_per_chunk and run_frames.
    BlockPolicyConfig policy;
    int64_t frames_per_chunk = 3;
    int64_t run_frames = 0;
};

// The sparse step (any policy but DENSE / SINK_WINDOW) and its policy for this config.
bool cuda_sparse_step(const CudaAttentionStepConfig& c);
std::unique_ptr<BlockPolicy> make_cuda_policy(const CudaAttentionStepConfig& c);
PagedKvCacheConfig paged_config_of(const CudaAttentionStepConfig& c);

class CudaLocalAttentionStep final : public CudaAttentionStep {
  public:
    // Allocates the cache, the sparse step's buffers and the q / output scratch (no allocation after this).
    explicit CudaLocalAttentionStep(const CudaAttentionStepConfig& cfg);
    ~CudaLocalAttentionStep() override;
    CudaLocalAttentionStep(const CudaLocalAttentionStep&) = delete;
    CudaLocalAttentionStep& operator=(const CudaLocalAttentionStep&) = delete;
    // InputError naming the field the CUDA step cannot run; the device memory it plans.
    static void check(const CudaAttentionStepConfig& cfg);
    static size_t device_bytes(const CudaAttentionStepConfig& cfg);

    KvWrite begin(const AttentionForward& f, Stream stream) override;
    CudaQkvTarget qkv(int64_t layer) override;
    void attend(int64_t layer, void* out) override;
    void end() override;
    bool capturable() const override;
    int64_t graph_key() const override;
    AttentionStats stats() const override;
    int64_t num_heads() const override { return cfg_.num_heads; }
    RopePositions rope() const override { return cfg_.rope; }
    int64_t cached_frames() const override;
    int64_t max_cached_frames() const override;
    size_t kv_bytes() const override;
    void reset(int64_t first_frame = 0) override;

    const CudaAttentionStepConfig& config() const { return cfg_; }
    const PagedKvCache& cache() const;
    bool sparse() const;
    // Whether the sparse step computes block summaries (mean keys; mean queries for scoring and salience): the
    // policies that score blocks or retain by a score.
    bool uses_summaries() const;
    int64_t tokens_per_frame() const { return cfg_.grid_rows * cfg_.grid_cols; }
    // Query blocks of the forward in flight (kCudaQBlock rows of its tiled order; the sparse step's table rows).
    int64_t query_blocks() const;

    // ---- For a sharded step (dist/sharded_attention_step_cuda.h), which hands over the whole forward's K/V of
    // this step's heads and the queries of its query blocks only. Every call on the forward's stream.
    // k, v: bf16 [forward tokens, heads * head_dim], model order -> the cache.
    void store_kv(int64_t layer, const void* k, const void* v);
    // Dense table: q [q_len, width], any of the forward's rows (every row reads the same blocks in the same
    // order) -> out [q_len, width]. split_ctas: the CTA count whose wave fill decides the kernel's split of a
    // table row (0: this launch's; a sharded step passes the single rank's, so that it splits as that one does).
    void attend_rows(int64_t layer, const void* q, int64_t q_len, void* out, int64_t split_ctas);
    // Sparse step: q_tiled [query_blocks() * kCudaQBlock, width] in the forward's tiled order -> out_tiled. With
    // means_given the caller has written every query block's mean query into query_means(layer) (the other
    // workers' blocks come from them); otherwise they are computed from q_tiled.
    void attend_tiled(int64_t layer, const void* q_tiled, void* out_tiled, bool means_given, int64_t split_ctas);
    // The sparse step's mean queries of a layer: f32 [heads][query_blocks()][head_dim] (after begin()).
    float* query_means(int64_t layer) const;

  private:
    struct Impl;
    CudaAttentionStepConfig cfg_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace lr
