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

class Communicator;

// Head-parallel (Ulysses) self-attention, DESIGN.md section 7. With size U > 1 (U divides num_heads) every
// rank of `comm` (rank `rank` of `size`) calls forward with the same arguments; each runs the linear layers,
// norms, cross-attention and FFN on its own contiguous shard of the chunk's tokens (ceil(L / U) tokens, the
// last shards shorter or empty), an all-to-all turns its q/k/v token shard into all tokens of num_heads / U
// heads (heads [rank * H/U, (rank + 1) * H/U)), self-attention runs over the KV cache of those heads only (the
// cache is built with kv_cache_config(..., size): width dim / U), and a second all-to-all brings the
// attention output back to token shards. Cross-attention runs on the rank's tokens with all heads (the text
// K/V are small and per prompt: no exchange). The head's output is all-gathered, so every rank returns the
// whole chunk's flow. size == 1 (the default) is the single-rank path, bit for bit; comm may then be null.
// In a sharded forward the dump hook sees the rank's token shard (and its heads for q/k/v).
struct AttentionShard {
    int rank = 0;
    int size = 1;
    Communicator* comm = nullptr;  // host-buffer communicator of the U ranks (MpiCommunicator)
};

// Spatial parallelism (S), DESIGN.md section 7. Each latent frame's tokens (order row, col) are cut into
// ceil(tokens_per_frame / block_size) blocks of block_size tokens (the last one may be short); rank r of the S
// ranks of `comm` owns the blocks b with b % S == r in every frame: its tokens of the chunk go through the
// linear layers, norms, cross-attention and FFN, and its KV cache holds only those blocks (the cache is built
// with kv_cache_config(..., spatial): tokens_per_frame = the rank's tokens of a frame, in frame order, blocks
// ascending). Self-attention gathers the K/V of the other ranks' blocks of every cached frame in the window
// (the dense table: every block) plus the chunk's, with one grouped send_recv per layer, assembles the keys in
// the 1-rank token order and attends with the rank's queries. The head's output is all-gathered, so every rank
// returns the whole chunk. size == 1 (the default) is the single-rank path, bit for bit.
//
// Both together (a sequence-parallel group of U x S ranks; rank (u, s) holds AttentionShard{u, U, its U group}
// and SpatialShard{s, S, its S group}): spatial rank s's tokens of the chunk (frame, block, token order) take the
// place of the chunk in the Ulysses scheme above. Rank (u, s) runs the linear layers on the Ulysses shard u of
// spatial s's tokens; the all-to-all within its U group (same s) turns them into all of spatial s's tokens for
// the heads of u; self-attention fetches the K/V of those heads from the other spatial ranks' blocks with the
// grouped send_recv within its S group (same u); its KV cache holds its heads (width dim / U) of its blocks
// (kv_cache_config(..., U, spatial)). The head's output is all-gathered over U, then over S.
struct SpatialShard {
    int rank = 0;
    int size = 1;
    Communicator* comm = nullptr;  // host-buffer communicator of the S ranks (MpiCommunicator)
    int64_t block_size = 128;      // tokens per block (spatial tile)
};

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
    // Or, on one rank: the attention step owns the cache, the block policy and the kernel (attention_step.h);
    // attn says where the rollout is (its frames and protect_sink are taken from the fields above).
    AttentionStep* step = nullptr;
    AttentionForward attn;
    RopePositions rope = RopePositions::kAbsolute;
    // Without a cache: attention within x only, block-causal over blocks of this many frames (0: bidirectional).
    // This is the reference's training-time path, used to check the cached path.
    int64_t causal_block_frames = 0;
    // Ulysses head parallelism (see AttentionShard); the default is one rank.
    AttentionShard shard;
    // Spatial parallelism (see SpatialShard); the default is one rank.
    SpatialShard spatial;
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
    // head_shards = U of a head-parallel forward: the cache of one rank, holding num_heads / U heads.
    // spatial (size S > 1): the cache of one spatial rank, holding its blocks of every frame. Both: its heads of
    // its blocks.
    KvCacheConfig kv_cache_config(int64_t height, int64_t width, int64_t window_frames, int64_t sink_frames,
                                  int64_t max_frames, int head_shards = 1, const SpatialShard& spatial = {}) const;
    // Tokens of one latent frame that spatial rank `rank` of `size` owns with blocks of `block_size` tokens.
    int64_t spatial_tokens_per_frame(int64_t height, int64_t width, const SpatialShard& spatial) const;

    // context: [L <= text_len, text_dim] (F32, BF16 or F16, contiguous), zero-padded to text_len here.
    WanPrompt encode_prompt(const TensorView& context) const;

    // out: [frames, out_dim, height, width], the predicted flow (noise - x0).
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
