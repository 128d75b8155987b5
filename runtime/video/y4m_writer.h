// YUV4MPEG2 (.y4m) output: uncompressed 4:2:0, pure C++, available in every build.
#pragma once

#include <memory>
#include <string>

#include "runtime/video/video_writer.h"

namespace lr {

// `spec` has been validated by open_video_writer.
std::unique_ptr<VideoWriter> make_y4m_writer(const std::string& path, const VideoSpec& spec);

}  // namespace lr
