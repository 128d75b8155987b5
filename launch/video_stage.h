// The video side of `longroll generate` (DESIGN.md section 7): where the chunks of latents the rollout finishes
// become video, behind the DiT.
//
//   VAE on the DiT ranks (parallel.vae = SAME_RANKS): the group's first rank decodes each chunk on a thread of its
//   own (VaePipeline: chunk k decodes while the DiT makes chunk k + 1) and hands the frames to the writer (itself
//   asynchronous); the group's other DiT ranks drop the chunks.
//
//   Dedicated VAE ranks (DEDICATED_RANKS): the group's first DiT rank sends every chunk to each VAE rank over the
//   group communicator, in chunk order; the VAE ranks decode it split by rows (VaeStream, or CudaVaeStream on a
//   GPU, over the VAE communicator: halo exchange; on the CPU bit-identical frames) and the first VAE rank writes
//   them. The send returns once the VAE ranks have taken the chunk, i.e. after they decoded the one before: the
//   DiT runs one chunk ahead.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "dist/communicator.h"
#include "runtime/rollout/rollout.h"
#include "runtime/vae/vae_pipeline.h"
#include "runtime/vae/wan_vae.h"
#include "runtime/vae/wan_vae_cuda.h"
#include "runtime/video/video_writer.h"

namespace lr {

// One chunk finished on the rank that decoded it (its decode thread, or a VAE rank's main thread).
struct ChunkVideo {
    int64_t index = 0;
    int64_t latent_frames = 0;
    int64_t frames = 0;           // video frames it became
    double wait_seconds = 0;      // a VAE rank waiting for the chunk's latents
    double decode_seconds = 0;    // the VAE, encoding excluded
    double encode_seconds = 0;    // frames handed to the writer
    double interval_seconds = 0;  // since the previous chunk was done here (or since the stage started)
};
using ChunkVideoFn = std::function<void(const ChunkVideo&)>;

// The latent shape of the chunks: channels x height x width per latent frame.
struct LatentFrameShape {
    int64_t channels = 0;
    int64_t height = 0;
    int64_t width = 0;
    int64_t numel() const { return channels * height * width; }
};

// On a DiT rank: takes each chunk from the rollout callback. Not movable (the pipeline thread points into it).
class DitVideoSink {
  public:
    // Drops the chunks (a DiT rank that neither decodes nor sends).
    DitVideoSink() = default;
    // Decodes here on a pipeline thread into `writer`; `done` runs on that thread after each chunk. gpu >= 0:
    // the CUDA decoder on that device (weights uploaded now, its own stream, so the decode of chunk k overlaps
    // the DiT's chunk k + 1 on the GPU); -1: the CPU decoder.
    DitVideoSink(const WanVaeDecoder& vae, VideoWriter& writer, const LatentFrameShape& shape, ChunkVideoFn done,
                 int gpu = -1);
    // Sends every chunk to the ranks `vae_ranks` of `group` (the dedicated VAE ranks).
    DitVideoSink(Communicator& group, std::vector<int> vae_ranks, const LatentFrameShape& shape);
    DitVideoSink(const DitVideoSink&) = delete;
    DitVideoSink& operator=(const DitVideoSink&) = delete;

    bool decodes() const { return pipeline_ != nullptr; }
    void push(const RolloutChunk& chunk);
    // Waits for the last chunk's frames (decoding here); rethrows an error of the pipeline thread.
    void finish();

  private:
    LatentFrameShape shape_;
    Communicator* group_ = nullptr;
    std::vector<int> vae_ranks_;
    // Decoding here: the pipeline thread's state, declared before the pipeline so that it outlives the thread.
    std::optional<VaeStream> stream_;
    std::unique_ptr<CudaVaeStream> gpu_stream_;
    double encode_seconds_ = 0;
    std::chrono::steady_clock::time_point last_done_;
    std::unique_ptr<VaePipeline> pipeline_;
};

// On a dedicated VAE rank, for one video: receives the chunks (`chunk_frames` latent frames each, in order) from
// rank 0 of `group`, decodes them split by rows over `rows` (every VAE rank of the group) and, where `writer` is
// given (rank 0 of `rows`), writes the frames. `done` after each chunk. Returns the video frames decoded.
// gpu >= 0: the CUDA decoder on that device, on a stream of its own (`rows` on host buffers is staged through
// pinned memory; on device buffers, NCCL, it needs its stream as `rows_stream`); -1: the CPU decoder (host
// buffers only). Every rank of `rows` must make the same choice. `stop_after(i)`, when given, runs once chunk i's
// latents have arrived (before its decode, so the DiT goes on meanwhile): true makes chunk i the last one decoded
// (a stop the group agreed on, launch/stop_vote.h).
int64_t run_vae_rank(Communicator& group, Communicator& rows, const WanVaeDecoder& vae, VideoWriter* writer,
                     const LatentFrameShape& shape, const std::vector<int64_t>& chunk_frames, const ChunkVideoFn& done,
                     int gpu = -1, Stream rows_stream = nullptr, const std::function<bool(int64_t)>& stop_after = {});

}  // namespace lr
