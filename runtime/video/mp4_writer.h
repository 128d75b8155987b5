// MP4 output: H.264 (libx264) through libavcodec, muxed by libavformat. Only built when libav is found
// (LONGROLL_HAS_MP4); open_video_writer refuses .mp4 paths otherwise.
#pragma once

#include <memory>
#include <string>

#include "runtime/video/video_writer.h"

namespace lr {

// `spec` has been validated by open_video_writer and mp4_supported() is true.
std::unique_ptr<VideoWriter> make_mp4_writer(const std::string& path, const VideoSpec& spec);

}  // namespace lr
