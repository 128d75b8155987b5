// RGB24 -> limited-range YUV 4:2:0, the colour convention of every longroll video (video_writer.h).
#pragma once

#include <cstdint>

namespace lr {

enum class ColorMatrix { kBt601, kBt709 };

// BT.709 for HD output (at least 720 rows, counted after the crop), BT.601 below.
ColorMatrix color_matrix_for_rows(int output_rows);

// Converts the top `height` rows of an RGB24 image to planar YUV 4:2:0, limited range (Y 16..235,
// U/V 16..240). Chroma is the average of each 2x2 block (centred siting, Y4M's "420jpeg"). Fixed-point
// integer arithmetic, so the output is the same on every machine. width and height must be even.
//   rgb [height][stride_bytes] (width*3 used)   y [height][width]   u, v [height/2][width/2]
void rgb24_to_yuv420(const uint8_t* rgb, int64_t stride_bytes, int width, int height, ColorMatrix matrix, uint8_t* y,
                     uint8_t* u, uint8_t* v);

}  // namespace lr
