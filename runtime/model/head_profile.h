// Forcing-KV's head profile (`longroll profile-heads`, DESIGN.md section 6): per layer and head, the share of
// self-attention on the most recent key frames among the key frames after the first `skip`, measured on a
// short dense rollout (Forcing-KV's head_profile.py: the mass on the last 4 key frames over the mass on frames
// [skip:]). A head whose share reaches the threshold is static: the recent frames are all it needs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/model/wan_model.h"

namespace lr {

struct HeadProfile {
    int64_t num_layers = 0;
    int64_t num_heads = 0;
    int64_t recent_frames = 4;
    int64_t skip_frames = 1;
    int64_t forwards = 0;         // attention calls averaged per head
    std::vector<double> share;    // [layers * heads]
    std::string model_signature;  // wan_model_signature() of the profiled model
};

// "dim=1536 ffn_dim=8960 num_heads=12 num_layers=30": what a profile must match.
std::string wan_model_signature(const WanModelConfig& cfg);

// JSON: {"format": "longroll.head_profile.v1", "model": ..., "recent_frames": 4, "skip_frames": 1,
// "forwards": N, "share": [[layer 0 heads], [layer 1 heads], ...]}. InputError naming the file and the field.
HeadProfile read_head_profile(const std::string& path);
std::string head_profile_json(const HeadProfile& p);

// Static (1) or dynamic (0) per (layer, head); InputError naming the file when the profile is for another model.
std::vector<uint8_t> static_heads(const HeadProfile& p, const WanModelConfig& cfg, double threshold,
                                  const std::string& path);

}  // namespace lr
