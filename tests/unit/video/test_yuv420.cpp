// rgb24_to_yuv420 against the textbook formulas, and the test pattern's properties.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "runtime/video/video_writer.h"
#include "runtime/video/yuv420.h"
#include "tests/unit/video/video_test_util.h"

namespace lr {
namespace {

using video_test::mean_abs_error;
using video_test::pattern_frame;

// One pixel (chroma: one 2x2 block of equal pixels) through the converter.
std::array<int, 3> convert_flat(uint8_t r, uint8_t g, uint8_t b, ColorMatrix matrix) {
    std::vector<uint8_t> rgb(size_t{2} * 2 * 3);
    for (size_t i = 0; i < rgb.size(); i += 3) {
        rgb[i] = r;
        rgb[i + 1] = g;
        rgb[i + 2] = b;
    }
    std::array<uint8_t, 4> y{};
    uint8_t u = 0;
    uint8_t v = 0;
    rgb24_to_yuv420(rgb.data(), 6, 2, 2, matrix, y.data(), &u, &v);
    return {y[0], u, v};
}

TEST(Yuv420, KnownColours) {
    for (ColorMatrix m : {ColorMatrix::kBt601, ColorMatrix::kBt709}) {
        EXPECT_EQ(convert_flat(0, 0, 0, m), (std::array<int, 3>{16, 128, 128}));
        EXPECT_EQ(convert_flat(255, 255, 255, m), (std::array<int, 3>{235, 128, 128}));
        EXPECT_EQ(convert_flat(128, 128, 128, m), (std::array<int, 3>{126, 128, 128}));
        EXPECT_EQ(convert_flat(0, 0, 255, m)[1], 240);  // U of pure blue is the top of the range
        EXPECT_EQ(convert_flat(255, 0, 0, m)[2], 240);  // V of pure red
    }
    // Luma of pure red and green tells the matrices apart: 16 + 219 * kr and 16 + 219 * kg.
    EXPECT_EQ(convert_flat(255, 0, 0, ColorMatrix::kBt601)[0], 81);
    EXPECT_EQ(convert_flat(255, 0, 0, ColorMatrix::kBt709)[0], 63);
    EXPECT_EQ(convert_flat(0, 255, 0, ColorMatrix::kBt601)[0], 145);
    EXPECT_EQ(convert_flat(0, 255, 0, ColorMatrix::kBt709)[0], 173);
}

TEST(Yuv420, MatchesDoublePrecisionFormulasOnRandomImages) {
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int> byte(0, 255);
    const int w = 38;
    const int h = 22;
    const int64_t stride = w * 3 + 7;  // padded rows: the padding must be ignored
    for (ColorMatrix m : {ColorMatrix::kBt601, ColorMatrix::kBt709}) {
        std::vector<uint8_t> rgb(static_cast<size_t>(stride) * h);
        for (auto& b : rgb) b = static_cast<uint8_t>(byte(rng));
        std::vector<uint8_t> y(size_t{w} * h);
        std::vector<uint8_t> u(y.size() / 4);
        std::vector<uint8_t> v(y.size() / 4);
        rgb24_to_yuv420(rgb.data(), stride, w, h, m, y.data(), u.data(), v.data());

        const double kr = m == ColorMatrix::kBt709 ? 0.2126 : 0.299;
        const double kb = m == ColorMatrix::kBt709 ? 0.0722 : 0.114;
        const double kg = 1 - kr - kb;
        auto at = [&](int row, int col, int ch) { return double(rgb[row * stride + int64_t{col} * 3 + ch]); };
        int max_diff = 0;
        for (int row = 0; row < h; ++row) {
            for (int col = 0; col < w; ++col) {
                const double yy = 16 + 219 * (kr * at(row, col, 0) + kg * at(row, col, 1) + kb * at(row, col, 2)) / 255;
                max_diff = std::max(max_diff, std::abs(int(y[row * w + col]) - int(std::lround(yy))));
            }
        }
        for (int row = 0; row < h; row += 2) {
            for (int col = 0; col < w; col += 2) {
                double r = 0;
                double g = 0;
                double b = 0;
                for (int dy = 0; dy < 2; ++dy) {
                    for (int dx = 0; dx < 2; ++dx) {
                        r += at(row + dy, col + dx, 0) / 4;
                        g += at(row + dy, col + dx, 1) / 4;
                        b += at(row + dy, col + dx, 2) / 4;
                    }
                }
                const double luma = kr * r + kg * g + kb * b;
                const double uu = 128 + 224 * (b - luma) / (2 * (1 - kb)) / 255;
                const double vv = 128 + 224 * (r - luma) / (2 * (1 - kr)) / 255;
                const int c = (row / 2) * (w / 2) + col / 2;
                max_diff = std::max(max_diff, std::abs(int(u[c]) - int(std::lround(uu))));
                max_diff = std::max(max_diff, std::abs(int(v[c]) - int(std::lround(vv))));
            }
        }
        EXPECT_LE(max_diff, 1) << "matrix " << int(m);
    }
}

TEST(Yuv420, HdUsesBt709) {
    EXPECT_EQ(color_matrix_for_rows(480), ColorMatrix::kBt601);
    EXPECT_EQ(color_matrix_for_rows(718), ColorMatrix::kBt601);
    EXPECT_EQ(color_matrix_for_rows(720), ColorMatrix::kBt709);
    EXPECT_EQ(color_matrix_for_rows(1080), ColorMatrix::kBt709);
}

TEST(TestPattern, DeterministicAndRespectsStride) {
    const int w = 40;
    const int h = 30;
    const std::vector<uint8_t> a = pattern_frame(5, w, h);
    EXPECT_EQ(a, pattern_frame(5, w, h));
    const int64_t stride = w * 3 + 5;
    std::vector<uint8_t> padded(static_cast<size_t>(stride) * h, 0xAB);
    fill_test_pattern(5, w, h, padded.data(), stride);
    for (int row = 0; row < h; ++row) {
        for (int i = 0; i < w * 3; ++i) ASSERT_EQ(padded[row * stride + i], a[row * w * 3 + i]);
        for (int i = w * 3; i < stride; ++i) ASSERT_EQ(padded[row * stride + i], 0xAB) << "wrote into padding";
    }
}

TEST(TestPattern, FramesDifferAndUseTheRange) {
    const int w = 128;
    const int h = 64;
    for (int i = 0; i < 16; ++i) {
        // Neighbouring frames differ clearly, so a dropped, repeated or swapped frame shows in comparisons.
        EXPECT_GT(video_test::max_channel(mean_abs_error(pattern_frame(i, w, h), pattern_frame(i + 1, w, h))), 10.0)
            << "frames " << i << " and " << i + 1;
    }
    const std::vector<uint8_t> f = pattern_frame(3, w, h);
    const auto [lo, hi] = std::minmax_element(f.begin(), f.end());
    EXPECT_EQ(*lo, 0);
    EXPECT_EQ(*hi, 255);
}

TEST(TestPattern, TinyAndOddSizes) {
    for (int w : {1, 2, 3, 7}) {
        for (int h : {1, 2, 5}) {
            std::vector<uint8_t> rgb = pattern_frame(9, w, h);
            EXPECT_EQ(rgb.size(), static_cast<size_t>(w * h * 3));
        }
    }
}

}  // namespace
}  // namespace lr
