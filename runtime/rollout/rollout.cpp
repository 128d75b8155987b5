#include "runtime/rollout/rollout.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "dist/sharded_attention_step.h"
#include "runtime/core/check.h"

namespace lr {

Rollout::Rollout(const WanModel& model, const RolloutOptions& opts, const RolloutShape& shape)
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
    LR_CHECK(shape.height % d.patch[1] == 0 && shape.width % d.patch[2] == 0, "rollout: latent size ", shape.height,
             "x", shape.width, " is not a multiple of the patch ", d.patch[1], "x", d.patch[2]);
    LR_CHECK(opts.frames_per_chunk > 0, "rollout: frames_per_chunk must be positive");
    LR_CHECK(!opts.denoising_steps.empty(), "rollout: no denoising steps");
    LR_CHECK(opts.local_attn_size == -1 || opts.local_attn_size >= opts.frames_per_chunk + opts.sink_size,
             "rollout: local_attn_size ", opts.local_attn_size, " must be -1 or hold the sink (", opts.sink_size,
             ") plus a chunk (", opts.frames_per_chunk, ")");
    timesteps_ = scheduler_.warp(opts.denoising_steps);
    LR_CHECK(opts.mesh.overlap_groups >= 1 && (opts.mesh.overlap_groups == 1 || !single_rank(opts)),
             "rollout: overlap_groups ", opts.mesh.overlap_groups,
             " overlaps exchanges, and a single rank has none: it needs several ranks (or 1)");
    if (single_rank(opts)) {
        auto step = std::make_unique<CpuAttentionStep>(step_config(model, opts, shape));
        local_ = step.get();
        step_ = std::move(step);
    } else {
        auto step = std::make_unique<ShardedAttentionStep>(step_config(model, opts, shape), opts.mesh);
        local_ = &step->inner();
        sharded_ = step.get();
        step_ = std::move(step);
    }
}

AttentionStepConfig Rollout::step_config(const WanModel& model, const RolloutOptions& opts, const RolloutShape& shape) {
    const WanDims& d = model.config().dims;
    AttentionStepConfig c;
    c.num_layers = d.num_layers;
    c.num_heads = d.num_heads;
    c.head_dim = model.head_dim();
    c.grid_rows = shape.height / d.patch[1];
    c.grid_cols = shape.width / d.patch[2];
    c.block_size = opts.block_size;
    c.frames_per_chunk = opts.frames_per_chunk;
    c.window_frames = opts.local_attn_size;
    c.sink_frames = opts.sink_size;
    c.run_frames = shape.frames;
    // The largest forward: a chunk, or a prompt switch's re-cache of the window.
    c.max_write_frames =
        std::max(opts.frames_per_chunk, opts.local_attn_size == -1 ? shape.frames : opts.local_attn_size);
    c.rope = opts.rope;
    c.policy = opts.policy;
    c.q_block = opts.q_block;
    return c;
}

size_t Rollout::kv_cache_bytes(const WanModel& model, const RolloutOptions& opts, const RolloutShape& shape) {
    if (single_rank(opts)) return CpuAttentionStep::kv_bytes_for(step_config(model, opts, shape));
    return ShardedAttentionStep::kv_bytes_for(step_config(model, opts, shape), opts.mesh);
}

int64_t Rollout::num_chunks() const { return (shape_.frames + opts_.frames_per_chunk - 1) / opts_.frames_per_chunk; }

void Rollout::forward(const float* x, int64_t start_frame, int64_t frames, float t, const WanPrompt& prompt,
                      bool protect_sink, float* out, int64_t chunk, int64_t step) {
    const std::vector<float> ts(static_cast<size_t>(frames), t);
    WanForwardArgs a;
    a.x = x;
    a.t = ts.data();
    a.frames = frames;
    a.height = shape_.height;
    a.width = shape_.width;
    a.start_frame = start_frame;
    a.prompt = &prompt;
    a.step = step_.get();
    a.attn.chunk = chunk;
    a.attn.step = step;
    a.attn.num_steps = static_cast<int64_t>(timesteps_.size());
    a.protect_sink = protect_sink;
    a.rope = opts_.rope;
    model_.forward(a, out);
}

