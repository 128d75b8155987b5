// How long a run is: latent frames, chunks and video frames from --latent-frames or --seconds
// (DESIGN.md section 4: latent frame 0 decodes to 1 video frame, every later one to 4).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "dist/process.h"
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

// What parallel.transport is decided on at start-up; launch/cmd_generate.cpp gathers it from every rank, so every
// rank decides the same.
struct TransportFacts {
    Transport requested = Transport::kAuto;
    bool nccl_built = false;           // LONGROLL_HAS_NCCL
    int sequence_parallel = 1;         // DiT ranks per video (ulysses x spatial)
    int cpu_rank = -1;                 // a DiT rank whose DiT runs on the CPU; -1 when every one runs on a GPU
    std::optional<SharedGpus> shared;  // a host whose DiT ranks share GPUs (find_shared_gpus)
};

struct TransportPlan {
    Transport transport = Transport::kMpi;  // kMpi or kNccl, never kAuto
    std::string why;                        // for the start-up summary: "one GPU per rank", ...
};

// NCCL can run when the build has it, every DiT rank runs its DiT on a GPU and no two DiT ranks of a host share
// one. AUTO takes NCCL when it can run and a video has more than one DiT rank (something to exchange), else MPI;
// MPI is taken as asked. NCCL asked for where it cannot run: InputError "parallel.transport=NCCL: <why>; ...", e.g.
// "2 ranks on host h share 1 GPU; NCCL needs one GPU per rank (use parallel.transport=MPI or more GPUs)".
TransportPlan plan_transport(const TransportFacts& facts);

}  // namespace lr
