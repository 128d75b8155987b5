#include "runtime/vae/vae_pipeline.h"

#include <chrono>
#include <cstring>

#include "runtime/core/check.h"

namespace lr {

VaePipeline::VaePipeline(VaeStream& stream, int64_t height, int64_t width, VaeFrameFn emit, VaeChunkDoneFn done,
                         int capacity)
    : VaePipeline(
          [&stream, height, width](const float* latents, int64_t frames, const VaeFrameFn& emit_frame) {
              const int64_t before = stream.frames_emitted();
              stream.decode(latents, frames, height, width, emit_frame);
              return stream.frames_emitted() - before;
          },
          stream.latent_channels(), height, width, std::move(emit), std::move(done), capacity) {}

VaePipeline::VaePipeline(VaeDecodeFn decode, int64_t channels, int64_t height, int64_t width, VaeFrameFn emit,
                         VaeChunkDoneFn done, int capacity)
    : decode_(std::move(decode)),
      channels_(channels),
      height_(height),
      width_(width),
      emit_(std::move(emit)),
      done_(std::move(done)),
      capacity_(static_cast<size_t>(capacity)) {
    LR_CHECK(capacity >= 1, "VAE pipeline: the queue must hold at least one chunk, found ", capacity);
    LR_CHECK(decode_ != nullptr && channels > 0 && height > 0 && width > 0 && emit_ != nullptr,
             "VAE pipeline: latent size ", height, "x", width, " and a frame callback are required");
    thread_ = std::thread([this] { decode_loop(); });
}

VaePipeline::~VaePipeline() {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
        queue_.clear();
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void VaePipeline::rethrow_locked() {
    if (error_) std::rethrow_exception(error_);
}

void VaePipeline::push(int64_t index, const float* latents, int64_t frames) {
    const size_t floats = static_cast<size_t>(frames * channels_ * height_ * width_);
    Job job;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return error_ || queue_.size() < capacity_; });
        rethrow_locked();
        LR_ASSERT(!stop_, "VAE pipeline: push after finish");
        if (!free_.empty()) {
            job = std::move(free_.back());
            free_.pop_back();
        }
    }
    // The copy runs outside the lock: this thread is the only producer, so the queue can only shrink meanwhile.
    job.index = index;
    job.frames = frames;
    job.latents.resize(floats);
    std::memcpy(job.latents.data(), latents, floats * sizeof(float));
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(job));
    }
    changed_.notify_all();
}

void VaePipeline::finish() {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
    const std::lock_guard<std::mutex> lock(mutex_);
    rethrow_locked();
}

void VaePipeline::decode_loop() {
    using Clock = std::chrono::steady_clock;
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            changed_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return;  // finished (or destroyed) and drained
            job = std::move(queue_.front());
            queue_.pop_front();
        }
        changed_.notify_all();  // a place in the queue is free
        try {
            const auto start = Clock::now();
            const int64_t emitted = decode_(job.latents.data(), job.frames, emit_);
            if (done_) {
                done_(VaeChunkDone{job.index, job.frames, emitted,
                                   std::chrono::duration<double>(Clock::now() - start).count()});
            }
        } catch (...) {
            {
                const std::lock_guard<std::mutex> lock(mutex_);
                error_ = std::current_exception();
                queue_.clear();
            }
            changed_.notify_all();
            return;
        }
        {
            const std::lock_guard<std::mutex> lock(mutex_);
            free_.push_back(std::move(job));
        }
    }
}

}  // namespace lr