// Appends a chunk's clean latents to the history, dropping the oldest frames beyond its capacity.
void Rollout::remember(int64_t start_frame, int64_t frames, const float* latents) {
    if (history_.empty()) return;  // a single prompt never re-caches
    const int64_t capacity = static_cast<int64_t>(history_.size()) / frame_numel();
    LR_ASSERT(start_frame == history_begin_ + history_frames_, "rollout history: chunk at ", start_frame,
              " does not follow frame ", history_begin_ + history_frames_);
    const int64_t overflow = std::max<int64_t>(0, history_frames_ + frames - capacity);
    if (overflow > 0) {
        const int64_t keep = history_frames_ - overflow;
        std::memmove(history_.data(), history_.data() + overflow * frame_numel(),
                     static_cast<size_t>(keep * frame_numel()) * sizeof(float));
        history_begin_ += overflow;
        history_frames_ = keep;
    }
    std::memcpy(history_.data() + history_frames_ * frame_numel(), latents,
                static_cast<size_t>(frames * frame_numel()) * sizeof(float));
    history_frames_ += frames;
}

// LongLive's _recache_after_switch (global_sink = true): the last window's K/V are recomputed from the clean
// latents under the new prompt, at t = context_noise, in one bidirectional forward over frames [S - n, S),
// n = min(window, S). When S - n > 0 the window is full and the sink slots are protected (they keep their
// old-prompt K/V), so the first sink_size of those frames would be computed and dropped without influencing
// anything: they are skipped. When S - n = 0 every frame is rewritten, the sink included.
void Rollout::recache(int64_t start_frame, const WanPrompt& prompt) {
    if (start_frame == 0) return;
    const int64_t num = opts_.local_attn_size == -1 ? start_frame : std::min(opts_.local_attn_size, start_frame);
    int64_t first = start_frame - num;
    LR_ASSERT(first >= history_begin_ && start_frame == history_begin_ + history_frames_,
              "rollout history does not hold frames [", first, ", ", start_frame, ")");
    if (first > 0) first += opts_.sink_size;
    const int64_t n = start_frame - first;
    const float* x = history_.data() + (first - history_begin_) * frame_numel();
    std::vector<float> discard(static_cast<size_t>(n * frame_numel()));
    const int64_t steps = static_cast<int64_t>(timesteps_.size());
    forward(x, first, n, static_cast<float>(opts_.context_noise), prompt, /*protect_sink=*/true, discard.data(),
            start_frame / opts_.frames_per_chunk, steps);
}

