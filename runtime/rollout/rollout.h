// The autoregressive rollout of Self-Forcing (pipeline/causal_inference.py) and LongLive
// (pipeline/interactive_causal_inference.py), chunk by chunk over the causal DiT and its KV cache:
//
//   for each chunk of frames_per_chunk latent frames:
//     [LongLive prompt switch due: re-cache the window under the new prompt]
//     x = initial noise of the chunk's frames
//     for each warped denoising timestep t_i:
//       flow = DiT(x, t_i)                       (reads the cache, writes the chunk's K/V in place)
//       x0 = x - sigma(t_i) * flow
//       if not the last step: x = (1 - sigma(t_{i+1})) x0 + sigma(t_{i+1}) * fresh noise
//                             (or, with the Euler sampler: x = x + (sigma(t_{i+1}) - sigma(t_i)) * flow)
//     emit x0 (the chunk's latents) to the callback
//     DiT(x0, t = context_noise)                 (rewrites the chunk's K/V with clean keys and values)
//
// Memory is bounded by the KV window: the rollout keeps the cache and, for prompt switches, the clean latents of
// the last window; every chunk leaves through the callback (VAE, --save-latents) as soon as it is done.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "cache/block_policy.h"
#include "cache/kv_cache.h"
#include "dist/sharded_attention_step.h"
#include "runtime/core/tensor.h"
#include "runtime/model/attention_step_cpu.h"
#include "runtime/model/wan_model.h"
#include "runtime/rollout/noise.h"
#include "runtime/rollout/scheduler.h"

namespace lr {

// How a denoising step reaches the next timestep: Self-Forcing's x0 re-noised with fresh noise (the distilled
// few-step checkpoints), or the flow-matching ODE's Euler step (models trained with flow matching and not
// distilled; no fresh noise after the first).
enum class StepRule { kRenoise, kEuler };

// The rollout's knobs (the `rollout` section of the run config, in plain types).
struct RolloutOptions {
    int64_t frames_per_chunk = 3;
    std::vector<int> denoising_steps{1000, 750, 500, 250};  // warped through the schedule
    double timestep_shift = 5.0;
    int context_noise = 0;         // timestep of the clean pass that rewrites a chunk's K/V
    int64_t local_attn_size = -1;  // frames in the KV cache, current chunk included; -1 = the whole run
    int64_t sink_size = 0;         // first frames never evicted
    RopePositions rope = RopePositions::kAbsolute;
    int num_train_timesteps = 1000;
    StepRule step_rule = StepRule::kRenoise;
    // Sequence parallelism (DESIGN.md section 7): every rank of a U x S group runs the same rollout with the same
    // inputs through a ShardedAttentionStep (dist/sharded_attention_step.h) of this mesh: its Ulysses rank of U
    // (heads), its spatial rank of S (query blocks), their communicators, and the head groups whose exchanges
    // overlap the attention of the group before (parallel.overlap_groups; only with several ranks). Every rank gets
    // every chunk, equal to the single rank's bit for bit, for every policy. The model itself knows no rank.
    SequenceMesh mesh;
    // Which cached blocks each query block reads (DESIGN.md section 6) and the KV block size (a tile of that many
    // tokens).
    BlockPolicyConfig policy;
    int64_t block_size = 128;
    // Query rows per row of the block tables (and, on several ranks, the unit spatial ranks share): 128, the CUDA
    // kernels' query tile, so that both paths build the same tables.
    int64_t q_block = 128;
};

// The latent video: frames of `channels` x height x width (latent pixels: video / 8).
struct RolloutShape {
    int64_t frames = 0;
    int64_t height = 0;
    int64_t width = 0;
};

// A prompt from `start_frame` on (LongLive switches at chunk starts: the first chunk starting at or after
// start_frame uses it). `context` [L <= text_len, text_dim] must stay valid for the whole run.
struct PromptSegment {
    int64_t start_frame = 0;
    TensorView context;
};

struct RolloutChunk {
    int64_t index = 0;        // chunk number
    int64_t start_frame = 0;  // absolute latent frame of latents[0]
    int64_t num_frames = 0;
    const float* latents = nullptr;  // [num_frames, channels, height, width], valid during the callback
};
using ChunkCallback = std::function<void(const RolloutChunk&)>;
// Called after every DiT forward of the denoising loop (step < number of steps) and after the clean pass
// (step == number of steps), with its wall time: for metrics, never for control flow.
using StepObserver = std::function<void(int64_t chunk, int64_t step, double seconds)>;

class Rollout {
  public:
    Rollout(const WanModel& model, const RolloutOptions& opts, const RolloutShape& shape);

