// The self-attention KV cache of the causal DiT: per layer, K and V of every cached token, frame by frame.
//
// Semantics follow Self-Forcing's CausalWanSelfAttention exactly (with LongLive's re-cache rule), in frames:
//   - The cache holds at most `window_frames` frames (local_attn_size, the chunk being written included);
//     -1 means no eviction (the storage then holds the whole run: `max_frames`).
//   - Two indices: end_frame (the reference's global_end_index: absolute frame after the newest written)
//     and frames() (local_end_index: slots in use). A write of frames [start, start + n) lands in slots
//     [frames() + (start + n - end_frame) - n - evicted, ...) -- so writing the same chunk again (later
//     denoising steps, the clean pass at t = context_noise) overwrites it in place instead of appending.
//   - A write of new frames that does not fit first evicts the oldest frames after the first `sink_frames`
//     slots, shifting the rest left (the sink never moves). Eviction only happens when the write extends
//     end_frame, as in the reference.
//   - LongLive re-cache after a prompt switch (protect_sink): rewriting frames that are already cached, not at
//     the start of the run, skips the sink slots, so the sink keeps its original keys; the indices do not move.
// What a slot holds (post-RoPE keys in absolute mode, un-rotated keys in LongLive's window-relative mode) is
// the model's business: the cache never knows about the model.
//
// Storage is contiguous per layer, slot-ordered, planned at construction: nothing allocates while rolling
// out. Eviction moves the window with memmove once per chunk and layer, as the reference does; the paged,
// block-granular cache of DESIGN.md section 6 (PagedKvCache, the GPU path) replaces that with block tables
// over the same KvWindow bookkeeping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/core/tensor.h"

namespace lr {

struct KvCacheConfig {
    int64_t num_layers = 0;
    int64_t tokens_per_frame = 0;
    int64_t width = 0;           // floats per token in K and in V: heads * head_dim
    int64_t window_frames = -1;  // local_attn_size: frames kept, current chunk included; -1 = never evict
    int64_t sink_frames = 0;     // first frames never evicted
    int64_t max_frames = 0;      // storage in frames: >= window_frames; the run's length when window_frames = -1
};

// Where one forward's frames go. Planned once per forward; identical for every layer.
struct KvWrite {
    int64_t start_frame = 0;  // absolute frame of the first written frame
    int64_t num_frames = 0;
    int64_t evict_frames = 0;  // frames dropped after the sink before writing
    int64_t slot_begin = 0;    // the frames occupy slots [slot_begin, slot_end) ...
    int64_t slot_end = 0;      // ... and queries see slots [0, slot_end)
    int64_t write_begin = 0;   // first slot actually written (> slot_begin only when protecting the sink)
    bool recompute = false;    // frames already cached, rewritten (LongLive's is_recompute)
};

// The frame/slot bookkeeping of a sink + rolling-window cache, without storage: the two indices, the slot ->
// frame map, write planning and eviction as described above. KvCache (contiguous fp32 rows) and PagedKvCache
// (cache/paged_kv_cache.h: block pages on the GPU) store K/V differently but share this, so both follow the
// reference identically.
class KvWindow {
  public:
    KvWindow() = default;
    // window_frames -1 (never evict) or > 0; 0 <= sink_frames < window_frames; max_frames is raised to the
    // window and must then be positive. InputError otherwise.
    KvWindow(int64_t window_frames, int64_t sink_frames, int64_t max_frames);

    int64_t window_frames() const { return window_; }
    int64_t sink_frames() const { return sink_; }
    int64_t max_frames() const { return max_frames_; }

    // See KvCache::plan.
    KvWrite plan(int64_t start_frame, int64_t num_frames, bool protect_sink = false) const;
    // Moves the indices and the slot -> frame map past a planned write (evicted slots dropped, written slots
    // mapped to their frames; a recompute leaves the indices alone).
    void commit(const KvWrite& w);
    void reset(int64_t first_frame = 0);

    int64_t frames() const { return local_end_; }
    int64_t end_frame() const { return global_end_; }
    const std::vector<int64_t>& slot_frames() const { return slot_frame_; }

  private:
    int64_t window_ = -1;
    int64_t sink_ = 0;
    int64_t max_frames_ = 0;
    int64_t global_end_ = 0;
    int64_t local_end_ = 0;
    std::vector<int64_t> slot_frame_;
};

class KvCache {
  public:
    KvCache() = default;
    explicit KvCache(const KvCacheConfig& cfg);

    const KvCacheConfig& config() const { return cfg_; }

    // Plans the write of frames [start_frame, start_frame + num_frames). InputError if it cannot fit (a run
    // longer than max_frames without a window, or a chunk longer than the window minus the sink).
    KvWrite plan(int64_t start_frame, int64_t num_frames, bool protect_sink = false) const;
    // Layer `layer`: evicts as planned, then stores the rows of the frames from write_begin on.
    // k, v: [num_frames * tokens_per_frame, width], the forward's frames in order.
    void write(int64_t layer, const KvWrite& w, const float* k, const float* v);
    // After every layer was written: moves the indices and the slot -> frame map forward.
    void commit(const KvWrite& w);

    // [max_frames * tokens_per_frame, width] of a layer; slots [0, frames()) are in use.
    const float* keys(int64_t layer) const { return k_[static_cast<size_t>(layer)].as<float>(); }
    const float* values(int64_t layer) const { return v_[static_cast<size_t>(layer)].as<float>(); }
    float* mutable_keys(int64_t layer) { return k_[static_cast<size_t>(layer)].as<float>(); }

    int64_t frames() const { return window_.frames(); }        // slots in use
    int64_t end_frame() const { return window_.end_frame(); }  // absolute frame after the newest written
    // Absolute latent frame held by each slot in use, in slot order.
    const std::vector<int64_t>& slot_frames() const { return window_.slot_frames(); }
    // Forgets everything: a new run whose first frame is `first_frame`.
    void reset(int64_t first_frame = 0);
    size_t bytes() const;
    // What a cache of this config allocates (K and V of every layer), before allocating it: plan memory first.
    static size_t bytes_for(const KvCacheConfig& cfg);

  private:
    int64_t frame_floats() const { return cfg_.tokens_per_frame * cfg_.width; }

    KvCacheConfig cfg_;
    std::vector<HostTensor> k_;
    std::vector<HostTensor> v_;
    std::vector<int64_t> layer_writes_;  // per layer: writes since the last commit (each layer once per plan)
    KvWindow window_;
};

}  // namespace lr
