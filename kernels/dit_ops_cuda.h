// The DiT's non-GEMM ops on the GPU (DESIGN.md section 3): LayerNorm + modulation, q/k RMSNorm + 3D RoPE +
// KV-cache store, gated residual adds, the timestep sinusoid, patchify / unpatchify, the flow-matching step.
// Statistics and residuals are fp32; what feeds a GEMM or the attention kernel is bf16. Each op's CPU
// reference is the fp32 op of the same name in kernels/ (layer_norm_cpu, rms_norm_cpu, rope_3d_cpu,
// timestep_embedding_cpu, patchify_cpu, unpatchify_cpu, FlowMatchScheduler); tests/gpu compares them.
// All pointers are device pointers; every launch is asynchronous on `stream` and graph capturable.
#pragma once

#include <cstdint>

#include "kernels/patchify.h"
#include "kernels/timestep_embedding.h"
#include "runtime/core/dtype.h"
#include "runtime/core/stream.h"

namespace lr {

// y = LN(x) [* weight + bias] [* (1 + scale_g) + shift_g], g = (row0 + r) / rows_per_group for row r.
// Mean and variance in fp32 (two-pass over the row held in registers/shared memory); y in bf16.
struct LayerNormModParams {
    const float* x = nullptr;  // f32 [rows, dim], rows x_stride elements apart (0: dim)
    void* y = nullptr;         // bf16 [rows, dim], rows y_stride elements apart (0: dim)
    int64_t x_stride = 0;
    int64_t y_stride = 0;
    int64_t rows = 0;
    int64_t dim = 0;
    float eps = 1e-6f;
    const float* weight = nullptr;  // f32 [dim] or nullptr (no affine)
    const float* bias = nullptr;    // f32 [dim] or nullptr
    const float* shift = nullptr;   // f32, group g at shift + g * mod_stride; both or neither
    const float* scale = nullptr;
    int64_t rows_per_group = 1;
    int64_t mod_stride = 0;
    int64_t row0 = 0;  // token index of row 0 (a shard that starts inside a frame)
};
void launch_layer_norm_mod(const LayerNormModParams& p, Stream stream);

// Per row: optional RMSNorm over the whole row (heads * head_dim, fp32 statistics: x * rsqrt(mean(x^2) + eps)
// * weight), optional 3D RoPE per head at the row's (frame, row, col) position (angles in double, exactly the
// pairs and frequencies of rope_3d_cpu), stored as bf16. Row r reads x row src_row[r] (or r) and writes y row
// dst_row[r] (or r); dst_row[r] < 0 skips the row (LongLive's protected sink). Used for q (norm + rope), k
// (norm + rope + store into the paged cache), v (store only) and the window-relative re-rotation of cached
// keys (rope only, src_row = the cache rows).
struct NormRopeParams {
    const void* x = nullptr;       // [*, heads * head_dim] of x_dtype, rows x_stride elements apart (0: width)
    DType x_dtype = DType::kBF16;  // kBF16 or kF32
    int64_t x_stride = 0;
    const int32_t* src_row = nullptr;  // [rows] or nullptr
    void* y = nullptr;                 // bf16 [*, heads * head_dim], rows y_stride elements apart (0: width)
    int64_t y_stride = 0;
    const int32_t* dst_row = nullptr;    // [rows] or nullptr
    const float* norm_weight = nullptr;  // f32 [heads * head_dim], or nullptr: no RMSNorm
    float eps = 1e-6f;
    const int32_t* positions = nullptr;  // [rows, 3] (frame, row, col), or nullptr: no RoPE
    int64_t rows = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;  // even
    double theta = 10000.0;
};
void launch_norm_rope(const NormRopeParams& p, Stream stream);

// Window-relative RoPE of the sparse step's retained blocks (attention_step_cuda_sparse.cpp): retained slot r is
// physical block first_block + r of a bf16 pool [blocks, block_size, heads * head_dim], and head h's slice of it
// holds tile slot_tile[h * slots + r] of some earlier frame (-1: none). The tile's token j sits at raster index
// tile_raster[tile * block_size + j] of its frame (-1 past the tile's length) and is rotated at (frame 0, raster /
// grid_cols, raster % grid_cols): the window's first slot, CpuAttentionStep's rule for blocks kept outside the
// window. x -> y at the same rows and columns; rows of empty slots and past a tile's length are not written. The
// angles and the rounding are launch_norm_rope's.
struct RopeRetainedParams {
    const void* x = nullptr;  // bf16 pool
    void* y = nullptr;        // bf16 pool, the same layout
    int64_t first_block = 0;
    int64_t slots = 0;
    int64_t block_size = 0;
    const int32_t* slot_tile = nullptr;    // [heads, slots]
    const int32_t* tile_raster = nullptr;  // [tiles, block_size]
    int64_t grid_cols = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;  // even
    double theta = 10000.0;
};
void launch_rope_retained(const RopeRetainedParams& p, Stream stream);

// x[r] += y[r] * gate_g (g = (row0 + r) / rows_per_group, gate row at gate + g * mod_stride), or x[r] += y[r]
// when gate is null. x f32; y bf16 or f32.
struct GatedResidualParams {
    float* x = nullptr;       // f32 [rows, dim], contiguous
    const void* y = nullptr;  // [rows, dim] of y_dtype, contiguous
    DType y_dtype = DType::kBF16;
    int64_t rows = 0;
    int64_t dim = 0;
    const float* gate = nullptr;
    int64_t rows_per_group = 1;
    int64_t mod_stride = 0;
    int64_t row0 = 0;
};
void launch_gated_residual(const GatedResidualParams& p, Stream stream);

// out[g, i] = base[i] + rows[g, i] (f32): a block's modulation plus the time projection, per frame.
struct AddBroadcastParams {
    const float* base = nullptr;  // [n]
    const float* rows = nullptr;  // [groups, n]
    float* out = nullptr;         // [groups, n]; may be rows
    int64_t groups = 0;
    int64_t n = 0;
};
void launch_add_broadcast(const AddBroadcastParams& p, Stream stream);

enum class UnaryOp : uint8_t { kSilu, kGeluTanh };
// y = op(x), computed in fp32; x and y each bf16 or f32; y may alias x when the dtypes match.
struct UnaryParams {
    const void* x = nullptr;
    DType x_dtype = DType::kF32;
    void* y = nullptr;
    DType y_dtype = DType::kF32;
    int64_t n = 0;
    UnaryOp op = UnaryOp::kSilu;
};
void launch_unary(const UnaryParams& p, Stream stream);

// timestep_embedding_cpu on the GPU (device t and out, double angles).
void launch_timestep_embedding(const TimestepEmbeddingParams& p, Stream stream);

// patchify_cpu with a bf16 output: x f32 [frames, C, H, W] -> patches bf16 [tokens, C * pt * ph * pw].
struct PatchifyCudaParams {
    const float* x = nullptr;
    void* patches = nullptr;
    PatchShape shape;
};
void launch_patchify(const PatchifyCudaParams& p, Stream stream);
// unpatchify_cpu on the GPU: f32 patches [tokens, pt * ph * pw * C] -> f32 x [frames, C, H, W].
void launch_unpatchify(const UnpatchifyParams& p, Stream stream);

// Row gather / scatter (spatial sharding: a rank's tokens out of the chunk, the gathered head output back into the
// chunk's order): row r of src (src_row[r], or r when null) is copied to row dst_row[r] (or r) of dst; a negative
// src_row or dst_row skips the row. Rows are row_bytes long (a multiple of 4), src_stride / dst_stride bytes
// apart (0: row_bytes). copy_rows_cpu is the reference.
struct CopyRowsParams {
    const void* src = nullptr;
    void* dst = nullptr;
    const int32_t* src_row = nullptr;  // [rows] or nullptr
    const int32_t* dst_row = nullptr;  // [rows] or nullptr
    int64_t rows = 0;
    int64_t row_bytes = 0;
    int64_t src_stride = 0;
    int64_t dst_stride = 0;
};
void launch_copy_rows(const CopyRowsParams& p, Stream stream);
void copy_rows_cpu(const CopyRowsParams& p);  // host pointers

// The flow-matching step (FlowMatchScheduler): x0 = xt - sigma * flow in double, rounded to f32; and
// out = (1 - sigma) * x0 + sigma * noise in f32 (out may alias x0). n elements, f32.
void launch_flow_to_x0(const float* flow, const float* xt, double sigma, float* x0, int64_t n, Stream stream);
void launch_add_noise(const float* x0, const float* noise, float sigma, float* out, int64_t n, Stream stream);
// The Euler step of the flow-matching ODE (FlowMatchScheduler::euler_step), in place: x = x + dsigma * flow in
// double (dsigma = sigma_next - sigma, from the fp32 table values), rounded to f32. n elements.
void launch_euler_step(const float* flow, double dsigma, float* x, int64_t n, Stream stream);

}  // namespace lr
