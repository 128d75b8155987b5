#include "runtime/video/yuv420.h"

#include <cmath>

#include "runtime/core/check.h"

namespace lr {
namespace {

// Q16 coefficients of Y = 16 + 219/255 * (kr R + kg G + kb B) and U, V = 128 + 224/255 * (B - Y') /
// (2 (1 - kb)) and (R - Y') / (2 (1 - kr)), with kg = 1 - kr - kb.
struct YuvCoefficients {
    int32_t yr, yg, yb;
    int32_t ur, ug, ub;
    int32_t vr, vg, vb;
};

constexpr int kShift = 16;
// The black level plus one half, for rounding.
constexpr int32_t kLumaOffset = (16 << kShift) + (1 << (kShift - 1));
// Chroma sums four pixels: two more bits of scale.
constexpr int32_t kChromaOffset = (128 << (kShift + 2)) + (1 << (kShift + 1));

int32_t q16(double x) { return static_cast<int32_t>(std::lround(x * (1 << kShift))); }

YuvCoefficients coefficients_for(ColorMatrix matrix) {
    const double kr = matrix == ColorMatrix::kBt709 ? 0.2126 : 0.299;
    const double kb = matrix == ColorMatrix::kBt709 ? 0.0722 : 0.114;
    const double kg = 1.0 - kr - kb;
    const double ys = 219.0 / 255.0;
    const double cs = 224.0 / 255.0;
    const double us = cs / (2.0 * (1.0 - kb));
    const double vs = cs / (2.0 * (1.0 - kr));
    return {q16(ys * kr),         q16(ys * kg),         q16(ys * kb),  q16(-us * kr), q16(-us * kg),
            q16(us * (1.0 - kb)), q16(vs * (1.0 - kr)), q16(-vs * kg), q16(-vs * kb)};
}

}  // namespace

ColorMatrix color_matrix_for_rows(int output_rows) {
    return output_rows >= 720 ? ColorMatrix::kBt709 : ColorMatrix::kBt601;
}

void rgb24_to_yuv420(const uint8_t* rgb, int64_t stride_bytes, int width, int height, ColorMatrix matrix, uint8_t* y,
                     uint8_t* u, uint8_t* v) {
    LR_ASSERT(width > 0 && height > 0 && width % 2 == 0 && height % 2 == 0, "width ", width, " height ", height);
    LR_ASSERT(stride_bytes >= int64_t{width} * 3, "stride ", stride_bytes, " < width*3 ", width * 3);
    const YuvCoefficients c = coefficients_for(matrix);
    const int half_w = width / 2;
    auto luma = [&c](const uint8_t* px) {
        return static_cast<uint8_t>((c.yr * px[0] + c.yg * px[1] + c.yb * px[2] + kLumaOffset) >> kShift);
    };
    for (int row = 0; row < height; row += 2) {
        const uint8_t* p0 = rgb + row * stride_bytes;
        const uint8_t* p1 = p0 + stride_bytes;
        uint8_t* y0 = y + static_cast<int64_t>(row) * width;
        uint8_t* y1 = y0 + width;
        uint8_t* u_row = u + static_cast<int64_t>(row / 2) * half_w;
        uint8_t* v_row = v + static_cast<int64_t>(row / 2) * half_w;
        for (int x = 0; x < width; ++x) {
            y0[x] = luma(p0 + 3 * static_cast<int64_t>(x));
            y1[x] = luma(p1 + 3 * static_cast<int64_t>(x));
        }
        for (int cx = 0; cx < half_w; ++cx) {
            const int i = 6 * cx;
            const int32_t r = p0[i] + p0[i + 3] + p1[i] + p1[i + 3];
            const int32_t g = p0[i + 1] + p0[i + 4] + p1[i + 1] + p1[i + 4];
            const int32_t b = p0[i + 2] + p0[i + 5] + p1[i + 2] + p1[i + 5];
            // The offsets keep the sums positive (|U - 128|, |V - 128| <= 112), so >> rounds correctly.
            u_row[cx] = static_cast<uint8_t>((c.ur * r + c.ug * g + c.ub * b + kChromaOffset) >> (kShift + 2));
            v_row[cx] = static_cast<uint8_t>((c.vr * r + c.vg * g + c.vb * b + kChromaOffset) >> (kShift + 2));
        }
    }
}

}  // namespace lr
