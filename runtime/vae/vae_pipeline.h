// The VAE behind the DiT (DESIGN.md section 7): a VaeStream decoding on a thread of its own, fed through a
// bounded queue of latent chunks, so that the decode of chunk k overlaps the DiT's chunk k + 1 on the same rank.
//
//   rollout thread: push(chunk 0) push(chunk 1) push(chunk 2) ...        finish()
//   decode thread:            decode(0) -> emit frames, done(0)  decode(1) ...
//
// push() copies the latents into a slot of the queue (capacity chunks wait at most, besides the one decoding;
// slots are reused) and returns at once, blocking only while the queue is full; the frames come out of the decode
// thread in order, through `emit`, exactly the frames a VaeStream decoding the same chunks inline would give. An
// exception on the decode thread (the emit callback's included) stops it and is rethrown by the next push() or by
// finish(); the chunks still queued are dropped.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/vae/wan_vae.h"

namespace lr {

// One chunk through the decoder, reported on the decode thread after its last frame was emitted.
struct VaeChunkDone {
    int64_t index = 0;          // as given to push()
    int64_t latent_frames = 0;  // of the chunk
    int64_t frames = 0;         // frames it became (emitted)
    double seconds = 0;         // the decode, emit callbacks included
};
using VaeChunkDoneFn = std::function<void(const VaeChunkDone&)>;
// A decoder the pipeline thread drives: decodes `frames` latent frames [frames, channels, height, width] (host
// memory), emitting their video frames in order, and returns how many it emitted. The CPU VaeStream and the CUDA
// decoder (runtime/vae/wan_vae_cuda.h) both fit; it runs on the decode thread only.
using VaeDecodeFn = std::function<int64_t(const float* latents, int64_t frames, const VaeFrameFn& emit)>;

class VaePipeline {
  public:
    // `stream` (decoding latents of height x width) must outlive the pipeline and is used by the decode thread
    // only until finish() returns. `emit` and `done` run on the decode thread.
    VaePipeline(VaeStream& stream, int64_t height, int64_t width, VaeFrameFn emit, VaeChunkDoneFn done = nullptr,
                int capacity = 2);
    // Any decoder: `decode` takes latents of `channels` x height x width.
    VaePipeline(VaeDecodeFn decode, int64_t channels, int64_t height, int64_t width, VaeFrameFn emit,
                VaeChunkDoneFn done = nullptr, int capacity = 2);
    // Without finish(): stops the decode thread after its current chunk and drops the rest (an error path).
    ~VaePipeline();
    VaePipeline(const VaePipeline&) = delete;
    VaePipeline& operator=(const VaePipeline&) = delete;

    // Queues `frames` latent frames [frames, z_dim, height, width]. Rethrows an error of the decode thread.
    void push(int64_t index, const float* latents, int64_t frames);
    // Waits until every queued chunk is decoded and stops the thread. Rethrows an error of the decode thread.
    void finish();

  private:
    struct Job {
        int64_t index = 0;
        int64_t frames = 0;
        std::vector<float> latents;
    };
    void decode_loop();
    void rethrow_locked();

    const VaeDecodeFn decode_;
    const int64_t channels_, height_, width_;
    const VaeFrameFn emit_;
    const VaeChunkDoneFn done_;
    const size_t capacity_;

    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Job> queue_;  // waiting for the decoder, oldest first
    std::vector<Job> free_;  // slots to reuse (their buffers stay allocated)
    bool stop_ = false;      // no more pushes: the decode thread ends when the queue is empty
    std::exception_ptr error_;
    std::thread thread_;
};

}  // namespace lr
