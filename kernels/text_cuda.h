// The UMT5 text encoder's non-GEMM ops on the GPU (runtime/text/umt5_encoder_cuda.h): self-attention with T5's
// relative position bias, the gated-GELU product of its FFN, and the embedding lookup. bf16 in and out, fp32
// arithmetic. CPU references: relative_bias_attention_cpu (kernels/relative_bias_attention.h) and gelu_tanh_cpu times
// the up projection; tests/gpu compares them on random inputs. All pointers are device pointers; launches are
// asynchronous on `stream`.
#pragma once

#include <cstdint>

#include "runtime/core/dtype.h"
#include "runtime/core/stream.h"

namespace lr {

// out[i, h] = sum_j softmax_j(scale * q[i, h] . k[j, h] + rel_bias[h, j - i + len - 1]) v[j, h], every key
// visible (the encoder runs the prompt's tokens only). One block per (query, head); the row of scores lives in
// shared memory (4 * len bytes: any prompt the tokenizer makes, 512 tokens = 2 KiB).
struct RelativeBiasAttentionCudaParams {
    const void* q = nullptr;  // bf16 [len, heads, head_dim], tokens q_stride elements apart (0: heads * head_dim)
    const void* k = nullptr;  // bf16, as q
    const void* v = nullptr;  // bf16, as q
    void* out = nullptr;      // bf16 [len, heads, head_dim], tokens out_stride elements apart
    const float* rel_bias = nullptr;  // f32 [heads, 2 * len - 1]
    int64_t len = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    int64_t q_stride = 0;
    int64_t k_stride = 0;
    int64_t v_stride = 0;
    int64_t out_stride = 0;
    float scale = 1.0f;  // T5: no 1/sqrt(head_dim)
};
void launch_relative_bias_attention(const RelativeBiasAttentionCudaParams& p, Stream stream);

// out[i, :] = table[ids[i], :] widened to f32: the embedding rows of a prompt's tokens (every id in [0, vocab),
// checked by the caller on the host).
struct EmbeddingRowsCudaParams {
    const void* table = nullptr;  // [vocab, dim] of table_dtype (BF16 or F32)
    DType table_dtype = DType::kBF16;
    const int32_t* ids = nullptr;  // [len], device memory
    float* out = nullptr;          // f32 [len, dim]
    int64_t len = 0;
    int64_t dim = 0;
};
void launch_embedding_rows(const EmbeddingRowsCudaParams& p, Stream stream);

// out[i] = gelu_tanh(gate[i]) * up[i] (bf16 in and out, fp32 arithmetic); out may alias gate or up.
void launch_gated_gelu(const void* gate, const void* up, void* out, int64_t n, Stream stream);

}  // namespace lr
