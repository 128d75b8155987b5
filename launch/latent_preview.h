// A latent preview: the video frames a latent frame stands for, without the VAE. Channels 0-2 of the
// (roughly unit-variance) latent become R, G, B around mid-grey, each latent pixel an 8x8 block. Used until the
// VAE decoder is in; it shows the model's output moving, not what the trained VAE would draw.
#pragma once

#include <cstdint>

namespace lr {

// latent: [channels >= 3, h, w] -> rgb: [8h rows][8w columns][3], row stride `stride_bytes`.
void latent_preview(const float* latent, int64_t h, int64_t w, uint8_t* rgb, int64_t stride_bytes);

}  // namespace lr
