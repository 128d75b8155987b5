// The Wan2.1 causal DiT on one GPU: the forward of WanModel (wan_model.cpp, single rank) module by module, in
// bf16 with fp32 accumulation, over the block-paged KV cache (cache/paged_kv_cache.h).
//
// Precision: every GEMM and attention input is bf16 (weights are uploaded as bf16; biases, norm weights and
// modulation tables stay f32); GEMMs and attention accumulate in fp32; the residual stream x, LayerNorm /
// RMSNorm statistics, the modulation, the time embedding's outputs and the head's output are fp32. K and V
// are cached in bf16.
//
// Memory is planned once (DESIGN.md section 2): the constructor computes every device buffer (weights, the
// paged KV pools and tables, activations for max_forward_frames, the cuBLASLt workspace, one prompt), refuses
// with an InputError naming the numbers when they do not fit the free device memory, and allocates them; a
// forward only launches (plus small pinned-host uploads of positions, timesteps and block tables), mostly by
// replaying a CUDA graph.
//
// Everything runs on the model's stream, asynchronously: forward() returns before the GPU is done; read the
// output after synchronising stream().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "cache/block_policy.h"
#include "runtime/core/stream.h"
#include "runtime/core/tensor.h"
#include "runtime/model/attention_step.h"
#include "runtime/model/attention_step_cuda.h"
#include "runtime/model/wan_model.h"

namespace lr {

struct CudaModelOptions {
    int64_t height = 0;  // latent rows (a multiple of patch h)
    int64_t width = 0;   // latent columns (a multiple of patch w)
    // The largest forward in frames: frames_per_chunk, or the re-cache window of a prompt switch.
    int64_t max_forward_frames = 3;
    // The KV cache, as KvCacheConfig: window (local_attn_size, -1 = never evict), sink, storage in frames.
    int64_t window_frames = -1;
    int64_t sink_frames = 0;
    int64_t max_frames = 0;
    int64_t kv_block_size = 128;  // tokens per KV block (a multiple of 64 when head_dim is 128)
    RopePositions rope = RopePositions::kAbsolute;
    // Replay each forward's launches as a CUDA graph (see forward()); the environment variable
    // LONGROLL_CUDA_GRAPHS=0 turns them off too.
    bool cuda_graphs = true;
    // Block-sparse attention (DESIGN.md section 6): any policy but DENSE / SINK_WINDOW runs the sparse step of
    // CudaLocalAttentionStep (attention_step_cuda.h; absolute RoPE). frames_per_chunk and run_frames are the
    // policy's geometry.
    BlockPolicyConfig policy;
    int64_t frames_per_chunk = 3;
    int64_t run_frames = 0;
    // The attention seam (attention_step_cuda.h): the step every forward's self-attention goes through, not owned
    // (it must outlive the model). Null: the model builds the single-GPU step of the options above
    // (attention_step_config) and plans its memory with its own. A step handed over owns its cache and its
    // exchanges (the sharded step of dist/sharded_attention_step_cuda.h: the model then runs its per-token
    // layers on the step's share of the tokens); the cache options above only describe it.
    CudaAttentionStep* step = nullptr;
};

// The single-GPU attention step these options describe (the one the model builds when o.step is null; a
// sharded step is built from it).
CudaAttentionStepConfig attention_step_config(const WanModelConfig& cfg, const CudaModelOptions& o);

// How forwards ran: eagerly, or replayed from a CUDA graph (captured: graphs made).
struct CudaGraphStats {
    int64_t eager = 0;
    int64_t captured = 0;
    int64_t replayed = 0;
};

// A prompt prepared for cross-attention on the device (WanPrompt's GPU twin): per layer the cross-attention
// keys (after norm_k) and values of all text_len tokens, bf16, stored as whole blocks of kCrossBlock rows
// (the padding rows past text_len are zero and masked).
struct CudaPrompt {
    static constexpr int64_t kCrossBlock = 128;
    int64_t text_len = 0;
    int64_t rows = 0;  // text_len rounded up to whole blocks
    int64_t dim = 0;
    int64_t num_layers = 0;
    DeviceBuffer storage;  // [num_layers, 2 (K, V), rows, dim] bf16

