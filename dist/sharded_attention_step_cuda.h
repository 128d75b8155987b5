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
// per-token GEMMs run on other row counts, so a forward of the group matches one GPU to bf16 accuracy, not bit
// for bit; the attention step itself does (tests/dist/dist_sharded_step_gpu_test.cpp).
//
// Communicators: one on device buffers (NCCL) gets device memory and runs on its own stream, ordered against
// the model's with events; any other (MPI) gets pinned host copies, the model's stream drained before each
// exchange. Bytes and time are counted by the communicators (longroll_exchanged_bytes_total, busy_seconds).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/tile_layout.h"
#include "dist/communicator.h"
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

    KvWrite begin(const AttentionForward& f, Stream stream) override;
    bool shares_tokens() const override { return true; }
    const std::vector<int64_t>& tokens() const override { return plan_.tokens; }
    CudaQkvTarget qkv(int64_t layer) override;
    void attend(int64_t layer, void* out) override;
    void end() override { inner_->end(); }
    void gather(const float* mine, int64_t width, float* all) override;
    AttentionStats stats() const override { return inner_->stats(); }
    int64_t num_heads() const override { return cfg_.num_heads; }
    RopePositions rope() const override { return cfg_.rope; }
    int64_t cached_frames() const override { return inner_->cached_frames(); }
    int64_t max_cached_frames() const override { return inner_->max_cached_frames(); }
    size_t kv_bytes() const override { return inner_->kv_bytes(); }
    void reset(int64_t first_frame = 0) override { inner_->reset(first_frame); }

    const CudaLocalAttentionStep& inner() const { return *inner_; }
    const SequencePlan& plan() const { return plan_; }

  private:
    struct Buffers;
    void upload_tables();
    // Runs `op` (an operation of `comm` on the exchange buffers) after the work enqueued so far on the forward's
    // stream and before the work enqueued after it.
    template <class Op>
    void collective(Communicator* comm, Stream comm_stream, const Op& op);
    void to_heads();
    void exchange_spatial(int64_t layer);
    void to_tokens(void* out);

    CudaAttentionStepConfig cfg_;
    CudaSequenceMesh mesh_;
    TileLayout tiles_;
    std::unique_ptr<CudaLocalAttentionStep> inner_;
    SequencePlan plan_;
    int64_t frames_ = 0;
    Stream stream_ = nullptr;  // the forward's (begin())
    std::unique_ptr<Buffers> buf_;
};

// The step of a worker: CudaLocalAttentionStep for a 1 x 1 mesh without communicators, the sharded one otherwise.
std::unique_ptr<CudaAttentionStep> make_cuda_attention_step(const CudaAttentionStepConfig& cfg,
                                                            const CudaSequenceMesh& mesh);

}  // namespace lr
