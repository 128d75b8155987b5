// The attention policies as the benchmarks run them (policy_bench, e2e_bench): the config defaults' budgets
// (auto), resolved for a frame of `tiles` KV tiles as launch/generate_inputs.cpp resolves them, Self-Forcing's
// 21-frame window with no sink. FORCING_KV keeps its own pages (sink 1 + a ring of 1 + the chunk, plus the
// dynamic heads' segments) and, with no trained model to profile, marks every other head static.
#pragma once

#include <cstdint>
#include <string>

#include "cache/block_policy.h"
#include "runtime/core/check.h"

namespace lr::bench {

constexpr int64_t kPolicyWindowFrames = 21;
constexpr int64_t kPolicyChunkFrames = 3;

inline BlockPolicyConfig policy_config(const std::string& name, int64_t tiles, int64_t layers, int64_t heads) {
    BlockPolicyConfig p;
    const int64_t past = kPolicyWindowFrames - kPolicyChunkFrames;
    if (name == "DENSE") {
        p.kind = BlockPolicyKind::kDense;
    } else if (name == "SPARSE_FORCING") {
        p.kind = BlockPolicyKind::kSparseForcing;
        p.persistent_blocks = 64;
        p.sf_topk_blocks = past * tiles / 4;
    } else if (name == "LIGHT_FORCING") {
        p.kind = BlockPolicyKind::kLightForcing;
        p.near_frames = 3;
        p.topk_frames = (past - p.near_frames) / 2;
        p.lf_topk_blocks = (p.near_frames + p.topk_frames) * tiles / 2;
    } else if (name == "LVSA") {
        p.kind = BlockPolicyKind::kLvsa;
        p.lvsa_window_frames = 3;
        p.anchor_interval = 4;
    } else if (name == "FORCING_KV") {
        p.kind = BlockPolicyKind::kForcingKv;
        p.recent_frames = 1;
        p.dynamic_keep_ratio = 0.33;
        for (int64_t i = 0; i < layers * heads; ++i) p.static_head.push_back(i % 2 == 0 ? 1 : 0);
    } else {
        LR_FAIL("unknown policy '", name, "' (DENSE, SPARSE_FORCING, LIGHT_FORCING, LVSA, FORCING_KV)");
    }
    return p;
}

// The KV window a policy runs with: FORCING_KV's pages are its own ring (no rollout window, a sink of 1).
inline int64_t policy_window_frames(const BlockPolicyConfig& p) {
    return p.kind == BlockPolicyKind::kForcingKv ? -1 : kPolicyWindowFrames;
}
inline int64_t policy_sink_frames(const BlockPolicyConfig& p) { return p.kind == BlockPolicyKind::kForcingKv ? 1 : 0; }

}  // namespace lr::bench
