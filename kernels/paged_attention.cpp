// Parameter checks shared by both backends and the CPU reference of paged attention: for each (head, query
// block), the table's KV blocks are visited in order and folded into an fp32 online softmax one block at a
// time, exactly the recurrence the CUDA kernels run (they fold 64-key tiles or single keys instead).
#include "kernels/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "runtime/core/check.h"
#include "runtime/core/dtype.h"

namespace lr {
namespace {

bool aligned_to(const void* ptr, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

}  // namespace

PagedAttentionParams resolve_paged_attention_params(const PagedAttentionParams& in) {
    PagedAttentionParams p = in;
    LR_CHECK(p.q != nullptr && p.out != nullptr && p.k != nullptr && p.v != nullptr,
             "paged attention: q, out, k and v must be set");
    LR_CHECK(p.block_len != nullptr && p.indptr != nullptr && p.indices != nullptr,
             "paged attention: block_len, indptr and indices must be set");
    LR_CHECK(p.q_len >= 0, "paged attention: q_len must be >= 0, found ", p.q_len);
    LR_CHECK(p.heads > 0, "paged attention: heads must be positive, found ", p.heads);
    LR_CHECK(p.head_dim > 0 && p.head_dim % 2 == 0 && p.head_dim <= 256,
             "paged attention: head_dim must be even and in [2, 256], found ", p.head_dim);
    LR_CHECK(p.q_block == 128, "paged attention: q_block must be 128, found ", p.q_block);
    LR_CHECK(p.block_size > 0, "paged attention: block_size must be positive, found ", p.block_size);
    LR_CHECK(p.head_dim != 128 || p.block_size % 64 == 0,
             "paged attention: head_dim 128 needs block_size a multiple of 64, found ", p.block_size);
    LR_CHECK(p.table_heads == 1 || p.table_heads == p.heads, "paged attention: table_heads must be 1 or heads (",
             p.heads, "), found ", p.table_heads);
    LR_CHECK(p.block_len_heads == 1 || p.block_len_heads == p.heads,
             "paged attention: block_len_heads must be 1 or heads (", p.heads, "), found ", p.block_len_heads);

    const int64_t width = static_cast<int64_t>(p.heads) * p.head_dim;
    if (p.q_row_stride == 0) p.q_row_stride = width;
    if (p.out_row_stride == 0) p.out_row_stride = width;
    if (p.kv_row_stride == 0) p.kv_row_stride = width;
    if (p.kv_block_stride == 0) p.kv_block_stride = p.block_size * p.kv_row_stride;
    LR_CHECK(p.q_row_stride >= width && p.out_row_stride >= width && p.kv_row_stride >= width,
             "paged attention: row strides must be >= heads * head_dim = ", width, ", found q ", p.q_row_stride,
             ", out ", p.out_row_stride, ", kv ", p.kv_row_stride);
    LR_CHECK(p.kv_block_stride >= p.block_size * p.kv_row_stride, "paged attention: kv_block_stride must be >= ",
             "block_size * kv_row_stride = ", p.block_size * p.kv_row_stride, ", found ", p.kv_block_stride);

    // The CUDA kernels read bf16 pairs (generic) or 16-byte rows of 8 elements (head_dim 128); the CPU
    // backend holds itself to the same contract so that a layout it accepts also runs on the GPU.
    const int64_t vec = p.head_dim == 128 ? 8 : 2;
    LR_CHECK(p.q_row_stride % vec == 0 && p.out_row_stride % vec == 0 && p.kv_row_stride % vec == 0 &&
                 p.kv_block_stride % vec == 0,
             "paged attention: with head_dim ", p.head_dim, " every stride must be a multiple of ", vec,
             " elements, found q ", p.q_row_stride, ", out ", p.out_row_stride, ", kv row ", p.kv_row_stride,
             ", kv block ", p.kv_block_stride);
    const auto bytes = static_cast<uintptr_t>(vec * 2);
    LR_CHECK(aligned_to(p.q, bytes) && aligned_to(p.out, bytes) && aligned_to(p.k, bytes) && aligned_to(p.v, bytes),
             "paged attention: q, out, k and v must be ", bytes, "-byte aligned for head_dim ", p.head_dim);

    if (p.scale == 0.0f) p.scale = 1.0f / std::sqrt(static_cast<float>(p.head_dim));
    LR_CHECK(std::isfinite(p.scale) && p.scale > 0.0f, "paged attention: scale must be positive and finite, found ",
             p.scale);
    return p;
}

#ifndef LONGROLL_HAS_CUDA
void launch_paged_attention(const PagedAttentionParams&, Stream) {
    LR_RUNTIME(false, "paged attention on device memory: this longroll was built without CUDA");
}
#endif

void paged_attention_cpu(const PagedAttentionParams& params) {
    const PagedAttentionParams p = resolve_paged_attention_params(params);
    if (p.q_len == 0) return;
    const int64_t q_blocks = paged_attention_q_blocks(p);
    const int64_t rows = p.table_heads * q_blocks;
    LR_CHECK(p.indptr[0] == 0, "paged attention: indptr[0] must be 0, found ", p.indptr[0]);
    for (int64_t r = 0; r < rows; ++r) {
        LR_CHECK(p.indptr[r + 1] >= p.indptr[r], "paged attention: indptr must not decrease, indptr[", r,
                 "] = ", p.indptr[r], " > indptr[", r + 1, "] = ", p.indptr[r + 1]);
    }
    for (int64_t e = 0; e < p.indptr[rows]; ++e) {
        const int32_t b = p.indices[e];
        LR_CHECK(b >= 0, "paged attention: indices[", e, "] = ", b, " is negative");
        for (int64_t j = b * p.block_len_heads; j < (b + 1) * p.block_len_heads; ++j) {
            LR_CHECK(p.block_len[j] >= 0 && p.block_len[j] <= p.block_size, "paged attention: block_len[", j,
                     "] = ", p.block_len[j], " is outside [0, ", p.block_size, "]");
        }
    }

    const auto* q = static_cast<const uint16_t*>(p.q);
    const auto* k = static_cast<const uint16_t*>(p.k);
    const auto* v = static_cast<const uint16_t*>(p.v);
    auto* out = static_cast<uint16_t*>(p.out);
    const int64_t d = p.head_dim;
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();

    // One task per (query block, head): its table row is read once and each KV block converted once.
    parallel_for(q_blocks * p.heads, 1, [&](int64_t t0, int64_t t1) {
        std::vector<float> qf(static_cast<size_t>(p.q_block * d)), acc(qf.size());
        std::vector<float> kf(static_cast<size_t>(p.block_size * d)), vf(kf.size());
        std::vector<float> row_max(static_cast<size_t>(p.q_block)), row_sum(row_max.size());
        std::vector<float> scores(static_cast<size_t>(p.block_size));
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t h = t % p.heads, qb = t / p.heads;
            const int64_t g = p.table_heads == 1 ? 0 : h;
            const int64_t len_head = p.block_len_heads == 1 ? 0 : h;
            const int64_t i0 = qb * p.q_block;
            const int64_t n = std::min<int64_t>(p.q_block, p.q_len - i0);
            for (int64_t i = 0; i < n; ++i) {
                const uint16_t* src = q + (i0 + i) * p.q_row_stride + h * d;
                for (int64_t c = 0; c < d; ++c) qf[i * d + c] = bf16_bits_to_f32(src[c]);
            }
            std::fill(acc.begin(), acc.end(), 0.0f);
            std::fill(row_max.begin(), row_max.end(), kNegInf);
            std::fill(row_sum.begin(), row_sum.end(), 0.0f);
            const int64_t row = g * q_blocks + qb;
            for (int64_t e = p.indptr[row]; e < p.indptr[row + 1]; ++e) {
                const int64_t b = p.indices[e];
                const int64_t len = p.block_len[b * p.block_len_heads + len_head];
                if (len == 0) continue;
                // [len, head_dim] keys and values of head h in physical block b
                for (int64_t j = 0; j < len; ++j) {
                    const int64_t off = b * p.kv_block_stride + j * p.kv_row_stride + h * d;
                    for (int64_t c = 0; c < d; ++c) {
                        kf[j * d + c] = bf16_bits_to_f32(k[off + c]);
                        vf[j * d + c] = bf16_bits_to_f32(v[off + c]);
                    }
                }
                for (int64_t i = 0; i < n; ++i) {
                    const float* qi = qf.data() + i * d;
                    float block_max = kNegInf;
                    for (int64_t j = 0; j < len; ++j) {
                        const float* kj = kf.data() + j * d;
                        float dot = 0.0f;
                        for (int64_t c = 0; c < d; ++c) dot += qi[c] * kj[c];
                        scores[j] = dot * p.scale;
                        block_max = std::max(block_max, scores[j]);
                    }
                    const float m_new = std::max(row_max[i], block_max);
                    const float correction = std::exp(row_max[i] - m_new);  // 0 for the first block (max -inf)
                    float* ai = acc.data() + i * d;
                    for (int64_t c = 0; c < d; ++c) ai[c] *= correction;
                    float sum = 0.0f;
                    for (int64_t j = 0; j < len; ++j) {
                        const float pj = std::exp(scores[j] - m_new);
                        sum += pj;
                        const float* vj = vf.data() + j * d;
                        for (int64_t c = 0; c < d; ++c) ai[c] += pj * vj[c];
                    }
                    row_sum[i] = row_sum[i] * correction + sum;
                    row_max[i] = m_new;
                }
            }
            for (int64_t i = 0; i < n; ++i) {
                const float inv = row_sum[i] > 0.0f ? 1.0f / row_sum[i] : 0.0f;  // empty table row: zeros
                uint16_t* dst = out + (i0 + i) * p.out_row_stride + h * d;
                for (int64_t c = 0; c < d; ++c) dst[c] = f32_to_bf16_bits(acc[i * d + c] * inv);
            }
        }
    });
}

}  // namespace lr
