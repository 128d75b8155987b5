#include "cache/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "runtime/core/check.h"

namespace lr {

KvWindow::KvWindow(int64_t window_frames, int64_t sink_frames, int64_t max_frames)
    : window_(window_frames), sink_(sink_frames), max_frames_(max_frames) {
    LR_CHECK(window_frames == -1 || window_frames > 0, "KV cache: window of ", window_frames,
             " frames; expected -1 (no eviction) or a positive number");
    LR_CHECK(sink_frames >= 0 && (window_frames == -1 || sink_frames < window_frames), "KV cache: sink of ",
             sink_frames, " frames must be >= 0 and smaller than the window (", window_frames, ")");
    if (window_ > 0) max_frames_ = std::max(max_frames_, window_);
    LR_CHECK(max_frames_ > 0, "KV cache: no storage planned (max_frames ", max_frames, ")");
}

void KvWindow::reset(int64_t first_frame) {
    LR_ASSERT(first_frame >= 0, "KV cache: first frame ", first_frame);
    global_end_ = first_frame;
    local_end_ = 0;
    slot_frame_.clear();
}

KvWrite KvWindow::plan(int64_t start_frame, int64_t num_frames, bool protect_sink) const {
    LR_ASSERT(num_frames > 0 && start_frame >= 0, "KV write of frames [", start_frame, ", ", start_frame + num_frames,
              ")");
    KvWrite w;
    w.start_frame = start_frame;
    w.num_frames = num_frames;
    const int64_t current_end = start_frame + num_frames;
    const int64_t capacity = window_ > 0 ? window_ : max_frames_;
    if (window_ > 0 && current_end > global_end_ && num_frames + local_end_ > capacity) {
        w.evict_frames = num_frames + local_end_ - capacity;
        LR_CHECK(local_end_ - w.evict_frames - sink_ >= 0, "KV cache: a write of ", num_frames,
                 " frames does not fit a window of ", window_, " frames with a sink of ", sink_,
                 " (chunks must be at most window - sink frames)");
    }
    w.slot_end = local_end_ + current_end - global_end_ - w.evict_frames;
    w.slot_begin = w.slot_end - num_frames;
    LR_CHECK(w.slot_begin >= 0, "KV cache: frames [", start_frame, ", ", current_end,
             ") are older than the cached window (it holds frames up to ", global_end_, ", ", local_end_,
             " of them); they cannot be rewritten");
    LR_CHECK(w.slot_end <= max_frames_, "KV cache: frames up to ", current_end, " need ", w.slot_end,
             " frame slots but ", max_frames_,
             " were planned (set rollout.local_attn_size, or plan the run's "
             "length)");
    w.recompute = current_end <= global_end_ && start_frame > 0;
    w.write_begin = (protect_sink && w.recompute) ? std::max(w.slot_begin, sink_) : w.slot_begin;
    return w;
}

void KvWindow::commit(const KvWrite& w) {
    if (w.evict_frames > 0) {
        const auto first = slot_frame_.begin() + sink_;
        slot_frame_.erase(first, first + w.evict_frames);
    }
    slot_frame_.resize(static_cast<size_t>(std::max<int64_t>(w.slot_end, static_cast<int64_t>(slot_frame_.size()))),
                       -1);
    for (int64_t s = w.write_begin; s < w.slot_end; ++s) {
        slot_frame_[static_cast<size_t>(s)] = w.start_frame + (s - w.slot_begin);
    }
    if (w.recompute) return;  // LongLive: a rewrite of cached frames does not move the indices
    global_end_ = w.start_frame + w.num_frames;
    local_end_ = w.slot_end;
    slot_frame_.resize(static_cast<size_t>(local_end_));
}

KvCache::KvCache(const KvCacheConfig& cfg) : cfg_(cfg) {
    LR_CHECK(cfg.num_layers > 0 && cfg.tokens_per_frame > 0 && cfg.width > 0, "KV cache: layers (", cfg.num_layers,
             "), tokens per frame (", cfg.tokens_per_frame, ") and width (", cfg.width, ") must be positive");
    window_ = KvWindow(cfg.window_frames, cfg.sink_frames, cfg.max_frames);
    cfg_.max_frames = window_.max_frames();
    const Shape shape{cfg_.max_frames * cfg_.tokens_per_frame, cfg_.width};
    for (int64_t l = 0; l < cfg_.num_layers; ++l) {
        k_.emplace_back(DType::kF32, shape);
        v_.emplace_back(DType::kF32, shape);
    }
    layer_writes_.assign(static_cast<size_t>(cfg_.num_layers), 0);
}

void KvCache::reset(int64_t first_frame) {
    window_.reset(first_frame);
    std::fill(layer_writes_.begin(), layer_writes_.end(), 0);
}

size_t KvCache::bytes() const { return bytes_for(cfg_); }

size_t KvCache::bytes_for(const KvCacheConfig& cfg) {
    const int64_t frames = std::max(cfg.max_frames, cfg.window_frames);
    return static_cast<size_t>(2 * cfg.num_layers * frames * cfg.tokens_per_frame * cfg.width) * sizeof(float);
}

KvWrite KvCache::plan(int64_t start_frame, int64_t num_frames, bool protect_sink) const {
    return window_.plan(start_frame, num_frames, protect_sink);
}

void KvCache::write(int64_t layer, const KvWrite& w, const float* k, const float* v) {
    LR_ASSERT(layer >= 0 && layer < cfg_.num_layers, "KV cache: layer ", layer, " of ", cfg_.num_layers);
    LR_ASSERT(layer_writes_[static_cast<size_t>(layer)] == 0, "KV cache: layer ", layer, " written twice for one plan");
    ++layer_writes_[static_cast<size_t>(layer)];
    const int64_t ff = frame_floats();
    float* kd = mutable_keys(layer);
    float* vd = v_[static_cast<size_t>(layer)].as<float>();
    if (w.evict_frames > 0) {
        // Shift slots [sink + evicted, local_end) left to [sink, ...): the oldest non-sink frames are gone.
        const int64_t sink = window_.sink_frames();
        const int64_t rolled = window_.frames() - w.evict_frames - sink;
        const size_t n = static_cast<size_t>(rolled * ff) * sizeof(float);
        const int64_t dst = sink * ff, src = (sink + w.evict_frames) * ff;
        std::memmove(kd + dst, kd + src, n);
        std::memmove(vd + dst, vd + src, n);
    }
    const int64_t skip = w.write_begin - w.slot_begin;  // leading frames not written (protected sink)
    const int64_t n = w.slot_end - w.write_begin;
    if (n <= 0) return;
    std::memcpy(kd + w.write_begin * ff, k + skip * ff, static_cast<size_t>(n * ff) * sizeof(float));
    std::memcpy(vd + w.write_begin * ff, v + skip * ff, static_cast<size_t>(n * ff) * sizeof(float));
}

void KvCache::commit(const KvWrite& w) {
    for (int64_t& n : layer_writes_) {
        LR_ASSERT(n == 1, "KV cache: commit after ", n, " writes of a layer (expected every layer once)");
        n = 0;
    }
    window_.commit(w);
}

}  // namespace lr
