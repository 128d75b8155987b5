// open_video_writer: every check on the path and the spec happens here, before a file is created; the
// format writers (y4m_writer.cpp, mp4_writer.cpp) can then assume a valid spec.
#include "runtime/video/video_writer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>
#include <string_view>

#include "runtime/core/check.h"
#include "runtime/video/partial_file.h"
#include "runtime/video/y4m_writer.h"
#ifdef LONGROLL_HAS_MP4
#include "runtime/video/mp4_writer.h"
#endif

namespace lr {
namespace {

// Far above any model resolution, and small enough that frame sizes never overflow.
constexpr int kMaxDimension = 16384;

constexpr std::array<std::string_view, 10> kX264Presets = {"ultrafast", "superfast", "veryfast", "faster",   "fast",
                                                           "medium",    "slow",      "slower",   "veryslow", "placebo"};

void check_spec(const std::string& path, const VideoSpec& spec, VideoFormat format) {
    LR_CHECK(spec.width > 0 && spec.width <= kMaxDimension, "video '", path, "': width must be in 1..", kMaxDimension,
             ", found ", spec.width);
    LR_CHECK(spec.height > 0 && spec.height <= kMaxDimension, "video '", path, "': height must be in 1..",
             kMaxDimension, ", found ", spec.height);
    LR_CHECK(spec.width % 2 == 0, "video '", path, "': width must be even (4:2:0 chroma), found ", spec.width);
    LR_CHECK(spec.height % 2 == 0, "video '", path, "': height must be even (4:2:0 chroma), found ", spec.height);
    LR_CHECK(spec.crop_height >= 0 && spec.crop_height <= spec.height && spec.crop_height % 2 == 0, "video '", path,
             "': crop_height must be 0 (no crop) or an even number of rows <= height (", spec.height, "), found ",
             spec.crop_height);
    LR_CHECK(spec.fps > 0 && spec.fps <= 1000, "video '", path, "': fps must be in 1..1000, found ", spec.fps);
    if (format != VideoFormat::kMp4) return;
    LR_CHECK(spec.crf >= 0 && spec.crf <= 51, "video '", path, "': crf must be in 0..51 (H.264), found ", spec.crf);
    LR_CHECK(std::find(kX264Presets.begin(), kX264Presets.end(), spec.preset) != kX264Presets.end(), "video '", path,
             "': unknown x264 preset '", spec.preset,
             "' (expected ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow or placebo)");
}

}  // namespace

VideoFormat video_format_for_path(const std::string& path) {
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".mp4") return VideoFormat::kMp4;
    if (ext == ".y4m") return VideoFormat::kY4m;
    LR_FAIL("cannot write video '", path, "': unsupported file extension '", ext,
            "' (supported: .mp4 for H.264 MP4, .y4m for uncompressed YUV4MPEG2)");
}

#ifndef LONGROLL_HAS_MP4
bool mp4_supported() { return false; }
#endif

std::unique_ptr<VideoWriter> open_video_writer(const std::string& path, const VideoSpec& spec) {
    const VideoFormat format = video_format_for_path(path);
    check_spec(path, spec, format);
#ifdef LONGROLL_HAS_MP4
    LR_CHECK(format != VideoFormat::kMp4 || mp4_supported(), "cannot write video '", path,
             "': this libavcodec has no H.264 encoder (libx264); write a .y4m file instead");
#else
    LR_CHECK(format != VideoFormat::kMp4, "cannot write video '", path,
             "': this build of longroll has no MP4 support (built without libavcodec); write a .y4m file instead");
#endif
    check_output_location(path);
    switch (format) {
        case VideoFormat::kY4m:
            return make_y4m_writer(path, spec);
        case VideoFormat::kMp4:
#ifdef LONGROLL_HAS_MP4
            return make_mp4_writer(path, spec);
#else
            break;
#endif
    }
    LR_ASSERT(false, "unhandled video format for '", path, "'");
    return nullptr;
}

}  // namespace lr
