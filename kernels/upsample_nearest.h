// Nearest-neighbour 2x spatial upsampling of a channels-last frame (the Wan VAE's Upsample(scale 2, "nearest"),
// applied per frame before the resample conv):
//   y[2i + a][2j + b][c] = x[i][j][c],  a, b in {0, 1}
// For an exact factor 2, PyTorch's "nearest" and "nearest-exact" (diffusers) pick the same source pixel.
#pragma once

#include <cstdint>

namespace lr {

struct UpsampleNearest2xParams {
    const float* x = nullptr;  // [height, width, channels], pixels x_pixel_stride elements apart
    float* y = nullptr;        // [2 * height, 2 * width, channels], contiguous; must not alias x
    int64_t height = 0;
    int64_t width = 0;
    int64_t channels = 0;
    int64_t x_pixel_stride = 0;  // 0: channels (a channel slice of a wider tensor otherwise)
};

void upsample_nearest2x_cpu(const UpsampleNearest2xParams& p);

}  // namespace lr
