// LVSA (window + rotating global anchors), adapted to the causal rollout (LVSA's public code is bidirectional:
// a centred window of 2W + 1 frames; here the window is the W frames before the chunk). Frame-granular, the
// same table for every head and query block, training-free:
//   the sink frames + the chunk + the window_frames frames before it + the anchor frames, the cached frames f
//   with (f - offset) mod anchor_interval == 0 where offset = denoising step mod anchor_interval (LVSA's
//   set_step: the grid rotates from one denoising step to the next, so over the steps every frame is seen).
#include "cache/block_policy.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

class LvsaPolicy final : public BlockPolicy {
  public:
    using BlockPolicy::BlockPolicy;
    void select(const PolicyForward& f, const PolicyWindow& w, WindowSelection* out) const override {
        out->clear();
        const int64_t interval = cfg_.anchor_interval;
        const int64_t offset = f.step % interval;
        for (int64_t s = 0; s < w.slot_end; ++s) {
            const int64_t frame = w.slot_frames[s];
            const bool keep = s < geo_.sink_frames || s >= w.chunk_begin - cfg_.lvsa_window_frames ||
                              ((frame - offset) % interval + interval) % interval == 0;
            if (keep) out->add_slot(s, geo_.tiles_per_frame, static_cast<uint8_t>(CandidateKind::kMust), -1);
        }
    }
};

}  // namespace

std::unique_ptr<BlockPolicy> make_lvsa_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo) {
    LR_CHECK(cfg.lvsa_window_frames >= 0, "attention.lvsa.window_frames: expected >= 0, found ",
             cfg.lvsa_window_frames);
    LR_CHECK(cfg.anchor_interval >= 2,
             "attention.lvsa.anchor_interval: expected >= 2 (1 keeps every frame: dense), found ", cfg.anchor_interval);
    const int64_t past =
        geo.window_frames == -1 ? geo.run_frames - geo.frames_per_chunk : geo.window_frames - geo.frames_per_chunk;
    LR_CHECK(past > geo.sink_frames + cfg.lvsa_window_frames, "attention.lvsa.window_frames: ", cfg.lvsa_window_frames,
             " frames before the chunk plus the sink (", geo.sink_frames, ") cover the whole window of ", past,
             " past frames: that is dense; expected fewer (or a longer rollout.local_attn_size)");
    return std::unique_ptr<BlockPolicy>(new LvsaPolicy(cfg, geo));
}

}  // namespace lr
