// Block selection policies (DESIGN.md section 6): which cached KV blocks each query block reads, and which
// blocks outlive their frame when it leaves the window. The cache never knows about the model; a policy
// knows neither the model nor the storage. Per forward it describes the window's candidates (shared by every
// layer and head: MUST blocks, SCORED blocks competing in a top-k, frame groups for a hierarchical stage, the
// budgets), which kernels/block_select.h turns into CSR tables from the blocks' pooled summaries; at eviction
// it chooses, per (layer, head), which blocks to retain outside the window, from scores the storage computes.
//
// Block ids seen by a policy are window blocks: slot * tiles_per_frame + tile, slots in window order.
// Retained blocks (outside the window) are read densely, before the window's (see block_select.h).
//
// One file per policy: policy_dense.cpp (DENSE, SINK_WINDOW), policy_sparse_forcing.cpp,
// policy_light_forcing.cpp, policy_forcing_kv.cpp, policy_lvsa.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/block_select.h"  // CandidateKind: what the selection op takes

namespace lr {

enum class BlockPolicyKind { kDense, kSinkWindow, kSparseForcing, kLightForcing, kForcingKv, kLvsa };
const char* block_policy_name(BlockPolicyKind k);

struct BlockPolicyConfig {
    BlockPolicyKind kind = BlockPolicyKind::kDense;
    // Sparse Forcing.
    int64_t persistent_blocks = 0;  // C per (layer, head)
    int64_t sf_topk_blocks = 0;     // window blocks per query block besides its chunk
    // Light Forcing.
    bool chunk_aware_growth = true;
    int64_t near_frames = 0;
    int64_t topk_frames = 0;
    int64_t lf_topk_blocks = 0;  // the budget of a chunk that sees the full window (before growth)
    // Forcing-KV.
    int64_t recent_frames = 0;
    double dynamic_keep_ratio = 0.0;
    double static_head_threshold = 0.8;
    std::vector<uint8_t> static_head;  // [layers * heads] from the profile
    // LVSA.
    int64_t lvsa_window_frames = 0;
    int64_t anchor_interval = 1;
};

// The cache geometry a policy plans for.
struct BlockPolicyGeometry {
    int64_t num_layers = 0;
    int64_t num_heads = 0;
    int64_t tiles_per_frame = 0;
    int64_t frames_per_chunk = 3;
    int64_t window_frames = -1;  // rollout.local_attn_size (-1: the whole run)
    int64_t sink_frames = 0;
    int64_t max_frames = 0;  // frames of storage (the run's length without a window)
    int64_t run_frames = 0;  // latent frames of the whole run (Light Forcing's growth spreads its budget)
};

// Where a forward is in the rollout.
struct PolicyForward {
    int64_t chunk = 0;  // chunk index (a prompt switch's re-cache: the chunk it precedes)
    int64_t step = 0;   // denoising step; == num_steps for the clean pass
    int64_t num_steps = 4;
    int64_t start_frame = 0;  // absolute frame of the forward's first frame
    int64_t num_frames = 0;
    bool recompute = false;  // re-cache of frames already cached (prompt switch)
};

// The cached window as a forward sees it: slot s holds absolute frame slot_frames[s], s < slot_end; the
// forward's own frames are slots [chunk_begin, slot_end).
struct PolicyWindow {
    const int64_t* slot_frames = nullptr;
    int64_t slot_end = 0;
    int64_t chunk_begin = 0;
};

// A forward's candidates (block_select.h): shared by every layer and head.
struct WindowSelection {
    std::vector<int32_t> cand_block;
    std::vector<int32_t> cand_group;
    std::vector<uint8_t> cand_kind;
    std::vector<uint8_t> group_competes;
    int64_t topk_groups = 0;
    int64_t topk_blocks = 0;
    bool scores_needed() const;
    void clear();
    // Appends every tile of slot s as one candidate kind (group g).
    void add_slot(int64_t s, int64_t tiles, uint8_t kind, int32_t group);
};

// What retention scores measure (the storage computes them from summaries):
//   kSalience: max over the last forward's query blocks of q_mean . k_mean (the block's pooled attention score);
//   kChange:   1 - cos(k_mean of the block, k_mean of the same tile one frame earlier) (how much it changed).
enum class RetentionScore { kNone, kSalience, kChange };

struct RetentionCandidate {
    int64_t frame = 0;
    int64_t tile = 0;
    float score = 0.0f;
    bool retained = false;  // already outside the window (vs just evicted)
};

class BlockPolicy {
  public:
    virtual ~BlockPolicy() = default;
    BlockPolicyKind kind() const { return cfg_.kind; }
    const BlockPolicyConfig& config() const { return cfg_; }
    const BlockPolicyGeometry& geometry() const { return geo_; }

    // Frames the window's pages hold: the local window, or a shorter ring when the policy keeps the rest only
    // as retained blocks (Forcing-KV). -1: the whole run.
    virtual int64_t page_window_frames() const { return geo_.window_frames; }
    // Blocks (layer, head) may retain outside the window; the storage plans the maximum over heads.
    virtual int64_t retained_capacity(int64_t layer, int64_t head) const;
    int64_t max_retained() const;
    virtual RetentionScore retention_score() const { return RetentionScore::kNone; }
    // Of `cands` (the retained blocks of (layer, head) and the blocks just evicted), which to keep: at most
    // retained_capacity(layer, head), the highest scores, ties to the older block. Returns indices into cands.
    // Forcing-KV replaces its retained blocks by the evicted ones each time (retained candidates are not kept).
    std::vector<int64_t> retain(int64_t layer, int64_t head, const std::vector<RetentionCandidate>& cands) const;
    virtual bool retention_accumulates() const { return true; }

    // The forward's candidates over the window's blocks.
    virtual void select(const PolicyForward& f, const PolicyWindow& w, WindowSelection* out) const = 0;

    BlockPolicy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo) : cfg_(cfg), geo_(geo) {}

  protected:
    BlockPolicyConfig cfg_;
    BlockPolicyGeometry geo_;
};

// InputError naming the field when the config does not fit the geometry (budgets larger than the window,
// a profile for another shape, ...).
std::unique_ptr<BlockPolicy> make_block_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo);

// Per policy (one file each).
std::unique_ptr<BlockPolicy> make_dense_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo);
std::unique_ptr<BlockPolicy> make_sparse_forcing_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo);
std::unique_ptr<BlockPolicy> make_light_forcing_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo);
std::unique_ptr<BlockPolicy> make_forcing_kv_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo);
std::unique_ptr<BlockPolicy> make_lvsa_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo);

}  // namespace lr
