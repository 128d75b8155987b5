// The attention seam (DESIGN.md section 2): the model's self-attention goes through one interface. The model
// hands over the layer and the chunk's q, k, v (after norm, q after RoPE, k after RoPE in absolute mode) in
// its own token order; the step stores K/V in its cache, asks the block policy for the table and runs the
// kernel. The model never knows which policy runs, how the cache is laid out (tiles, retained blocks), or how
// many ranks share the work: the single-rank step is CpuAttentionStep (attention_step_cpu.h) on the CPU and the
// CUDA model's step on the GPU; the sharded step (dist/sharded_attention_step.h) splits heads and query blocks over
// the ranks of a sequence-parallel group and owns every exchange.
//
// A step may give the model a share of the chunk's tokens (tokens()): the model then runs its per-token layers
// on those tokens only, hands their q/k/v (all heads) to attend() and gets their attention output back, and
// gather() assembles the rows of every worker at the end of the forward. The model never learns why.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cache/block_policy.h"
#include "cache/kv_cache.h"

namespace lr {

// One forward as the step sees it: the frames written, whether they re-cache (LongLive's protected sink), and
// where the rollout is (chunk, denoising step) for the policies that depend on it.
struct AttentionForward {
    int64_t start_frame = 0;
    int64_t num_frames = 0;
    bool protect_sink = false;
    int64_t chunk = 0;
    int64_t step = 0;  // denoising step; num_steps for the clean pass
    int64_t num_steps = 4;
};

// What one forward read, for the sparsity and KV metrics.
struct AttentionStats {
    double read_tokens = 0;     // (query row, head, key) triples the tables read ...
    double dense_tokens = 0;    // ... and what dense attention over the same window would read
    int64_t kv_bytes_held = 0;  // bytes of cached K/V in use after the forward (window frames + retained blocks)
    double density() const { return dense_tokens > 0 ? read_tokens / dense_tokens : 1.0; }
};

class AttentionStep {
  public:
    virtual ~AttentionStep() = default;
    // Plans the forward (evictions, retention, the policy's candidates); returns where its frames land (the
    // model gives window-relative RoPE positions from slot_begin).
    virtual KvWrite begin(const AttentionForward& f) = 0;
    // Whether this worker computes a share of the forward's tokens (a sequence-parallel worker): then tokens() lists
    // them (possibly none) and the model calls gather(); otherwise it computes every token, in model order.
    virtual bool shares_tokens() const { return false; }
    // The forward's tokens (model order: frame, row, col of the chunk) this worker computes, in the order of its
    // rows in attend() and gather(), after begin(); only when shares_tokens().
    virtual const std::vector<int64_t>& tokens() const { return all_tokens_; }
    // Layer `layer`: q, k, v [n, heads, head_dim] of the worker's tokens (all of the forward's unless
    // shares_tokens()) with every head; writes their attention output [n, heads, head_dim] to out. A worker with no
    // tokens (n = 0) still calls it: its peers exchange with it.
    virtual void attend(int64_t layer, const float* q, const float* k, const float* v, float* out) = 0;
    // Every worker's rows [n, width] (its tokens() order) -> all rows [L, width] of the forward in model order,
    // on every worker. Called once per forward, after the layers.
    virtual void gather(const float* mine, int64_t rows, int64_t width, float* all) {
        std::copy_n(mine, rows * width, all);
    }
    // After every layer: the cache moves past the forward.
    virtual void end() = 0;
    virtual AttentionStats stats() const = 0;

  private:
    std::vector<int64_t> all_tokens_;
};

}  // namespace lr
