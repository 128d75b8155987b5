#include "launch/latent_preview.h"

#include <algorithm>
#include <cmath>

namespace lr {

void latent_preview(const float* latent, int64_t h, int64_t w, uint8_t* rgb, int64_t stride_bytes) {
    constexpr int kScale = 8;  // the VAE's spatial factor
    for (int64_t y = 0; y < h * kScale; ++y) {
        uint8_t* row = rgb + y * stride_bytes;
        for (int64_t x = 0; x < w * kScale; ++x) {
            const int64_t i = (y / kScale) * w + x / kScale;
            for (int c = 0; c < 3; ++c) {
                const float v = 127.5f + 48.0f * latent[c * h * w + i];
                row[x * 3 + c] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
            }
        }
    }
}

}  // namespace lr
