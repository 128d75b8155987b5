// The DiT chunk step of the benches (dit_bench, scaling_bench): CudaRollout::run's loop for one chunk -- 4 denoising
// forwards at Self-Forcing's warped timesteps with the flow-matching step between them on the device, then the clean
// pass at t = 0 that rewrites the chunk's K/V -- over device buffers that live as long as the model, with seeded
// latents, noise and a 120-token prompt.
#pragma once

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/dit_ops_cuda.h"
#include "runtime/core/cuda_check.h"
#include "runtime/model/wan_model_cuda.h"
#include "runtime/rollout/scheduler.h"

namespace lr::bench {

constexpr int64_t kChunkFrames = 3;
inline const std::vector<int> kDenoisingSteps{1000, 750, 500, 250};
constexpr double kTimestepShift = 5.0;

// One chunk of the rollout (CudaRollout::run's loop) over device buffers that live as long as the model.
class ChunkStep {
  public:
    ChunkStep(CudaWanModel& m, const WanModelConfig& cfg, int64_t h, int64_t w, uint64_t seed)
        : m_(m), sched_(kTimestepShift), ts_(sched_.warp(kDenoisingSteps)) {
        n_ = kChunkFrames * cfg.dims.in_dim * h * w;
        const size_t bytes = static_cast<size_t>(n_) * sizeof(float);
        buf_ = DeviceBuffer(5 * bytes);
        float* base = static_cast<float*>(buf_.data());
        init_ = base, x_ = base + n_, x0_ = base + 2 * n_, noise_ = base + 3 * n_, flow_ = base + 4 * n_;
        const auto init = gaussian(static_cast<size_t>(n_), seed);
        const auto noise = gaussian(static_cast<size_t>(n_), seed + 1);
        LR_CUDA_CHECK(cudaMemcpy(init_, init.data(), bytes, cudaMemcpyHostToDevice));
        LR_CUDA_CHECK(cudaMemcpy(noise_, noise.data(), bytes, cudaMemcpyHostToDevice));
        // a prompt of 120 tokens (zero-padded to text_len by the model)
        context_ = gaussian(static_cast<size_t>(120 * cfg.dims.text_dim), seed + 2);
        context_view_ = TensorView(context_.data(), DType::kF32, Shape{120, cfg.dims.text_dim});
        prompt_ = m_.encode_prompt(context_view_);
    }

    // Re-encodes the prompt into its existing device memory (the first chunk's cross-attention K/V).
    void encode_prompt() { m_.encode_prompt(context_view_, prompt_); }

    // 4 denoising forwards with the flow-matching step between them, then the clean pass.
    void chunk(int64_t start) {
        const Stream s = m_.stream();
        const float* x = init_;
        for (size_t i = 0; i < ts_.size(); ++i) {
            forward(x, start, ts_[i], static_cast<int64_t>(i));
            launch_flow_to_x0(flow_, x, static_cast<double>(sched_.sigma_at(ts_[i])), x0_, n_, s);
            if (i + 1 < ts_.size()) {
                launch_add_noise(x0_, noise_, sched_.sigma_at(ts_[i + 1]), x_, n_, s);
                x = x_;
            }
        }
        forward(x0_, start, 0.0f, static_cast<int64_t>(ts_.size()));
    }

    // The clean pass alone (t = 0) of the initial latents: fills the cache for the full-window chunks.
    void clean_pass(int64_t start) { forward(init_, start, 0.0f, static_cast<int64_t>(ts_.size())); }

    int forwards() const { return static_cast<int>(ts_.size()) + 1; }

  private:
    // step: the denoising step (4 for the clean pass), for the block policies; the chunk follows from start.
    void forward(const float* x, int64_t start, float t, int64_t step) {
        const std::vector<float> tv(kChunkFrames, t);
        CudaForwardArgs a;
        a.chunk = start / kChunkFrames;
        a.step = step;
        a.num_steps = static_cast<int64_t>(ts_.size());
        a.x = x;
        a.t = tv.data();
        a.frames = kChunkFrames;
        a.start_frame = start;
        a.prompt = &prompt_;
        a.out = flow_;
        m_.forward(a);
    }

    CudaWanModel& m_;
    FlowMatchScheduler sched_;
    std::vector<float> ts_;
    int64_t n_ = 0;
    DeviceBuffer buf_;
    float *init_ = nullptr, *x_ = nullptr, *x0_ = nullptr, *noise_ = nullptr, *flow_ = nullptr;
    std::vector<float> context_;
    TensorView context_view_;
    CudaPrompt prompt_;
};

}  // namespace lr::bench

#endif  // LONGROLL_HAS_CUDA
