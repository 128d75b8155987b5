// The MP4 writer, read back with ffprobe and decoded with ffmpeg. Skipped in builds without MP4 support
// and where the ffmpeg programs are missing.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/video/video_writer.h"
#include "runtime/video/yuv420.h"
#include "tests/unit/video/video_test_util.h"

namespace lr {
namespace {

using namespace video_test;

class Mp4WriterTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!mp4_supported()) GTEST_SKIP() << "built without MP4 support (or libavcodec has no libx264)";
    }
};

VideoSpec spec_of(int width, int height, int crop_height = 0) {
    VideoSpec spec;
    spec.width = width;
    spec.height = height;
    spec.crop_height = crop_height;
    return spec;
}

// Writes the pattern with the default encoder settings (crf 18, preset medium), then checks what ffprobe
// reports and that every decoded frame is close to the pattern frame of the same index.
void check_mp4_round_trip(int width, int height, int crop_height, int frames) {
    ScratchDir dir;
    const std::string path = dir.file("clip.mp4");
    const int rows = crop_height > 0 ? crop_height : height;
    {
        auto writer = open_video_writer(path, spec_of(width, height, crop_height));
        write_pattern(*writer, frames);
        EXPECT_EQ(writer->frames_written(), frames);
    }
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"clip.mp4"}) << "temporary file left behind";

    auto info = probe(path);
    EXPECT_EQ(info["codec_name"], "h264");
    EXPECT_EQ(info["nb_read_frames"], std::to_string(frames));
    EXPECT_EQ(info["width"], std::to_string(width));
    EXPECT_EQ(info["height"], std::to_string(rows));
    EXPECT_EQ(info["pix_fmt"], "yuv420p");
    EXPECT_EQ(info["r_frame_rate"], "16/1");
    EXPECT_NEAR(std::stod(info["duration"]), frames / 16.0, 1e-3);
    const ColorMatrix matrix = color_matrix_for_rows(rows);
    const std::string tag = matrix == ColorMatrix::kBt709 ? "bt709" : "smpte170m";
    EXPECT_EQ(info["color_range"], "tv");
    EXPECT_EQ(info["color_space"], tag);
    EXPECT_EQ(info["color_primaries"], tag);
    EXPECT_EQ(info["color_transfer"], tag);
    EXPECT_EQ(info["chroma_location"], "center");

    const auto decoded = decode_with_ffmpeg(path, width, rows, matrix);
    ASSERT_EQ(decoded.size(), static_cast<size_t>(frames));
    for (int i = 0; i < frames; ++i) {
        const std::vector<uint8_t> want = top_rows(pattern_frame(i, width, height), width, rows);
        const auto err = mean_abs_error(decoded[i], want);
        EXPECT_LT(max_channel(err), 5.0) << "frame " << i << " errors " << err[0] << " " << err[1] << " " << err[2];
        if (i + 1 < frames) {
            // The comparison tells frames apart: a frame out of order would fail it.
            const auto other = top_rows(pattern_frame(i + 1, width, height), width, rows);
            EXPECT_GT(max_channel(mean_abs_error(decoded[i], other)), 8.0) << "frame " << i;
        }
    }
}

TEST_F(Mp4WriterTest, SmallClipRoundTrips) {
    if (!have_ffmpeg_tools()) GTEST_SKIP() << "ffprobe/ffmpeg not on PATH";
    check_mp4_round_trip(128, 64, 0, 17);
}

TEST_F(Mp4WriterTest, CropKeepsTheTopRows) {
    if (!have_ffmpeg_tools()) GTEST_SKIP() << "ffprobe/ffmpeg not on PATH";
    check_mp4_round_trip(64, 80, 72, 17);
}

TEST_F(Mp4WriterTest, HdIsTaggedAndEncodedBt709) {
    if (!have_ffmpeg_tools()) GTEST_SKIP() << "ffprobe/ffmpeg not on PATH";
    check_mp4_round_trip(1280, 720, 0, 5);
}

TEST_F(Mp4WriterTest, HdWithWrongMatrixWouldFail) {
    if (!have_ffmpeg_tools()) GTEST_SKIP() << "ffprobe/ffmpeg not on PATH";
    ScratchDir dir;
    const std::string path = dir.file("hd.mp4");
    auto writer = open_video_writer(path, spec_of(1280, 720));
    write_pattern(*writer, 1);
    const auto decoded = decode_with_ffmpeg(path, 1280, 720, ColorMatrix::kBt601);
    ASSERT_EQ(decoded.size(), 1u);
    EXPECT_GT(max_channel(mean_abs_error(decoded[0], pattern_frame(0, 1280, 720))), 4.0);
}

