// fill_test_pattern (video_writer.h): synthetic frames for tests and for trying the output path without a
// model. Integer arithmetic only, so every machine produces the same bytes.
#include <algorithm>
#include <array>
#include <cstdint>

#include "runtime/core/check.h"
#include "runtime/video/video_writer.h"

namespace lr {

void fill_test_pattern(int64_t frame_index, int width, int height, uint8_t* rgb, int64_t stride_bytes) {
    LR_ASSERT(width > 0 && height > 0, "test pattern of ", width, "x", height);
    LR_ASSERT(stride_bytes >= int64_t{width} * 3, "stride ", stride_bytes, " < width*3 ", width * 3);
    LR_ASSERT(frame_index >= 0, "frame index ", frame_index);
    // 75% bars (white, yellow, cyan, green, magenta, red, blue, black).
    static constexpr std::array<std::array<uint8_t, 3>, 8> kBars = {{{192, 192, 192},
                                                                     {192, 192, 0},
                                                                     {0, 192, 192},
                                                                     {0, 192, 0},
                                                                     {192, 0, 192},
                                                                     {192, 0, 0},
                                                                     {0, 0, 192},
                                                                     {0, 0, 0}}};
    // Every edge (bar sides, the bars' bottom, the block) lies on the 2x2 grid of 4:2:0 chroma, so a
    // YUV round trip loses little and comparisons measure the writer rather than chroma subsampling.
    const int64_t bar_width = std::max(2, (width / 8) & ~1);
    const int64_t shift = frame_index * std::max(2, (width / 32) & ~1);
    const int bars_end = (height * 2 / 3) & ~1;
    const int64_t x_span = std::max(1, width - 1);
    const int64_t y_span = std::max(1, height - bars_end - 1);
    const auto blue = static_cast<uint8_t>((frame_index * 8) & 255);

    const int block = std::max(2, (std::min(width, height) / 6) & ~1);
    const int64_t block_x = ((frame_index * 10) % std::max(1, width - block + 1)) & ~1;
    const int64_t block_y = ((frame_index * 6) % std::max(1, height - block + 1)) & ~1;
    const std::array<uint8_t, 3> block_rgb = {static_cast<uint8_t>((frame_index * 37 + 40) & 255),
                                              static_cast<uint8_t>(255 - ((frame_index * 91) & 255)),
                                              static_cast<uint8_t>((frame_index * 53 + 200) & 255)};

    for (int y = 0; y < height; ++y) {
        uint8_t* row = rgb + y * stride_bytes;
        for (int x = 0; x < width; ++x) {
            uint8_t* px = row + 3 * static_cast<int64_t>(x);
            if (y >= block_y && y < block_y + block && x >= block_x && x < block_x + block) {
                std::copy(block_rgb.begin(), block_rgb.end(), px);
            } else if (y < bars_end) {
                const auto& bar = kBars[static_cast<size_t>(((x + shift) / bar_width) % 8)];
                std::copy(bar.begin(), bar.end(), px);
            } else {
                px[0] = static_cast<uint8_t>(int64_t{x} * 255 / x_span);
                px[1] = static_cast<uint8_t>(int64_t{y - bars_end} * 255 / y_span);
                px[2] = blue;
            }
        }
    }
}

}  // namespace lr
