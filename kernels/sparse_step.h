// Small ops of the sparse attention step on the GPU (runtime/model/wan_model_cuda_sparse.cpp), each with a
// CPU reference: retention (copy a head's slice of a block into a retained block), the change score of a
// block since the frame before (Forcing-KV) and the pooled salience of a block (Sparse Forcing). Entries are
// int32 rows in device memory (host memory for the _cpu twins); one warp per (entry, head).
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/core/stream.h"

namespace lr {

// For each entry (layer, head, src, dst): rows [0, block_size) of head `head` of physical block src are copied
// to block dst, in layer `layer`'s K and V pools (bf16 [pool_blocks, block_size, heads * head_dim]: K of layer l
// at pools + l * layer_stride bytes, its V v_offset bytes further), and kmean[l][src][head] to
// kmean[l][dst][head] (f32 [layers][pool_blocks][heads][head_dim]) when kmean is set.
struct CopyHeadBlocksParams {
    void* pools = nullptr;
    size_t layer_stride = 0;
    size_t v_offset = 0;
    float* kmean = nullptr;
    int64_t pool_blocks = 0;
    int64_t block_size = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    const int32_t* entries = nullptr;  // [n, 4]
    int64_t n = 0;
};
void launch_copy_head_blocks(const CopyHeadBlocksParams& p, Stream stream);
void copy_head_blocks_cpu(const CopyHeadBlocksParams& p);

// For each entry (layer, block, prev) and head h: change[l][block][h] = 0 when prev < 0, else
// 1 - cos(kmean[l][block][h], kmean[l][prev][h]) (0 for a zero vector).
struct BlockChangeParams {
    const float* kmean = nullptr;  // [layers][pool_blocks][heads][head_dim]
    float* change = nullptr;       // [layers][pool_blocks][heads]
    int64_t pool_blocks = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    const int32_t* entries = nullptr;  // [n, 3]
    int64_t n = 0;
};
void launch_block_change(const BlockChangeParams& p, Stream stream);
void block_change_cpu(const BlockChangeParams& p);

// For each entry (layer, block) and head h: out[e * heads + h] = max over qb < num_q_blocks of
// qmean[l][h][qb] . kmean[l][block][h] (0 when num_q_blocks is 0).
struct BlockSalienceParams {
    const float* qmean = nullptr;  // [layers][heads][max_q_blocks][head_dim]
    int64_t max_q_blocks = 0;
    int64_t num_q_blocks = 0;
    const float* kmean = nullptr;  // [layers][pool_blocks][heads][head_dim]
    int64_t pool_blocks = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    const int32_t* entries = nullptr;  // [n, 2]
    int64_t n = 0;
    float* out = nullptr;  // [n, heads]
};
void launch_block_salience(const BlockSalienceParams& p, Stream stream);
void block_salience_cpu(const BlockSalienceParams& p);

}  // namespace lr
