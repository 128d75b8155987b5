// SPARSE_FORCING: the mechanism of Sparse Forcing's PBSA, training-free (its trained checkpoint and code are not
// public; the selection rules below are this engine's adaptation, DESIGN.md section 6):
//   - inside the window, each query block reads its chunk's blocks (its own frame always) plus the top-k of the
//     window's other blocks (sink included) by pooled score q_mean . k_mean;
//   - outside the window, up to C persistent salient blocks per (layer, head), read densely;
//   - when frames leave the window, the persistent set becomes the top C of (persistent + evicted) blocks by
//     salience: max over the last forward's query blocks of q_mean . k_mean.
#include "cache/block_policy.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

class SparseForcingPolicy final : public BlockPolicy {
  public:
    using BlockPolicy::BlockPolicy;
    int64_t retained_capacity(int64_t, int64_t) const override {
        return geo_.window_frames == -1 ? 0 : cfg_.persistent_blocks;
    }
    RetentionScore retention_score() const override { return RetentionScore::kSalience; }
    void select(const PolicyForward&, const PolicyWindow& w, WindowSelection* out) const override {
        out->clear();
        const auto must = static_cast<uint8_t>(CandidateKind::kMust);
        const auto scored = static_cast<uint8_t>(CandidateKind::kScored);
        for (int64_t s = 0; s < w.slot_end; ++s)
            out->add_slot(s, geo_.tiles_per_frame, s >= w.chunk_begin ? must : scored, -1);
        out->topk_blocks = cfg_.sf_topk_blocks;
    }
};

}  // namespace

std::unique_ptr<BlockPolicy> make_sparse_forcing_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo) {
    LR_CHECK(geo.window_frames != -1, "attention.policy SPARSE_FORCING keeps persistent blocks when frames leave the ",
             "window: set rollout.local_attn_size (e.g. 21)");
    const int64_t scored = (geo.window_frames - geo.frames_per_chunk) * geo.tiles_per_frame;
    LR_CHECK(cfg.sf_topk_blocks >= 1 && cfg.sf_topk_blocks < scored,
             "attention.sparse_forcing.topk_blocks: expected 1 to ", scored - 1, " (the window's ", scored,
             " blocks outside the chunk; more is dense), found ", cfg.sf_topk_blocks);
    LR_CHECK(cfg.persistent_blocks >= 0, "attention.sparse_forcing.persistent_blocks: expected >= 0, found ",
             cfg.persistent_blocks);
    return std::unique_ptr<BlockPolicy>(new SparseForcingPolicy(cfg, geo));
}

}  // namespace lr
