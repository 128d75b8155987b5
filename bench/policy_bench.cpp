// The DiT chunk step of the CUDA model at the Wan2.1 1.3B shapes under each attention policy (DESIGN.md section 6;
// seeded random weights), against DENSE in the same run: per policy and size,
//
//   policy.<POLICY>.full_window_chunk.<size>  a chunk (4 denoising forwards + the clean pass) in the steady state
//                                            of the window: 6 chunks cached by clean passes (chunk indices and
//                                            denoising steps passed, so that Light Forcing's growth and LVSA's
//                                            rotation follow the rollout), then timed chunks that evict
//
// with the share of the window's blocks the tables read (density), the K/V bytes held and planned, and the peak
// device memory. The window is Self-Forcing's 21 frames (no sink); FORCING_KV sets its own (sink 1 + a ring of 1
// + the chunk, plus the dynamic heads' segments) and, with no trained model to profile, marks every other head
// static. Budgets are the config's defaults (auto), resolved here as launch/generate_inputs.cpp does.
//
//   policy_bench [--sizes 480p,1088p] [--policies DENSE,SPARSE_FORCING,LIGHT_FORCING,LVSA,FORCING_KV]
//                [--iters 3] [--iters-1088 2] [--warmup 1] [--json FILE] [--commit SHA] [--seed N]
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/policies.h"
#include "cache/block_policy.h"
#include "cache/tile_layout.h"
#include "runtime/core/check.h"

#ifdef LONGROLL_HAS_CUDA
#include "bench/chunk_step.h"
#include "runtime/model/wan_model_cuda.h"
#endif

