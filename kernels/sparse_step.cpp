#include "kernels/sparse_step.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace lr {

void copy_head_blocks_cpu(const CopyHeadBlocksParams& p) {
    const int64_t W = p.heads * p.head_dim;
    for (int64_t e = 0; e < p.n; ++e) {
        const int32_t* en = p.entries + 4 * e;
        const int64_t l = en[0], h = en[1], src = en[2], dst = en[3];
        for (int64_t which = 0; which < 2; ++which) {
            auto* pool = reinterpret_cast<uint16_t*>(static_cast<char*>(p.pools) + l * p.layer_stride +
                                                     (which ? p.v_offset : 0));
            for (int64_t t = 0; t < p.block_size; ++t)
                std::memcpy(pool + (dst * p.block_size + t) * W + h * p.head_dim,
                            pool + (src * p.block_size + t) * W + h * p.head_dim, static_cast<size_t>(p.head_dim) * 2);
        }
        if (p.kmean) {
            float* km = p.kmean + l * p.pool_blocks * W;
            std::memcpy(km + dst * W + h * p.head_dim, km + src * W + h * p.head_dim,
                        static_cast<size_t>(p.head_dim) * 4);
        }
    }
}

void block_change_cpu(const BlockChangeParams& p) {
    const int64_t W = p.heads * p.head_dim;
    for (int64_t e = 0; e < p.n; ++e) {
        const int32_t* en = p.entries + 3 * e;
        const int64_t l = en[0], b = en[1], prev = en[2];
        for (int64_t h = 0; h < p.heads; ++h) {
            float score = 0.0f;
            if (prev >= 0) {
                const float* a = p.kmean + (l * p.pool_blocks + b) * W + h * p.head_dim;
                const float* c = p.kmean + (l * p.pool_blocks + prev) * W + h * p.head_dim;
                float ab = 0, aa = 0, cc = 0;
                for (int64_t d = 0; d < p.head_dim; ++d) {
                    ab += a[d] * c[d];
                    aa += a[d] * a[d];
                    cc += c[d] * c[d];
                }
                const float den = std::sqrt(aa * cc);
                score = den > 0 ? 1.0f - ab / den : 0.0f;
            }
            p.change[(l * p.pool_blocks + b) * p.heads + h] = score;
        }
    }
}

void block_salience_cpu(const BlockSalienceParams& p) {
    const int64_t W = p.heads * p.head_dim;
    for (int64_t e = 0; e < p.n; ++e) {
        const int64_t l = p.entries[2 * e], b = p.entries[2 * e + 1];
        for (int64_t h = 0; h < p.heads; ++h) {
            const float* k = p.kmean + (l * p.pool_blocks + b) * W + h * p.head_dim;
            float best = p.num_q_blocks > 0 ? -std::numeric_limits<float>::infinity() : 0.0f;
            for (int64_t qb = 0; qb < p.num_q_blocks; ++qb) {
                const float* q = p.qmean + ((l * p.heads + h) * p.max_q_blocks + qb) * p.head_dim;
                float s = 0;
                for (int64_t d = 0; d < p.head_dim; ++d) s += q[d] * k[d];
                best = std::max(best, s);
            }
            p.out[e * p.heads + h] = best;
        }
    }
}

}  // namespace lr
