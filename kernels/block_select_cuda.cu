// CUDA twins of block_select.h's ops: launch_block_select (block_select_cpu on the device) and
// launch_segment_mean_bf16 (segment_mean_cpu on bf16 rows).
//
// Block select: one CTA of 256 threads per head and up to kMaxRows consecutive query blocks (their rows share
// the reads of the head's key summaries). Per CTA, once: the candidates' kinds and groups into shared memory,
// the sizes block_select_counts computes (the host cannot: the candidates are device memory; the caller has
// validated them when it filled indptr), and each competing group's SCORED members in candidate order. Then
//   scores    one thread per SCORED candidate, q . k summed over d in order with the roundings pinned
//             (__fmul_rn / __fadd_rn, no FMA): bit for bit the CPU's scores, so CPU and GPU compare equal
//             numbers and choose the same blocks, ties included;
//   groups    per competing group the sum of its members' scores in candidate order over their count (the
//             CPU's float arithmetic), kept when its rank (#groups with a higher mean, or an equal mean and a
//             lower index) is below topk_groups: std::stable_sort's order;
//   blocks    the topk_blocks-th largest score among the eligible blocks by a 4-pass radix select (8 bits of
//             an order-preserving uint32 key per pass): the threshold key T and how many of the blocks tied at
//             T to keep, the lowest candidate indices first, again stable_sort's order;
//   output    the head's extra blocks, then the candidates in candidate order that are MUST or selected, by
//             an ordered CTA-wide compaction (ballot counts) in chunks of 256 candidates, which also ranks the
//             ties.
// Everything is sized by the host at launch (shared memory from num_cand and num_groups), nothing is
// allocated, nothing waits for the host: the launch can be captured in a CUDA graph.
//
// Segment mean: one thread per (segment, two adjacent columns), rows summed in order in fp32, loaded 16 at a time.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/block_select.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"

namespace lr {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxRows = 4;  // query blocks per CTA
constexpr uint8_t kMust = static_cast<uint8_t>(CandidateKind::kMust);

// Sizes shared by the CTA (block_select_counts' results and the radix select's state).
struct SelectShared {
    int scored_free, competing;
    int groups_kept, eligible, scored_kept;
    uint32_t digit;
    int digit_k;
    int hist[256];
    int warp_counts[kWarps];
};

// Larger float -> larger key; -0 and +0 share a key (they compare equal on the CPU). 0 is no float's key
// except one NaN pattern, and marks "not eligible".
__device__ __forceinline__ uint32_t order_key(float s) {
    uint32_t u = __float_as_uint(s);
    if ((u << 1) == 0) u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Exclusive count of `flag` over the CTA's threads in thread order; `total` gets the CTA's count. Every
// thread must call it.
__device__ __forceinline__ int cta_exclusive_count(bool flag, int* warp_counts, int& total) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const unsigned ballot = __ballot_sync(0xffffffffu, flag);
    const int before = __popc(ballot & ((1u << lane) - 1u));
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int warp_before = 0;
    total = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
        const int c = warp_counts[w];
        warp_before += w < warp ? c : 0;
        total += c;
    }
    __syncthreads();  // warp_counts is reused by the next call
    return warp_before + before;
}

// Dynamic shared memory of one CTA; offsets in bytes, each 16-byte aligned.
struct SmemLayout {
    int64_t q = 0, score = 0, group = 0, member = 0, kind = 0, gcount = 0, gstart = 0, gscore = 0, gflags = 0;
    int64_t bytes = 0;
};

__host__ __device__ inline int64_t align16(int64_t x) { return (x + 15) / 16 * 16; }

__host__ __device__ inline SmemLayout smem_layout(int64_t rows, int64_t head_dim, int64_t n, int64_t groups) {
    SmemLayout l;
    int64_t at = align16(static_cast<int64_t>(sizeof(SelectShared)));
    l.q = at, at += align16(rows * head_dim * 4);    // f32 [rows, head_dim] query summaries
    l.score = at, at += align16(rows * n * 4);       // f32 [rows, n] scores, then uint32 keys in place
    l.group = at, at += align16(n * 4);              // int32 [n] candidate group
    l.member = at, at += align16(n * 4);             // int32 [n] competing groups' members
    l.kind = at, at += align16(n);                   // uint8 [n] candidate kind
    l.gcount = at, at += align16(groups * 4);        // int32 [groups] SCORED members (competing)
    l.gstart = at, at += align16((groups + 1) * 4);  // int32 [groups + 1] members offsets
    l.gscore = at, at += align16(groups * 4);        // f32 [groups] mean score
    l.gflags = at, at += align16(groups * 2);        // uint8 [groups] competes, [groups] kept
    l.bytes = at;
    return l;
}

