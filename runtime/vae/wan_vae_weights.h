// The Wan2.1 VAE decoder's configuration and tensors (DESIGN.md section 5): which tensors a checkpoint must hold
// (original Wan names, PyTorch layouts), how the other naming schemes map onto them, and the embedded default's
// deterministic weights. Only the decoder and conv2 (the 1x1x1 conv before it) are read; encoder tensors are
// ignored.
//
// Naming schemes accepted for a checkpoint key:
//   original   Wan2.1_VAE.pth (after tools/convert_checkpoint.py) and ComfyUI's wan_2.1_vae.safetensors:
//              "conv2.weight", "decoder.conv1.weight", "decoder.middle.1.to_qkv.weight",
//              "decoder.upsamples.3.time_conv.weight", "decoder.head.2.weight", ...
//   prefixed   the same behind "model." (Self-Forcing's WanVAEWrapper), "vae." or "first_stage_model." (combined
//              checkpoints), with FSDP / torch.compile wrapper names anywhere
//   diffusers  AutoencoderKLWan: "post_quant_conv.weight", "decoder.conv_in.weight",
//              "decoder.mid_block.attentions.0.to_qkv.weight", "decoder.up_blocks.0.upsamplers.0.time_conv.weight",
//              "decoder.up_blocks.1.resnets.0.conv_shortcut.weight", "decoder.norm_out.gamma", ...
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/io/safetensors.h"

namespace lr {

// The reference's WanVAE_ arguments that shape the decoder, plus the latent statistics the decode starts with.
struct WanVaeConfig {
    int64_t z_dim = 16;
    int64_t dim = 96;  // base channels; the decoder runs at dim * [4, 4, 4, 2, 1]: 384 384 384 192 96
    std::vector<int64_t> dim_mult{1, 2, 4, 4};
    int64_t num_res_blocks = 2;  // each upsampling stage has num_res_blocks + 1 residual blocks
    // Per upsampling stage in decode order (the reference's temperal_upsample = temperal_downsample[::-1]):
    // true doubles the frame count (upsample3d: time conv, then x2 nearest + conv), false is upsample2d.
    std::vector<bool> temporal_upsample{true, true, false};
    // z = latent * std + mean per channel before the decoder (WanVAEWrapper's constants).
    std::vector<float> latents_mean{-0.7571f, -0.7089f, -0.9113f, 0.1075f,  -0.1745f, 0.9653f,  -0.1517f, 1.5508f,
                                    0.4134f,  -0.0715f, 0.5517f,  -0.3632f, -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
    std::vector<float> latents_std{2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
                                   3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f};

    // Channels of the decoder stages: dims[0] at the latent resolution, dims[i + 1] out of stage i.
    std::vector<int64_t> dims() const;
    // Output frames per latent frame after the first (2 ^ number of temporal upsamplings): 4 for Wan2.1.
    int64_t frames_per_latent() const;
    // Spatial upsampling factor (2 ^ number of stages that upsample): 8 for Wan2.1.
    int64_t spatial_factor() const;
    // InputError naming the field when the numbers do not describe a decoder.
    void validate() const;
};

// The embedded default's architecture: Wan2.1's structure with base dim 8 (decoder channels 32/32/32/16/8).
WanVaeConfig wan_vae_tiny_config();

// The decoder's blocks between conv1 and the head, in decode order, with their original name prefixes:
// "decoder.middle.0" (residual), "decoder.middle.1" (attention), "decoder.middle.2", then per stage
// num_res_blocks + 1 residual blocks and (but the last stage) a resample: "decoder.upsamples.<k>".
enum class VaeBlockKind { kResidual, kAttention, kUpsample2d, kUpsample3d };
struct VaeBlock {
    VaeBlockKind kind = VaeBlockKind::kResidual;
    std::string prefix;
    int64_t in_ch = 0;   // channels in
    int64_t out_ch = 0;  // channels out (resamples halve them)
};
std::vector<VaeBlock> wan_vae_decoder_blocks(const WanVaeConfig& cfg);

struct VaeWeightSpec {
    std::string name;  // original Wan name
    Shape shape;       // PyTorch layout: Conv3d [out, in, kt, kh, kw], Conv2d [out, in, kh, kw], gamma [C, 1, 1(, 1)]
};

// Every decoder tensor (and conv2), in decode order.
std::vector<VaeWeightSpec> wan_vae_weight_specs(const WanVaeConfig& cfg);

// The original name of a checkpoint key (prefixes and wrapper names removed, diffusers names mapped; the flat
// index of a diffusers up block depends on num_res_blocks), or nullopt for keys that cannot name a decoder tensor.
std::optional<std::string> canonical_wan_vae_name(std::string_view key, int64_t num_res_blocks = 2);
// The diffusers AutoencoderKLWan name of an original decoder name (for messages), or nullopt.
std::optional<std::string> wan_vae_diffusers_name(std::string_view original, int64_t num_res_blocks = 2);

// Maps every spec name to the checkpoint key holding it, after checking presence, shape and a floating dtype. The
// first problem is an InputError naming the file and the tensor (and its diffusers name).
std::map<std::string, std::string> resolve_wan_vae_weights(const SafetensorsCheckpoint& ckpt, const WanVaeConfig& cfg);

// `base` updated from the checkpoint: __metadata__["config"] fields (z_dim, dim, dim_mult, num_res_blocks,
// temperal_upsample, latents_mean, latents_std) when present, else z_dim and dim from the shapes of conv2 and the
// head conv. InputError naming the file on malformed values.
WanVaeConfig wan_vae_config_from_checkpoint(const SafetensorsCheckpoint& ckpt, const WanVaeConfig& base);

// Deterministic weights for every spec tensor (F32, PyTorch layouts), from a counter-based generator keyed by
// (seed, name): conv weights ~ U(-1, 1) * sqrt(3 / fan_in), gains 1 +- 0.1, biases +- 0.02.
std::vector<std::pair<std::string, HostTensor>> make_default_wan_vae_weights(const WanVaeConfig& cfg,
                                                                             uint64_t seed = 2026);

}  // namespace lr
