#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "kernels/gemm.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

constexpr int64_t kQueryTile = 64;
constexpr int64_t kKeyTile = 256;

struct Strides {
    int64_t q, k, v, out;
};

// Queries [q0, q0 + qn) of head h.
void attend_tile(const AttentionParams& p, const Strides& st, float scale, int64_t h, int64_t q0, int64_t qn,
                 std::vector<float>& scores, std::vector<float>& acc, std::vector<float>& row_max,
                 std::vector<float>& row_sum) {
    const int64_t d = p.head_dim;
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    scores.resize(static_cast<size_t>(kQueryTile * kKeyTile));
    acc.assign(static_cast<size_t>(qn * d), 0.0f);
    row_max.assign(static_cast<size_t>(qn), kNegInf);
    row_sum.assign(static_cast<size_t>(qn), 0.0f);
    auto begin_of = [&](int64_t i) { return p.kv_begin ? std::max<int64_t>(0, p.kv_begin[i]) : 0; };
    auto end_of = [&](int64_t i) { return p.kv_end ? std::min(p.kv_len, p.kv_end[i]) : p.kv_len; };
    int64_t lo = p.kv_len, hi = 0;
    for (int64_t i = q0; i < q0 + qn; ++i) {
        lo = std::min(lo, begin_of(i));
        hi = std::max(hi, end_of(i));
    }
    for (int64_t k0 = lo; k0 < hi; k0 += kKeyTile) {
        const int64_t kn = std::min(kKeyTile, hi - k0);
        GemmParams s;  // scores[qn, kn] = scale * q k^T
        s.a = p.q + q0 * st.q + h * d;
        s.lda = st.q;
        s.b = p.k + k0 * st.k + h * d;
        s.ldb = st.k;
        s.b_transposed = true;
        s.c = scores.data();
        s.ldc = kKeyTile;
        s.m = qn;
        s.n = kn;
        s.k = d;
        s.alpha = scale;
        s.threaded = false;
        gemm_cpu(s);
        for (int64_t i = 0; i < qn; ++i) {
            float* srow = scores.data() + i * kKeyTile;
            const int64_t vb = std::clamp<int64_t>(begin_of(q0 + i) - k0, 0, kn);
            const int64_t ve = std::clamp<int64_t>(end_of(q0 + i) - k0, 0, kn);
            float m = kNegInf;
            for (int64_t j = vb; j < ve; ++j) m = std::max(m, srow[j]);
            if (m == kNegInf) {  // no visible key in this tile
                std::fill(srow, srow + kn, 0.0f);
                continue;
            }
            const float m_new = std::max(row_max[static_cast<size_t>(i)], m);
            const float correction = std::exp(row_max[static_cast<size_t>(i)] - m_new);  // 0 when the old max was -inf
            float sum = 0.0f;
            for (int64_t j = 0; j < kn; ++j) {
                const float e = (j >= vb && j < ve) ? std::exp(srow[j] - m_new) : 0.0f;
                srow[j] = e;
                sum += e;
            }
            row_sum[static_cast<size_t>(i)] = row_sum[static_cast<size_t>(i)] * correction + sum;
            row_max[static_cast<size_t>(i)] = m_new;
            if (correction != 1.0f) {
                float* arow = acc.data() + i * d;
                for (int64_t c = 0; c < d; ++c) arow[c] *= correction;
            }
        }
        GemmParams o;  // acc[qn, d] += probs[qn, kn] v[kn, d]
        o.a = scores.data();
        o.lda = kKeyTile;
        o.b = p.v + k0 * st.v + h * d;
        o.ldb = st.v;
        o.b_transposed = false;
        o.c = acc.data();
        o.ldc = d;
        o.m = qn;
        o.n = d;
        o.k = kn;
        o.accumulate = true;
        o.threaded = false;
        gemm_cpu(o);
    }
    for (int64_t i = 0; i < qn; ++i) {
        const float l = row_sum[static_cast<size_t>(i)];
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        float* out = p.out + (q0 + i) * st.out + h * d;
        const float* arow = acc.data() + i * d;
        for (int64_t c = 0; c < d; ++c) out[c] = arow[c] * inv;
    }
}

}  // namespace

void attention_cpu(const AttentionParams& p) {
    LR_ASSERT(p.heads > 0 && p.head_dim > 0, "attention: heads and head_dim must be positive");
    if (p.q_len == 0) return;
    const int64_t width = p.heads * p.head_dim;
    const Strides st{p.q_stride > 0 ? p.q_stride : width, p.k_stride > 0 ? p.k_stride : width,
                     p.v_stride > 0 ? p.v_stride : width, p.out_stride > 0 ? p.out_stride : width};
    const float scale = p.scale != 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
    const int64_t q_tiles = (p.q_len + kQueryTile - 1) / kQueryTile;
    const int64_t tasks = p.heads * q_tiles;
    // One task is a (head, query tile): ~4 * 64 * kv_len * head_dim flops.
    const int64_t grain = p.kv_len * p.head_dim * kQueryTile >= (1 << 16) ? 1 : tasks;
    parallel_for(tasks, grain, [&](int64_t t0, int64_t t1) {
        std::vector<float> scores, acc, row_max, row_sum;
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t h = t % p.heads, qt = t / p.heads;
            const int64_t q0 = qt * kQueryTile;
            attend_tile(p, st, scale, h, q0, std::min(kQueryTile, p.q_len - q0), scores, acc, row_max, row_sum);
        }
    });
}

}  // namespace lr
