// Multi-head scaled dot-product attention, fp32, one sequence:
//   out[i, h] = sum_j softmax_j(scale * q[i, h] . k[j, h]) v[j, h]
// computed in tiles with an online softmax (running max and sum per query, as FlashAttention does), so memory
// stays O(tile) for any key length. Queries may see only a range of keys [kv_begin[i], kv_end[i]) (block-causal
// masks of the full-sequence path); a query that sees no key gets zeros.
#pragma once

#include <cstdint>

namespace lr {

struct AttentionParams {
    const float* q = nullptr;  // [q_len, heads, head_dim], tokens q_stride elements apart
    const float* k = nullptr;  // [kv_len, heads, head_dim], tokens k_stride elements apart
    const float* v = nullptr;  // [kv_len, heads, head_dim], tokens v_stride elements apart
    float* out = nullptr;      // [q_len, heads, head_dim], tokens out_stride elements apart
    int64_t q_len = 0;
    int64_t kv_len = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    int64_t q_stride = 0;  // 0: heads * head_dim (likewise below)
    int64_t k_stride = 0;
    int64_t v_stride = 0;
    int64_t out_stride = 0;
    float scale = 0.0f;                 // 0: 1 / sqrt(head_dim)
    const int64_t* kv_begin = nullptr;  // [q_len] or nullptr (0)
    const int64_t* kv_end = nullptr;    // [q_len] or nullptr (kv_len)
};

void attention_cpu(const AttentionParams& p);

}  // namespace lr
