// The device memory plan of CudaWanModel (internal to wan_model_cuda.cpp): which buffers exist, their shapes,
// and how many bytes they take. One layout function per group walks the buffers in a fixed order through a
// Planner, which either only counts (the plan: CudaWanModel::device_bytes, the fit check) or hands out memory
// from the model's arena; counting and allocating therefore cannot disagree. Plain arithmetic: it compiles
// without CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/model/wan_model_cuda.h"

namespace lr::wan_cuda {

constexpr size_t kAlign = 256;                       // Arena's alignment
constexpr size_t kGemmWorkspace = size_t{32} << 20;  // cuBLASLt workspace (GemmRunner)
constexpr size_t kHeadroom = size_t{64} << 20;       // cuBLASLt handle, kernels' static data: not in the plan
constexpr int64_t kQBlock = 128;                     // query rows per block-table row (the attention kernel's)

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// InputError naming the first model number or option the CUDA path cannot run (the attention step's own when the
// model builds it).
void check_options(const WanModelConfig& cfg, const CudaModelOptions& o);
int64_t tokens_per_frame_of(const WanModelConfig& cfg, const CudaModelOptions& o);
// Blocks of CudaPrompt::kCrossBlock rows the prompt's text_len rows take.
int64_t text_blocks(const WanModelConfig& cfg);

// Hands out device memory in a fixed order: only counting (no arena) or from an arena, optionally zeroing what
// it hands out.
class Planner {
  public:
    explicit Planner(Arena* arena) : arena_(arena) {}
    void* take(size_t bytes, const char* what);
    float* f32(int64_t n, const char* what) { return static_cast<float*>(take(static_cast<size_t>(n) * 4, what)); }
    void* bf16(int64_t n, const char* what) { return take(static_cast<size_t>(n) * 2, what); }
    int32_t* i32(int64_t n, const char* what) { return static_cast<int32_t*>(take(static_cast<size_t>(n) * 4, what)); }
    size_t total() const { return total_; }
    bool zero = false;

  private:
    Arena* arena_;
    size_t total_ = 0;
};

struct DevLinear {
    void* w = nullptr;   // bf16 [out, in]
    float* b = nullptr;  // f32 [out]
    int64_t out = 0;
    int64_t in = 0;
};

struct DevBlock {
    float* modulation = nullptr;  // [6, dim]
    DevLinear qkv;                // self-attention q, k, v fused: [3 dim, dim], rows q then k then v
    DevLinear self_o;
    float* norm_q = nullptr;
    float* norm_k = nullptr;
    float* norm3_w = nullptr;
    float* norm3_b = nullptr;
    DevLinear cross_q, cross_k, cross_v, cross_o;
    float* cross_norm_q = nullptr;
    float* cross_norm_k = nullptr;
    DevLinear ffn0, ffn2;
};

// bf16 matrices (Linear weights, the patch embedding's Conv3d as [dim, in_dim * pt * ph * pw]), f32 vectors.
struct DevWeights {
    DevLinear patch, text0, text2, time0, time2, time_proj, head;
    float* head_modulation = nullptr;  // [2, dim]
    std::vector<DevBlock> blocks;
};

void lay_out_weights(Planner& p, const WanModelConfig& cfg, DevWeights& w);

// Activations for max_forward_frames (rows rounded up to whole 128-query blocks: the attention kernel's tiles
// may read the last block's rows past q_len), the per-forward inputs, the static tables and prompt scratch.
struct Activations {
    int64_t rows = 0;             // Lp: max_forward_frames * tokens_per_frame, rounded up to 128
    int64_t tmp_width = 0;        // columns of tmp
    float* x = nullptr;           // [rows, dim] the residual stream
    void* h = nullptr;            // bf16 [rows, dim] normed input of the GEMMs
    float* tmp = nullptr;         // [rows, tmp_width] GEMM outputs: q|k|v, o-proj, FFN out, head out
    void* q = nullptr;            // bf16 [rows, dim]
    void* attn = nullptr;         // bf16 [rows, dim] attention output
    void* ffn = nullptr;          // bf16 [rows, ffn_dim]
    void* patches = nullptr;      // bf16 [rows, in_dim * pt * ph * pw]
    float* sinusoid = nullptr;    // [F, freq_dim]
    void* sinusoid_bf = nullptr;  // bf16 [F, freq_dim]
    float* t_hidden = nullptr;    // [F, dim]
    void* t_act = nullptr;        // bf16 [F, dim] silu(...) feeding a GEMM
    float* e = nullptr;           // [F, dim]
    float* e0 = nullptr;          // [F, 6, dim]
    float* mod = nullptr;         // [F, 6, dim] a block's modulation + e0
    float* head_shift = nullptr;  // [F, dim]
    float* head_scale = nullptr;  // [F, dim]
    // Per forward: timesteps f32 [F], then positions int32 [F * tokens_per_frame, 3] and the worker's tokens
    // int32 [F * tokens_per_frame] (a step that shares tokens: which patches its rows are).
    float* forward_in = nullptr;
    int32_t* cross_block_len = nullptr;  // the prompt's K/V as blocks of 128 rows: [text blocks]
    int32_t* cross_indptr = nullptr;     // [max q blocks + 1]
    int32_t* cross_indices = nullptr;    // [max q blocks * text blocks]
    void* ctx = nullptr;                 // bf16 [text_len, text_dim]
    void* text_hidden = nullptr;         // bf16 [text_len, dim]
    void* text = nullptr;                // bf16 [text_len, dim]
    float* text_tmp = nullptr;           // [text_len, dim]
    // With a step that may share tokens (CudaModelOptions::step): every worker's head rows, gathered in model
    // order, f32 [rows, head_out].
    float* head_all = nullptr;
};

void lay_out_activations(Planner& p, const WanModelConfig& cfg, const CudaModelOptions& o, Activations& a);

// kv: the attention step the model builds (its pools, tables, sparse buffers, q scratch); 0 when the caller hands
// one over (CudaModelOptions::step), which then owns its memory.
struct PlanBytes {
    size_t weights = 0, activations = 0, kv = 0, kv_pools = 0, workspace = kGemmWorkspace, prompt = 0;
    size_t total() const { return weights + activations + kv + workspace + prompt; }
};

// The whole plan; InputError for options the CUDA path cannot run.
PlanBytes plan_bytes(const WanModelConfig& cfg, const CudaModelOptions& o);

}  // namespace lr::wan_cuda