template <bool kVec4>
__global__ void __launch_bounds__(kThreads) block_select_kernel(const BlockSelectParams p, int rows_per_cta) {
    extern __shared__ __align__(16) uint8_t smem[];
    const int n = static_cast<int>(p.num_cand), groups = static_cast<int>(p.num_groups);
    const int hd = static_cast<int>(p.head_dim);
    const SmemLayout l = smem_layout(rows_per_cta, hd, n, groups);
    auto& sh = *reinterpret_cast<SelectShared*>(smem);
    auto* q_s = reinterpret_cast<float*>(smem + l.q);
    auto* score_s = reinterpret_cast<float*>(smem + l.score);
    auto* group_s = reinterpret_cast<int32_t*>(smem + l.group);
    auto* member_s = reinterpret_cast<int32_t*>(smem + l.member);
    auto* kind_s = smem + l.kind;
    auto* gcount = reinterpret_cast<int32_t*>(smem + l.gcount);
    auto* gstart = reinterpret_cast<int32_t*>(smem + l.gstart);
    auto* gscore = reinterpret_cast<float*>(smem + l.gscore);
    uint8_t* gcomp = smem + l.gflags;
    uint8_t* gtake = gcomp + groups;

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int h = blockIdx.y;
    const int64_t qb0 = static_cast<int64_t>(blockIdx.x) * rows_per_cta;
    const int rows = static_cast<int>(min(static_cast<int64_t>(rows_per_cta), p.num_q_blocks - qb0));

    // ---- the candidates and block_select_counts' sizes ----
    if (tid == 0) sh.scored_free = sh.competing = 0;
    for (int i = tid; i < n; i += kThreads) {
        kind_s[i] = p.cand_kind[i];
        group_s[i] = p.cand_group ? p.cand_group[i] : -1;
    }
    for (int g = tid; g < groups; g += kThreads) {
        gcount[g] = 0;
        gcomp[g] = p.group_competes[g] ? 1 : 0;
    }
    __syncthreads();
    int scored_free = 0;
    for (int i = tid; i < n; i += kThreads) {
        const int g = group_s[i];
        if (kind_s[i] == kMust) continue;
        if (g >= 0 && gcomp[g]) {
            atomicAdd(&gcount[g], 1);
        } else {
            ++scored_free;
        }
    }
    atomicAdd(&sh.scored_free, scored_free);
    __syncthreads();
    if (tid == 0) {
        int competing = 0, group_size = 0;
        gstart[0] = 0;
        for (int g = 0; g < groups; ++g) {
            if (gcomp[g]) {
                ++competing;
                group_size = gcount[g];  // equal for every competing group (checked by the host's indptr)
            }
            gstart[g + 1] = gstart[g] + (gcomp[g] ? gcount[g] : 0);
        }
        sh.competing = competing;
        sh.groups_kept = static_cast<int>(min(p.topk_groups, static_cast<int64_t>(competing)));
        sh.eligible = sh.scored_free + sh.groups_kept * group_size;
        sh.scored_kept = static_cast<int>(min(p.topk_blocks, static_cast<int64_t>(sh.eligible)));
    }
    __syncthreads();
    const bool scoring = sh.scored_kept > 0;
    const bool take_all = sh.scored_kept >= sh.eligible;
    const int competing = sh.competing, groups_kept = sh.groups_kept, scored_kept = sh.scored_kept;

    if (scoring) {
        // Members of each competing group in candidate order: warp w fills groups w, w + 8, ...
        if (competing > 0) {
            for (int g = warp; g < groups; g += kWarps) {
                if (!gcomp[g]) continue;
                int at = gstart[g];
                for (int base = 0; base < n; base += 32) {
                    const int i = base + lane;
                    const bool in = i < n && group_s[i] == g && kind_s[i] != kMust;
                    const unsigned ballot = __ballot_sync(0xffffffffu, in);
                    if (in) member_s[at + __popc(ballot & ((1u << lane) - 1u))] = i;
                    at += __popc(ballot);
                }
            }
        }
        // Scores of the SCORED candidates for the CTA's rows.
        for (int e = tid; e < rows * hd; e += kThreads) {
            q_s[e] = p.q_mean[(static_cast<int64_t>(h) * p.num_q_blocks + qb0) * hd + e];
        }
        __syncthreads();
        for (int i = tid; i < n; i += kThreads) {
            if (kind_s[i] == kMust) continue;
            const float* k = p.k_mean + (static_cast<int64_t>(p.cand_block[i]) * p.heads + h) * hd;
            float acc[kMaxRows] = {};
            if constexpr (kVec4) {
                // Unrolled so that several loads are in flight; each acc[r] still adds d in order.
#pragma unroll 4
                for (int d = 0; d < hd; d += 4) {
                    const float4 kv = __ldg(reinterpret_cast<const float4*>(k + d));
#pragma unroll
                    for (int r = 0; r < kMaxRows; ++r) {
                        if (r >= rows) break;
                        const float* q = q_s + r * hd + d;
                        acc[r] = __fadd_rn(acc[r], __fmul_rn(q[0], kv.x));
                        acc[r] = __fadd_rn(acc[r], __fmul_rn(q[1], kv.y));
                        acc[r] = __fadd_rn(acc[r], __fmul_rn(q[2], kv.z));
                        acc[r] = __fadd_rn(acc[r], __fmul_rn(q[3], kv.w));
                    }
                }
            } else {
                for (int d = 0; d < hd; ++d) {
                    const float kd = __ldg(k + d);
#pragma unroll
                    for (int r = 0; r < kMaxRows; ++r) {
                        if (r >= rows) break;
                        acc[r] = __fadd_rn(acc[r], __fmul_rn(q_s[r * hd + d], kd));
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < kMaxRows; ++r) {
                if (r < rows) score_s[r * n + i] = acc[r];
            }
        }
        __syncthreads();
    }

    for (int r = 0; r < rows; ++r) {
        const int64_t row = static_cast<int64_t>(h) * p.num_q_blocks + qb0 + r;
        const int32_t begin = p.indptr[row];
        const int cap = p.indptr[row + 1] - begin;  // planned by block_select_indptr
        int32_t* out = p.indices + begin;
        const int32_t e0 = p.extra_indptr ? p.extra_indptr[h] : 0;
        const int extras = p.extra_indptr ? p.extra_indptr[h + 1] - e0 : 0;
        for (int j = tid; j < extras && j < cap; j += kThreads) out[j] = p.extra_block[e0 + j];

        float* score = score_s + r * n;
        auto* key = reinterpret_cast<uint32_t*>(score);
        uint32_t threshold = 0xffffffffu;  // keys above it are kept; with take_all every eligible key is
        int ties_kept = 0;                 // keys equal to it kept, lowest candidate indices first
        if (scoring) {
            // Stage 1: the competing groups with the highest mean score.
            if (competing > 0) {
                for (int g = tid; g < groups; g += kThreads) {
                    if (!gcomp[g]) continue;
                    float sum = 0.0f;
                    for (int m = gstart[g]; m < gstart[g + 1]; ++m) sum = __fadd_rn(sum, score[member_s[m]]);
                    const int count = gstart[g + 1] - gstart[g];
                    gscore[g] = count ? __fdiv_rn(sum, static_cast<float>(count)) : 0.0f;
                }
                __syncthreads();
                for (int g = tid; g < groups; g += kThreads) {
                    if (!gcomp[g]) continue;
                    int rank = 0;
                    for (int o = 0; o < groups; ++o) {
                        rank += gcomp[o] && (gscore[o] > gscore[g] || (gscore[o] == gscore[g] && o < g));
                    }
                    gtake[g] = rank < groups_kept;
                }
                __syncthreads();
            }
            // Keys of the eligible SCORED blocks (0: not eligible), in place of the scores.
            for (int i = tid; i < n; i += kThreads) {
                const int g = group_s[i];
                const bool eligible = kind_s[i] != kMust && (g < 0 || !gcomp[g] || gtake[g]);
                key[i] = eligible ? order_key(score[i]) : 0u;
            }
            __syncthreads();
            // Stage 2: the scored_kept-th largest key, 8 bits at a time from the top.
            if (!take_all) {
                uint32_t prefix = 0, mask = 0;
                int k = scored_kept;  // rank still to find among the keys matching prefix
                for (int shift = 24; shift >= 0; shift -= 8) {
                    for (int b = tid; b < 256; b += kThreads) sh.hist[b] = 0;
                    __syncthreads();
                    for (int i = tid; i < n; i += kThreads) {
                        const uint32_t x = key[i];
                        if (x != 0 && (x & mask) == prefix) atomicAdd(&sh.hist[(x >> shift) & 255u], 1);
                    }
                    __syncthreads();
                    if (warp == 0) {
                        // Lane l holds digits 255 - 8 l - j, j = 0..7: a prefix sum over lanes counts keys above.
                        int c[8], local = 0;
#pragma unroll
                        for (int j = 0; j < 8; ++j) {
                            c[j] = sh.hist[255 - 8 * lane - j];
                            local += c[j];
                        }
                        int incl = local;
#pragma unroll
                        for (int off = 1; off < 32; off *= 2) {
                            const int v = __shfl_up_sync(0xffffffffu, incl, off);
                            if (lane >= off) incl += v;
                        }
                        int above = incl - local;
                        if (above < k && k <= incl) {
                            for (int j = 0; j < 8; ++j) {
                                if (above + c[j] >= k) {
                                    sh.digit = static_cast<uint32_t>(255 - 8 * lane - j);
                                    sh.digit_k = k - above;
                                    break;
                                }
                                above += c[j];
                            }
                        }
                    }
                    __syncthreads();
                    prefix |= sh.digit << shift;
                    mask |= 255u << shift;
                    k = sh.digit_k;
                }
                threshold = prefix;
                ties_kept = k;
            }
        }

        // Output: candidates in order that are MUST or selected, after the extras.
        int ties_seen = 0, written = 0;
        for (int base = 0; base < n; base += kThreads) {
            const int i = base + tid;
            const bool valid = i < n;
            const uint32_t x = valid && scoring ? key[i] : 0u;
            const bool tie = scoring && !take_all && x == threshold && x != 0;
            int tie_total = 0;
            const int tie_rank = ties_seen + cta_exclusive_count(tie, sh.warp_counts, tie_total);
            const bool selected = x != 0 && (take_all || x > threshold || (tie && tie_rank < ties_kept));
            const bool take = valid && (kind_s[i] == kMust || selected);
            int take_total = 0;
            const int at = extras + written + cta_exclusive_count(take, sh.warp_counts, take_total);
            if (take && at < cap) out[at] = p.cand_block[i];
            ties_seen += tie_total;
            written += take_total;
        }
        __syncthreads();  // the next row reuses the group scores and the radix state
    }
}

// Up to kMaxSegmentMeanJobs segment means in one launch: blockIdx.x runs over the segments of every job in turn.
struct SegmentMeanBatch {
    SegmentMeanBf16Params job[kMaxSegmentMeanJobs];
    int64_t x_stride[kMaxSegmentMeanJobs];
    int64_t out_stride[kMaxSegmentMeanJobs];
    int64_t head_stride[kMaxSegmentMeanJobs];
    int32_t first[kMaxSegmentMeanJobs + 1];  // first[j]: job j's first segment in the grid
    bool pairs[kMaxSegmentMeanJobs];
    int count;
};

__global__ void __launch_bounds__(128) segment_mean_bf16_kernel(const SegmentMeanBatch b) {
    int j = 0;
    while (j + 1 < b.count && static_cast<int32_t>(blockIdx.x) >= b.first[j + 1]) ++j;
    const SegmentMeanBf16Params& p = b.job[j];
    const int64_t s = static_cast<int64_t>(blockIdx.x) - b.first[j];
    const int64_t x_stride = b.x_stride[j];
    const bool pairs = b.pairs[j];
    const int64_t width = p.heads * p.head_dim;
    const int per = pairs ? 2 : 1;
    const int64_t c = (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * per;
    if (c >= width) return;
    const int32_t len = p.seg_len[s];
    float a0 = 0.0f, a1 = 0.0f;
    if (len > 0) {
        const auto* x = static_cast<const __nv_bfloat16*>(p.x) + static_cast<int64_t>(p.seg_begin[s]) * x_stride + c;
        // A segment's rows are one thread's dependent sum, so its time is the number of memory round trips:
        // kBatch rows are loaded before any is added (in row order, as the CPU sums them: the same floats).
        constexpr int kBatch = 16;
        int32_t r = 0;
        if (pairs) {
            for (; r + kBatch <= len; r += kBatch) {
                __nv_bfloat162 v[kBatch];
#pragma unroll
                for (int i = 0; i < kBatch; ++i) {
                    v[i] = __ldg(reinterpret_cast<const __nv_bfloat162*>(x + static_cast<int64_t>(r + i) * x_stride));
                }
#pragma unroll
                for (int i = 0; i < kBatch; ++i) {
                    const float2 f = __bfloat1622float2(v[i]);
                    a0 += f.x;
                    a1 += f.y;
                }
            }
            for (; r < len; ++r) {
                const float2 f = __bfloat1622float2(
                    __ldg(reinterpret_cast<const __nv_bfloat162*>(x + static_cast<int64_t>(r) * x_stride)));
                a0 += f.x;
                a1 += f.y;
            }
        } else {
            for (; r + kBatch <= len; r += kBatch) {
                __nv_bfloat16 v[kBatch];
#pragma unroll
                for (int i = 0; i < kBatch; ++i) v[i] = __ldg(x + static_cast<int64_t>(r + i) * x_stride);
#pragma unroll
                for (int i = 0; i < kBatch; ++i) a0 += __bfloat162float(v[i]);
            }
            for (; r < len; ++r) a0 += __bfloat162float(__ldg(x + static_cast<int64_t>(r) * x_stride));
        }
        a0 /= static_cast<float>(len);
        a1 /= static_cast<float>(len);
    }
    // A pair may straddle two heads when head_dim is odd.
    const int64_t head_stride = b.head_stride[j];
    float* o = p.out + s * b.out_stride[j];
    o[(c / p.head_dim) * head_stride + c % p.head_dim] = a0;
    if (pairs) o[((c + 1) / p.head_dim) * head_stride + (c + 1) % p.head_dim] = a1;
}

}  // namespace

void launch_block_select(const BlockSelectParams& p, Stream stream) {
    LR_CHECK(p.heads > 0 && p.head_dim > 0 && p.num_q_blocks >= 0 && p.num_cand >= 0 && p.num_groups >= 0 &&
                 p.topk_blocks >= 0 && p.topk_groups >= 0,
             "block select: heads ", p.heads, ", head_dim ", p.head_dim, ", query blocks ", p.num_q_blocks,
             ", candidates ", p.num_cand, ", groups ", p.num_groups, ", top-k ", p.topk_blocks, " blocks / ",
             p.topk_groups, " groups");
    if (p.num_q_blocks == 0) return;
    LR_CHECK(p.indptr && p.indices, "block select: indptr and indices must be set");
    LR_CHECK(p.num_cand == 0 || (p.cand_block && p.cand_kind), "block select: cand_block and cand_kind must be set");
    LR_CHECK(p.num_groups == 0 || p.group_competes, "block select: group_competes must be set with ", p.num_groups,
             " groups");
    LR_CHECK(!p.extra_indptr || p.extra_block, "block select: extra_block must be set with extra_indptr");
    // The device cannot tell ahead whether any block is scored; the summaries are required whenever it may be.
    LR_CHECK(p.topk_blocks == 0 || p.num_cand == 0 || (p.q_mean && p.k_mean),
             "block select: scoring needs the query and key summaries");
    LR_CHECK(p.num_cand <= INT32_MAX / 8 && p.num_groups <= INT32_MAX / 8 && p.heads <= 65535,
             "block select: too large (", p.num_cand, " candidates, ", p.num_groups, " groups, ", p.heads, " heads)");

    int device = 0, sms = 0, smem_max = 0;
    LR_CUDA_CHECK(cudaGetDevice(&device));
    LR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    LR_CUDA_CHECK(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    // Several query blocks per CTA share the reads of the key summaries, as long as the grid still gives every
    // SM two CTAs and the scores fit in shared memory.
    int rows = kMaxRows;
    while (rows > 1 && ((p.num_q_blocks + rows - 1) / rows * p.heads < 2 * sms ||
                        smem_layout(rows, p.head_dim, p.num_cand, p.num_groups).bytes > smem_max)) {
        rows /= 2;
    }
    const int64_t bytes = smem_layout(rows, p.head_dim, p.num_cand, p.num_groups).bytes;
    LR_CHECK(bytes <= smem_max, "block select: ", p.num_cand, " candidates and ", p.num_groups, " groups need ", bytes,
             " bytes of shared memory, the device has ", smem_max);
    const bool vec4 = p.head_dim % 4 == 0 && reinterpret_cast<uintptr_t>(p.k_mean) % 16 == 0;
    const auto kernel = vec4 ? block_select_kernel<true> : block_select_kernel<false>;
    // Not a stream operation: fine during graph capture.
    LR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
    const dim3 grid(static_cast<unsigned>((p.num_q_blocks + rows - 1) / rows), static_cast<unsigned>(p.heads));
    kernel<<<grid, kThreads, static_cast<size_t>(bytes), stream>>>(p, rows);
    LR_CUDA_LAUNCH_CHECK();
}

void launch_segment_mean_bf16(const SegmentMeanBf16Params& p, Stream stream) {
    launch_segment_means_bf16(&p, 1, stream);
}

void launch_segment_means_bf16(const SegmentMeanBf16Params* jobs, int count, Stream stream) {
    LR_CHECK(count >= 0 && count <= kMaxSegmentMeanJobs, "segment means: ", count, " jobs (at most ",
             kMaxSegmentMeanJobs, " per launch)");
    SegmentMeanBatch b{};
    int64_t segments = 0, columns = 0;
    for (int j = 0; j < count; ++j) {
        const SegmentMeanBf16Params& p = jobs[j];
        LR_CHECK(p.segments >= 0 && p.heads > 0 && p.head_dim > 0, "segment mean (job ", j, "): segments ", p.segments,
                 ", heads ", p.heads, ", head_dim ", p.head_dim);
        if (p.segments == 0) continue;
        LR_CHECK(p.x && p.out && p.seg_begin && p.seg_len, "segment mean (job ", j,
                 "): x, out, seg_begin and seg_len must be set");
        const int64_t width = p.heads * p.head_dim;
        const int64_t xs = p.x_row_stride ? p.x_row_stride : width;
        const int64_t os = p.out_stride ? p.out_stride : width;
        const int64_t hs = p.out_head_stride ? p.out_head_stride : p.head_dim;
        LR_CHECK(xs >= width && os > 0 && hs > 0, "segment mean (job ", j, "): x_row_stride ", xs,
                 " (>= heads * head_dim = ", width, "), out_stride ", os, ", out_head_stride ", hs);
        const bool pairs = width % 2 == 0 && xs % 2 == 0 && reinterpret_cast<uintptr_t>(p.x) % 4 == 0;
        const int k = b.count++;  // jobs without segments take no slot
        b.job[k] = p;
        b.x_stride[k] = xs;
        b.out_stride[k] = os;
        b.head_stride[k] = hs;
        b.pairs[k] = pairs;
        b.first[k] = static_cast<int32_t>(segments);
        segments += p.segments;
        columns = std::max(columns, pairs ? width / 2 : width);
        LR_CHECK(segments <= INT32_MAX, "segment means: ", segments, " segments in one launch");
    }
    if (b.count == 0) return;
    b.first[b.count] = static_cast<int32_t>(segments);
    const dim3 grid(static_cast<unsigned>(segments), static_cast<unsigned>((columns + 127) / 128));
    segment_mean_bf16_kernel<<<grid, 128, 0, stream>>>(b);
    LR_CUDA_LAUNCH_CHECK();
}

}  // namespace lr
