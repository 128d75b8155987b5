// Multi-head attention with an additive bias that depends only on the key's position relative to the query's,
// the T5 / UMT5 encoder's self-attention:
//   out[i, h] = sum_j softmax_j(scale * q[i, h] . k[j, h] + rel_bias[h, j - i + q_len - 1]) v[j, h]
// T5 applies no 1/sqrt(head_dim) scaling (its initialisation absorbs it), so callers pass scale = 1. The bias is
// given per relative offset, not per (query, key) pair: [heads, q_len + kv_len - 1] instead of
// [heads, q_len, kv_len] (a 512-token UMT5-XXL layer: 64 KiB instead of 64 MiB). Every key is visible: padding is
// dropped by the caller, which gives the same result on the real tokens as T5's -inf mask on padded keys.
#pragma once

#include <cstdint>

namespace lr {

struct RelativeBiasAttentionParams {
    const float* q = nullptr;         // [q_len, heads, head_dim], tokens q_stride elements apart
    const float* k = nullptr;         // [kv_len, heads, head_dim], tokens k_stride elements apart
    const float* v = nullptr;         // [kv_len, heads, head_dim], tokens v_stride elements apart
    float* out = nullptr;             // [q_len, heads, head_dim], tokens out_stride elements apart
    const float* rel_bias = nullptr;  // [heads, q_len + kv_len - 1]: key j of query i at j - i + q_len - 1
    int64_t q_len = 0;
    int64_t kv_len = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    int64_t q_stride = 0;  // 0: heads * head_dim (likewise below)
    int64_t k_stride = 0;
    int64_t v_stride = 0;
    int64_t out_stride = 0;
    float scale = 1.0f;
};

// fp32 reference: per head, scores by GEMM, a softmax over the whole key row (max-subtracted, summed in double),
// then the probabilities times V by GEMM. Parallel over heads.
void relative_bias_attention_cpu(const RelativeBiasAttentionParams& p);

}  // namespace lr
