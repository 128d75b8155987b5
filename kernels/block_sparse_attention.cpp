#include "kernels/block_sparse_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "runtime/core/check.h"

namespace lr {

void block_sparse_attention_cpu(const BlockSparseAttentionParams& in) {
    BlockSparseAttentionParams p = in;
    LR_CHECK(p.q && p.out && p.k_blocks && p.v_blocks && p.block_len && p.indptr, "block-sparse attention: null input");
    LR_CHECK(p.q_len >= 0 && p.heads > 0 && p.head_dim > 0 && p.q_block > 0 &&
                 (p.table_heads == 1 || p.table_heads == p.heads),
             "block-sparse attention: q_len ", p.q_len, ", heads ", p.heads, ", head_dim ", p.head_dim, ", q_block ",
             p.q_block, ", table_heads ", p.table_heads, " (1 or heads)");
    LR_CHECK(p.block_len_heads == 1 || p.block_len_heads == p.heads, "block-sparse attention: block_len_heads ",
             p.block_len_heads, " (1 or heads)");
    const int64_t width = p.heads * p.head_dim;
    if (p.q_row_stride == 0) p.q_row_stride = width;
    if (p.out_row_stride == 0) p.out_row_stride = width;
    if (p.kv_row_stride == 0) p.kv_row_stride = width;
    if (p.scale == 0.0f) p.scale = 1.0f / std::sqrt(static_cast<float>(p.head_dim));
    const int64_t nqb = (p.q_len + p.q_block - 1) / p.q_block;
    const int64_t rows = p.table_heads * nqb;
    for (int64_t r = 0; r < rows; ++r) {
        LR_CHECK(p.indptr[r] <= p.indptr[r + 1], "block-sparse attention: indptr decreases at row ", r);
        for (int32_t i = p.indptr[r]; i < p.indptr[r + 1]; ++i)
            LR_CHECK(p.indices[i] >= 0 && p.indices[i] < p.num_blocks, "block-sparse attention: row ", r,
                     " reads block ", p.indices[i], " of ", p.num_blocks);
    }
    const int64_t hd = p.head_dim;
    // One task per (query block, head): rows of a block share the table row.
    parallel_for(nqb * p.heads, 1, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
            const int64_t qb = task / p.heads, h = task % p.heads;
            if (p.q_block_mask && !p.q_block_mask[qb]) continue;
            const int64_t g = p.table_heads == 1 ? 0 : h;
            const int32_t* idx = p.indices + p.indptr[g * nqb + qb];
            const int64_t nb = p.indptr[g * nqb + qb + 1] - p.indptr[g * nqb + qb];
            std::vector<float> acc(static_cast<size_t>(hd));
            std::vector<float> s;
            for (int64_t i = qb * p.q_block; i < std::min(p.q_len, (qb + 1) * p.q_block); ++i) {
                const float* q = p.q + i * p.q_row_stride + h * hd;
                float m = -std::numeric_limits<float>::infinity(), l = 0.0f;
                std::fill(acc.begin(), acc.end(), 0.0f);
                for (int64_t j = 0; j < nb; ++j) {
                    const int32_t b = idx[j];
                    const int64_t len = p.block_len[b * p.block_len_heads + (p.block_len_heads == 1 ? 0 : h)];
                    if (len <= 0) continue;
                    const float* kb = p.k_blocks[b] + h * hd;
                    const float* vb = p.v_blocks[b] + h * hd;
                    s.resize(static_cast<size_t>(len));
                    float bm = -std::numeric_limits<float>::infinity();
                    for (int64_t t = 0; t < len; ++t) {
                        const float* k = kb + t * p.kv_row_stride;
                        float dot = 0.0f;
                        for (int64_t c = 0; c < hd; ++c) dot += q[c] * k[c];
                        s[static_cast<size_t>(t)] = dot * p.scale;
                        bm = std::max(bm, s[static_cast<size_t>(t)]);
                    }
                    const float nm = std::max(m, bm);
                    const float corr = std::exp(m - nm);  // exp(-inf) = 0 on the first block
                    l *= corr;
                    for (float& a : acc) a *= corr;
                    for (int64_t t = 0; t < len; ++t) {
                        const float e = std::exp(s[static_cast<size_t>(t)] - nm);
                        l += e;
                        const float* v = vb + t * p.kv_row_stride;
                        for (int64_t c = 0; c < hd; ++c) acc[static_cast<size_t>(c)] += e * v[c];
                    }
                    m = nm;
                }
                float* o = p.out + i * p.out_row_stride + h * hd;
                const float inv = l > 0.0f ? 1.0f / l : 0.0f;
                for (int64_t c = 0; c < hd; ++c) o[c] = acc[static_cast<size_t>(c)] * inv;
                if (p.lse)
                    p.lse[i * p.heads + h] = l > 0.0f ? m + std::log(l) : -std::numeric_limits<float>::infinity();
            }
        }
    });
}

void merge_attention_cpu(const float* out_a, const float* lse_a, const float* out_b, const float* lse_b, float* out,
                         float* lse_out, int64_t rows, int64_t heads, int64_t head_dim) {
    for (int64_t r = 0; r < rows * heads; ++r) {
        const float la = lse_a[r], lb = lse_b[r];
        const float m = std::max(la, lb);
        const float* a = out_a + r * head_dim;
        const float* b = out_b + r * head_dim;
        float* o = out + r * head_dim;
        if (m == -std::numeric_limits<float>::infinity()) {
            std::fill(o, o + head_dim, 0.0f);
            if (lse_out) lse_out[r] = m;
            continue;
        }
        const float wa = std::exp(la - m), wb = std::exp(lb - m);
        const float inv = 1.0f / (wa + wb);
        for (int64_t c = 0; c < head_dim; ++c) o[c] = (a[c] * wa + b[c] * wb) * inv;
        if (lse_out) lse_out[r] = m + std::log(wa + wb);
    }
}

}  // namespace lr
