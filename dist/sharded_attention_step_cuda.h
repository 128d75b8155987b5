// Sequence parallelism behind the CUDA model's attention seam (DESIGN.md sections 2 and 7): the attention step of
// one worker of a U x S group on the GPU path, the twin of ShardedAttentionStep (sharded_attention_step.h: read it
// first). The same plan (SequencePlan: who computes which rows and heads) and the same exchange:
//
//   per layer   the model hands over q, k, v of the worker's rows (all heads, bf16). An all-to-all within the U
//               group turns them into the s-list's rows of the worker's heads; one grouped send_recv within the S
//               group gives every spatial rank the chunk's K/V rows of the others and, for the policies that
//               score blocks (SPARSE_FORCING, LIGHT_FORCING, FORCING_KV), their query blocks' mean queries; the
//               inner CudaLocalAttentionStep (the worker's heads, every tile of every frame) stores the whole
//               chunk's K/V into its cache (a replica of the window of its heads), builds the tables and attends
//               with the rank's query blocks; a second all-to-all brings the output back to the worker's rows.
//   per forward the head's rows of every worker, all-gathered over U then S and put back in model order.
//
// Every rank's tables, retention and attention rows equal the single-GPU step's for its heads and query blocks:
// the same kernels on the same operands (the dense table reads every row's blocks in one order, so the rank's
// rows may be attended compactly; the sparse step attends in the forward's tiled order with every query block's
// mean query; the attention kernel splits table rows as the single-GPU launch would: split_ctas). The model's
// per-token GEMMs run on other row counts, which could round differently; on an H100 they do not: whole forwards
// and `generate` latents of 2-4 ranks equal one GPU's bit for bit (tests/dist/*_gpu_test.cpp, bound 0), and the
// attention step does by construction (tests/dist/dist_sharded_step_gpu_test.cpp).
//
// Communicators: one on device buffers (NCCL) gets device memory and runs on its own stream, ordered against
// the model's with events; any other (MPI) gets pinned host copies, the exchange's stream drained before each
// exchange. Bytes and time are counted by the communicators (longroll_exchanged_bytes_total, busy_seconds).
//
// Overlap (SequenceMesh::overlap_groups = G > 1), as the CPU step: the worker's heads split into G groups, each
// with its own inner step and buffers (the same rows, its columns). A group's exchange in (the Ulysses all-to-all,
// its query means, the spatial send_recv) and out (the all-to-all back into its columns of the output) run on an
// exchange thread (ExchangeWorker) that enqueues on an exchange stream of its own, while the model's stream
// attends the group before:
//
//   exchange stream:   in(0) in(1)           out(0) in(2)            out(1) ...
//   model stream:            [wait in(0)] attend(0) [wait in(1)] attend(1) ...
//
// ordered by events (the layer's q/k/v written -> every in; in(g) -> attend(g) -> out(g) -> the model's next
// launch). With NCCL the exchange thread only enqueues; with MPI it blocks in the host exchange while the GPU
// attends. The same tables, rows and kernels per head as G = 1, so the rows are bit-identical. One group runs
// everything on the model's stream in turn, as before.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/tile_layout.h"
#include "dist/communicator.h"
#include "dist/exchange_worker.h"
#include "dist/sharded_attention_step.h"
#include "runtime/core/stream.h"
#include "runtime/model/attention_step_cuda.h"

namespace lr {

// A worker's place in the group, with the streams of its device-buffer communicators (NcclCommunicator::stream();
// null for host-buffer ones).
struct CudaSequenceMesh {
    SequenceMesh mesh;
    Stream ulysses_stream = nullptr;
    Stream spatial_stream = nullptr;
};

class ShardedCudaAttentionStep final : public CudaAttentionStep {
  public:
    // cfg: the single-GPU step's config (all heads); the inner step holds heads [u * H/U, (u + 1) * H/U).
    ShardedCudaAttentionStep(const CudaAttentionStepConfig& cfg, const CudaSequenceMesh& mesh);
    ~ShardedCudaAttentionStep() override;
    ShardedCudaAttentionStep(const ShardedCudaAttentionStep&) = delete;
    ShardedCudaAttentionStep& operator=(const ShardedCudaAttentionStep&) = delete;
    // The inner step's config: the worker's heads, the policy's static-head profile sliced to them.
    static CudaAttentionStepConfig inner_config(const CudaAttentionStepConfig& cfg, const SequenceMesh& mesh);

    // Head group g's inner config: heads [g * H / (U G), (g + 1) * H / (U G)) of the worker's.
    static CudaAttentionStepConfig group_config(const CudaAttentionStepConfig& cfg, const SequenceMesh& mesh,
                                                int64_t g);

    KvWrite begin(const AttentionForward& f, Stream stream) override;
    bool shares_tokens() const override { return true; }
    const std::vector<int64_t>& tokens() const override { return plan_.tokens; }
    CudaQkvTarget qkv(int64_t layer) override;
    void attend(int64_t layer, void* out) override;
    void end() override;
    void gather(const float* mine, int64_t width, float* all) override;
    // Summed over the head groups (kv_bytes_held: every group's cache).
    AttentionStats stats() const override;
    int64_t num_heads() const override { return cfg_.num_heads; }
    RopePositions rope() const override { return cfg_.rope; }
    int64_t cached_frames() const override;
    int64_t max_cached_frames() const override;
    size_t kv_bytes() const override;
    void reset(int64_t first_frame = 0) override;

    // Head group 0's inner step (all of the worker's heads without overlap).
    const CudaLocalAttentionStep& inner() const;
    int64_t head_groups() const { return static_cast<int64_t>(groups_.size()); }
    const SequencePlan& plan() const { return plan_; }
    // busy / exposed: the exchange thread's tasks (zero with one group: everything runs in turn on the model's
    // stream); comm: the communicators' busy time inside them.
    ExchangeTime exchange_time() const;

  private:
    struct Buffers;
    struct Group;
    struct Shared;
    void upload_tables();
    // Runs `op` (an operation of `comm` on the exchange buffers) after the work enqueued so far on stream `s` and
    // before the work enqueued on it after.
    template <class Op>
    void collective(Communicator* comm, Stream comm_stream, Stream s, const Op& op);
    // Group g's exchange in (s-list rows of its heads, its query means, the spatial peers' K/V) and its compute
    // (store, attend) and exchange out (its columns of `out`); in and out on stream s.
    void exchange_in(Group& g, int64_t layer, Stream s);
    void attend_group(Group& g, int64_t layer);
    void exchange_out(Group& g, void* out, Stream s);
    void to_heads(Group& g, Stream s);
    void exchange_spatial(Group& g, Stream s);
    void to_tokens(Group& g, void* out, Stream s);
    double comm_busy_seconds() const;

    CudaAttentionStepConfig cfg_;
    CudaSequenceMesh mesh_;
    TileLayout tiles_;
    std::vector<std::unique_ptr<Group>> groups_;
    std::unique_ptr<Shared> shared_;
    SequencePlan plan_;
    int64_t frames_ = 0;
    Stream stream_ = nullptr;  // the forward's (begin())
    std::unique_ptr<ExchangeWorker> worker_;
    std::atomic<int64_t> task_comm_ns_{0};
};

// The step of a worker: CudaLocalAttentionStep for a 1 x 1 mesh without communicators, the sharded one otherwise.
std::unique_ptr<CudaAttentionStep> make_cuda_attention_step(const CudaAttentionStepConfig& cfg,
                                                            const CudaSequenceMesh& mesh);

}  // namespace lr
