// CudaRollout: Rollout::run (rollout.cpp) with the latents on the GPU. Read rollout.cpp first: the loop, the
// history kept for prompt switches and the re-cache are the same, step by step.
#include "runtime/rollout/rollout_cuda.h"

#include <algorithm>
#include <utility>

#include "runtime/core/check.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "kernels/dit_ops_cuda.h"
#include "runtime/core/cuda_check.h"
#endif

namespace lr {

CudaModelOptions CudaRollout::model_options(const RolloutOptions& opts, const RolloutShape& shape,
                                            bool prompt_switches) {
    CudaModelOptions o;
    o.height = shape.height;
    o.width = shape.width;
    o.window_frames = opts.local_attn_size;
    o.sink_frames = opts.sink_size;
    o.max_frames = opts.local_attn_size == -1 ? shape.frames : opts.local_attn_size;
    o.rope = opts.rope;
    const int64_t fpc = std::max<int64_t>(1, opts.frames_per_chunk);
    o.max_forward_frames = std::min(fpc, std::max<int64_t>(1, shape.frames));
    // The block policy: the sparse ones run the model's sparse step over tiles of block_size tokens.
    o.policy = opts.policy;
    o.frames_per_chunk = fpc;
    o.run_frames = shape.frames;
    if (o.policy.kind != BlockPolicyKind::kDense && o.policy.kind != BlockPolicyKind::kSinkWindow)
        o.kv_block_size = opts.block_size;
    if (prompt_switches) {
        // A switch at chunk start S re-caches min(window, S) frames at most (rollout.cpp, recache).
        const int64_t last_start = (std::max<int64_t>(1, shape.frames) - 1) / fpc * fpc;
        const int64_t most = opts.local_attn_size == -1 ? last_start : std::min(opts.local_attn_size, last_start);
        o.max_forward_frames = std::max(o.max_forward_frames, most);
    }
    return o;
}

int64_t CudaRollout::num_chunks() const {
    return (shape_.frames + opts_.frames_per_chunk - 1) / opts_.frames_per_chunk;
}

// Frames the re-cache at chunk start S rewrites (Rollout::recache): the last min(window, S) frames, minus the
// sink frames when the window is full.
int64_t CudaRollout::recache_frames(int64_t start_frame) const {
    if (start_frame == 0) return 0;
    const int64_t num = opts_.local_attn_size == -1 ? start_frame : std::min(opts_.local_attn_size, start_frame);
    int64_t first = start_frame - num;
    if (first > 0) first += opts_.sink_size;
    return start_frame - first;
}

#ifdef LONGROLL_HAS_CUDA

CudaRollout::CudaRollout(CudaWanModel& model, const RolloutOptions& opts, const RolloutShape& shape)
    : model_(model),
      opts_(opts),
      shape_(shape),
      channels_(model.config().dims.in_dim),
      scheduler_(opts.timestep_shift, opts.num_train_timesteps) {
    const WanDims& d = model.config().dims;
    LR_CHECK(d.in_dim == d.out_dim, "rollout: the model maps ", d.in_dim, " channels to ", d.out_dim,
             "; the rollout feeds its output back, so they must be equal");
    LR_CHECK(shape.frames > 0 && shape.height > 0 && shape.width > 0, "rollout: latent video [", shape.frames, ", ",
             channels_, ", ", shape.height, ", ", shape.width, "] is empty");
    LR_CHECK(opts.frames_per_chunk > 0, "rollout: frames_per_chunk must be positive");
    LR_CHECK(!opts.denoising_steps.empty(), "rollout: no denoising steps");
    LR_CHECK(opts.local_attn_size == -1 || opts.local_attn_size >= opts.frames_per_chunk + opts.sink_size,
             "rollout: local_attn_size ", opts.local_attn_size, " must be -1 or hold the sink (", opts.sink_size,
             ") plus a chunk (", opts.frames_per_chunk, ")");
    const CudaModelOptions& mo = model.options();
    // The pages the options plan (a step handed to the model was built from the same options).
    const PagedKvCacheConfig kc = paged_config_of(attention_step_config(model.config(), mo));
    LR_CHECK(mo.height == shape.height && mo.width == shape.width && mo.window_frames == opts.local_attn_size &&
                 mo.sink_frames == opts.sink_size && mo.rope == opts.rope,
             "CUDA rollout: the model was planned for a ", mo.height, "x", mo.width, " latent, window ",
             mo.window_frames, ", sink ", mo.sink_frames, "; this rollout needs ", shape.height, "x", shape.width,
             ", window ", opts.local_attn_size, ", sink ", opts.sink_size,
             " and the same RoPE mode (build it with CudaRollout::model_options)");
    // Without a window the cache holds the whole run, unless the policy keeps a ring of pages itself (Forcing-KV:
    // sink + recent + chunk, the rest as retained blocks): then its pages are a window.
    LR_CHECK(opts.local_attn_size != -1 || kc.window_frames != -1 || kc.max_frames >= shape.frames,
             "CUDA rollout: ", shape.frames,
             " frames without a window need a KV cache of as many frames; the model planned ", kc.max_frames);
    const int64_t chunk = std::min(opts.frames_per_chunk, shape.frames);
    LR_CHECK(mo.max_forward_frames >= chunk, "CUDA rollout: chunks of ", chunk,
             " frames; the model was planned for forwards of at most ", mo.max_forward_frames);
    timesteps_ = scheduler_.warp(opts.denoising_steps);

    const int64_t fn = frame_numel(), fpc = opts.frames_per_chunk;
    const size_t chunk_bytes = static_cast<size_t>(fpc * fn) * sizeof(float);
    buffers_ = DeviceBuffer(3 * chunk_bytes + static_cast<size_t>(mo.max_forward_frames * fn) * sizeof(float));
    x_ = static_cast<float*>(buffers_.data());
    x0_ = x_ + fpc * fn;
    noise_ = x0_ + fpc * fn;
    flow_ = noise_ + fpc * fn;
    upload_ = PinnedStaging(chunk_bytes, true);
    latents_ = PinnedStaging(chunk_bytes, true);
    for (auto& pair : events_) {
        for (void*& e : pair) {
            cudaEvent_t ev = nullptr;
            LR_CUDA_CHECK(cudaEventCreate(&ev));
            e = ev;
        }
    }
}

CudaRollout::~CudaRollout() {
    for (auto& pair : events_)
        for (void* e : pair)
            if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}

void CudaRollout::forward(const float* x, int64_t start_frame, int64_t frames, float t, bool protect_sink, float* out,
                          int64_t chunk, int64_t step) {
    const std::vector<float> ts(static_cast<size_t>(frames), t);
    CudaForwardArgs a;
    a.x = x;
    a.t = ts.data();
    a.frames = frames;
    a.start_frame = start_frame;
    a.prompt = &prompt_;
    a.protect_sink = protect_sink;
    a.out = out;
    a.chunk = chunk;
    a.step = step;
    a.num_steps = static_cast<int64_t>(timesteps_.size());
    model_.forward(a);
}

void CudaRollout::upload(const float* host, float* device, int64_t frames) {
    const size_t bytes = static_cast<size_t>(frames * frame_numel()) * sizeof(float);
    upload_.wait();
    std::copy_n(host, frames * frame_numel(), static_cast<float*>(upload_.data()));
    upload_.to_device(device, 0, bytes, model_.stream());
    upload_.record(model_.stream());
}

// Appends a chunk's clean latents (device) to the history, dropping the oldest frames beyond its capacity.
void CudaRollout::remember(int64_t start_frame, int64_t frames, const float* latents) {
    if (history_capacity_ == 0) return;  // a single prompt never re-caches
    LR_ASSERT(start_frame == history_begin_ + history_frames_, "rollout history: chunk at ", start_frame,
              " does not follow frame ", history_begin_ + history_frames_);
    const int64_t fn = frame_numel();
    const size_t frame_bytes = static_cast<size_t>(fn) * sizeof(float);
    auto* h = static_cast<float*>(history_.data());
    const Stream s = model_.stream();
    const int64_t overflow = std::max<int64_t>(0, history_frames_ + frames - history_capacity_);
    if (overflow > 0) {
        // Shift left frame by frame, in order: each copy's source and destination are distinct frames.
        const int64_t keep = history_frames_ - overflow;
        for (int64_t f = 0; f < keep; ++f)
            LR_CUDA_CHECK(
                cudaMemcpyAsync(h + f * fn, h + (f + overflow) * fn, frame_bytes, cudaMemcpyDeviceToDevice, s));
        history_begin_ += overflow;
        history_frames_ = keep;
    }
    LR_CUDA_CHECK(cudaMemcpyAsync(h + history_frames_ * fn, latents, static_cast<size_t>(frames) * frame_bytes,
                                  cudaMemcpyDeviceToDevice, s));
    history_frames_ += frames;
}

// LongLive's _recache_after_switch, as Rollout::recache: the last window's K/V recomputed from the clean
// latents under the new prompt, sink slots protected when the window is full (their frames skipped).
void CudaRollout::recache(int64_t start_frame) {
    const int64_t n = recache_frames(start_frame);
    if (n == 0) return;
    const int64_t first = start_frame - n;
    LR_ASSERT(first >= history_begin_ && start_frame == history_begin_ + history_frames_,
              "rollout history does not hold frames [", first, ", ", start_frame, ")");
    const float* x = static_cast<const float*>(history_.data()) + (first - history_begin_) * frame_numel();
    forward(x, first, n, static_cast<float>(opts_.context_noise), /*protect_sink=*/true, flow_,
            start_frame / opts_.frames_per_chunk, static_cast<int64_t>(timesteps_.size()));
}

void CudaRollout::begin_observed() {
    if (!step_observer_) return;
    LR_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(events_[next_slot_][0]), model_.stream()));
}

