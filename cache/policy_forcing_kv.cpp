// FORCING_KV (Forcing-KV: head-wise KV pruning; its public code: zju-jiyicheng/Forcing-KV). An offline profile
// (longroll profile-heads) marks each (layer, head) static or dynamic. The cache's pages hold, for every head,
// the sink + a ring of recent_frames frames + the chunk (the window is the policy's); when frames leave the ring,
// each dynamic head keeps round(dynamic_keep_ratio * frames_per_chunk * tiles) of the departing blocks, those
// whose keys changed most from the frame before (lowest cosine similarity of the block's mean key with the same
// tile's one frame earlier), replacing what it kept before (Forcing-KV overwrites its dynamic buffer each chunk).
// Static heads keep nothing else. So the cache itself shrinks: pages for sink + ring + chunk, and retained
// slots for the dynamic heads' segments.
#include <cmath>

#include "cache/block_policy.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

class ForcingKvPolicy final : public BlockPolicy {
  public:
    using BlockPolicy::BlockPolicy;
    int64_t page_window_frames() const override {
        return geo_.sink_frames + cfg_.recent_frames + geo_.frames_per_chunk;
    }
    int64_t retained_capacity(int64_t layer, int64_t head) const override {
        if (cfg_.static_head[static_cast<size_t>(layer * geo_.num_heads + head)]) return 0;
        return std::llround(cfg_.dynamic_keep_ratio *
                            static_cast<double>(geo_.frames_per_chunk * geo_.tiles_per_frame));
    }
    RetentionScore retention_score() const override { return RetentionScore::kChange; }
    bool retention_accumulates() const override { return false; }
    void select(const PolicyForward&, const PolicyWindow& w, WindowSelection* out) const override {
        out->clear();
        for (int64_t s = 0; s < w.slot_end; ++s)
            out->add_slot(s, geo_.tiles_per_frame, static_cast<uint8_t>(CandidateKind::kMust), -1);
    }
};

}  // namespace

std::unique_ptr<BlockPolicy> make_forcing_kv_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo) {
    LR_CHECK(cfg.recent_frames >= 1, "attention.forcing_kv.recent_frames: expected >= 1, found ", cfg.recent_frames);
    LR_CHECK(cfg.dynamic_keep_ratio > 0 && cfg.dynamic_keep_ratio <= 1,
             "attention.forcing_kv.dynamic_keep_ratio: expected (0, 1], found ", cfg.dynamic_keep_ratio);
    LR_CHECK(
        geo.window_frames == -1, "attention.policy FORCING_KV sets the cache window itself (sink_size + ",
        "forcing_kv.recent_frames + frames_per_chunk = ", geo.sink_frames + cfg.recent_frames + geo.frames_per_chunk,
        " frames, plus the dynamic heads' segments): leave rollout.local_attn_size at -1, found ", geo.window_frames);
    LR_CHECK(static_cast<int64_t>(cfg.static_head.size()) == geo.num_layers * geo.num_heads,
             "attention.forcing_kv.head_profile: ", cfg.static_head.size(), " head classes for a model of ",
             geo.num_layers, " layers x ", geo.num_heads, " heads");
    return std::unique_ptr<BlockPolicy>(new ForcingKvPolicy(cfg, geo));
}

}  // namespace lr
