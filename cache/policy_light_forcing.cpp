// LIGHT_FORCING (Light Forcing: chunk-aware growth + hierarchical sparse attention). Its code is not public;
// the rules follow the paper's figure and text (DESIGN.md section 6):
//   - Chunk-Aware Growth: the first chunk is dense; chunk i >= 1 keeps K_i = K * alpha_i / mean_j(alpha_j)
//     blocks per query block, alpha_i = 1 / sqrt(f_i) with f_i = (i + 1) * frames_per_chunk the frames generated
//     so far, the mean over the run's chunks j >= 1: sparsity grows with the KV length while the run's total
//     budget stays that of a constant K (before clipping to what a chunk can see).
//   - Hierarchical Sparse Attention: per (head, query block), frame scores q_mean . (mean key of the frame) pick
//     topk_frames of the middle frames (neither sink, nor the near_frames right before the chunk); then block
//     scores q_mean . k_mean pick K_i blocks among the sink, near and picked frames. The chunk's own blocks are
//     always read (the query's own frame), as the figure's dense diagonal.
#include <cmath>

#include "cache/block_policy.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

class LightForcingPolicy final : public BlockPolicy {
  public:
    using BlockPolicy::BlockPolicy;

    // K_i of chunk i (>= 1).
    int64_t budget(int64_t chunk) const {
        if (!cfg_.chunk_aware_growth) return cfg_.lf_topk_blocks;
        const int64_t fpc = geo_.frames_per_chunk;
        const int64_t chunks = std::max<int64_t>(2, (geo_.run_frames + fpc - 1) / fpc);
        double mean = 0.0;
        for (int64_t j = 1; j < chunks; ++j) mean += 1.0 / std::sqrt(static_cast<double>((j + 1) * fpc));
        mean /= static_cast<double>(chunks - 1);
        const double alpha = 1.0 / std::sqrt(static_cast<double>((chunk + 1) * fpc));
        return std::max<int64_t>(1, std::llround(static_cast<double>(cfg_.lf_topk_blocks) * alpha / mean));
    }

    void select(const PolicyForward& f, const PolicyWindow& w, WindowSelection* out) const override {
        out->clear();
        const auto must = static_cast<uint8_t>(CandidateKind::kMust);
        const auto scored = static_cast<uint8_t>(CandidateKind::kScored);
        const int64_t tiles = geo_.tiles_per_frame;
        if (f.chunk == 0) {  // the first chunk is dense
            for (int64_t s = 0; s < w.slot_end; ++s) out->add_slot(s, tiles, must, -1);
            return;
        }
        const int64_t near_begin = std::max<int64_t>(0, w.chunk_begin - cfg_.near_frames);
        for (int64_t s = 0; s < w.slot_end; ++s) {
            if (s >= w.chunk_begin) {
                out->add_slot(s, tiles, must, -1);
            } else if (s < geo_.sink_frames || s >= near_begin) {
                out->add_slot(s, tiles, scored, -1);
            } else {  // a middle frame: its own group, competing
                out->add_slot(s, tiles, scored, static_cast<int32_t>(out->group_competes.size()));
                out->group_competes.push_back(1);
            }
        }
        out->topk_groups = cfg_.topk_frames;
        out->topk_blocks = budget(f.chunk);
    }
};

}  // namespace

std::unique_ptr<BlockPolicy> make_light_forcing_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo) {
    LR_CHECK(cfg.near_frames >= 0, "attention.light_forcing.near_frames: expected >= 0, found ", cfg.near_frames);
    LR_CHECK(cfg.topk_frames >= 1, "attention.light_forcing.topk_frames: expected >= 1, found ", cfg.topk_frames);
    const int64_t past =
        geo.window_frames == -1 ? geo.run_frames - geo.frames_per_chunk : geo.window_frames - geo.frames_per_chunk;
    const int64_t middle = past - geo.sink_frames - cfg.near_frames;
    LR_CHECK(middle > cfg.topk_frames, "attention.light_forcing.topk_frames: ", cfg.topk_frames,
             " frames picked among the ", std::max<int64_t>(middle, 0),
             " middle frames of the window (neither sink nor near) keeps them all; expected fewer (or a longer ",
             "rollout.local_attn_size)");
    const int64_t eligible = (geo.sink_frames + cfg.near_frames + cfg.topk_frames) * geo.tiles_per_frame;
    LR_CHECK(cfg.lf_topk_blocks >= 1 && cfg.lf_topk_blocks < eligible,
             "attention.light_forcing.topk_blocks: expected 1 to ", eligible - 1,
             " (the blocks of the sink, near and picked frames; more is no block sparsity), found ",
             cfg.lf_topk_blocks);
    return std::unique_ptr<BlockPolicy>(new LightForcingPolicy(cfg, geo));
}

}  // namespace lr
