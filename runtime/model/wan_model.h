// The Wan2.1 causal DiT (Self-Forcing's CausalWanModel) on the CPU reference backend, fp32.
//
// One forward takes the latent frames of a chunk, a timestep per frame and a prepared prompt, attends over
// the KV cache plus the chunk's own keys (bidirectional inside the chunk), writes the chunk's K/V into the
// cache, and returns the flow prediction. DESIGN.md section 3 has the math; wan_model.cpp follows the
// reference module by module, and every intermediate can be observed by name through a dump hook.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cache/kv_cache.h"
#include "runtime/core/tensor.h"
#include "runtime/io/safetensors.h"
#include "runtime/model/attention_step.h"
#include "runtime/model/wan_weights.h"

namespace lr {

// Architecture plus the two numbers the weights do not fix.
struct WanModelConfig {
    WanDims dims;
    int64_t text_len = 512;  // prompt embeddings are zero-padded to this many tokens
    double eps = 1e-6;       // of every LayerNorm and RMSNorm
};

// dims, text_len and eps from a checkpoint's __metadata__["config"] (Wan config.json names); absent fields keep
// `base`. InputError naming the file on bad values.
WanModelConfig wan_model_config_from_metadata(const SafetensorsCheckpoint& ckpt, const WanModelConfig& base,
                                              bool* found = nullptr);

// Frame positions that RoPE gives to the chunk's queries and to the cached keys.
enum class RopePositions {
    kAbsolute,        // latent frame index from the start of the run; keys are cached after RoPE (Self-Forcing)
    kWindowRelative,  // slot index in the cache window; keys are cached un-rotated and rotated at every call
                      // (LongLive's "infinite" mode)
};

// A prompt prepared for cross-attention: the text embedding of the zero-padded context and, per layer, the
// cross-attention keys (after norm_k) and values. Computed once per prompt (the reference's crossattn_cache).
struct WanPrompt {
    int64_t text_len = 0;
    std::vector<HostTensor> k;  // per layer [text_len, dim]
    std::vector<HostTensor> v;  // per layer [text_len, dim]
};

struct WanForwardArgs {
    const float* x = nullptr;  // [frames, in_dim, height, width] latents of the chunk
    const float* t = nullptr;  // [frames] timestep of each frame
    int64_t frames = 0;        // latent frames (a multiple of patch t)
    int64_t height = 0;        // latent rows (a multiple of patch h)
    int64_t width = 0;         // latent columns (a multiple of patch w)
    int64_t start_frame = 0;   // absolute latent frame of x[0]
    const WanPrompt* prompt = nullptr;
    // With a cache: the chunk attends to the cached frames plus itself and is written into the cache.
    KvCache* cache = nullptr;
    bool protect_sink = false;  // LongLive re-cache: rewriting cached frames leaves the sink slots alone
    // Or: the attention step owns the cache, the block policy, the kernel and any exchange between workers
    // (attention_step.h); attn says where the rollout is (its frames and protect_sink are taken from the fields
    // above). A step may hand the forward a share of the tokens (a sequence-parallel worker); the forward still
    // returns the whole chunk's flow.
    AttentionStep* step = nullptr;
    AttentionForward attn;
    RopePositions rope = RopePositions::kAbsolute;
    // Without a cache: attention within x only, block-causal over blocks of this many frames (0: bidirectional).
    // This is the reference's training-time path, used to check the cached path.
    int64_t causal_block_frames = 0;
};

// Observes intermediates: name ("blocks.3.self_attn.o", "head", ...), data, shape. Called synchronously.
using WanDumpFn = std::function<void(const std::string& name, const float* data, const Shape& shape)>;

class WanModel {
  public:
    // From a checkpoint with original, Self-Forcing ("model."), FSDP or diffusers names in F32, BF16 or F16;
    // the first missing or mis-shaped tensor is an InputError naming it and the file.
    static WanModel from_checkpoint(const SafetensorsCheckpoint& ckpt, const WanModelConfig& cfg);
    // From named F32 tensors with original names (make_default_wan_weights: the embedded default).
    static WanModel from_weights(std::vector<std::pair<std::string, HostTensor>> weights, const WanModelConfig& cfg);

    WanModel(WanModel&&) noexcept;
    WanModel& operator=(WanModel&&) noexcept;
    ~WanModel();

    const WanModelConfig& config() const { return cfg_; }
    int64_t dim() const { return cfg_.dims.dim; }
    int64_t num_heads() const { return cfg_.dims.num_heads; }
    int64_t head_dim() const { return cfg_.dims.dim / cfg_.dims.num_heads; }
    int64_t num_layers() const { return cfg_.dims.num_layers; }
    // Tokens per latent frame of a latent height x width.
    int64_t tokens_per_frame(int64_t height, int64_t width) const;
    // A KV cache shaped for this model: `window_frames` = local_attn_size (-1: none), `max_frames` = storage.
    KvCacheConfig kv_cache_config(int64_t height, int64_t width, int64_t window_frames, int64_t sink_frames,
                                  int64_t max_frames) const;

    // context: [L <= text_len, text_dim] (F32, BF16 or F16, contiguous), zero-padded to text_len here.
    WanPrompt encode_prompt(const TensorView& context) const;

    // out: [frames, out_dim, height, width], the predicted flow (noise - x0). In a dump, a forward whose step
    // hands it a share of the tokens shows that share's rows (q/k/v with every head).
    void forward(const WanForwardArgs& args, float* out) const;

    void set_dump(WanDumpFn fn) { dump_ = std::move(fn); }

    // An F32 weight by original Wan name ("blocks.3.ffn.0.weight"), for backends that upload the weights
    // (the CUDA model); InputError when there is no such tensor.
    const HostTensor& weight(const std::string& name) const;

  private:
    struct Weights;
    WanModel(const WanModelConfig& cfg, std::unique_ptr<Weights> w);
    void dump(const std::string& name, const float* data, const Shape& shape) const;

    WanModelConfig cfg_;
    std::unique_ptr<Weights> w_;
    WanDumpFn dump_;
};

}  // namespace lr