namespace lr {
namespace {

constexpr int64_t kWindowFrames = 21;

struct Options : bench::TimingFlags, bench::OutputFlags {
    std::vector<std::string> policies{"DENSE", "SPARSE_FORCING", "LIGHT_FORCING", "LVSA", "FORCING_KV"};
};

Options parse(int argc, char** argv) {
    Options o;
    o.seed = 20260501;
    o.iters = 3;
    bench::parse_flags(argc, argv,
                       "usage: policy_bench [--sizes 480p,1088p] [--policies DENSE,SPARSE_FORCING,...] [--iters N]\n"
                       "                    [--iters-1088 N] [--warmup N] [--json FILE] [--commit SHA] [--seed N]\n",
                       o, [&](const std::string& a, const std::function<std::string()>& value) {
                           if (a != "--policies") return o.take(a, value);
                           o.policies.clear();
                           std::stringstream ss(value());
                           for (std::string p; std::getline(ss, p, ',');) o.policies.push_back(p);
                           return true;
                       });
    o.check();
    return o;
}

#ifdef LONGROLL_HAS_CUDA

struct Row {
    std::string key;
    double ms = 0, density = 1, kv_held_gib = 0, kv_planned_gib = 0, peak_gib = 0;
};

void bench_policy(const Options& o, const std::string& name, const bench::Resolution& r, bench::JsonObject& out,
                  std::vector<Row>& rows) {
    const WanModelConfig cfg = bench::wan_config("1.3b");
    const int iters = r.height * r.width > 1000000 ? o.iters_1088 : o.iters;
    CudaModelOptions mo;
    mo.height = r.latent_h();
    mo.width = r.latent_w();
    mo.max_forward_frames = bench::kChunkFrames;
    mo.rope = RopePositions::kAbsolute;
    mo.kv_block_size = 128;
    const TileLayout tiles(mo.height / 2, mo.width / 2, tile_shape_for_block(128));
    mo.policy = bench::policy_config(name, tiles.tiles_per_frame(), cfg.dims.num_layers, cfg.dims.num_heads);
    const int64_t chunks_cached = kWindowFrames / bench::kChunkFrames - 1;
    const int64_t run_frames = (chunks_cached + o.warmup + iters) * bench::kChunkFrames;
    mo.frames_per_chunk = bench::kChunkFrames;
    mo.run_frames = run_frames;
    mo.window_frames = bench::policy_window_frames(mo.policy);
    mo.sink_frames = bench::policy_sink_frames(mo.policy);
    mo.max_frames = mo.window_frames == -1 ? run_frames : kWindowFrames;

    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const size_t used0 = bench::device_used_bytes();
    CudaWanModel m = CudaWanModel::with_random_weights(cfg, mo, o.seed);
    bench::ChunkStep step(m, cfg, mo.height, mo.width, o.seed + 7);
    const cudaStream_t s = m.stream();
    bench::EventTimer timer;
    // The steady state: 6 chunks cached by their clean passes, then timed chunks (each evicts 3 frames).
    m.reset_cache(0);
    for (int64_t c = 0; c < chunks_cached; ++c) step.clean_pass(c * bench::kChunkFrames);
    std::vector<double> samples;
    double density = 0;
    int64_t held = 0;
    int64_t start = chunks_cached * bench::kChunkFrames;
    for (int i = 0; i < o.warmup + iters; ++i, start += bench::kChunkFrames) {
        timer.start(s);
        step.chunk(start);
        timer.stop(s);
        const double ms = timer.ms();
        if (i >= o.warmup) {
            samples.push_back(ms);
            density += m.attention_stats().density() / iters;
            held = m.attention_stats().kv_bytes_held;
        }
    }
    const size_t peak = bench::device_used_bytes() - used0;
    if (mo.policy.kind == BlockPolicyKind::kDense) {
        density = 1.0;
        held = static_cast<int64_t>(m.kv_bytes());
    }
    const std::string key = "policy." + name + ".full_window_chunk." + r.name;
    bench::JsonObject j;
    j.add("ms", bench::median(samples))
        .add("samples_ms", samples)
        .add("policy", name)
        .add("height", r.height)
        .add("width", r.width)
        .add("tiles_per_frame", tiles.tiles_per_frame())
        .add("window_frames", mo.window_frames)
        .add("density", density)
        .add("kv_bytes_held", static_cast<uint64_t>(held))
        .add("kv_pool_bytes", static_cast<uint64_t>(m.kv_bytes()))
        .add("planned_bytes", static_cast<uint64_t>(CudaWanModel::device_bytes(cfg, mo)))
        .add("peak_bytes", static_cast<uint64_t>(peak))
        .add("iters", iters)
        .add("warmup", o.warmup);
    out.add(key, j);
    rows.push_back({key, bench::median(samples), density, bench::gib(static_cast<double>(held)),
                    bench::gib(static_cast<double>(m.kv_bytes())), bench::gib(static_cast<double>(peak))});
    std::fprintf(stderr, "  %-48s %10.1f ms  density %.3f  KV held %.2f GiB  peak %.2f GiB\n", key.c_str(),
                 bench::median(samples), density, bench::gib(static_cast<double>(held)),
                 bench::gib(static_cast<double>(peak)));
}

#endif  // LONGROLL_HAS_CUDA

int run(int argc, char** argv) {
    const Options o = parse(argc, argv);
    bench::JsonObject doc = bench::header("bench/policy_bench", o.commit);
#ifdef LONGROLL_HAS_CUDA
    LR_RUNTIME(bench::gpu_info().total_bytes > 0, "no CUDA device");
    LR_CUDA_CHECK(cudaFree(nullptr));
    bench::JsonObject results;
    std::vector<Row> rows;
    for (const auto& r : o.sizes)
        for (const std::string& p : o.policies) bench_policy(o, p, r, results, rows);
    doc.add("dtype", "bf16 (fp32 accumulation)").add("seed", static_cast<uint64_t>(o.seed)).add("results", results);
    std::printf("\n%-50s %10s %8s %9s %9s %9s   (longroll CUDA, %s)\n", "item", "median ms", "density", "KV held",
                "KV pools", "peak GiB", bench::gpu_info().name.c_str());
    for (const Row& row : rows)
        std::printf("%-50s %10.1f %8.3f %9.2f %9.2f %9.2f\n", row.key.c_str(), row.ms, row.density, row.kv_held_gib,
                    row.kv_planned_gib, row.peak_gib);
    if (!o.json.empty() && !bench::write_json(o.json, doc)) return 1;
    return 0;
#else
    std::fprintf(stderr, "policy_bench: built without CUDA\n");
    return 1;
#endif
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    try {
        return lr::run(argc, argv);
    } catch (const lr::Error& e) {
        std::fprintf(stderr, "policy_bench: %s\n", e.what());
        return e.exit_code();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "policy_bench: %s\n", e.what());
        return 1;
    }
}
