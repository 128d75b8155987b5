#include "kernels/upsample_nearest.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu_parallel.h"
#include "runtime/core/check.h"

namespace lr {

void upsample_nearest2x_cpu(const UpsampleNearest2xParams& p) {
    LR_ASSERT(p.x && p.y && p.height > 0 && p.width > 0 && p.channels > 0, "upsample_nearest2x: bad arguments");
    const int64_t c = p.channels;
    const int64_t xs = p.x_pixel_stride > 0 ? p.x_pixel_stride : c;
    const int64_t out_row = 2 * p.width * c;  // elements of one output row
    const size_t pixel_bytes = static_cast<size_t>(c) * sizeof(float);
    // Each input row makes two identical output rows: build the first, copy it to the second.
    parallel_for(p.height, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, out_row)),
                 [&](int64_t r0, int64_t r1) {
                     for (int64_t i = r0; i < r1; ++i) {
                         const float* src = p.x + i * p.width * xs;
                         float* dst = p.y + 2 * i * out_row;
                         for (int64_t j = 0; j < p.width; ++j) {
                             std::memcpy(dst + 2 * j * c, src + j * xs, pixel_bytes);
                             std::memcpy(dst + (2 * j + 1) * c, src + j * xs, pixel_bytes);
                         }
                         std::memcpy(dst + out_row, dst, static_cast<size_t>(out_row) * sizeof(float));
                     }
                 });
}

}  // namespace lr