void Rollout::run(const std::vector<PromptSegment>& prompts, const NoiseSource& noise, const ChunkCallback& on_chunk,
                  int64_t resume_chunks, const float* resume_latents) {
    LR_CHECK(!prompts.empty() && prompts[0].start_frame == 0, "rollout: the first prompt must start at frame 0");
    for (size_t i = 1; i < prompts.size(); ++i) {
        LR_CHECK(prompts[i].start_frame > prompts[i - 1].start_frame,
                 "rollout: prompt switches must be at increasing "
                 "frames (",
                 prompts[i - 1].start_frame, " then ", prompts[i].start_frame, ")");
    }
    LR_CHECK(resume_chunks >= 0 && resume_chunks <= num_chunks() && (resume_chunks == 0 || resume_latents),
             "rollout: cannot resume after ", resume_chunks, " of ", num_chunks(), " chunks");
    if (sharded_) {
        sharded_->reset();
    } else {
        local_->reset();
    }
    history_begin_ = 0;
    history_frames_ = 0;
    const int64_t kept = opts_.local_attn_size == -1 ? shape_.frames : opts_.local_attn_size;
    history_.assign(prompts.size() > 1 ? static_cast<size_t>(kept * frame_numel()) : 0, 0.0f);

    const int64_t fn = frame_numel();
    const int64_t steps = static_cast<int64_t>(timesteps_.size());
    const int64_t fpc = opts_.frames_per_chunk;
    std::vector<float> x(static_cast<size_t>(fpc * fn)), flow(x.size()), x0(x.size()), fresh(x.size());
    size_t segment = 0;
    WanPrompt prompt = model_.encode_prompt(prompts[0].context);
    for (int64_t c = 0; c < num_chunks(); ++c) {
        const int64_t start = c * fpc;
        const int64_t n = std::min(fpc, shape_.frames - start);
        const int64_t numel = n * fn;
        // LongLive: a switch takes effect at the first chunk that starts at or after its frame.
        if (segment + 1 < prompts.size() && start >= prompts[segment + 1].start_frame) {
            while (segment + 1 < prompts.size() && start >= prompts[segment + 1].start_frame) ++segment;
            prompt = model_.encode_prompt(prompts[segment].context);
            recache(start, prompt);
        }
        if (c < resume_chunks) {
            // Replay: only the clean pass, which is all that the cache keeps of a chunk.
            const float* latents = resume_latents + start * fn;
            forward(latents, start, n, static_cast<float>(opts_.context_noise), prompt, false, flow.data(), c, steps);
            remember(start, n, latents);
            continue;
        }
        for (int64_t f = 0; f < n; ++f) noise.initial(start + f, x.data() + f * fn);
        auto step_start = std::chrono::steady_clock::now();
        const auto observe = [&](int64_t step) {
            if (!step_observer_) return;
            const auto now = std::chrono::steady_clock::now();
            step_observer_(c, step, std::chrono::duration<double>(now - step_start).count());
            step_start = now;
        };
        for (int64_t i = 0; i < steps; ++i) {
            const float t = timesteps_[static_cast<size_t>(i)];
            step_start = std::chrono::steady_clock::now();
            forward(x.data(), start, n, t, prompt, false, flow.data(), c, i);
            observe(i);
            // The Euler sampler needs x0 only at the last step (what the chunk emits).
            if (opts_.step_rule == StepRule::kRenoise || i + 1 == steps) {
                scheduler_.flow_to_x0(flow.data(), x.data(), t, x0.data(), numel);
            }
            if (i + 1 < steps) {
                const float next = timesteps_[static_cast<size_t>(i + 1)];
                if (opts_.step_rule == StepRule::kEuler) {
                    scheduler_.euler_step(flow.data(), t, next, x.data(), numel);
                } else {
                    for (int64_t f = 0; f < n; ++f) noise.step(i, start + f, fresh.data() + f * fn);
                    scheduler_.add_noise(x0.data(), fresh.data(), next, x.data(), numel);
                }
            }
        }
        if (on_chunk) on_chunk(RolloutChunk{c, start, n, x0.data()});
        remember(start, n, x0.data());
        // The clean pass: the chunk's K/V in the cache become those of x0 at t = context_noise.
        step_start = std::chrono::steady_clock::now();
        forward(x0.data(), start, n, static_cast<float>(opts_.context_noise), prompt, false, flow.data(), c, steps);
        observe(steps);
    }
}

ChunkCallback collect_latents(HostTensor& latents, ChunkCallback next) {
    return [&latents, next = std::move(next)](const RolloutChunk& c) {
        LR_ASSERT(latents.view.dtype == DType::kF32 && latents.view.ndim() == 4 &&
                      c.start_frame + c.num_frames <= latents.view.shape[0],
                  "collect_latents: ", latents.view.str(), " cannot hold frames up to ", c.start_frame + c.num_frames);
        const int64_t fn = latents.view.numel() / latents.view.shape[0];
        std::memcpy(latents.as<float>() + c.start_frame * fn, c.latents,
                    static_cast<size_t>(c.num_frames * fn) * sizeof(float));
        if (next) next(c);
    };
}

}  // namespace lr
