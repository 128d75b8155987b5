// Patch embedding as a linear map, and its inverse for the head's output.
//
// Wan's patch_embedding is a Conv3d with kernel = stride = (pt, ph, pw): each patch is a dot product of the
// weight [dim, C, pt, ph, pw] with the patch's C*pt*ph*pw values. `patchify` gathers every patch into a row
// ordered (c, kt, kh, kw), so that the Conv3d weight, viewed as [dim, C*pt*ph*pw], is a Linear weight.
// Tokens come out in the reference order: frame, row, column.
//
// The head produces pt*ph*pw*C values per token ordered (kt, kh, kw, c) with the channel fastest (the
// reference's unpatchify einsum 'fhwpqrc->cfphqwr'); `unpatchify` scatters them back.
//
// Latents are [frames, channels, height, width] here (frame-major, as the rollout stores them); the
// reference's [channels, frames, height, width] is the same data permuted.
#pragma once

#include <cstdint>

namespace lr {

struct PatchShape {
    int64_t frames = 0;  // latent frames (a multiple of pt)
    int64_t channels = 0;
    int64_t height = 0;  // latent rows (a multiple of ph)
    int64_t width = 0;   // latent columns (a multiple of pw)
    int64_t pt = 1;
    int64_t ph = 2;
    int64_t pw = 2;

    int64_t tokens() const { return (frames / pt) * (height / ph) * (width / pw); }
    int64_t patch_size() const { return channels * pt * ph * pw; }
};

struct PatchifyParams {
    const float* x = nullptr;  // [frames, channels, height, width]
    float* patches = nullptr;  // [tokens, channels * pt * ph * pw], inner order (c, kt, kh, kw)
    PatchShape shape;
};

struct UnpatchifyParams {
    const float* patches = nullptr;  // [tokens, pt * ph * pw * channels], inner order (kt, kh, kw, c)
    float* x = nullptr;              // [frames, channels, height, width]
    PatchShape shape;
};

void patchify_cpu(const PatchifyParams& p);
void unpatchify_cpu(const UnpatchifyParams& p);

}  // namespace lr
