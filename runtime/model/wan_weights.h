// The tensors of a Wan2.1 DiT checkpoint (original Wan names, Linear weights [out, in]; DESIGN.md section 3),
// the checks a checkpoint must pass before a run, and the embedded default: deterministic weights for a
// tiny model of the same architecture, so that a new user sees the whole pipeline work without a download.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/io/safetensors.h"

namespace lr {

// The architecture numbers the weight shapes depend on.
struct WanDims {
    int64_t dim = 0;
    int64_t ffn_dim = 0;
    int64_t num_heads = 0;
    int64_t num_layers = 0;
    int64_t in_dim = 16;
    int64_t out_dim = 16;
    int64_t text_dim = 4096;
    int64_t freq_dim = 256;
    std::array<int64_t, 3> patch{1, 2, 2};  // (t, h, w)
};

struct WeightSpec {
    std::string name;  // original Wan name, e.g. "blocks.3.self_attn.q.weight"
    Shape shape;
};

// Every tensor of the T2V model, in a stable order.
std::vector<WeightSpec> wan_weight_specs(const WanDims& d);

// Original name of a checkpoint key, or nullopt when it is not a DiT key: strips Self-Forcing's "model."
// prefix (and ComfyUI's "model.diffusion_model."), FSDP's "_fsdp_wrapped_module." wherever it appears, and
// maps diffusers WanTransformer3DModel names to the original ones (diffusers_to_wan_name).
std::optional<std::string> canonical_wan_name(std::string_view key);

// The original Wan name of a diffusers WanTransformer3DModel key ("blocks.0.attn1.to_out.0.weight" ->
// "blocks.0.self_attn.o.weight", "scale_shift_table" -> "head.modulation", "blocks.0.norm2.weight" ->
// "blocks.0.norm3.weight", ...), or nullopt when the key is not a diffusers name.
std::optional<std::string> diffusers_to_wan_name(std::string_view key);

// Maps every spec name to the checkpoint key that holds it, after checking that each is present with the
// right shape and a floating dtype. The first problem is an InputError naming the file and the tensor.
std::map<std::string, std::string> resolve_wan_weights(const SafetensorsCheckpoint& ckpt, const WanDims& d);

// Model numbers from a checkpoint's __metadata__["config"] (Wan config.json field names); fields that are
// absent keep the values in `base`. InputError naming the file on malformed JSON or values.
WanDims wan_dims_from_metadata(const SafetensorsCheckpoint& ckpt, const WanDims& base, bool* found = nullptr);

// Model numbers read off the tensor shapes, for checkpoints without a metadata config: dim, in_dim and the
// patch from patch_embedding, ffn_dim from blocks.0.ffn.0, num_layers from the block count, text_dim,
// freq_dim and out_dim from their layers. num_heads is not in the shapes: base.num_heads is kept when dim
// is unchanged, else the Wan sizes (1536 -> 12, 5120 -> 40), else head_dim 128. nullopt when the checkpoint
// has no patch_embedding (not a Wan DiT).
std::optional<WanDims> infer_wan_dims(const SafetensorsCheckpoint& ckpt, const WanDims& base);

// The embedded default's weights: every spec tensor as F32, filled from a counter-based generator keyed by
// (seed, name), scaled like a trained network (1/sqrt(fan_in) for matrices, ~1 for norm gains), so the
// result does not depend on creation order.
std::vector<std::pair<std::string, HostTensor>> make_default_wan_weights(const WanDims& d, uint64_t seed = 2026);

}  // namespace lr
