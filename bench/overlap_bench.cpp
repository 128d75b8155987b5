// Exchange overlap on the CPU path (the distributed issue: "the bench reports exposed vs hidden exchange time"):
// under `mpirun -np N`, N CPU ranks run one U x S sequence-parallel rollout (dist/sharded_attention_step.h) of a
// seeded random DiT, once per --groups value G (parallel.overlap_groups), and report for each: wall time per chunk,
// the exchange's busy seconds (the exchange tasks' wall time, packing included), the exposed part (what the
// attention waited for) and the hidden rest, the communicators' own time inside the tasks and the part of it the
// waits cannot cover (comm hidden: what longroll_exchange_hidden_seconds_total counts), the bytes each rank sent per
// chunk, and whether the latents equal the G = 1 run's bit for bit (they must: the groups split heads, not arithmetic).
// Rank 0 prints the table (largest over ranks) and writes JSON.
//
//   mpirun -np N overlap_bench [--ulysses U] [--groups 1,2,3] [--latent 32x56] [--chunks 4] [--window 21]
//                              [--dim 384] [--heads 6] [--layers 4] [--policy DENSE] [--json FILE] [--commit SHA]
// --policy: DENSE, SPARSE_FORCING, LIGHT_FORCING, LVSA or FORCING_KV with bench/policies.h's budgets.
//
// The default shape is the tiny default model's frame (256x448 video: 16 x 28 patches) at a width the CPU can run
// in seconds; the point is the split of exchange time, which depends on the ratio of exchange to attention, so the
// figures are for this machine's CPUs and interconnect (shared memory between ranks of one host), not the GPUs'.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/policies.h"
#include "cache/tile_layout.h"
#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
#include "runtime/rollout/rollout.h"

