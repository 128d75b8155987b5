// Spatial sharding of the CUDA DiT (CudaModelOptions.spatial, alone and with Ulysses) under mpirun, all ranks on
// the GPUs they find (one GPU may hold every rank): the forwards of a window with a sink and eviction, in both
// RoPE modes, on two models --
//   heads32: 4 heads of 32 (the simple attention kernel), blocks of 16 tokens: an 8x20 latent's 40 tokens per
//            frame are 3 blocks (16, 16, 8), so 2 ranks own 24 and 16 tokens;
//   hd128:   2 heads of 128 (the TMA/wgmma kernel), blocks of 64: a 26x20 latent's 130 tokens are 3 blocks
//            (64, 64, 2);
// against the unsharded CUDA model on the same rank. Meshes by world size: 1 -> S = 1 over MPI and, with NCCL
// built in, over a 1-rank NcclCommunicator (the spatial path with nothing to exchange: must match exactly,
// bound 1e-6); 2 -> S = 2; 3 -> S = 3; 4 -> U = 2 x S = 2 (bf16 accuracy: 1e-2, the GEMMs see other row
// counts). Every rank must return the whole chunk, and the bytes the spatial communicator sends must be what
// the dense table needs: per layer and forward, K and V of this rank's blocks of every key slot, to each of the
// other S - 1 ranks. Exit 77 (skipped) when a rank sees no GPU. Prints each measured error ("[ measured ]").

#include <cinttypes>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
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

struct ModelCase {
    const char* name;
    WanModelConfig cfg;
    int64_t height, width, block;
};

std::vector<ModelCase> cases() {
    WanModelConfig a;
    a.dims.dim = 128;
    a.dims.ffn_dim = 256;
    a.dims.num_heads = 4;
    a.dims.num_layers = 2;
    a.dims.text_dim = 64;
    a.dims.freq_dim = 256;
    a.text_len = 16;
    WanModelConfig b = a;
    b.dims.dim = 256;
    b.dims.ffn_dim = 512;
    b.dims.num_heads = 2;
    b.text_len = 200;
    return {{"heads32", a, 8, 20, 16}, {"hd128", b, 26, 20, 64}};
}

CudaModelOptions options(const ModelCase& mc, RopePositions rope) {
    CudaModelOptions o = disttest::forward_options(mc.height, mc.width, rope);
    o.kv_block_size = mc.block;
    return o;
}

void compare(const std::string& what, const ForwardRun& got, const ForwardRun& want, double bound, int rank,
             Errors& e) {
    const double worst = disttest::worst_error(got, want);
    std::printf(
        "[ measured ] rank %d, %s: worst relative error vs unsharded %.3e (bound %.0e); %.2f ms per forward "
        "(unsharded %.2f)\n",
        rank, what.c_str(), worst, bound, got.ms, want.ms);
    std::fflush(stdout);
    e.expect(worst < bound, what + ": relative error " + std::to_string(worst));
    e.expect(got.slot_end == want.slot_end, what + ": the key slots differ from the unsharded cache's");
}

// Bytes the dense table makes spatial rank s send over a run: per forward and layer, K and V (bf16, width
// dim / U) of its blocks of every key slot, to each of the other S - 1 ranks.
uint64_t expected_kv_bytes(const ModelCase& mc, int U, int S, int s, const ForwardRun& run) {
    const int64_t tpf = (mc.height / 2) * (mc.width / 2), nb = (tpf + mc.block - 1) / mc.block;
    int64_t mine = 0;
    for (int64_t b = s; b < nb; b += S) ++mine;
    uint64_t total = 0;
    for (const int64_t slots : run.slot_end)
        total += static_cast<uint64_t>(mc.cfg.dims.num_layers * 2 * (S - 1) * slots * mine * mc.block *
                                       (mc.cfg.dims.dim / U) * 2);
    return total;
}

int run(const MpiSession& mpi) {
    auto world = MpiCommunicator::world();
    const int device = disttest::gpu_or_skip(mpi.info(), *world, "dist_spatial_gpu_test");
    if (device < 0) return 77;
    const int N = world->size();
    LR_CHECK(N >= 1 && N <= 4, "dist_spatial_gpu_test runs on 1 to 4 ranks, not ", N);
    const int U = N == 4 ? 2 : 1, S = N / U;
    const int u = world->rank() % U, s = world->rank() / U;  // the mesh's order (dist/mesh.h)
    const std::unique_ptr<Communicator> heads = world->split(s, u), tiles = world->split(u, s);
    Errors e(world->rank());

    for (const ModelCase& mc : cases()) {
        const WanModel m = WanModel::from_weights(make_default_wan_weights(mc.cfg.dims, 5), mc.cfg);
        const HostTensor ctx = disttest::test_context(mc.cfg);
        for (const RopePositions rope : {RopePositions::kAbsolute, RopePositions::kWindowRelative}) {
            const std::string name =
                str_cat(mc.name, rope == RopePositions::kAbsolute ? " absolute" : " relative", ", U = ", U, " S = ", S);
            const ForwardRun want = disttest::run_forwards(m, options(mc, rope), ctx);

            CudaModelOptions o = options(mc, rope);
            if (U > 1) o.shard = AttentionShard{u, U, heads.get()};
            o.spatial = SpatialShard{s, S, tiles.get(), mc.block};
            tiles->reset_byte_counters();
            const ForwardRun got = disttest::run_forwards(m, o, ctx);
            compare(name + " (MPI, host-staged)", got, want, S == 1 && U == 1 ? 1e-6 : 1e-2, world->rank(), e);
            const uint64_t sent = tiles->bytes_sent(CommOp::kSendRecv);
            const uint64_t expected = expected_kv_bytes(mc, U, S, s, got);
            std::printf("[ measured ] rank %d, %s: KV blocks sent %" PRIu64 " bytes, the table needs %" PRIu64 "\n",
                        world->rank(), name.c_str(), sent, expected);
            e.expect(sent == expected, str_cat(name, ": sent ", sent, " KV bytes, the table needs ", expected));
            disttest::expect_same_on_every_rank(*world, got, name, e);

#ifdef LONGROLL_HAS_NCCL
            if (N == 1) {
                auto nccl = NcclCommunicator::create(*world, device);
                CudaModelOptions no = options(mc, rope);
                no.spatial = SpatialShard{0, 1, nccl.get(), mc.block};
                no.spatial_comm_stream = nccl->stream();
                const ForwardRun via_nccl = disttest::run_forwards(m, no, ctx);
                compare(name + " (NCCL, device buffers)", via_nccl, want, 1e-6, world->rank(), e);
                e.expect(nccl->bytes_sent_total() == 0, "NCCL of one rank sends nothing to other ranks");
            }
#endif
        }
    }
    const int64_t total = disttest::agree(*world, e);
    if (world->rank() == 0)
        std::printf("dist_spatial_gpu_test: %d ranks (U = %d, S = %d), %" PRId64 " errors: %s\n", N, U, S, total,
                    total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi); });
}
