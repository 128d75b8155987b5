#include "cache/block_policy.h"

#include <algorithm>
#include <numeric>

#include "runtime/core/check.h"

namespace lr {

const char* block_policy_name(BlockPolicyKind k) {
    switch (k) {
        case BlockPolicyKind::kDense:
            return "DENSE";
        case BlockPolicyKind::kSinkWindow:
            return "SINK_WINDOW";
        case BlockPolicyKind::kSparseForcing:
            return "SPARSE_FORCING";
        case BlockPolicyKind::kLightForcing:
            return "LIGHT_FORCING";
        case BlockPolicyKind::kForcingKv:
            return "FORCING_KV";
        case BlockPolicyKind::kLvsa:
            return "LVSA";
    }
    return "?";
}

bool WindowSelection::scores_needed() const {
    return std::any_of(cand_kind.begin(), cand_kind.end(),
                       [](uint8_t k) { return k == static_cast<uint8_t>(CandidateKind::kScored); });
}

void WindowSelection::clear() {
    cand_block.clear();
    cand_group.clear();
    cand_kind.clear();
    group_competes.clear();
    topk_groups = 0;
    topk_blocks = 0;
}

void WindowSelection::add_slot(int64_t s, int64_t tiles, uint8_t kind, int32_t group) {
    for (int64_t t = 0; t < tiles; ++t) {
        cand_block.push_back(static_cast<int32_t>(s * tiles + t));
        cand_group.push_back(group);
        cand_kind.push_back(kind);
    }
}

int64_t BlockPolicy::retained_capacity(int64_t, int64_t) const { return 0; }

int64_t BlockPolicy::max_retained() const {
    int64_t m = 0;
    for (int64_t l = 0; l < geo_.num_layers; ++l)
        for (int64_t h = 0; h < geo_.num_heads; ++h) m = std::max(m, retained_capacity(l, h));
    return m;
}

std::vector<int64_t> BlockPolicy::retain(int64_t layer, int64_t head,
                                         const std::vector<RetentionCandidate>& cands) const {
    std::vector<int64_t> order;
    for (size_t i = 0; i < cands.size(); ++i)
        if (retention_accumulates() || !cands[i].retained) order.push_back(static_cast<int64_t>(i));
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        const RetentionCandidate& x = cands[static_cast<size_t>(a)];
        const RetentionCandidate& y = cands[static_cast<size_t>(b)];
        if (x.score != y.score) return x.score > y.score;
        return x.frame != y.frame ? x.frame < y.frame : x.tile < y.tile;
    });
    order.resize(std::min<size_t>(order.size(), static_cast<size_t>(retained_capacity(layer, head))));
    std::sort(order.begin(), order.end());
    return order;
}

std::unique_ptr<BlockPolicy> make_block_policy(const BlockPolicyConfig& cfg, const BlockPolicyGeometry& geo) {
    LR_CHECK(geo.num_layers > 0 && geo.num_heads > 0 && geo.tiles_per_frame > 0 && geo.frames_per_chunk > 0,
             "block policy: layers ", geo.num_layers, ", heads ", geo.num_heads, ", tiles per frame ",
             geo.tiles_per_frame, ", frames per chunk ", geo.frames_per_chunk, " must be positive");
    switch (cfg.kind) {
        case BlockPolicyKind::kDense:
        case BlockPolicyKind::kSinkWindow:
            return make_dense_policy(cfg, geo);
        case BlockPolicyKind::kSparseForcing:
            return make_sparse_forcing_policy(cfg, geo);
        case BlockPolicyKind::kLightForcing:
            return make_light_forcing_policy(cfg, geo);
        case BlockPolicyKind::kForcingKv:
            return make_forcing_kv_policy(cfg, geo);
        case BlockPolicyKind::kLvsa:
            return make_lvsa_policy(cfg, geo);
    }
    LR_ASSERT(false, "block policy: unknown kind");
    return nullptr;
}

}  // namespace lr
