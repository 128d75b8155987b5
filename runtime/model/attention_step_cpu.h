// The single-rank attention step of the CPU reference path (attention_step.h): an fp32 KvCache whose frames
// are stored tile by tile (cache/tile_layout.h), pooled summaries, a block policy, retained blocks outside the
// window, and the fp32 CSR attention (kernels/block_sparse_attention.h).
//
//   begin: plan the write; if frames leave the window and the policy retains blocks, score the candidates
//          (retained + evicted) per (layer, head) and copy the kept ones into retained slots; the policy's
//          candidates for this forward.
//   attend(layer): q/k/v to tiled order; K/V into the cache; mean key per (written block, head) and, for
//          Forcing-KV, the change from the same tile one frame earlier; mean query per (query block, head);
//          the table (block_select_cpu); attention; the output back to the model's order.
//
// Retained slot r of a layer is one block of [block_size, heads * head_dim]: head h's slice holds the r-th
// block head h retained (heads retain different tiles). Window-relative RoPE: a retained block's keys are
// cached un-rotated like the window's and rotated at frame position 0, the window's first slot (where the
// sink's first frame sits): a block kept outside the window is attended as part of the sink.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cache/block_policy.h"
#include "cache/kv_cache.h"
#include "cache/tile_layout.h"
#include "runtime/model/attention_step.h"
#include "runtime/model/wan_model.h"

namespace lr {

struct AttentionStepConfig {
    int64_t num_layers = 0;
    int64_t num_heads = 0;
    int64_t head_dim = 0;
    int64_t grid_rows = 0;  // patches per frame: rows x cols
    int64_t grid_cols = 0;
    int64_t block_size = 128;  // tokens per KV block (tile_shape_for_block)
    int64_t frames_per_chunk = 3;
    int64_t window_frames = -1;  // rollout.local_attn_size
    int64_t sink_frames = 0;
    int64_t run_frames = 0;  // storage without a window
    int64_t max_write_frames = 3;
    RopePositions rope = RopePositions::kAbsolute;
    BlockPolicyConfig policy;
    int64_t q_block = 128;  // query rows per table row
};

// Per (layer, head): the share of attention on the `recent` most recent key frames among the key frames after
// the first `skip` (Forcing-KV's head profile statistic), accumulated over forwards.
struct HeadShareAccumulator {
    int64_t recent = 4;
    int64_t skip = 1;
    std::vector<double> recent_mass;  // [layers * heads]
    std::vector<double> total_mass;
};

class CpuAttentionStep final : public AttentionStep {
  public:
    explicit CpuAttentionStep(const AttentionStepConfig& cfg);
    ~CpuAttentionStep() override;

    KvWrite begin(const AttentionForward& f) override;
    void attend(int64_t layer, const float* q, const float* k, const float* v, float* out) override;
    void end() override;
    AttentionStats stats() const override { return stats_; }

    // The attend() of a worker that computes part of the rows (dist/sharded_attention_step.h). Everything in the
    // forward's tiled order (frame by frame, tile by tile: tiles().to_raster): qt, ot [frames * tokens_per_frame,
    // heads * head_dim] and kt, vt the forward's whole K/V. Only the query blocks (q_block rows) with a nonzero
    // mask entry are read from qt and written to ot (null mask: all); qm [query_blocks(), heads * head_dim] holds
    // every query block's mean query (query_means of each block's owner), or null to compute them from qt.
    void attend_tiled(int64_t layer, const float* qt, const float* kt, const float* vt, float* ot, const uint8_t* mask,
                      const float* qm);
    // Query blocks of the forward in flight (after begin), and their mean queries: the blocks with a nonzero mask
    // entry (null: all) of qm [query_blocks(), heads * head_dim] from the tiled queries qt.
    int64_t query_blocks() const;
    int64_t q_block() const { return cfg_.q_block; }
    void query_means(const float* qt, const uint8_t* mask, float* qm) const;
    // Whether the policy scores blocks (top-k, retention): only then are the mean keys and queries computed (and,
    // sharded, the mean queries exchanged). DENSE, SINK_WINDOW and LVSA list every candidate they keep.
    bool uses_summaries() const;
    const AttentionStepConfig& config() const { return cfg_; }

    const KvCache& cache() const { return cache_; }
    const TileLayout& tiles() const { return tiles_; }
    const BlockPolicy& policy() const { return *policy_; }
    // A new run from frame 0 (Rollout::run: a new video, a resume): the cache, every (layer, head)'s retained
    // blocks and the stats are forgotten. A prompt switch's re-cache does not reset.
    void reset();
    // Bytes planned for K/V: the window's pages and the retained slots (what the memory plan counts).
    size_t kv_bytes() const;
    static size_t kv_bytes_for(const AttentionStepConfig& cfg);
    // The last table of a layer (tests): CSR over block ids (window blocks slot * tiles + tile, then retained
    // slot r as slot_end * tiles + r), rows (head, query block).
    struct Table {
        std::vector<int32_t> indptr, indices;
        int64_t window_blocks = 0;
    };
    const Table& last_table(int64_t layer) const { return tables_[static_cast<size_t>(layer)]; }
    // Retained blocks of (layer, head): (frame, tile) pairs, sorted.
    std::vector<std::pair<int64_t, int64_t>> retained(int64_t layer, int64_t head) const;
    // Profiling (longroll profile-heads): with an accumulator, every attend() also measures the head shares
    // over the whole window (dense).
    void set_profile(HeadShareAccumulator* acc) { profile_ = acc; }

  private:
    struct Retained {
        int64_t frame = -1;
        int64_t tile = -1;
        std::vector<float> kmean;  // [head_dim]
    };
    int64_t tpf() const { return tiles_.tokens_per_frame(); }
    int64_t width() const { return cfg_.num_heads * cfg_.head_dim; }
    void retain_evicted(const KvWrite& w);
    float salience(int64_t layer, int64_t head, const float* kmean) const;

    AttentionStepConfig cfg_;
    TileLayout tiles_;
    std::unique_ptr<BlockPolicy> policy_;
    KvCache cache_;
    int64_t storage_frames_ = 0;
    int64_t retained_slots_ = 0;
    // Per layer: summaries by slot [storage][tiles][heads][head_dim], change scores [storage][tiles][heads].
    std::vector<std::vector<float>> kmean_, change_;
    // Per layer: the last forward's query means [heads][q blocks][head_dim] and their count.
    std::vector<std::vector<float>> qmean_;
    std::vector<int64_t> qblocks_;
    // Per layer: retained storage [slots * block_size, width] (K, V); per (layer, head) slot r's block.
    std::vector<std::vector<float>> rk_, rv_;
    std::vector<std::vector<Retained>> ret_;  // [layer * heads + head][slot]
    // The forward in flight.
    AttentionForward fwd_;
    KvWrite plan_;
    std::vector<int64_t> frames_;  // absolute frame of each slot of the forward's window
    WindowSelection sel_;
    std::vector<Table> tables_;
    AttentionStats stats_;
    HeadShareAccumulator* profile_ = nullptr;
    // Scratch.
    std::vector<float> qt_, kt_, vt_, ot_, krot_, rkrot_;
};

}  // namespace lr
