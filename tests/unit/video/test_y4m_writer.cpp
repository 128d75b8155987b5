// The Y4M writer: exact bytes, colour round trip, cropping, and the write-then-rename life cycle. Read back
// with an independent parser (always) and with ffprobe/ffmpeg (when installed).
#include <gtest/gtest.h>

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/core/output_file.h"
#include "runtime/video/partial_file.h"
#include "runtime/video/video_writer.h"
#include "runtime/video/yuv420.h"
#include "tests/unit/video/video_test_util.h"

namespace lr {
namespace {

using namespace video_test;

VideoSpec spec_of(int width, int height, int crop_height = 0) {
    VideoSpec spec;
    spec.width = width;
    spec.height = height;
    spec.crop_height = crop_height;
    return spec;
}

// The planes rgb24_to_yuv420 makes of the top `rows` rows of pattern frame `index`.
std::vector<uint8_t> expected_planes(int64_t index, int width, int height, int rows) {
    const std::vector<uint8_t> rgb = pattern_frame(index, width, height);
    std::vector<uint8_t> yuv(static_cast<size_t>(width) * rows * 3 / 2);
    const size_t luma = static_cast<size_t>(width) * rows;
    rgb24_to_yuv420(rgb.data(), int64_t{width} * 3, width, rows, color_matrix_for_rows(rows), yuv.data(),
                    yuv.data() + luma, yuv.data() + luma + luma / 4);
    return yuv;
}

// Writes the pattern, then checks header, frame count, the planes and the colour round trip.
void check_y4m_round_trip(int width, int height, int crop_height, int frames, ColorMatrix matrix) {
    ScratchDir dir;
    const std::string path = dir.file("clip.y4m");
    const int rows = crop_height > 0 ? crop_height : height;
    {
        auto writer = open_video_writer(path, spec_of(width, height, crop_height));
        write_pattern(*writer, frames);
        EXPECT_EQ(writer->frames_written(), frames);
    }
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"clip.y4m"}) << "temporary file left behind";
    const Y4mFile y4m = read_y4m(path);
    EXPECT_EQ(y4m.header,
              str_cat("YUV4MPEG2 W", width, " H", rows, " F16:1 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=LIMITED"));
    ASSERT_EQ(y4m.frames.size(), static_cast<size_t>(frames));
    for (int i = 0; i < frames; ++i) {
        EXPECT_EQ(y4m.frames[i], expected_planes(i, width, height, rows)) << "frame " << i;
        // Back to RGB with the textbook inverse: only rounding and 2x2 chroma averaging remain.
        const std::vector<uint8_t> rgb = yuv420_to_rgb_reference(y4m.frames[i], width, rows, matrix);
        const auto err = mean_abs_error(rgb, top_rows(pattern_frame(i, width, height), width, rows));
        EXPECT_LT(max_channel(err), 2.0) << "frame " << i << " errors " << err[0] << " " << err[1] << " " << err[2];
    }
}

TEST(Y4mWriter, SmallClipRoundTrips) { check_y4m_round_trip(128, 64, 0, 17, ColorMatrix::kBt601); }

TEST(Y4mWriter, CropKeepsTheTopRows) { check_y4m_round_trip(64, 80, 72, 9, ColorMatrix::kBt601); }

TEST(Y4mWriter, HdUsesBt709) {
    check_y4m_round_trip(1280, 720, 0, 5, ColorMatrix::kBt709);
    // The same file read with the other matrix is visibly off: the check above does tell them apart.
    ScratchDir dir;
    auto writer = open_video_writer(dir.file("hd.y4m"), spec_of(1280, 720));
    write_pattern(*writer, 1);
    const Y4mFile y4m = read_y4m(dir.file("hd.y4m"));
    ASSERT_EQ(y4m.frames.size(), 1u);
    const auto wrong = mean_abs_error(yuv420_to_rgb_reference(y4m.frames[0], 1280, 720, ColorMatrix::kBt601),
                                      pattern_frame(0, 1280, 720));
    EXPECT_GT(max_channel(wrong), 4.0);
}

TEST(Y4mWriter, FileSizeIsExact) {
    ScratchDir dir;
    const std::string path = dir.file("size.y4m");
    auto writer = open_video_writer(path, spec_of(64, 80, 72));
    write_pattern(*writer, 3);
    const std::string header = "YUV4MPEG2 W64 H72 F16:1 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=LIMITED\n";
    EXPECT_EQ(fs::file_size(path), header.size() + 3 * (6 + size_t{64} * 72 * 3 / 2));
}

TEST(Y4mWriter, HonoursRowStride) {
    ScratchDir dir;
    const int w = 48;
    const int h = 32;
    const int64_t stride = w * 3 + 20;
    {
        auto writer = open_video_writer(dir.file("strided.y4m"), spec_of(w, h));
        std::vector<uint8_t> padded(static_cast<size_t>(stride) * h);
        for (int i = 0; i < 4; ++i) {
            std::fill(padded.begin(), padded.end(), static_cast<uint8_t>(0x5A + i));  // garbage in the padding
            fill_test_pattern(i, w, h, padded.data(), stride);
            writer->write_frame(padded.data(), stride);
        }
        writer->finish();
    }
    {
        auto writer = open_video_writer(dir.file("compact.y4m"), spec_of(w, h));
        write_pattern(*writer, 4);
    }
    EXPECT_EQ(read_file(dir.file("strided.y4m")), read_file(dir.file("compact.y4m")));
}

