// Attention over a block-paged KV cache, bf16 in and out, fp32 softmax statistics and accumulation: the one
// attention kernel of the GPU path (DESIGN.md section 6). Self-attention reads the cached window and the
// chunk's own K/V (both already in the cache pool); cross-attention reads the prompt's K/V viewed as a pool
// of contiguous blocks. Which KV blocks a query block reads is a block table in CSR form:
//
//   for table head g (g = h when table_heads == heads, g = 0 when one table serves every head) and query
//   block qb (query rows [qb * q_block, (qb + 1) * q_block)):
//       physical blocks indices[indptr[g * num_q_blocks + qb] .. indptr[g * num_q_blocks + qb + 1])
//
// Dense attention is the table that lists every block; the sparse policies only change the table. A physical
// block holds block_len[b] valid tokens (the last block of a frame is short when tokens_per_frame is not a
// multiple of block_size), or block_len[b * heads + h] per head with block_len_heads = heads; the rest is
// masked. A query row whose table is empty gets zeros.
//
// head_dim 128 runs the fast kernel (Hopper: TMA producer warpgroup + two ping-pong wgmma consumer
// warpgroups, tiles of 128 queries x 128 keys); any other even head_dim
// up to 256 runs a simple kernel (the tiny test model has head_dim 32). q_block must be 128.
#pragma once

#include <cstdint>

#include "runtime/core/stream.h"

namespace lr {

struct PagedAttentionParams {
    const void* q = nullptr;  // bf16 [q_len, heads, head_dim]; row i, head h at q + i * q_row_stride + h * head_dim
    void* out = nullptr;      // bf16 [q_len, heads, head_dim]; row i at out + i * out_row_stride
    // bf16 pools: token t of physical block b, head h at k + b * kv_block_stride + t * kv_row_stride + h * head_dim
    const void* k = nullptr;
    const void* v = nullptr;
    int64_t q_row_stride = 0;            // elements; 0: heads * head_dim
    int64_t out_row_stride = 0;          // elements; 0: heads * head_dim
    int64_t kv_row_stride = 0;           // elements; 0: heads * head_dim
    int64_t kv_block_stride = 0;         // elements; 0: block_size * kv_row_stride
    const int32_t* block_len = nullptr;  // [physical blocks * block_len_heads] valid tokens, 0..block_size
    // 1: one length per block (block_len[b]); heads: a length per block and head (block_len[b * heads + h]),
    // for blocks that hold a different tile per head (retained blocks of head-separable caches).
    int block_len_heads = 1;
    const int32_t* indptr = nullptr;   // [table_heads * num_q_blocks + 1]
    const int32_t* indices = nullptr;  // [indptr[last]] physical block ids
    int table_heads = 1;               // 1 or heads
    int q_len = 0;
    int heads = 0;
    int head_dim = 0;
    int block_size = 0;  // tokens per KV block: a multiple of 64 for head_dim 128, any positive otherwise
    int q_block = 128;   // query rows per table row
    float scale = 0.0f;  // 0: 1 / sqrt(head_dim)
    // The CTA count whose wave fill decides whether the head_dim 128 kernel splits a table row over two CTAs
    // (which changes the order of the online softmax's sums): 0, this launch's (q blocks x heads). A sharded
    // step that launches a share of the rows or heads passes the whole launch's, so that it splits every row as
    // one rank does and its rows equal that rank's bit for bit.
    int64_t split_ctas = 0;
};

inline int64_t paged_attention_q_blocks(const PagedAttentionParams& p) { return (p.q_len + p.q_block - 1) / p.q_block; }

// Checks p (throws InputError naming the bad field: sizes, head_dim, block_size, q_block, table_heads, strides,
// alignment) and returns it with the defaults filled in (strides, scale). Both backends start here; the
// tables' contents are checked only by the CPU backend, which can read them.
PagedAttentionParams resolve_paged_attention_params(const PagedAttentionParams& p);

// Device pointers (tables included); asynchronous on `stream`.
void launch_paged_attention(const PagedAttentionParams& p, Stream stream);

// The same computation on host pointers (bf16 data read as fp32, output rounded to bf16), online softmax in
// fp32: the reference the CUDA kernel is tested against.
void paged_attention_cpu(const PagedAttentionParams& p);

}  // namespace lr
