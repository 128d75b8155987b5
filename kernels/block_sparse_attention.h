// Block-sparse attention over KV blocks, fp32: the CPU reference path's attention for every policy
// (DESIGN.md section 6). Keys and values live in blocks anywhere in memory; a CSR block table says, per
// (table head, query block), which blocks a query block reads:
//
//   g = h when table_heads == heads, 0 when one table serves every head
//   query rows [qb * q_block, min(q_len, (qb + 1) * q_block))
//   read blocks indices[indptr[g * num_q_blocks + qb] .. indptr[g * num_q_blocks + qb + 1])
//   block b: block_len[b] tokens; token t, head h at k_blocks[b] + t * kv_row_stride + h * head_dim
//
// Softmax in fp32 with a running max and sum (FlashAttention's online form), keys visited in table order, one
// block at a time: so a table listing every cached block in slot order gives the dense result. A row whose
// table is empty gets zeros (and lse = -inf). With `lse` set, the log-sum-exp of the scaled scores of each
// (row, head) is written too, so that partial results over disjoint key sets can be merged exactly
// (merge_attention_cpu).
#pragma once

#include <cstdint>

namespace lr {

struct BlockSparseAttentionParams {
    const float* q = nullptr;                // [q_len, heads, head_dim], rows q_row_stride apart
    float* out = nullptr;                    // [q_len, heads, head_dim], rows out_row_stride apart
    float* lse = nullptr;                    // optional [q_len, heads]
    const float* const* k_blocks = nullptr;  // [num_blocks] first token of each block (head 0)
    const float* const* v_blocks = nullptr;
    const int32_t* block_len = nullptr;  // [num_blocks * block_len_heads]: block b, head h at b * block_len_heads + h
    int64_t block_len_heads = 1;         // 1 (one length per block) or heads (a block holds other tiles per head)
    const int32_t* indptr = nullptr;     // [table_heads * num_q_blocks + 1]
    const int32_t* indices = nullptr;
    int64_t num_blocks = 0;  // bounds the indices (checked)
    int64_t q_len = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    int64_t q_block = 128;
    int64_t table_heads = 1;
    int64_t q_row_stride = 0;  // 0: heads * head_dim
    int64_t out_row_stride = 0;
    int64_t kv_row_stride = 0;  // 0: heads * head_dim
    float scale = 0.0f;         // 0: 1 / sqrt(head_dim)
    // Optional [num_q_blocks]: only query blocks with a nonzero entry are computed; the other rows of out (and
    // lse) are left as they are (a worker computing its share of the rows, dist/sharded_attention_step.h).
    const uint8_t* q_block_mask = nullptr;
};

void block_sparse_attention_cpu(const BlockSparseAttentionParams& p);

// out = (a * exp(lse_a) + b * exp(lse_b)) / (exp(lse_a) + exp(lse_b)) per (row, head); lse_out (optional) the
// merged log-sum-exp. rows x heads x head_dim, contiguous. Either side may be empty (-inf).
void merge_attention_cpu(const float* out_a, const float* lse_a, const float* out_b, const float* lse_b, float* out,
                         float* lse_out, int64_t rows, int64_t heads, int64_t head_dim);

}  // namespace lr
