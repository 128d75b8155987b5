// Sequence parallelism behind the attention seam (DESIGN.md sections 2 and 7): the attention step of one worker
// of a U x S group on the CPU path (host buffers, any Communicator). The model runs its per-token layers on the
// worker's tokens and hands their q/k/v here; this step owns every exchange.
//
// Who computes what (SequencePlan, shared by the CPU and CUDA paths):
//   * the forward's tokens in tiled order (cache/tile_layout.h: frame by frame, tile by tile) are cut into query
//     blocks of q_block rows, the unit of the block tables; spatial rank s owns the query blocks b % S == s
//     (its "s-list" of rows, ascending);
//   * Ulysses rank u of the s-list owns its contiguous shard [u * Ls, (u + 1) * Ls) of rows (Ls = ceil(ns / U))
//     for the per-token layers, and the heads [u * H/U, (u + 1) * H/U) of the whole s-list for attention.
//
// Per layer: an all-to-all within the U group turns the worker's rows (all heads) into the s-list's rows of its
// heads; one grouped send_recv within the S group gives every spatial rank the chunk's K/V rows of the others and
// their query blocks' mean queries; the inner CpuAttentionStep (its heads, every tile of every frame) writes the
// whole chunk's K/V, builds the tables and attends with the rank's query blocks only; a second all-to-all brings
// the output back to the worker's rows.
//
// Exchange that follows the tables: every policy reads each chunk block from every query block (the chunk's
// slots are MUST candidates), so every rank needs the chunk's K/V at every forward, and with them, after the
// clean pass, the frozen blocks of every cached frame: each spatial rank keeps replicas of the whole window of its
// heads and no cached block ever moves again. What moves per layer and forward is the chunk's own K/V rows
// (once to each spatial peer) and one mean query per query block, whatever the window length; retained and
// persistent blocks (Sparse Forcing, Forcing-KV) are chosen identically on every rank from identical summaries
// and never move. The price is memory: a spatial rank holds the window of its heads, not 1/S of it.
//
// Every rank's tables, retention and attention rows equal the single-rank step's for its heads and query blocks,
// so the group's result is the single rank's bit for bit (same kernels, same operands, same order).
//
// Overlap (mesh.overlap_groups = G > 1): the worker's heads are split into G groups, each with an inner step of
// its own (heads are independent in every policy: tables, retention and summaries are per head, which is also why
// Ulysses may split them). Each group's exchange in (its columns of the all-to-all, its K/V rows and query means)
// and out (its columns of the output all-to-all) is a task of an ExchangeWorker thread: the worker moves group
// g + 1 in and group g - 1 out while this thread attends group g. The bytes are the same as with one group (the
// same rows, split by columns); only the time they take is partly hidden (exchange_seconds()).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/tile_layout.h"
#include "dist/communicator.h"
#include "dist/exchange_worker.h"
#include "runtime/model/attention_step.h"
#include "runtime/model/attention_step_cpu.h"