void CudaRollout::end_observed(int64_t chunk, int64_t step) {
    if (!step_observer_) return;
    LR_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(events_[next_slot_][1]), model_.stream()));
    pending_.push_back({chunk, step, next_slot_});
    next_slot_ = (next_slot_ + 1) % kEventSlots;
    report(1);
}

void CudaRollout::report(size_t keep) {
    while (pending_.size() > keep) {
        const Pending p = pending_.front();
        pending_.pop_front();
        auto* start = static_cast<cudaEvent_t>(events_[p.slot][0]);
        auto* end = static_cast<cudaEvent_t>(events_[p.slot][1]);
        LR_CUDA_CHECK(cudaEventSynchronize(end));
        float ms = 0.0f;
        LR_CUDA_CHECK(cudaEventElapsedTime(&ms, start, end));
        if (step_observer_) step_observer_(p.chunk, p.step, static_cast<double>(ms) * 1e-3);
    }
}

void CudaRollout::run(const std::vector<PromptSegment>& prompts, const NoiseSource& noise,
                      const ChunkCallback& on_chunk, int64_t resume_chunks, const float* resume_latents) {
    LR_CHECK(!prompts.empty() && prompts[0].start_frame == 0, "rollout: the first prompt must start at frame 0");
    for (size_t i = 1; i < prompts.size(); ++i) {
        LR_CHECK(prompts[i].start_frame > prompts[i - 1].start_frame, "rollout: prompt switches must be at increasing ",
                 "frames (", prompts[i - 1].start_frame, " then ", prompts[i].start_frame, ")");
    }
    LR_CHECK(resume_chunks >= 0 && resume_chunks <= num_chunks() && (resume_chunks == 0 || resume_latents),
             "rollout: cannot resume after ", resume_chunks, " of ", num_chunks(), " chunks");
    const int64_t fpc = opts_.frames_per_chunk;
    // Every re-cache must fit one planned forward: say so before generating anything.
    for (int64_t c = 0, segment = 0; c < num_chunks(); ++c) {
        const int64_t start = c * fpc;
        if (segment + 1 < static_cast<int64_t>(prompts.size()) && start >= prompts[segment + 1].start_frame) {
            while (segment + 1 < static_cast<int64_t>(prompts.size()) && start >= prompts[segment + 1].start_frame)
                ++segment;
            LR_CHECK(recache_frames(start) <= model_.options().max_forward_frames, "CUDA rollout: the prompt switch ",
                     "at frame ", start, " re-caches ", recache_frames(start), " frames in one forward, but the model ",
                     "was planned for ", model_.options().max_forward_frames,
                     " (plan it with CudaRollout::model_options(..., prompt_switches = true))");
        }
    }

    const Stream s = model_.stream();
    model_.reset_cache(0);
    pending_.clear();
    history_begin_ = 0;
    history_frames_ = 0;
    history_capacity_ = 0;
    if (prompts.size() > 1) {
        history_capacity_ = opts_.local_attn_size == -1 ? shape_.frames : opts_.local_attn_size;
        const size_t bytes = static_cast<size_t>(history_capacity_ * frame_numel()) * sizeof(float);
        if (history_.size() < bytes) history_ = DeviceBuffer(bytes);
    }

    const int64_t fn = frame_numel();
    const int64_t steps = static_cast<int64_t>(timesteps_.size());
    std::vector<float> host(static_cast<size_t>(fpc * fn));  // noise of the chunk's frames, filled per step
    size_t segment = 0;
    if (prompt_.storage.data()) {
        model_.encode_prompt(prompts[0].context, prompt_);
    } else {
        prompt_ = model_.encode_prompt(prompts[0].context);
    }
    for (int64_t c = 0; c < num_chunks(); ++c) {
        const int64_t start = c * fpc;
        const int64_t n = std::min(fpc, shape_.frames - start);
        const int64_t numel = n * fn;
        // LongLive: a switch takes effect at the first chunk that starts at or after its frame.
        if (segment + 1 < prompts.size() && start >= prompts[segment + 1].start_frame) {
            while (segment + 1 < prompts.size() && start >= prompts[segment + 1].start_frame) ++segment;
            model_.encode_prompt(prompts[segment].context, prompt_);
            recache(start);
        }
        if (c < resume_chunks) {
            // Replay: only the clean pass, which is all that the cache keeps of a chunk.
            upload(resume_latents + start * fn, x_, n);
            forward(x_, start, n, static_cast<float>(opts_.context_noise), false, flow_, c, steps);
            remember(start, n, x_);
            continue;
        }
        for (int64_t f = 0; f < n; ++f) noise.initial(start + f, host.data() + f * fn);
        upload(host.data(), x_, n);
        for (int64_t i = 0; i < steps; ++i) {
            const float t = timesteps_[static_cast<size_t>(i)];
            begin_observed();
            forward(x_, start, n, t, false, flow_, c, i);
            end_observed(c, i);
            // The Euler sampler needs x0 only at the last step (what the chunk emits).
            if (opts_.step_rule == StepRule::kRenoise || i + 1 == steps) {
                launch_flow_to_x0(flow_, x_, static_cast<double>(scheduler_.sigma_at(t)), x0_, numel, s);
            }
            if (i + 1 < steps) {
                const float next = timesteps_[static_cast<size_t>(i + 1)];
                if (opts_.step_rule == StepRule::kEuler) {
                    launch_euler_step(flow_, scheduler_.euler_dsigma(t, next), x_, numel, s);
                } else {
                    for (int64_t f = 0; f < n; ++f) noise.step(i, start + f, host.data() + f * fn);
                    upload(host.data(), noise_, n);
                    launch_add_noise(x0_, noise_, scheduler_.sigma_at(next), x_, numel, s);
                }
            }
        }
        // The chunk goes back to the host for the callback while the GPU runs the clean pass.
        latents_.from_device(x0_, 0, static_cast<size_t>(numel) * sizeof(float), s);
        latents_.record(s);
        remember(start, n, x0_);
        // The clean pass: the chunk's K/V in the cache become those of x0 at t = context_noise.
        begin_observed();
        forward(x0_, start, n, static_cast<float>(opts_.context_noise), false, flow_, c, steps);
        end_observed(c, steps);
        latents_.wait();
        if (on_chunk) on_chunk(RolloutChunk{c, start, n, static_cast<const float*>(latents_.data())});
    }
    report(0);
    LR_CUDA_CHECK(cudaStreamSynchronize(s));
}

#else  // CPU-only build

CudaRollout::CudaRollout(CudaWanModel& model, const RolloutOptions& opts, const RolloutShape& shape)
    : model_(model), opts_(opts), shape_(shape), scheduler_(opts.timestep_shift, opts.num_train_timesteps) {
    LR_RUNTIME(false, "CUDA rollout: this longroll was built without CUDA");
}

CudaRollout::~CudaRollout() = default;

void CudaRollout::run(const std::vector<PromptSegment>&, const NoiseSource&, const ChunkCallback&, int64_t,
                      const float*) {
    LR_ASSERT(false, "CUDA rollout used in a build without CUDA");
}

#endif

}  // namespace lr
