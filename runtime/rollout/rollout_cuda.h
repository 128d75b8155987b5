// The Self-Forcing / LongLive rollout (rollout.h) on one GPU, over CudaWanModel: the same loop, semantics and
// callbacks as Rollout -- prompt switches with the window re-cache, resume_chunks / resume_latents, the step
// observer, the chunk callback -- with the latents on the device.
//
//   noise (NoiseSource, host) -> pinned staging -> device;  the scheduler's sigma is looked up on the host
//   (FlowMatchScheduler) and the step runs as launch_flow_to_x0 / launch_add_noise on the device;  each
//   finished chunk is copied back to host memory for the callback (VAE, --save-latents), while the GPU already
//   runs the chunk's clean pass.
//
// The step observer gets each forward's GPU time (CUDA events), reported one forward late so that the host
// keeps a forward queued ahead; the calls keep Rollout's order (every step of a chunk before its callback, the
// clean pass after it). Head sharding (Ulysses) and spatial sharding run behind the model's attention seam: the
// caller builds the step of its rank (dist/sharded_attention_step_cuda.h, make_cuda_attention_step) from
// attention_step_config(model config, model_options(...)) and hands it to the model (CudaModelOptions::step);
// every rank of the group runs this rollout and gets the whole chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "runtime/model/wan_model_cuda.h"
#include "runtime/rollout/rollout.h"

namespace lr {

class CudaRollout {
  public:
    // The model must be planned for this rollout (model_options): latent size, KV window, sink, RoPE mode,
    // storage and the largest forward; InputError naming the mismatch otherwise.
    CudaRollout(CudaWanModel& model, const RolloutOptions& opts, const RolloutShape& shape);
    ~CudaRollout();
    CudaRollout(const CudaRollout&) = delete;
    CudaRollout& operator=(const CudaRollout&) = delete;

    // The CudaModelOptions a rollout of this shape needs; with prompt_switches the largest forward includes
    // the re-cache of the window (up to local_attn_size frames, or every earlier frame without a window). They
    // describe the single-GPU step; a sharded one is built from them (see the header).
    static CudaModelOptions model_options(const RolloutOptions& opts, const RolloutShape& shape, bool prompt_switches);

    void set_step_observer(StepObserver observer) { step_observer_ = std::move(observer); }
    int64_t num_chunks() const;
    int64_t channels() const { return channels_; }
    const FlowMatchScheduler& scheduler() const { return scheduler_; }
    const std::vector<float>& timesteps() const { return timesteps_; }

    // As Rollout::run; resume_latents and the chunk callback's latents are host memory.
    void run(const std::vector<PromptSegment>& prompts, const NoiseSource& noise, const ChunkCallback& on_chunk,
             int64_t resume_chunks = 0, const float* resume_latents = nullptr);

  private:
    struct Pending {  // a forward whose time is not reported yet
        int64_t chunk = 0;
        int64_t step = 0;
        int slot = 0;
    };
    static constexpr int kEventSlots = 4;

    int64_t frame_numel() const { return channels_ * shape_.height * shape_.width; }
    void forward(const float* x, int64_t start_frame, int64_t frames, float t, bool protect_sink, float* out,
                 int64_t chunk, int64_t step);
    void upload(const float* host, float* device, int64_t frames);  // through the pinned staging
    void remember(int64_t start_frame, int64_t frames, const float* latents);
    void recache(int64_t start_frame);
    int64_t recache_frames(int64_t start_frame) const;
    void begin_observed();
    void end_observed(int64_t chunk, int64_t step);
    void report(size_t keep);  // reports all pending forwards but the newest `keep`

    CudaWanModel& model_;
    StepObserver step_observer_;
    RolloutOptions opts_;
    RolloutShape shape_;
    int64_t channels_ = 0;
    FlowMatchScheduler scheduler_;
    std::vector<float> timesteps_;
    DeviceBuffer buffers_;  // x, x0, noise [frames_per_chunk frames], flow [max_forward_frames frames]
    float* x_ = nullptr;
    float* x0_ = nullptr;
    float* noise_ = nullptr;
    float* flow_ = nullptr;
    PinnedStaging upload_;   // [frames_per_chunk frames]: noise, resumed latents
    PinnedStaging latents_;  // [frames_per_chunk frames]: the finished chunk for the callback
    CudaPrompt prompt_;
    // Clean latents of the frames a prompt switch re-caches (device): the last local_attn_size frames.
    DeviceBuffer history_;
    int64_t history_capacity_ = 0;  // frames
    int64_t history_begin_ = 0;
    int64_t history_frames_ = 0;
    void* events_[kEventSlots][2] = {};  // cudaEvent_t (start, end) per slot
    int next_slot_ = 0;
    std::deque<Pending> pending_;
};

}  // namespace lr
