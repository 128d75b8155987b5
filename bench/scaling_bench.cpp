// Scaling of the DiT rollout over GPUs (the multi-GPU issue): under `mpirun -np N`, N ranks run the chunk step of the
// Wan2.1 DiT (bench/chunk_step.h: 4 denoising forwards + the clean pass per chunk of 3 latent frames, seeded random
// weights at the real shapes) as one sequence-parallel group of U x S ranks (Ulysses heads x spatial tiles, the
// mesh order of dist/mesh.h: u = rank % U, s = rank / U), for --chunks chunks through a --window-frame KV window,
// under an attention --policy (bench/policies.h: DENSE, or a seed method with the config defaults' budgets over
// 128-token tiles and its own window; the exchanges follow its tables, dist/sharded_attention_step_cuda.h).
// Exchanges go over NCCL (one GPU per rank) or MPI (host-staged; several ranks may share a GPU), --transport.
//
// Reported by rank 0 (table + JSON): every chunk's time (CUDA events on rank 0's model stream, after a barrier at
// the start of the run; the ranks are in lockstep through their exchanges), the median once the window is full,
// the DiT-only video rate (12 frames per chunk), the bytes each rank sent per chunk (largest over ranks, steady
// median), peak device memory per GPU (largest over ranks: device memory in use after the run minus before the
// model; ranks sharing a GPU see each other's), the mesh and transport. Scaling efficiency needs the 1-GPU run:
// bench/run_scaling.sh runs 1, 2, 4, 8 GPUs and divides.
//
//   mpirun -np N scaling_bench [--size 1088p] [--model 1.3b|14b] [--chunks 20] [--window 21] [--policy DENSE]
//                              [--ulysses U] [--spatial S] [--overlap-groups G] [--transport auto|nccl|mpi]
//                              [--json FILE] [--commit SHA] [--seed N]
// --overlap-groups G (parallel.overlap_groups) runs each rank's exchanges on the exchange thread's stream while the
// head group before attends; the JSON then also has the exchange thread's busy, exposed and hidden seconds.
// Without --ulysses/--spatial the mesh is U = the largest divisor of the heads that divides N, S = N / U.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/policies.h"
#include "cache/tile_layout.h"
#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
#include "dist/sharded_attention_step_cuda.h"
#include "runtime/core/check.h"
#include "runtime/core/device.h"

#ifdef LONGROLL_HAS_CUDA
#include "bench/chunk_step.h"
#include "runtime/model/wan_model_cuda.h"
#endif
#ifdef LONGROLL_HAS_NCCL
#include "dist/nccl_communicator.h"
#endif