TEST_F(Mp4WriterTest, EncoderSettingsTakeEffect) {
    if (!have_ffmpeg_tools()) GTEST_SKIP() << "ffprobe/ffmpeg not on PATH";
    // A higher CRF gives a smaller file and a larger error.
    ScratchDir dir;
    std::vector<double> errors;
    std::vector<uintmax_t> sizes;
    for (int crf : {10, 40}) {
        VideoSpec spec = spec_of(128, 64);
        spec.crf = crf;
        spec.preset = "ultrafast";
        const std::string path = dir.file("crf" + std::to_string(crf) + ".mp4");
        auto writer = open_video_writer(path, spec);
        write_pattern(*writer, 8);
        sizes.push_back(fs::file_size(path));
        const auto decoded = decode_with_ffmpeg(path, 128, 64, ColorMatrix::kBt601);
        ASSERT_EQ(decoded.size(), 8u);
        errors.push_back(max_channel(mean_abs_error(decoded[7], pattern_frame(7, 128, 64))));
    }
    EXPECT_LT(sizes[1], sizes[0]);
    EXPECT_LT(errors[0], errors[1]);
}

TEST_F(Mp4WriterTest, StreamsToTheTemporaryFileBeforeFinish) {
    ScratchDir dir;
    const std::string path = dir.file("v.mp4");
    VideoSpec spec = spec_of(256, 128);
    spec.preset = "ultrafast";  // no lookahead: packets leave the encoder as frames arrive
    auto writer = open_video_writer(path, spec);
    EXPECT_EQ(dir.entries(), std::vector<std::string>{".v.mp4.partial"});
    // Noise does not compress: about 40 KiB a frame, so 32 frames overflow libavformat's I/O buffer.
    std::mt19937 rng(7);
    std::vector<uint8_t> rgb(size_t{256} * 128 * 3);
    for (int i = 0; i < 32; ++i) {
        for (auto& b : rgb) b = static_cast<uint8_t>(rng());
        write_rgb(*writer, rgb);
    }
    // The encoded frames are on disk already, not held in memory until finish().
    const auto streamed = fs::file_size(dir.file(".v.mp4.partial"));
    EXPECT_GT(streamed, 256u * 1024);
    EXPECT_FALSE(fs::exists(path));
    writer->finish();
    writer->finish();  // idempotent
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"v.mp4"});
    EXPECT_GE(fs::file_size(path), streamed);
    if (have_ffmpeg_tools()) {
        EXPECT_EQ(probe(path)["nb_read_frames"], "32");
    }
}

TEST_F(Mp4WriterTest, AbandonedWriterLeavesNothingAndKeepsAnExistingFile) {
    ScratchDir dir;
    const std::string path = dir.file("v.mp4");
    std::ofstream(path) << "the previous video";
    try {
        auto writer = open_video_writer(path, spec_of(64, 32));
        for (int i = 0; i < 5; ++i) {
            const std::vector<uint8_t> rgb = pattern_frame(i, 64, 32);
            write_rgb(*writer, rgb);
        }
        throw std::runtime_error("the rollout failed");
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(read_file(path), "the previous video");
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"v.mp4"});
}

TEST_F(Mp4WriterTest, ColonInARelativeFileNameIsNotAProtocol) {
    ScratchDir dir;
    {
        struct CwdGuard {
            fs::path old = fs::current_path();
            ~CwdGuard() { fs::current_path(old); }
        } guard;
        fs::current_path(dir.file(""));
        auto writer = open_video_writer("take:2.mp4", spec_of(64, 32));
        write_pattern(*writer, 3);
    }
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"take:2.mp4"});
    if (have_ffmpeg_tools()) {
        EXPECT_EQ(probe("file:" + dir.file("take:2.mp4"))["nb_read_frames"], "3");
    }
}

TEST_F(Mp4WriterTest, WriteAfterFinishIsABug) {
    ScratchDir dir;
    auto writer = open_video_writer(dir.file("v.mp4"), spec_of(64, 32));
    write_pattern(*writer, 2);
    const std::vector<uint8_t> rgb = pattern_frame(0, 64, 32);
    EXPECT_THROW(write_rgb(*writer, rgb), InternalError);
}

}  // namespace
}  // namespace lr
