// CudaLocalAttentionStep's implementation state (internal to runtime/model/attention_step_cuda*.cpp): the paged
// cache, the sparse step's summaries and per-forward tables, the q and output scratch. attention_step_cuda.cpp
// holds the plan, the dense path and the forward's bookkeeping; attention_step_cuda_sparse.cpp the sparse step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/block_policy.h"
#include "cache/paged_kv_cache.h"
#include "runtime/model/attention_step_cuda.h"

namespace lr::cuda_step {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

// The sparse step's device buffers (summaries, tables) and its per-forward staging.
struct SparseSizes {
    int64_t layers = 0, heads = 0, head_dim = 0, pool_blocks = 0, max_q_blocks = 0, window_blocks = 0, retained = 0,
            row_cap = 0, frames = 0, tiles = 0;
    int64_t kmean = 0, change = 0, qmean = 0, indices = 0, scores = 0;  // elements
    int64_t staging_ints = 0;                                           // per-forward tables uploaded in one copy
    size_t bytes() const;
};
SparseSizes sparse_sizes(const CudaAttentionStepConfig& c);
// The q and output scratch: bf16 [rows, heads * head_dim] each (rows: the largest forward, whole query blocks).
int64_t scratch_rows(const CudaAttentionStepConfig& c);

}  // namespace lr::cuda_step

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "kernels/block_select.h"

namespace lr {

struct CudaLocalAttentionStep::Impl {
    CudaAttentionStepConfig cfg;
    int64_t tpf = 0, width = 0;
    std::unique_ptr<PagedKvCache> cache;
    DeviceBuffer scratch;               // q | out (tiled) | slot positions
    void* q = nullptr;                  // bf16 [rows, width]: the model's q (raster rows, or tiled for the sparse step)
    void* out_tiled = nullptr;          // bf16 [rows, width]: the sparse step's output before it returns to raster rows
    int32_t* slot_positions = nullptr;  // [max_frames * tpf, 3] (window-relative RoPE only)
    cudaStream_t stream = nullptr;      // the forward's (begin())
    AttentionForward fwd;
    const PagedKvPlan* plan = nullptr;

    // The sparse step (attention_step_cuda_sparse.cpp): summaries, per-forward tables in one pinned staging (int32
    // offsets below, fixed), the retained blocks of every (layer, head) on the host.
    struct Sparse {
        bool on = false;
        std::unique_ptr<BlockPolicy> policy;
        cuda_step::SparseSizes z;
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
        // Window-relative RoPE only: the tile of every (layer, head, retained slot), uploaded per forward, and each
        // tile's raster index per token, uploaded once (launch_rope_retained).
        int64_t o_ret_tile = 0, o_tile_raster = 0;
        std::vector<int64_t> ret_frame, ret_tile;  // [layers][heads][retained]: -1 empty
        WindowSelection sel;
        BlockSelectCounts counts;
        int64_t num_cand = 0, nqb = 0, last_nqb = 0, written = 0, n_change = 0;
        bool summaries = false;  // the policy scores, or retention reads the summaries
        AttentionStats stats;
        int32_t* host(int64_t offset) { return static_cast<int32_t*>(staging.data()) + offset; }
        int32_t* device(int64_t offset) const { return dev + offset; }
    } sp;

    explicit Impl(const CudaAttentionStepConfig& c);
    void init_sparse();
    // A new run (reset): no retained block of the previous one is selected, attended or counted.
    void sparse_reset();
    void sparse_retain(const KvWrite& w);
    void sparse_tables(const PagedKvPlan& plan, const AttentionForward& f);
    // Summaries of the written blocks, the mean queries (unless given), the device selection: layer l's table.
    void sparse_select(int64_t l, const void* q_tiled, bool means_given);
    void sparse_attention(int64_t l, const void* q_tiled, void* out_tiled, int64_t split_ctas);
    void sparse_after_layers();
    // Window-relative RoPE: layer l's cached keys rotated into the cache's rotated-key pool, each window row by its
    // slot and, in the sparse step, each head's retained blocks at the window's first slot; returns that pool.
    const void* rotated_keys(int64_t l);
    int64_t heads() const { return cfg.num_heads; }
    int64_t forward_rows() const { return fwd.num_frames * tpf; }
};

}  // namespace lr
#endif  // LONGROLL_HAS_CUDA
