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
    ASSERT_EQ(dir.entries().size(), 1u);
    const std::string temp = dir.entries()[0];
    EXPECT_EQ(temp.rfind(".v.mp4.", 0), 0u) << temp;
    EXPECT_TRUE(temp.ends_with(".partial")) << temp;
    // Noise does not compress: about 40 KiB a frame, so 32 frames overflow libavformat's I/O buffer.
    std::mt19937 rng(7);
    std::vector<uint8_t> rgb(size_t{256} * 128 * 3);
    for (int i = 0; i < 32; ++i) {
        for (auto& b : rgb) b = static_cast<uint8_t>(rng());
        write_rgb(*writer, rgb);
    }
    // The encoded frames are on disk already, not held in memory until finish().
    const auto streamed = fs::file_size(dir.file(temp));
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

namespace lr {
namespace {

// The fragments of a fragmented MP4: where each moof starts, where its mdat ends, and its sample count (trun).
struct Fragment {
    uint64_t moof_end = 0;
    uint64_t mdat_end = 0;
    int64_t samples = 0;
};

uint32_t be32(const std::string& b, uint64_t at) {
    return (uint32_t{static_cast<uint8_t>(b[at])} << 24) | (uint32_t{static_cast<uint8_t>(b[at + 1])} << 16) |
           (uint32_t{static_cast<uint8_t>(b[at + 2])} << 8) | uint32_t{static_cast<uint8_t>(b[at + 3])};
}

std::vector<Fragment> fragments_of(const std::string& b) {
    std::vector<Fragment> out;
    for (uint64_t at = 0; at + 8 <= b.size();) {
        const uint64_t size = be32(b, at);
        const std::string type = b.substr(at + 4, 4);
        if (size < 8) break;
        if (type == "moof") {
            Fragment f;
            f.moof_end = at + size;
            const size_t trun = b.find("trun", at);
            if (trun != std::string::npos && trun < at + size) f.samples = be32(b, trun + 8);  // after version+flags
            out.push_back(f);
        } else if (type == "mdat" && !out.empty()) {
            out.back().mdat_end = at + size;
        }
        at += size;
    }
    return out;
}

int64_t decoded_frames(const std::string& path) {
    FILE* pipe = ::popen(("ffprobe -v quiet -count_frames -select_streams v:0 -show_entries stream=nb_read_frames "
                          "-of csv=p=0 '" +
                          path + "' 2>/dev/null")
                             .c_str(),
                         "r");
    char buf[64] = {};
    const size_t n = pipe ? std::fread(buf, 1, sizeof(buf) - 1, pipe) : 0;
    if (pipe) ::pclose(pipe);
    return n > 0 ? std::atoll(buf) : 0;
}

TEST_F(Mp4WriterTest, FragmentedSoACutFilePlaysUpToItsLastFragment) {
    if (!have_ffmpeg_tools()) GTEST_SKIP() << "ffprobe/ffmpeg not on PATH";
    ScratchDir dir;
    const std::string path = dir.file("v.mp4");
    VideoSpec spec = spec_of(64, 32);
    spec.preset = "ultrafast";
    auto writer = open_video_writer(path, spec);
    const int frames = 80;  // 5 s at 16 fps: fragments at every keyframe (2 s) and at least every second
    for (int i = 0; i < frames; ++i) write_rgb(*writer, pattern_frame(i, 64, 32));
    writer->finish();
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::vector<Fragment> frags = fragments_of(bytes);
    ASSERT_GE(frags.size(), 4u) << "not a fragmented MP4";
    int64_t total = 0;
    for (const Fragment& f : frags) total += f.samples;
    EXPECT_EQ(total, frames);
    EXPECT_EQ(decoded_frames(path), frames);
    // Cut at random offsets: every fragment whose data is complete decodes; nothing of a fragment whose header is
    // missing does. Not inside a moof box: libavformat cannot open a file ending in half a moof, and the writer
    // flushes so that a moof always starts a write() (mp4_writer.cpp), so no killed process leaves one.
    std::mt19937 rng(11);
    for (int trial = 0; trial < 8; ++trial) {
        uint64_t cut = frags[0].moof_end + rng() % (bytes.size() - frags[0].moof_end);
        for (const Fragment& f : frags) {
            const uint64_t moof_start = &f == &frags[0] ? 0 : (&f)[-1].mdat_end;
            if (cut > moof_start && cut < f.moof_end) cut = f.moof_end;
        }
        int64_t complete = 0, started = 0;
        for (const Fragment& f : frags) {
            if (f.mdat_end <= cut) complete += f.samples;
            if (f.moof_end <= cut) started += f.samples;
        }
        const std::string cut_path = dir.file("cut" + std::to_string(trial) + ".mp4");
        std::ofstream(cut_path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(cut));
        const int64_t got = decoded_frames(cut_path);
        EXPECT_GE(got, complete) << "cut at byte " << cut << " of " << bytes.size();
        EXPECT_LE(got, started) << "cut at byte " << cut << " of " << bytes.size();
    }
}

}  // namespace
}  // namespace lr
