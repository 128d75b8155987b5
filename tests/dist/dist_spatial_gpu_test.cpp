// Spatial sharding of the CUDA DiT (alone and with Ulysses) under mpirun, through the sharded attention step handed
// to the model (dist/sharded_attention_step_cuda.h), all ranks on the GPUs they find (one GPU may hold every rank):
// the forwards of a window with a sink and eviction, on two models --
//   heads32: 4 heads of 32 (the simple attention kernel), an 8x20 latent (40 tokens per frame), KV blocks of 16;
//   hd128:   2 heads of 128 (the TMA/wgmma kernel), a 26x20 latent (130 tokens per frame), KV blocks of 64;
// dense attention in both RoPE modes, and every other policy (SINK_WINDOW, SPARSE_FORCING, LIGHT_FORCING,
// FORCING_KV, LVSA) with absolute RoPE, against the unsharded CUDA model on the same rank. Meshes by world size:
// 1 -> S = 1 over MPI and, with NCCL built in, over a 1-rank NcclCommunicator (nothing to exchange); 2 -> S = 2;
// 3 -> S = 3; 4 -> U = 2 x S = 2. A chunk's 3 frames are 120 / 390 rows: 1 / 4 query blocks of 128, dealt b % S to
// the spatial ranks (so with heads32 only rank 0 has rows). Every flow must equal the unsharded model's bit for bit
// (bound 0): measured so on an H100 for every mesh and policy (96121f9) -- the GEMMs of the sharded rows pick the
// same cuBLASLt kernels per row as the whole chunk's, and the attention step is the single GPU's for the same
// operands (dist_sharded_step_gpu_test). A GPU whose GEMM heuristics split rows differently would show a small
// nonzero error here: the test then names it rather than hiding it under a bf16-sized bound. Every rank must return the
// whole chunk, and the bytes the spatial communicator sends must be what the exchange scheme needs, computed here from
// the geometry: per layer and forward, to each of the other S - 1 ranks, K and V (bf16, dim / U wide) of the rank's
// rows of the chunk and, for the policies that score blocks, one f32 mean query per (head of the rank, query block of
// the rank). Exit 77 (skipped) when a rank sees no GPU. Prints each measured error ("[ measured ]").

#include <cinttypes>
#include <cstdio>
#include <memory>
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

using disttest::PolicyCase;

CudaModelOptions options(const ModelCase& mc, const PolicyCase& pc) {
    CudaModelOptions o = disttest::forward_options(mc.height, mc.width, pc.rope);
    o.kv_block_size = mc.block;
    disttest::set_policy(o, pc);
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
    e.expect(worst <= bound, what + ": relative error " + std::to_string(worst));
    e.expect(got.slot_end == want.slot_end, what + ": the cached frames differ from the unsharded cache's");
}

// Bytes spatial rank s sends over a run, from the geometry alone: the forward's tokens (3 frames) in query blocks
// of 128 rows, block b on rank b % S; per forward and layer, to each of the S - 1 others, K and V of its rows (bf16,
// dim / U wide) and, when the policy scores blocks, a f32 mean query per (its head, its query block).
uint64_t expected_bytes(const ModelCase& mc, const PolicyCase& pc, int U, int S, int s, size_t forwards) {
    const int64_t tpf = (mc.height / 2) * (mc.width / 2), L = disttest::kFrames * tpf;
    const int64_t heads = mc.cfg.dims.num_heads, hd = mc.cfg.dims.dim / heads;
    int64_t rows = 0, blocks = 0;
    for (int64_t b = 0; b * 128 < L; ++b)
        if (b % S == s) {
            rows += std::min<int64_t>(128, L - b * 128);
            ++blocks;
        }
    const int64_t per_peer = 2 * rows * (mc.cfg.dims.dim / U) * 2 + (pc.scores ? (heads / U) * blocks * hd * 4 : 0);
    return static_cast<uint64_t>(forwards) * static_cast<uint64_t>(mc.cfg.dims.num_layers * (S - 1) * per_peer);
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
        for (const PolicyCase& pc : disttest::policy_cases(mc.cfg.dims.num_layers, mc.cfg.dims.num_heads)) {
            const std::string name = str_cat(mc.name, " ", pc.name, ", U = ", U, " S = ", S);
            const ForwardRun want = disttest::run_forwards(m, options(mc, pc), ctx);

            CudaModelOptions o = options(mc, pc);
            CudaSequenceMesh mesh;
            mesh.mesh = SequenceMesh{u, U, U > 1 ? heads.get() : nullptr, s, S, tiles.get()};
            ShardedCudaAttentionStep step(attention_step_config(mc.cfg, o), mesh);
            o.step = &step;
            tiles->reset_byte_counters();
            const ForwardRun got = disttest::run_forwards(m, o, ctx);
            const double bound = 0;  // bit for bit (see the header)
            compare(name + " (MPI, host-staged)", got, want, bound, world->rank(), e);
            const uint64_t sent = tiles->bytes_sent(CommOp::kSendRecv);
            const uint64_t expected = expected_bytes(mc, pc, U, S, s, got.flows.size());
            std::printf("[ measured ] rank %d, %s: KV rows and means sent %" PRIu64 " bytes, the scheme needs %" PRIu64
                        "\n",
                        world->rank(), name.c_str(), sent, expected);
            e.expect(sent == expected, str_cat(name, ": sent ", sent, " bytes, the exchange scheme needs ", expected));
            disttest::expect_same_on_every_rank(*world, got, name, e);

#ifdef LONGROLL_HAS_NCCL
            if (N == 1) {
                auto nccl = NcclCommunicator::create(*world, device);
                CudaModelOptions no = options(mc, pc);
                CudaSequenceMesh nmesh;
                nmesh.mesh = SequenceMesh{0, 1, nullptr, 0, 1, nccl.get()};
                nmesh.spatial_stream = nccl->stream();
                ShardedCudaAttentionStep nstep(attention_step_config(mc.cfg, no), nmesh);
                no.step = &nstep;
                const ForwardRun via_nccl = disttest::run_forwards(m, no, ctx);
                compare(name + " (NCCL, device buffers)", via_nccl, want, 0, world->rank(), e);
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
