// DENSE and SINK_WINDOW (Self-Forcing, LongLive): every block the cache holds. The window and the sink are the
// cache's (KvWindow evicts the oldest frames after the sink), so both read the whole window; SINK_WINDOW only
// insists on a window (config validation).
#include "cache/block_policy.h"

namespace lr {
namespace {

class DensePolicy final : public BlockPolicy {
  public:
    using BlockPolicy::BlockPolicy;
    void select(const PolicyForward&, const PolicyWindow& w, WindowSelection* out) const override {
        out->clear();
        for (int64_t s = 0; s < w.slot_end; ++s)
            out->add_slot(s, geo_.tiles_per_frame, static_cast<uint8_t>(CandidateKind::kMust), -1);
    }
};

}  // namespace

std::unique_ptr<BlockPolicy> make_dense_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo) {
    return std::unique_ptr<BlockPolicy>(new DensePolicy(cfg, geo));
}

}  // namespace lr