namespace lr {
namespace {

constexpr char kUsage[] =
    "usage: mpirun -np N overlap_bench [--ulysses U] [--groups 1,2,3] [--latent HxW] [--chunks N] [--window F]\n"
    "                                  [--dim D] [--heads H] [--layers L] [--policy NAME] [--json FILE]\n"
    "                                  [--commit SHA] [--seed N]\n";

std::vector<int> parse_ints(const std::string& s, const char* flag) {
    std::vector<int> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) {
        LR_CHECK(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos, flag, " '", s,
                 "': expected positive integers separated by commas");
        out.push_back(std::stoi(item));
        LR_CHECK(out.back() > 0, flag, " '", s, "': expected positive integers");
    }
    LR_CHECK(!out.empty(), flag, ": empty list");
    return out;
}

struct Run {
    int groups = 1;
    double wall_s = 0, busy_s = 0, exposed_s = 0, comm_s = 0;
    uint64_t bytes = 0;
    bool identical = true;
};

int run(int argc, char** argv) {
    int ulysses = 1, chunks = 4, window = 0, dim = 384, heads = 6, layers = 4;
    int64_t lat_h = 32, lat_w = 56;
    std::string groups_arg = "1,2,3", policy = "DENSE";
    bench::OutputFlags out;
    bench::parse_flags(argc, argv, kUsage, out, [&](const std::string& f, const std::function<std::string()>& v) {
        if (f == "--ulysses") {
            ulysses = std::stoi(v());
        } else if (f == "--groups") {
            groups_arg = v();
        } else if (f == "--latent") {
            const std::string s = v();
            LR_CHECK(std::sscanf(s.c_str(), "%" SCNd64 "x%" SCNd64, &lat_h, &lat_w) == 2 && lat_h > 0 && lat_w > 0,
                     "--latent '", s, "': expected HxW in latent pixels");
        } else if (f == "--chunks") {
            chunks = std::stoi(v());
        } else if (f == "--window") {
            window = std::stoi(v());
        } else if (f == "--dim") {
            dim = std::stoi(v());
        } else if (f == "--heads") {
            heads = std::stoi(v());
        } else if (f == "--layers") {
            layers = std::stoi(v());
        } else if (f == "--policy") {
            policy = v();
        } else {
            return false;
        }
        return true;
    });
    const std::vector<int> groups = parse_ints(groups_arg, "--groups");

    auto world = MpiCommunicator::world();
    const int n = world->size(), me = world->rank();
    LR_CHECK(ulysses >= 1 && n % ulysses == 0, "--ulysses ", ulysses, " does not divide ", n, " ranks");
    LR_CHECK(n > 1, "overlap_bench needs several ranks (mpirun -np N, N > 1): one rank exchanges nothing");
    const int U = ulysses, S = n / U, u = me % U, s = me / U;
    LR_CHECK(heads > 0 && dim % heads == 0 && heads % U == 0, "--heads ", heads, " must divide --dim ", dim,
             " and be divisible by --ulysses ", U);
    for (int g : groups)
        LR_CHECK((heads / U) % g == 0, "--groups: ", g, " does not divide the ", heads / U, " heads of a Ulysses rank");
    const std::unique_ptr<Communicator> ucomm = world->split(s, u);
    const std::unique_ptr<Communicator> scomm = world->split(u, s);

    WanModelConfig cfg;
    cfg.dims.dim = dim;
    cfg.dims.ffn_dim = dim * 8 / 3;
    cfg.dims.num_heads = heads;
    cfg.dims.num_layers = layers;
    cfg.dims.text_dim = 64;
    cfg.dims.freq_dim = 64;
    cfg.text_len = 16;
    const WanModel model = WanModel::from_weights(make_default_wan_weights(cfg.dims, out.seed), cfg);
    HostTensor ctx(DType::kF32, Shape{8, cfg.dims.text_dim});
    const std::vector<float> cv = bench::gaussian(static_cast<size_t>(8 * cfg.dims.text_dim), out.seed + 1);
    std::copy(cv.begin(), cv.end(), ctx.as<float>());
    const std::vector<PromptSegment> prompts{{0, ctx.view}};

    RolloutOptions o;
    // The benchmarks' policy budgets (bench/policies.h) and window (21 frames; FORCING_KV keeps its own pages, no
    // window); --window F replaces the window of the others (the budgets must fit it: the policy says if not).
    const TileLayout tiles(lat_h / cfg.dims.patch[1], lat_w / cfg.dims.patch[2], tile_shape_for_block(o.block_size));
    o.policy = bench::policy_config(policy, tiles.tiles_per_frame(), layers, heads);
    if (window == 0 || bench::policy_window_frames(o.policy) == -1) window = bench::policy_window_frames(o.policy);
    o.local_attn_size = window;
    o.sink_size = bench::policy_sink_frames(o.policy);
    o.mesh = SequenceMesh{u, U, U > 1 ? ucomm.get() : nullptr, s, S, S > 1 ? scomm.get() : nullptr, 1};
    const int64_t frames = static_cast<int64_t>(chunks) * o.frames_per_chunk;
    const RolloutShape shape{frames, lat_h, lat_w};

    std::vector<Run> runs;
    std::vector<float> first;
    for (int g : groups) {
        o.mesh.overlap_groups = g;
        Rollout r(model, o, shape);
        const SeededNoise noise(out.seed + 2, cfg.dims.in_dim, lat_h, lat_w);
        HostTensor lat(DType::kF32, Shape{frames, cfg.dims.in_dim, lat_h, lat_w});
        const auto keep = [&](const RolloutChunk& c) {
            std::copy_n(c.latents, c.num_frames * cfg.dims.in_dim * lat_h * lat_w,
                        lat.as<float>() + c.start_frame * cfg.dims.in_dim * lat_h * lat_w);
        };
        ucomm->reset_byte_counters();
        scomm->reset_byte_counters();
        world->barrier();
        const auto t0 = std::chrono::steady_clock::now();
        r.run(prompts, noise, keep);
        Run run;
        run.groups = g;
        run.wall_s = bench::seconds_since(t0);
        const ExchangeTime t = r.exchange_time();
        run.busy_s = t.busy_seconds;
        run.exposed_s = t.exposed_seconds;
        run.comm_s = t.comm_seconds;
        run.bytes = ucomm->bytes_sent_total() + scomm->bytes_sent_total();
        const std::vector<float> got(lat.as<float>(), lat.as<float>() + lat.view.numel());
        if (first.empty()) first = got;
        run.identical = got == first;
        // The largest figures over the ranks (the slowest rank sets the pace); identical only if on every rank.
        double v[5] = {run.wall_s, run.busy_s, run.exposed_s, static_cast<double>(run.bytes), run.comm_s};
        std::vector<double> all(static_cast<size_t>(5 * n));
        world->all_gather(v, all.data(), sizeof v);
        for (int k = 0; k < 5; ++k)
            for (int p = 0; p < n; ++p) v[k] = std::max(v[k], all[static_cast<size_t>(5 * p + k)]);
        int64_t differ = run.identical ? 0 : 1;
        world->all_reduce_sum(&differ, 1);
        run.wall_s = v[0], run.busy_s = v[1], run.exposed_s = v[2], run.bytes = static_cast<uint64_t>(v[3]);
        run.comm_s = v[4];
        run.identical = differ == 0;
        runs.push_back(run);
    }

    if (me == 0) {
        std::printf("overlap_bench: %d ranks (U %d x S %d), DiT dim %d, %d heads, %d layers, latent %" PRId64
                    "x%" PRId64 ", %d chunks, window %d, %s (largest over ranks)\n",
                    n, U, S, dim, heads, layers, lat_h, lat_w, chunks, window, policy.c_str());
        std::printf("%6s %10s %12s %12s %12s %9s %12s %14s %12s %8s\n", "groups", "chunk ms", "exchange ms",
                    "exposed ms", "hidden ms", "hidden %", "comm ms", "comm hidden ms", "MB/chunk", "latents");
        bench::JsonObject results;
        for (const Run& r : runs) {
            const double hidden = std::max(0.0, r.busy_s - r.exposed_s);
            const double comm_hidden = std::max(0.0, r.comm_s - r.exposed_s);
            const double per = 1e3 / chunks;
            std::printf("%6d %10.1f %12.1f %12.1f %12.1f %8.1f%% %12.1f %14.1f %12.2f %8s\n", r.groups, r.wall_s * per,
                        r.busy_s * per, r.exposed_s * per, hidden * per, r.busy_s > 0 ? 100 * hidden / r.busy_s : 0.0,
                        r.comm_s * per, comm_hidden * per, static_cast<double>(r.bytes) / chunks / 1e6,
                        r.identical ? "equal" : "DIFFER");
            bench::JsonObject j;
            j.add("chunk_ms", r.wall_s * per)
                .add("exchange_ms_per_chunk", r.busy_s * per)
                .add("exposed_ms_per_chunk", r.exposed_s * per)
                .add("hidden_ms_per_chunk", hidden * per)
                .add("comm_ms_per_chunk", r.comm_s * per)
                .add("comm_hidden_ms_per_chunk", comm_hidden * per)
                .add("bytes_per_chunk", static_cast<double>(r.bytes) / chunks)
                .add("latents_equal_to_groups_1", r.identical);
            results.add("overlap.g" + std::to_string(r.groups), j);
        }
        bench::JsonObject doc = bench::header("overlap_bench", out.commit);
        doc.add("ranks", n)
            .add("ulysses", U)
            .add("spatial", S)
            .add("dim", dim)
            .add("heads", heads)
            .add("layers", layers)
            .add("latent", std::to_string(lat_h) + "x" + std::to_string(lat_w))
            .add("chunks", chunks)
            .add("window", window)
            .add("policy", policy)
            .add("hardware", "CPU ranks of one host (MPI over shared memory)")
            .add("results", results);
        if (!out.json.empty()) LR_CHECK(bench::write_json(out.json, doc), "cannot write ", out.json);
    }
    int64_t differ = 0;
    for (const Run& r : runs) differ += r.identical ? 0 : 1;
    return differ == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(argc, argv); });
}
