// How long a run is: latent frames, chunks and video frames from --latent-frames or --seconds
// (DESIGN.md section 4: latent frame 0 decodes to 1 video frame, every later one to 4).
#pragma once

#include <cstdint>
#include <optional>

#include "launch/config.h"

namespace lr {

// The absolute RoPE table of the reference model holds this many latent-frame positions.
inline constexpr int64_t kAbsoluteRopeFrames = 1024;
// Self-Forcing's default clip: 21 latent frames = 81 video frames, about 5 s at 16 fps.
inline constexpr int64_t kDefaultLatentFrames = 21;

struct FramePlan {
    int64_t latent_frames = 0;
    int64_t chunks = 0;
    int64_t video_frames = 0;
    double seconds = 0;  // of video, at the config's fps
};

inline int64_t video_frames_for_latents(int64_t latent_frames) {
    return latent_frames <= 0 ? 0 : 1 + 4 * (latent_frames - 1);
}

// Exactly one of `latent_frames` / `seconds` may be set (neither: the default clip). --seconds rounds up to
// whole chunks; --latent-frames must already be a whole number of chunks. InputError naming the flag when
// the length is out of range or does not fit the rollout (absolute RoPE past its table).
FramePlan plan_frames(const Config& cfg, std::optional<int64_t> latent_frames, std::optional<double> seconds);

// Video frames of latent frames [begin, end): what chunk by chunk decoding yields.
int64_t video_frames_between(int64_t begin, int64_t end);

}  // namespace lr