TEST(Y4mWriter, ReadableByFfmpeg) {
    if (!have_ffmpeg_tools()) GTEST_SKIP() << "ffprobe/ffmpeg not on PATH";
    ScratchDir dir;
    const std::string path = dir.file("clip.y4m");
    auto writer = open_video_writer(path, spec_of(64, 80, 72));
    write_pattern(*writer, 17);
    auto info = probe(path);
    EXPECT_EQ(info["nb_read_frames"], "17");
    EXPECT_EQ(info["width"], "64");
    EXPECT_EQ(info["height"], "72");
    EXPECT_EQ(info["r_frame_rate"], "16/1");
    EXPECT_EQ(info["pix_fmt"], "yuv420p");
    EXPECT_EQ(info["color_range"], "tv");
    const auto frames = decode_with_ffmpeg(path, 64, 72, ColorMatrix::kBt601);
    ASSERT_EQ(frames.size(), 17u);
    for (int i = 0; i < 17; ++i) {
        // ffmpeg interpolates chroma instead of repeating it: slightly more error at colour edges.
        const auto err = mean_abs_error(frames[i], top_rows(pattern_frame(i, 64, 80), 64, 72));
        EXPECT_LT(max_channel(err), 3.0) << "frame " << i;
    }
}

TEST(Y4mWriter, TemporaryFileUntilFinish) {
    ScratchDir dir;
    const std::string path = dir.file("v.y4m");
    auto writer = open_video_writer(path, spec_of(32, 16));
    ASSERT_EQ(dir.entries().size(), 1u);
    EXPECT_EQ(dir.entries()[0].rfind(".v.y4m.", 0), 0u) << dir.entries()[0];
    EXPECT_TRUE(dir.entries()[0].ends_with(".partial")) << dir.entries()[0];
    const std::vector<uint8_t> rgb = pattern_frame(0, 32, 16);
    write_rgb(*writer, rgb);
    write_rgb(*writer, rgb);
    EXPECT_FALSE(fs::exists(path));
    writer->finish();
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"v.y4m"});
    const auto size = fs::file_size(path);
    writer->finish();  // idempotent
    EXPECT_EQ(fs::file_size(path), size);
    EXPECT_EQ(writer->frames_written(), 2);
    EXPECT_EQ(read_y4m(path).frames.size(), 2u);
    EXPECT_THROW(write_rgb(*writer, rgb), InternalError);
}

TEST(Y4mWriter, AbandonedWriterLeavesNothing) {
    ScratchDir dir;
    const std::string path = dir.file("v.y4m");
    try {
        auto writer = open_video_writer(path, spec_of(32, 16));
        const std::vector<uint8_t> rgb = pattern_frame(0, 32, 16);
        write_rgb(*writer, rgb);
        throw std::runtime_error("the rollout failed");
    } catch (const std::runtime_error&) {
    }
    EXPECT_TRUE(dir.entries().empty());
}

TEST(Y4mWriter, ExistingFileSurvivesAnAbandonedWriteAndIsReplacedByAFinishedOne) {
    ScratchDir dir;
    const std::string path = dir.file("v.y4m");
    std::ofstream(path) << "the previous video";
    {
        auto writer = open_video_writer(path, spec_of(32, 16));
        const std::vector<uint8_t> rgb = pattern_frame(0, 32, 16);
        write_rgb(*writer, rgb);
    }
    EXPECT_EQ(read_file(path), "the previous video");
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"v.y4m"});
    {
        auto writer = open_video_writer(path, spec_of(32, 16));
        write_pattern(*writer, 3);
    }
    EXPECT_EQ(read_y4m(path).frames.size(), 3u);
}

TEST(Y4mWriter, ZeroFramesGiveAHeaderOnlyFile) {
    ScratchDir dir;
    const std::string path = dir.file("empty.y4m");
    auto writer = open_video_writer(path, spec_of(32, 16));
    writer->finish();
    const Y4mFile y4m = read_y4m(path);
    EXPECT_EQ(y4m.width, 32);
    EXPECT_TRUE(y4m.frames.empty());
}

TEST(Y4mWriter, AnotherWritersTemporaryFileIsNeverTouched) {
    ScratchDir dir;
    const std::string path = dir.file("v.y4m");
    const std::string other = partial_path_for(path);  // another run's (or a killed run's) temporary file
    std::ofstream(other) << std::string(100000, 'x');
    auto writer = open_video_writer(path, spec_of(32, 16));
    write_pattern(*writer, 2);
    EXPECT_EQ(read_y4m(path).frames.size(), 2u);
    EXPECT_EQ(fs::file_size(other), 100000u);
    // The run that holds the output's lock removes what killed runs left (generate does, after locking).
    remove_stale_temporaries(path);
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"v.y4m"});
}

}  // namespace
}  // namespace lr