    const void* k(int64_t layer) const;  // bf16 [rows, dim]
    const void* v(int64_t layer) const;
    static size_t bytes_for(const WanModelConfig& cfg);
};

struct CudaForwardArgs {
    const float* x = nullptr;  // device f32 [frames, in_dim, height, width]: latents of the chunk
    const float* t = nullptr;  // HOST f32 [frames]: timestep of each frame
    int64_t frames = 0;        // <= max_forward_frames
    int64_t start_frame = 0;   // absolute latent frame of x[0]
    const CudaPrompt* prompt = nullptr;
    bool protect_sink = false;  // LongLive re-cache: rewriting cached frames leaves the sink slots alone
    float* out = nullptr;       // device f32 [frames, out_dim, height, width]: the predicted flow
    // Where the rollout is, for the block policies (AttentionForward's chunk, step, num_steps).
    int64_t chunk = 0;
    int64_t step = 0;
    int64_t num_steps = 4;
};

class CudaWanModel {
  public:
    // Uploads the weights of `host` (bf16 matrices, f32 vectors) and plans every device buffer.
    CudaWanModel(const WanModel& host, const CudaModelOptions& opts);
    // Weights drawn on the device (matrices ~ U(-1/sqrt(in), 1/sqrt(in)), norm gains ~1, biases and modulation
    // small) without a host copy of the model: for benchmarks at 1.3B / 14B shapes.
    static CudaWanModel with_random_weights(const WanModelConfig& cfg, const CudaModelOptions& opts, uint64_t seed);
    // The device memory the plan needs (what the constructor checks against the free memory).
    static size_t device_bytes(const WanModelConfig& cfg, const CudaModelOptions& opts);

    CudaWanModel(CudaWanModel&&) noexcept;
    CudaWanModel& operator=(CudaWanModel&&) noexcept;
    ~CudaWanModel();

    const WanModelConfig& config() const;
    const CudaModelOptions& options() const;
    int64_t tokens_per_frame() const;

    // context: host [L <= text_len, text_dim], F32 / BF16 / F16, zero-padded to text_len here. The first form
    // allocates the prompt's device memory; the second re-encodes into an existing prompt (no allocation).
    CudaPrompt encode_prompt(const TensorView& context);
    void encode_prompt(const TensorView& context, CudaPrompt& prompt);

    // Asynchronous on stream(): attends over the cached window plus the chunk and writes the chunk's K/V.
    // The host work (KV bookkeeping, tables, their upload) runs per call; the launches are replayed from a CUDA
    // graph when an earlier forward had the same frames, x, out, prompt (and, with window-relative RoPE, cached
    // rows): the first such forward runs eagerly, the second is captured. Only where the step's launches allow it
    // (CudaAttentionStep::capturable: the dense single-GPU step) and without a dump hook.
    void forward(const CudaForwardArgs& a);
    CudaGraphStats graph_stats() const;
    void reset_cache(int64_t first_frame = 0);
    // The step the forwards go through (the model's own, or CudaModelOptions::step).
    const CudaAttentionStep& attention_step() const;
    Stream stream() const;

    size_t weight_bytes() const;
    size_t kv_bytes() const;  // the step's K/V pools
    // The last forward's attention (the sparse step: blocks read vs dense, K/V bytes held); dense otherwise.
    AttentionStats attention_stats() const;
    size_t activation_bytes() const;  // activations, per-forward tables and staging on the device

    // Observes intermediates by WanModel's names ("patch_embedding", "blocks.0.self_attn.q", "head", ...): each
    // is copied to the host as f32 after synchronising the stream (tests; slow). Cross-attention's output is
    // then computed into a separate buffer instead of being accumulated into x by the GEMM.
    void set_dump(WanDumpFn fn);

  private:
    struct Impl;
    explicit CudaWanModel(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace lr
