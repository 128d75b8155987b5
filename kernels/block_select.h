// Block selection for sparse attention (DESIGN.md section 6): pooled summaries and the per-row top-k that turn
// a policy's candidate set into a CSR block table. One op API with a CPU reference (here) and a CUDA twin
// (block_select_cuda.cu), so that device-side selection stays graph-capturable: every size is fixed by the
// host (row lengths are known before the scores are), only the chosen block ids come from the device.
//
// A policy (cache/block_policy.h) describes, per forward and layer:
//   - candidates shared by every head: window blocks, each MUST (always read) or SCORED (competes), and a
//     group (a frame) for the hierarchical stage;
//   - per head, extra blocks that are always read (retained blocks outside the window);
//   - budgets: topk_groups among the competing groups (0 with no competing groups: every SCORED block is
//     eligible), then topk_blocks among the eligible SCORED blocks.
// Row (head h, query block qb) reads: h's extra blocks (in the given order), then the window candidates in
// candidate order that are MUST or selected. Scores are q_mean[h, qb] . k_mean[block, h] (a group's score is
// the mean of its blocks' scores); ties go to the lower candidate (group) index, so the CPU and the GPU choose
// the same blocks.
#pragma once

#include <cstdint>

#include "runtime/core/stream.h"

namespace lr {

enum class CandidateKind : uint8_t { kMust = 0, kScored = 1 };

struct BlockSelectParams {
    const float* q_mean = nullptr;  // [heads, num_q_blocks, head_dim]
    const float* k_mean = nullptr;  // [num_blocks, heads, head_dim], indexed by block id
    int64_t heads = 0;
    int64_t head_dim = 0;
    int64_t num_q_blocks = 0;
    int64_t num_blocks = 0;
    // Window candidates, shared by the heads.
    const int32_t* cand_block = nullptr;  // [num_cand] block ids
    const int32_t* cand_group = nullptr;  // [num_cand] group id, -1: none
    const uint8_t* cand_kind = nullptr;   // [num_cand] CandidateKind
    int64_t num_cand = 0;
    const uint8_t* group_competes = nullptr;  // [num_groups]: 1 competes in the group top-k, 0 always eligible
    int64_t num_groups = 0;
    int64_t topk_groups = 0;
    int64_t topk_blocks = 0;
    // Per head, blocks read before the window's: extra_block[extra_indptr[h] .. extra_indptr[h + 1]).
    const int32_t* extra_indptr = nullptr;  // [heads + 1], or null: none
    const int32_t* extra_block = nullptr;
    // Output: rows (h * num_q_blocks + qb), with indptr filled by block_select_indptr (host).
    const int32_t* indptr = nullptr;  // [heads * num_q_blocks + 1]
    int32_t* indices = nullptr;
};

// The sizes a selection produces, known before any score: groups and blocks kept per row.
struct BlockSelectCounts {
    int64_t must = 0;         // MUST candidates
    int64_t scored_kept = 0;  // SCORED blocks kept per row
    int64_t groups_kept = 0;  // competing groups kept per row
};
// InputError when the candidate description is inconsistent (every competing group must hold the same number
// of SCORED blocks, MUST candidates must not be in competing groups).
BlockSelectCounts block_select_counts(const BlockSelectParams& p);
// Fills indptr [heads * num_q_blocks + 1] for p (host memory; p.indptr is ignored).
void block_select_indptr(const BlockSelectParams& p, int32_t* indptr);

// Host reference. Every pointer is host memory.
void block_select_cpu(const BlockSelectParams& p);
// Device twin: every pointer is device memory (candidates and indptr uploaded by the caller).
void launch_block_select(const BlockSelectParams& p, Stream stream);

// Mean over rows of each segment, per head: out[s, h, :] = mean of x[row, h, :] for rows in segment s, where
// segment s is rows [seg_begin[s], seg_begin[s] + seg_len[s]) of x (rows x_row_stride elements apart) -- a
// block's tokens in a cache pool, or a query block's rows. Empty segments give zeros.
struct SegmentMeanParams {
    const float* x = nullptr;
    float* out = nullptr;  // [segments, heads, head_dim] f32, out_stride elements between segments (0: dense)
    const int64_t* seg_begin = nullptr;
    const int64_t* seg_len = nullptr;
    int64_t segments = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    int64_t x_row_stride = 0;  // 0: heads * head_dim
    int64_t out_stride = 0;
};
void segment_mean_cpu(const SegmentMeanParams& p);

// Device twin of segment_mean_cpu for bf16 rows (a cache pool or the chunk's q / k): every pointer is device
// memory. Its reference is segment_mean_cpu on the same values converted to f32; the GPU sums in fp32 (one
// thread per column pair, rows in order), so the two differ by fp32 rounding: at most about
// seg_len * 2^-24 * mean |x| per element.
struct SegmentMeanBf16Params {
    const void* x = nullptr;  // bf16 [rows, heads * head_dim], rows x_row_stride elements apart
    // f32: segment s, head h at out + s * out_stride + h * out_head_stride. The defaults give [segments, heads,
    // head_dim]; out_stride = head_dim, out_head_stride = segments * head_dim give block_select's head-major
    // q_mean [heads, segments, head_dim].
    float* out = nullptr;
    const int32_t* seg_begin = nullptr;  // [segments] first row
    const int32_t* seg_len = nullptr;    // [segments] rows; <= 0 gives zeros
    int64_t segments = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    int64_t x_row_stride = 0;     // 0: heads * head_dim
    int64_t out_stride = 0;       // 0: heads * head_dim
    int64_t out_head_stride = 0;  // 0: head_dim
};
void launch_segment_mean_bf16(const SegmentMeanBf16Params& p, Stream stream);

// Several segment means in one launch (a layer's summaries: the key means of each frame it wrote and the chunk's
// query means), each job exactly as launch_segment_mean_bf16 would compute it; jobs without segments are skipped.
// One launch instead of one per job: at 480p the summaries are a few microseconds of work each, and the launches
// were most of their cost.
inline constexpr int kMaxSegmentMeanJobs = 8;
void launch_segment_means_bf16(const SegmentMeanBf16Params* jobs, int count, Stream stream);

}  // namespace lr