    // Bytes of the KV cache a rollout of this shape allocates (the window, or the whole run without one): for
    // checking that a run fits before starting it. With opts.mesh.ulysses = U: one rank's cache (its num_heads / U
    // heads; spatial ranks each hold the whole window of their heads).
    static size_t kv_cache_bytes(const WanModel& model, const RolloutOptions& opts, const RolloutShape& shape);

    int64_t num_chunks() const;
    int64_t channels() const { return channels_; }
    const FlowMatchScheduler& scheduler() const { return scheduler_; }
    const std::vector<float>& timesteps() const { return timesteps_; }  // the warped denoising list
    const KvCache& cache() const { return local_->cache(); }
    // This rank's attention step over its heads (the sharded step's inner one on a sequence-parallel rank).
    const CpuAttentionStep* step() const { return local_; }
    CpuAttentionStep* mutable_step() { return local_; }
    // The attention step the forwards run through (stats for the metrics).
    const AttentionStep& attention() const { return *step_; }
    // The sharded step's exchange time (busy, and the part the attention waited for); zero on one rank.
    ExchangeTime exchange_time() const { return sharded_ ? sharded_->exchange_time() : ExchangeTime{}; }

    // Generates the whole video, calling on_chunk after every chunk. prompts: sorted by start_frame, the first
    // at frame 0. To resume, pass the latents of the first resume_chunks chunks ([resume_chunks *
    // frames_per_chunk, C, H, W]): their clean passes (and prompt switches) are replayed to rebuild the KV cache
    // exactly, then generation continues with chunk resume_chunks, as an uninterrupted run would.
    void set_step_observer(StepObserver observer) { step_observer_ = std::move(observer); }

    void run(const std::vector<PromptSegment>& prompts, const NoiseSource& noise, const ChunkCallback& on_chunk,
             int64_t resume_chunks = 0, const float* resume_latents = nullptr);

  private:
    static AttentionStepConfig step_config(const WanModel& model, const RolloutOptions& opts,
                                           const RolloutShape& shape);
    static bool single_rank(const RolloutOptions& opts) { return opts.mesh.ulysses == 1 && opts.mesh.spatial == 1; }
    int64_t frame_numel() const { return channels_ * shape_.height * shape_.width; }
    void forward(const float* x, int64_t start_frame, int64_t frames, float t, const WanPrompt& prompt,
                 bool protect_sink, float* out, int64_t chunk, int64_t step);
    void remember(int64_t start_frame, int64_t frames, const float* latents);
    void recache(int64_t start_frame, const WanPrompt& prompt);

    const WanModel& model_;
    StepObserver step_observer_;
    RolloutOptions opts_;
    RolloutShape shape_;
    int64_t channels_ = 0;
    FlowMatchScheduler scheduler_;
    std::vector<float> timesteps_;
    std::unique_ptr<AttentionStep> step_;  // CpuAttentionStep on one rank, ShardedAttentionStep on several
    CpuAttentionStep* local_ = nullptr;    // the step over this rank's heads (head group 0 of an overlapped one)
    ShardedAttentionStep* sharded_ = nullptr;
    // Clean latents of the frames a prompt switch re-caches: the last local_attn_size frames (all without a window).
    std::vector<float> history_;
    int64_t history_begin_ = 0;  // absolute frame of history_[0]
    int64_t history_frames_ = 0;
};

// A callback that copies every chunk into `latents` [T, C, H, W] (for --save-latents), then calls `next`.
ChunkCallback collect_latents(HostTensor& latents, ChunkCallback next = nullptr);

}  // namespace lr
