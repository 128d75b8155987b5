#include "launch/generate_plan.h"

#include <cmath>

#include "runtime/core/check.h"

namespace lr {

FramePlan plan_frames(const Config& cfg, std::optional<int64_t> latent_frames, std::optional<double> seconds) {
    LR_CHECK(!(latent_frames && seconds), "give --latent-frames or --seconds, not both");
    const int64_t per_chunk = cfg.rollout.frames_per_chunk;
    const int fps = cfg.video.fps;
    // A day of video is far past anything the engine is meant for and keeps every count inside int64.
    constexpr int64_t kMaxLatentFrames = 24LL * 3600 * 16 / 4;
    int64_t t = kDefaultLatentFrames;
    if (latent_frames) {
        LR_CHECK(*latent_frames >= 1 && *latent_frames <= kMaxLatentFrames, "--latent-frames ", *latent_frames,
                 ": expected 1 to ", kMaxLatentFrames);
        LR_CHECK(*latent_frames % per_chunk == 0, "--latent-frames ", *latent_frames,
                 ": must be a multiple of rollout.frames_per_chunk (", per_chunk, "); try ",
                 (*latent_frames + per_chunk - 1) / per_chunk * per_chunk);
        t = *latent_frames;
    } else if (seconds) {
        LR_CHECK(std::isfinite(*seconds) && *seconds > 0 && *seconds <= 24.0 * 3600, "--seconds ", *seconds,
                 ": expected more than 0 and at most 86400");
        const auto frames = static_cast<int64_t>(std::ceil(*seconds * fps - 1e-9));
        const int64_t latents = 1 + (std::max<int64_t>(frames, 1) - 1 + 3) / 4;
        t = (latents + per_chunk - 1) / per_chunk * per_chunk;
    } else {
        t = (kDefaultLatentFrames + per_chunk - 1) / per_chunk * per_chunk;
    }
    if (cfg.rollout.rope_mode == RopeMode::kAbsolute) {
        LR_CHECK(t <= kAbsoluteRopeFrames, "the run needs ", t, " latent frames (", video_frames_for_latents(t),
                 " video frames) but absolute RoPE covers ", kAbsoluteRopeFrames, " latent frames (",
                 video_frames_for_latents(kAbsoluteRopeFrames) / fps, " s at ", fps,
                 " fps); set rollout.rope_mode=WINDOW_RELATIVE with a window "
                 "(rollout.local_attn_size) for longer videos");
    }
    FramePlan p;
    p.latent_frames = t;
    p.chunks = t / per_chunk;
    p.video_frames = video_frames_for_latents(t);
    p.seconds = static_cast<double>(p.video_frames) / fps;
    return p;
}

int64_t video_frames_between(int64_t begin, int64_t end) {
    return video_frames_for_latents(end) - video_frames_for_latents(begin);
}

namespace {

// Why NCCL cannot run: the error's words (`detail`) or the summary's; "" when it can.
std::string nccl_obstacle(const TransportFacts& f, bool detail) {
    if (!f.nccl_built) {
        return detail ? "this build has no NCCL (configure with -DLONGROLL_CUDA=ON where NCCL is installed)"
                      : "this build has no NCCL";
    }
    if (f.cpu_rank >= 0) {
        return detail ? str_cat("rank ", f.cpu_rank,
                                " runs the DiT on the CPU (--device cpu, or no usable GPU with runtime.device AUTO) "
                                "and NCCL moves GPU buffers")
                      : "the DiT runs on the CPU";
    }
    if (f.shared) {
        return str_cat(f.shared->ranks, " ranks on host ", f.shared->host, " share ", f.shared->gpus, " GPU",
                       f.shared->gpus == 1 ? "" : "s");
    }
    return "";
}

}  // namespace

TransportPlan plan_transport(const TransportFacts& f) {
    if (f.requested == Transport::kMpi) return {Transport::kMpi, "parallel.transport=MPI"};
    if (f.requested == Transport::kNccl) {
        const std::string obstacle = nccl_obstacle(f, true);
        // The remedy of the obstacle found (the first of nccl_obstacle's checks that fails).
        const bool gpus_shared = f.nccl_built && f.cpu_rank < 0 && f.shared;
        LR_CHECK(obstacle.empty(), "parallel.transport=NCCL: ", obstacle,
                 gpus_shared ? "; NCCL needs one GPU per rank (use parallel.transport=MPI or more GPUs)"
                             : "; use parallel.transport=MPI or AUTO");
        return {Transport::kNccl, f.sequence_parallel > 1
                                      ? "one GPU per rank"
                                      : "one GPU per rank; one DiT rank per video exchanges nothing"};
    }
    if (f.sequence_parallel <= 1) return {Transport::kMpi, "one DiT rank per video: nothing to exchange"};
    const std::string obstacle = nccl_obstacle(f, false);
    if (!obstacle.empty()) return {Transport::kMpi, obstacle};
    return {Transport::kNccl, "one GPU per rank"};
}

}  // namespace lr