namespace lr {
namespace {

struct Options : bench::OutputFlags {
    std::string size = "1088p";
    std::string model = "1.3b";
    int chunks = 20;
    int window = 0;  // 0: the policy's (21, FORCING_KV its own ring)
    std::string policy = "DENSE";
    int overlap_groups = 1;
    int ulysses = 0;  // 0: chosen
    int spatial = 0;
    std::string transport = "auto";
};

Options parse(int argc, char** argv) {
    Options o;
    o.seed = 20260501;
    bench::parse_flags(
        argc, argv,
        "usage: mpirun -np N scaling_bench [--size 1088p] [--model 1.3b|14b] [--chunks 20] [--window 21]\n"
        "                    [--policy DENSE|SPARSE_FORCING|LIGHT_FORCING|FORCING_KV|LVSA] [--ulysses U]\n"
        "                    [--spatial S] [--overlap-groups G] [--transport auto|nccl|mpi] [--json FILE]\n"
        "                    [--commit SHA] [--seed N]\n",
        o, [&](const std::string& a, const std::function<std::string()>& value) {
            if (a == "--size")
                o.size = value();
            else if (a == "--model")
                o.model = value();
            else if (a == "--chunks")
                o.chunks = std::stoi(value());
            else if (a == "--window")
                o.window = std::stoi(value());
            else if (a == "--policy")
                o.policy = value();
            else if (a == "--overlap-groups")
                o.overlap_groups = std::stoi(value());
            else if (a == "--ulysses")
                o.ulysses = std::stoi(value());
            else if (a == "--spatial")
                o.spatial = std::stoi(value());
            else if (a == "--transport")
                o.transport = value();
            else
                return false;
            return true;
        });
    LR_CHECK(o.model == "1.3b" || o.model == "14b", "--model ", o.model, ": expected 1.3b or 14b");
    LR_CHECK(o.transport == "auto" || o.transport == "nccl" || o.transport == "mpi", "--transport ", o.transport,
             ": expected auto, nccl or mpi");
    LR_CHECK(o.chunks > 0 && (o.window == 0 || (o.window >= 3 && o.window % 3 == 0)),
             "--chunks must be positive and --window a positive multiple of 3 (the chunk)");
    (void)bench::policy_config(o.policy, 1, 1, 1);  // an unknown name is refused here, on every rank alike
    return o;
}

#ifdef LONGROLL_HAS_CUDA

// The largest of the values every rank holds.
double max_over(Communicator& world, double v) {
    std::vector<double> all(static_cast<size_t>(world.size()));
    world.all_gather(&v, all.data(), sizeof(double));
    return *std::max_element(all.begin(), all.end());
}

int run(const MpiSession& mpi, const Options& o) {
    auto world = MpiCommunicator::world();
    const int N = world->size(), rank = world->rank();
    const int devices = cuda_device_count();
    LR_CHECK(devices > 0, "scaling_bench: rank ", rank, " sees no GPU");
    const int device = pick_cuda_device(mpi.info(), devices);
    cuda_use_device(device);
    const WanModelConfig cfg = bench::wan_config(o.model);
    const bench::Resolution res = bench::parse_resolution(o.size);
    const int heads = static_cast<int>(cfg.dims.num_heads);
    int U = o.ulysses, S = o.spatial;
    if (U == 0 && S == 0) {
        for (int u = 1; u <= N; ++u)
            if (heads % u == 0 && N % u == 0) U = u;
        S = N / U;
    } else if (U == 0) {
        U = N / std::max(S, 1);
    } else if (S == 0) {
        S = N / U;
    }
    LR_CHECK(U * S == N && heads % U == 0, "scaling_bench: mesh ", U, " x ", S, " for ", N, " ranks and ", heads,
             " heads (U must divide the heads, U x S = the ranks)");
    const int u = rank % U, s = rank / U;
    const std::unique_ptr<Communicator> heads_comm = world->split(s, u), tiles_comm = world->split(u, s);

    // NCCL needs a GPU per rank: the ranks of a host must not share one.
    const RankDevice mine{rank, mpi.info().host, true, cuda_device_uuid(device)};
    const std::optional<SharedGpus> shared = find_shared_gpus(gather_rank_devices(*world, mine));
    bool nccl = false;
#ifdef LONGROLL_HAS_NCCL
    nccl = o.transport == "nccl" || (o.transport == "auto" && !shared && N > 1);
#endif
    LR_CHECK(!(o.transport == "nccl" && !nccl), "--transport nccl: this build has no NCCL");
    LR_CHECK(!(nccl && shared), "--transport nccl: ", shared ? shared->ranks : 0, " ranks on host ",
             shared ? shared->host : "", " share ", shared ? shared->gpus : 0, " GPU(s); NCCL needs one GPU per rank");

    CudaModelOptions mo;
    mo.height = res.latent_h();
    mo.width = res.latent_w();
    mo.max_forward_frames = bench::kChunkFrames;
    // The policy's geometry, as CudaRollout::model_options sets it for a run of --chunks chunks.
    const TileLayout tiles(mo.height / cfg.dims.patch[1], mo.width / cfg.dims.patch[2],
                           tile_shape_for_block(mo.kv_block_size));
    mo.policy = bench::policy_config(o.policy, tiles.tiles_per_frame(), cfg.dims.num_layers, cfg.dims.num_heads);
    const int64_t run_frames = static_cast<int64_t>(o.chunks) * bench::kChunkFrames;
    const int64_t policy_window = bench::policy_window_frames(mo.policy);
    const int window = o.window > 0 && policy_window != -1 ? o.window : static_cast<int>(policy_window);
    mo.window_frames = window;
    mo.sink_frames = bench::policy_sink_frames(mo.policy);
    mo.max_frames = window == -1 ? run_frames : window;
    mo.frames_per_chunk = bench::kChunkFrames;
    mo.run_frames = run_frames;
    mo.rope = RopePositions::kAbsolute;
    Communicator* ucomm = U > 1 ? heads_comm.get() : nullptr;
    Communicator* scomm = S > 1 ? tiles_comm.get() : nullptr;
    std::vector<std::unique_ptr<Communicator>> twins;
    CudaSequenceMesh mesh;
#ifdef LONGROLL_HAS_NCCL
    if (nccl) {
        if (ucomm) {
            auto t = NcclCommunicator::create(*ucomm, device);
            mesh.ulysses_stream = t->stream();
            ucomm = t.get();
            twins.push_back(std::move(t));
        }
        if (scomm) {
            auto t = NcclCommunicator::create(*scomm, device);
            mesh.spatial_stream = t->stream();
            scomm = t.get();
            twins.push_back(std::move(t));
        }
    }
#endif
    // The rank's attention step (the single-GPU one on one rank): it owns the exchanges; the model only sees it.
    LR_CHECK(o.overlap_groups >= 1 && (heads / U) % o.overlap_groups == 0 && (o.overlap_groups == 1 || N > 1),
             "--overlap-groups ", o.overlap_groups, ": must divide the ", heads / U,
             " heads of a Ulysses rank, and needs several ranks");
    mesh.mesh = SequenceMesh{u, U, ucomm, s, S, scomm, o.overlap_groups};

    LR_CUDA_CHECK(cudaDeviceSynchronize());
    world->barrier();
    const size_t used0 = bench::device_used_bytes();
    const std::unique_ptr<CudaAttentionStep> attention = make_cuda_attention_step(attention_step_config(cfg, mo), mesh);
    mo.step = attention.get();
    CudaWanModel m = CudaWanModel::with_random_weights(cfg, mo, o.seed);
    bench::ChunkStep step(m, cfg, mo.height, mo.width, o.seed + 7);
    LR_CUDA_CHECK(cudaStreamSynchronize(m.stream()));
    const auto sent = [&] { return (ucomm ? ucomm->bytes_sent_total() : 0) + (scomm ? scomm->bytes_sent_total() : 0); };
    if (rank == 0)
        std::fprintf(stderr,
                     "[scaling_bench] %s %s %s on %d rank(s): ulysses %d x spatial %d over %s; %d chunks, window %d\n",
                     o.model.c_str(), res.name.c_str(), o.policy.c_str(), N, U, S, nccl ? "NCCL" : "MPI (host-staged)",
                     o.chunks, window);

    bench::EventTimer timer;
    std::vector<double> chunk_ms, chunk_bytes, chunk_density;
    world->barrier();
    const auto t_run = std::chrono::steady_clock::now();
    for (int c = 0; c < o.chunks; ++c) {
        const uint64_t before = sent();
        timer.start(m.stream());
        step.chunk(static_cast<int64_t>(c) * bench::kChunkFrames);
        timer.stop(m.stream());
        chunk_ms.push_back(timer.ms());
        chunk_bytes.push_back(max_over(*world, static_cast<double>(sent() - before)));
        chunk_density.push_back(m.attention_stats().density());
        if (rank == 0 && (c + 1) % 5 == 0)
            std::fprintf(stderr, "[scaling_bench] chunk %d/%d: %.1f ms\n", c + 1, o.chunks, chunk_ms.back());
    }
    const double run_s = bench::seconds_since(t_run);
    const auto* sharded = dynamic_cast<const ShardedCudaAttentionStep*>(attention.get());
    const ExchangeTime xt = sharded ? sharded->exchange_time() : ExchangeTime{};
    const double exposed = max_over(*world, xt.exposed_seconds), busy = max_over(*world, xt.busy_seconds);
    const double hidden = max_over(*world, xt.hidden_comm_seconds());
    const double peak = max_over(*world, static_cast<double>(bench::device_used_bytes() - used0));
    // Steady state: the chunks that start with a full window (start frame + 3 >= window).
    const int full_at = window == -1 ? 21 : window;  // FORCING_KV: from the chunk the dense window would be full
    const int first_steady = std::max(0, full_at / static_cast<int>(bench::kChunkFrames) - 1);
    std::vector<double> steady_ms(chunk_ms.begin() + std::min(first_steady, o.chunks - 1), chunk_ms.end());
    std::vector<double> steady_bytes(chunk_bytes.begin() + std::min(first_steady, o.chunks - 1), chunk_bytes.end());
    const double ms = bench::median(steady_ms);
    const double fps = 4.0 * bench::kChunkFrames / (ms / 1000.0);
    if (rank != 0) return 0;

    bench::JsonObject doc = bench::header("bench/scaling_bench", o.commit);
    bench::JsonObject r;
    r.add("model", o.model)
        .add("height", res.height)
        .add("width", res.width)
        .add("gpus", N)
        .add("ulysses", U)
        .add("spatial", S)
        .add("transport", nccl ? "nccl" : "mpi")
        .add("chunks", o.chunks)
        .add("policy", o.policy)
        .add("overlap_groups", o.overlap_groups)
        .add("exchange_thread_busy_seconds", busy)
        .add("exchange_thread_exposed_seconds", exposed)
        .add("exchange_hidden_comm_seconds", hidden)
        .add("window_frames", window)
        .add("steady_from_chunk", first_steady)
        .add("chunk_ms", chunk_ms)
        .add("steady_chunk_ms", ms)
        .add("video_fps_dit", fps)
        .add("bytes_sent_per_chunk", bench::median(steady_bytes))
        .add("attention_density_last_forward", chunk_density)
        .add("kv_bytes_per_rank", static_cast<uint64_t>(m.kv_bytes()))
        .add("peak_bytes_per_gpu", static_cast<uint64_t>(peak))
        .add("run_seconds", run_s);
    doc.add("seed", static_cast<uint64_t>(o.seed)).add("result", r);
    std::printf("\n%-6s %-5s %-15s %-8s %-6s %12s %10s %14s %10s   (%s)\n", "model", "size", "policy", "mesh", "comm",
                "chunk ms", "DiT fps", "sent B/chunk", "peak GiB", bench::gpu_info().name.c_str());
    std::printf("%-6s %-5s %-15s %dx%-6d %-6s %12.1f %10.2f %14.3g %10.2f\n", o.model.c_str(), res.name.c_str(),
                o.policy.c_str(), U, S, nccl ? "nccl" : "mpi", ms, fps, bench::median(steady_bytes), bench::gib(peak));
    if (!o.json.empty() && !bench::write_json(o.json, doc)) return 1;
    return 0;
}

#else

int run(const MpiSession&, const Options&) {
    std::fprintf(stderr, "scaling_bench: this build has no CUDA\n");
    return 2;
}

#endif  // LONGROLL_HAS_CUDA

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi, lr::parse(argc, argv)); });
}
