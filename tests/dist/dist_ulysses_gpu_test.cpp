// Ulysses head parallelism of the CUDA DiT under mpirun, all ranks on the GPUs they find (one GPU may hold every
// rank): the forwards of a window with a sink and eviction (window-relative RoPE) through the sharded attention
// step (dist/sharded_attention_step_cuda.h) handed to the model, over
//   - the MPI communicator of the world (U = world size; host buffers: the step stages through pinned memory),
//   - with one rank and NCCL built in: an NcclCommunicator of that one rank (device buffers on its stream),
// against the unsharded CUDA model on the same rank, bit for bit (bound 0) for every U: measured so on an H100
// (96121f9; the token shards' GEMMs pick the same kernels per row as the whole chunk's). Every rank must return the
// whole chunk. Exit 77 (skipped) when a rank sees no GPU. Prints each measured error ("[ measured ]").

#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
#include "dist/sharded_attention_step_cuda.h"
#include "dist_test_harness.h"
#include "gpu_forwards.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"
#include "runtime/model/wan_model.h"
#include "runtime/model/wan_model_cuda.h"
#ifdef LONGROLL_HAS_NCCL
#include "dist/nccl_communicator.h"
#endif

namespace lr {
namespace {

using disttest::Errors;
using disttest::ForwardRun;

WanModelConfig config() {  // 4 heads of 32: U = 1, 2, 4 split them; 40 tokens per frame of an 8x20 latent
    WanModelConfig c;
    c.dims.dim = 128;
    c.dims.ffn_dim = 256;
    c.dims.num_heads = 4;
    c.dims.num_layers = 2;
    c.dims.text_dim = 64;
    c.dims.freq_dim = 256;
    c.text_len = 16;
    return c;
}

CudaModelOptions options() { return disttest::forward_options(8, 20, RopePositions::kWindowRelative); }

void compare(const std::string& what, const ForwardRun& got, const ForwardRun& want, double bound, int rank,
             Errors& e) {
    const double worst = disttest::worst_error(got, want);
    std::printf("[ measured ] rank %d, %s: worst relative error vs unsharded %.3e (bound %.0e); %.2f ms per forward\n",
                rank, what.c_str(), worst, bound, got.ms);
    std::fflush(stdout);
    e.expect(worst <= bound, what + ": relative error " + std::to_string(worst));
}

int run(const MpiSession& mpi) {
    auto world = MpiCommunicator::world();
    const int device = disttest::gpu_or_skip(mpi.info(), *world, "dist_ulysses_gpu_test");
    if (device < 0) return 77;
    const WanModelConfig cfg = config();
    const WanModel m = WanModel::from_weights(make_default_wan_weights(cfg.dims, 5), cfg);
    const HostTensor ctx = disttest::test_context(cfg);
    Errors e(world->rank());
    const ForwardRun want = disttest::run_forwards(m, options(), ctx);
    if (world->rank() == 0) std::printf("[ measured ] unsharded: %.2f ms per forward\n", want.ms);

    const int U = world->size();
    CudaModelOptions o = options();
    CudaSequenceMesh mesh;
    mesh.mesh = SequenceMesh{world->rank(), U, world.get(), 0, 1, nullptr};
    ShardedCudaAttentionStep step(attention_step_config(cfg, o), mesh);
    o.step = &step;
    const ForwardRun got = disttest::run_forwards(m, o, ctx);
    compare(str_cat("MPI, U = ", U, " (host-staged)"), got, want, 0, world->rank(), e);
    disttest::expect_same_on_every_rank(*world, got, "MPI", e);

#ifdef LONGROLL_HAS_NCCL
    if (U == 1) {
        auto nccl = NcclCommunicator::create(*world, device);
        CudaModelOptions no = options();
        CudaSequenceMesh nmesh;
        nmesh.mesh = SequenceMesh{0, 1, nccl.get(), 0, 1, nullptr};
        nmesh.ulysses_stream = nccl->stream();
        ShardedCudaAttentionStep nstep(attention_step_config(cfg, no), nmesh);
        no.step = &nstep;
        const ForwardRun via_nccl = disttest::run_forwards(m, no, ctx);
        compare("NCCL, U = 1 (device buffers)", via_nccl, want, 0, world->rank(), e);
        e.expect(nccl->bytes_sent(CommOp::kAllToAll) == 0, "NCCL of one rank sends nothing to other ranks");
    }
#endif
    const int64_t total = disttest::agree(*world, e);
    if (world->rank() == 0)
        std::printf("dist_ulysses_gpu_test: %d ranks, %" PRId64 " errors: %s\n", world->size(), total,
                    total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi); });
}