namespace lr {

// One worker's place in a sequence-parallel group.
struct SequenceMesh {
    int ulysses_rank = 0;
    int ulysses = 1;
    Communicator* ulysses_comm = nullptr;  // the U ranks sharing this worker's spatial rank (null when U == 1)
    int spatial_rank = 0;
    int spatial = 1;
    Communicator* spatial_comm = nullptr;  // the S ranks sharing this worker's heads (null when S == 1)
    int overlap_groups = 1;  // head groups whose exchanges overlap the attention of the group before (see above)
};

// A step's exchange time: busy = wall time the exchange tasks ran (packing included), exposed = the part the
// attention waited for (busy - exposed ran under the attention of another head group), comm = the communicators'
// time inside the tasks.
struct ExchangeTime {
    double busy_seconds = 0;
    double exposed_seconds = 0;
    double comm_seconds = 0;
    // Communicator seconds that ran under compute, counting every waited second as communicator time first (a
    // lower bound: the waits also cover packing): what the "comm" stage leaves out.
    double hidden_comm_seconds() const { return comm_seconds > exposed_seconds ? comm_seconds - exposed_seconds : 0; }
};

// Who computes which rows of a forward of `frames` frames (see the header).
struct SequencePlan {
    int64_t rows = 0;     // the forward's tokens (frames * tokens_per_frame)
    int64_t q_block = 0;  // rows per query block
    int64_t q_blocks = 0;
    int64_t spatial = 1, ulysses = 1;
    std::vector<std::vector<int64_t>> slist;  // [S] tiled rows of each spatial rank, ascending
    std::vector<std::vector<uint8_t>> owns;   // [S][q_blocks] query blocks of each spatial rank
    int64_t shard = 0;                        // Ls: rows of a Ulysses shard of this rank's s-list (padded)
    int64_t first = 0, count = 0;             // this worker's shard: s-list rows [first, first + count)
    std::vector<int64_t> tokens;              // model tokens of the worker's rows, in order
};
SequencePlan plan_sequence(const TileLayout& tiles, int64_t frames, int64_t q_block, const SequenceMesh& mesh);

class ShardedAttentionStep final : public AttentionStep {
  public:
    // cfg: the single-rank step's config (all heads); the inner step holds heads [u * H/U, (u + 1) * H/U).
    ShardedAttentionStep(const AttentionStepConfig& cfg, const SequenceMesh& mesh);
    ~ShardedAttentionStep() override;

    KvWrite begin(const AttentionForward& f) override;
    bool shares_tokens() const override { return true; }
    const std::vector<int64_t>& tokens() const override { return plan_.tokens; }
    void attend(int64_t layer, const float* q, const float* k, const float* v, float* out) override;
    void gather(const float* mine, int64_t rows, int64_t width, float* all) override;
    void end() override;
    // Summed over the head groups (kv_bytes_held: every group's cache).
    AttentionStats stats() const override;

    void reset();
    // The inner step of head group 0 (all of the worker's heads without overlap).
    const CpuAttentionStep& inner() const { return *groups_.front().step; }
    CpuAttentionStep& inner() { return *groups_.front().step; }
    int64_t head_groups() const { return static_cast<int64_t>(groups_.size()); }
    const CpuAttentionStep& group(int64_t g) const { return *groups_[static_cast<size_t>(g)].step; }
    const SequencePlan& plan() const { return plan_; }
    ExchangeTime exchange_time() const {
        return {worker_.busy_seconds(), worker_.exposed_seconds(), static_cast<double>(task_comm_ns_.load()) * 1e-9};
    }
    // The inner step's config: the heads of this worker, the policy's static-head profile sliced to them.
    static AttentionStepConfig inner_config(const AttentionStepConfig& cfg, const SequenceMesh& mesh);
    // Head group g's: heads [g * H / (U G), (g + 1) * H / (U G)) of the worker's.
    static AttentionStepConfig group_config(const AttentionStepConfig& cfg, const SequenceMesh& mesh, int64_t g);
    // Bytes of K/V cache a worker allocates (all its groups).
    static size_t kv_bytes_for(const AttentionStepConfig& cfg, const SequenceMesh& mesh);

  private:
    // One head group: its inner step and scratch (s-list rows of its heads, the forward's tiled q/k/v/out, query
    // means, exchange buffers), touched by the exchange thread and this one in turn, never at once.
    struct Group {
        std::unique_ptr<CpuAttentionStep> step;
        std::vector<float> qs, ks, vs, os, qt, kt, vt, ot, qm, send, recv;
        std::vector<std::vector<float>> peer_k, peer_v, peer_qm;
    };
    void exchange_in(Group& g, int64_t col, const float* q, const float* k, const float* v);
    void exchange_out(Group& g, int64_t col, float* out);
    // The communicators' busy seconds (each counted once).
    double comm_busy_seconds() const;

    AttentionStepConfig cfg_;
    SequenceMesh mesh_;
    std::vector<Group> groups_;
    SequencePlan plan_;
    int64_t frames_ = 0;
    ExchangeWorker worker_;
    // Communicator time inside the exchange tasks: this thread makes no communicator call while they run, so the
    // communicators' busy time that grows during a task is the task's.
    std::atomic<int64_t> task_comm_ns_{0};
};

}  // namespace lr
