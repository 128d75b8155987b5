// Streaming video output: frames go to disk as they are produced, never the whole video in memory.
//
//   auto writer = lr::open_video_writer("video.mp4", spec);   // checks everything before creating a file
//   for (...) writer->write_frame(rgb, stride);               // [spec.height][spec.width][3] RGB24
//   writer->finish();                                         // flush, close, rename into place
//
// Formats: MP4 (H.264 through libavcodec + libx264, only in builds with libav) and Y4M (always available).
//
// Colour convention, the same for both formats: frames are converted from full-range RGB to limited-range
// ("TV", 16..235 luma) YUV 4:2:0. HD output (at least 720 rows after the crop) uses the BT.709 matrix,
// SD output the BT.601 one. MP4 tags it (BT.709 or SMPTE 170M primaries, transfer and matrix; range
// MPEG); Y4M can only carry the range (XCOLORRANGE=LIMITED), so readers must pick the matrix themselves —
// players (mpv, VLC, browsers) guess BT.709 for HD and BT.601 for SD, which is the choice made here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace lr {

enum class VideoFormat { kMp4, kY4m };

struct VideoSpec {
    int width = 0;   // of the frames given to write_frame
    int height = 0;  // rows of the frames given (e.g. 1088)
    int fps = 16;
    int crop_height = 0;            // 0 = keep all rows; else the output keeps the top crop_height rows (1088 -> 1080);
                                    // must be even and <= height
    int crf = 18;                   // H.264 quality (MP4 only), 0..51
    std::string preset = "medium";  // x264 preset (MP4 only)
};

// From the file extension (case-insensitive): ".mp4" -> kMp4, ".y4m" -> kY4m; anything else -> InputError
// naming the path and the supported extensions.
VideoFormat video_format_for_path(const std::string& path);

// True when built with libav and an H.264 encoder (libx264) is available at run time.
bool mp4_supported();

// Streams frames to disk as they arrive, never holding the video in memory. The file is written to a
// temporary name in the same directory ("<dir>/.<name>.<pid>-<random>.partial", unique to the writer) and renamed to
// `path` by finish(); if the writer is destroyed without finish() (error, exception), the temporary file is removed and
// `path` is untouched. Not thread-safe: one thread writes.
class VideoWriter {
  public:
    virtual ~VideoWriter() = default;
    // One RGB24 frame: spec().height rows of width*3 bytes, row stride `stride_bytes` (>= width*3).
    virtual void write_frame(const uint8_t* rgb, int64_t stride_bytes) = 0;
    // Flushes the encoder, closes and renames. Idempotent.
    virtual void finish() = 0;
    virtual int64_t frames_written() const = 0;
    virtual const std::string& path() const = 0;
    // The spec the writer was opened with: the size of the frames write_frame expects.
    virtual const VideoSpec& spec() const = 0;
};

// Opens the writer for `path` (format from the extension). Bad spec (width/height <= 0, odd dims for 4:2:0,
// bad crop, fps <= 0; for MP4 crf outside 0..51 or an unknown preset), an MP4 path in a build without MP4
// support, or an unwritable directory -> InputError naming the path and field; all checked before anything
// is created.
std::unique_ptr<VideoWriter> open_video_writer(const std::string& path, const VideoSpec& spec);

// A deterministic test pattern, RGB24 [height][width][3] with row stride `stride_bytes`: colour bars moving
// left over the top two thirds, R/G gradients with a frame-dependent blue below, and a block whose
// position and colour depend on the frame index. Consecutive frames differ everywhere the bars move.
void fill_test_pattern(int64_t frame_index, int width, int height, uint8_t* rgb, int64_t stride_bytes);

// Background encoding: wraps a writer; write_frame copies the frame into one of queue_capacity frame buffers
// (allocated up front; the frame being encoded holds one) and returns, blocking only while all are in use;
// a worker thread encodes. An error on the worker is rethrown from the next write_frame or finish().
// frames_written() counts the frames accepted by write_frame; once finish() returns, all are in the file.
std::unique_ptr<VideoWriter> make_async_writer(std::unique_ptr<VideoWriter> inner, int queue_capacity = 4);

}  // namespace lr
