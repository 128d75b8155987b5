// CUDA twins of kernels/sparse_step.cpp: one warp per (entry, head).
#include <cuda_bf16.h>

#include <cmath>

#include "kernels/sparse_step.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"

namespace lr {
namespace {

constexpr int kWarps = 4;

__global__ void copy_head_blocks_kernel(CopyHeadBlocksParams p) {
    const int64_t task = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
    if (task >= p.n) return;
    const int lane = threadIdx.x % 32;
    const int32_t* en = p.entries + 4 * task;
    const int64_t l = en[0], h = en[1], src = en[2], dst = en[3];
    const int64_t W = p.heads * p.head_dim;
    for (int which = 0; which < 2; ++which) {
        auto* pool =
            reinterpret_cast<uint16_t*>(static_cast<char*>(p.pools) + l * p.layer_stride + (which ? p.v_offset : 0));
        for (int64_t i = lane; i < p.block_size * p.head_dim; i += 32) {
            const int64_t t = i / p.head_dim, d = i % p.head_dim;
            pool[(dst * p.block_size + t) * W + h * p.head_dim + d] =
                pool[(src * p.block_size + t) * W + h * p.head_dim + d];
        }
    }
    if (p.kmean) {
        float* km = p.kmean + l * p.pool_blocks * W;
        for (int64_t d = lane; d < p.head_dim; d += 32)
            km[dst * W + h * p.head_dim + d] = km[src * W + h * p.head_dim + d];
    }
}

__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void block_change_kernel(BlockChangeParams p) {
    const int64_t task = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
    if (task >= p.n * p.heads) return;
    const int lane = threadIdx.x % 32;
    const int64_t e = task / p.heads, h = task % p.heads;
    const int32_t* en = p.entries + 3 * e;
    const int64_t l = en[0], b = en[1], prev = en[2];
    const int64_t W = p.heads * p.head_dim;
    float score = 0.0f;
    if (prev >= 0) {
        const float* a = p.kmean + (l * p.pool_blocks + b) * W + h * p.head_dim;
        const float* c = p.kmean + (l * p.pool_blocks + prev) * W + h * p.head_dim;
        float ab = 0, aa = 0, cc = 0;
        for (int64_t d = lane; d < p.head_dim; d += 32) {
            ab += a[d] * c[d];
            aa += a[d] * a[d];
            cc += c[d] * c[d];
        }
        ab = warp_sum(ab);
        aa = warp_sum(aa);
        cc = warp_sum(cc);
        const float den = sqrtf(aa * cc);
        score = den > 0 ? 1.0f - ab / den : 0.0f;
    }
    if (lane == 0) p.change[(l * p.pool_blocks + b) * p.heads + h] = score;
}

__global__ void block_salience_kernel(BlockSalienceParams p) {
    const int64_t task = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
    if (task >= p.n * p.heads) return;
    const int lane = threadIdx.x % 32;
    const int64_t e = task / p.heads, h = task % p.heads;
    const int64_t l = p.entries[2 * e], b = p.entries[2 * e + 1];
    const int64_t W = p.heads * p.head_dim;
    const float* k = p.kmean + (l * p.pool_blocks + b) * W + h * p.head_dim;
    float best = p.num_q_blocks > 0 ? -INFINITY : 0.0f;
    for (int64_t qb = 0; qb < p.num_q_blocks; ++qb) {
        const float* q = p.qmean + ((l * p.heads + h) * p.max_q_blocks + qb) * p.head_dim;
        float s = 0;
        for (int64_t d = lane; d < p.head_dim; d += 32) s += q[d] * k[d];
        best = fmaxf(best, warp_sum(s));
    }
    if (lane == 0) p.out[e * p.heads + h] = best;
}

unsigned grid_for(int64_t tasks) { return static_cast<unsigned>((tasks + kWarps - 1) / kWarps); }

}  // namespace

void launch_copy_head_blocks(const CopyHeadBlocksParams& p, Stream stream) {
    if (p.n == 0) return;
    copy_head_blocks_kernel<<<grid_for(p.n), 32 * kWarps, 0, static_cast<cudaStream_t>(stream)>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_block_change(const BlockChangeParams& p, Stream stream) {
    if (p.n == 0) return;
    block_change_kernel<<<grid_for(p.n * p.heads), 32 * kWarps, 0, static_cast<cudaStream_t>(stream)>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_block_salience(const BlockSalienceParams& p, Stream stream) {
    if (p.n == 0) return;
    block_salience_kernel<<<grid_for(p.n * p.heads), 32 * kWarps, 0, static_cast<cudaStream_t>(stream)>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

}  // namespace lr
