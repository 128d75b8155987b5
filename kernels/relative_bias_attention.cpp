#include "kernels/relative_bias_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "kernels/gemm.h"
#include "runtime/core/check.h"

namespace lr {

void relative_bias_attention_cpu(const RelativeBiasAttentionParams& p) {
    LR_ASSERT(p.q && p.k && p.v && p.out && p.rel_bias, "relative_bias_attention: null pointer");
    LR_ASSERT(p.q_len >= 0 && p.kv_len >= 1 && p.heads >= 1 && p.head_dim >= 1, "relative_bias_attention: bad sizes");
    const int64_t row = p.heads * p.head_dim;
    const int64_t qs = p.q_stride ? p.q_stride : row;
    const int64_t ks = p.k_stride ? p.k_stride : row;
    const int64_t vs = p.v_stride ? p.v_stride : row;
    const int64_t os = p.out_stride ? p.out_stride : row;
    const int64_t offsets = p.q_len + p.kv_len - 1;
    const int64_t d = p.head_dim;
    // One head per task: its [q_len, kv_len] scores fit in cache-friendly scratch for encoder lengths (<= 512).
    parallel_for(p.heads, 1, [&](int64_t h0, int64_t h1) {
        std::vector<float> scores(static_cast<size_t>(p.q_len * p.kv_len));
        for (int64_t h = h0; h < h1; ++h) {
            GemmParams s;  // scores[q_len, kv_len] = scale * q_h k_h^T
            s.a = p.q + h * d;
            s.lda = qs;
            s.b = p.k + h * d;
            s.ldb = ks;
            s.b_transposed = true;
            s.c = scores.data();
            s.ldc = p.kv_len;
            s.m = p.q_len;
            s.n = p.kv_len;
            s.k = d;
            s.alpha = p.scale;
            s.threaded = false;
            gemm_cpu(s);
            const float* bias = p.rel_bias + h * offsets;
            for (int64_t i = 0; i < p.q_len; ++i) {
                float* srow = scores.data() + i * p.kv_len;
                const float* brow = bias + (p.q_len - 1 - i);  // brow[j] = bias at offset j - i
                float m = srow[0] + brow[0];
                for (int64_t j = 0; j < p.kv_len; ++j) {
                    srow[j] += brow[j];
                    m = std::max(m, srow[j]);
                }
                double sum = 0.0;
                for (int64_t j = 0; j < p.kv_len; ++j) {
                    srow[j] = std::exp(srow[j] - m);
                    sum += srow[j];
                }
                const auto inv = static_cast<float>(1.0 / sum);
                for (int64_t j = 0; j < p.kv_len; ++j) srow[j] *= inv;
            }
            GemmParams o;  // out_h[q_len, d] = probs[q_len, kv_len] v_h[kv_len, d]
            o.a = scores.data();
            o.lda = p.kv_len;
            o.b = p.v + h * d;
            o.ldb = vs;
            o.b_transposed = false;
            o.c = p.out + h * d;
            o.ldc = os;
            o.m = p.q_len;
            o.n = d;
            o.k = p.kv_len;
            o.threaded = false;
            gemm_cpu(o);
        }
    });
}

}  // namespace lr
