// The DiT chunk step of longroll's CUDA model at the Wan2.1 1.3B shapes (and 14B at 480p on request), timed the way
// bench/reference/sf_reference.py times Self-Forcing's PyTorch model, so that bench/summarize.py can divide one by
// the other:
//
//   dit.first_chunk.<size>        a chunk with an empty KV cache: encode the prompt (the reference computes its
//                                 cross-attention K/V in the chunk's first forward), 4 denoising forwards at the
//                                 warped timesteps with the flow-matching step between them on the device
//                                 (launch_flow_to_x0 / launch_add_noise, as CudaRollout), then the clean pass at
//                                 t = 0 that rewrites the chunk's K/V: 5 forwards over 3 latent frames
//   dit.full_window_chunk.<size>  the same chunk in the steady state of a 21-frame window: 18 frames cached (by 6
//                                 clean passes before timing), the chunk makes 21; each timed chunk starts 3
//                                 frames after the previous one, so all but the first evict 3 frames
//
// CUDA events on the model's stream, after --warmup chunks, median of --iters (1088p: --iters-1088). Weights are
// drawn on the device (CudaWanModel::with_random_weights, seeded). Memory: the plan's bytes (weights, KV pools,
// activations) and the device memory in use after the runs minus before the model was built (cudaMemGetInfo; the
// model allocates everything up front, so that is its peak).
//
//   dit_bench [--sizes 480p,1088p] [--iters 5] [--iters-1088 2] [--warmup 1] [--with-14b] [--json FILE]
//             [--commit SHA] [--seed N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "runtime/core/check.h"

#ifdef LONGROLL_HAS_CUDA
#include "bench/chunk_step.h"
#include "runtime/model/wan_model_cuda.h"
#endif

namespace lr {
namespace {

using bench::ChunkStep;
using bench::kChunkFrames;
constexpr int64_t kWindowFrames = 21;
constexpr int64_t kCachedFrames = kWindowFrames - kChunkFrames;

struct Options : bench::TimingFlags, bench::OutputFlags {
    bool with_14b = false;
};

Options parse(int argc, char** argv) {
    Options o;
    o.seed = 20260501;
    bench::parse_flags(argc, argv,
                       "usage: dit_bench [--sizes 480p,1088p] [--iters N] [--iters-1088 N] [--warmup N] [--with-14b]\n"
                       "                 [--json FILE] [--commit SHA] [--seed N]\n",
                       o, [&](const std::string& a, const std::function<std::string()>& value) {
                           if (a != "--with-14b") return o.take(a, value);
                           o.with_14b = true;
                           return true;
                       });
    o.check();
    return o;
}

#ifdef LONGROLL_HAS_CUDA

struct Row {
    std::string key;
    double ms = 0;
    double peak_gib = 0;
};

void bench_model(const Options& o, const std::string& model_name, const bench::Resolution& r, bench::JsonObject& out,
                 std::vector<Row>& rows) {
    const WanModelConfig cfg = bench::wan_config(model_name);
    const bool big = r.height * r.width > 1000000;
    const int iters = big ? o.iters_1088 : o.iters;
    CudaModelOptions mo;
    mo.height = r.latent_h();
    mo.width = r.latent_w();
    mo.max_forward_frames = kChunkFrames;
    mo.window_frames = kWindowFrames;
    mo.sink_frames = 0;
    mo.max_frames = kWindowFrames;
    mo.rope = RopePositions::kAbsolute;

    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const size_t used0 = bench::device_used_bytes();
    const auto t_build = std::chrono::steady_clock::now();
    CudaWanModel m = CudaWanModel::with_random_weights(cfg, mo, o.seed);
    ChunkStep step(m, cfg, mo.height, mo.width, o.seed + 7);
    LR_CUDA_CHECK(cudaStreamSynchronize(m.stream()));
    std::fprintf(stderr, "[dit_bench] %s %s: built in %.1f s (weights %.2f GiB, KV %.2f GiB, activations %.2f GiB)\n",
                 model_name.c_str(), r.name.c_str(), bench::seconds_since(t_build), bench::gib(m.weight_bytes()),
                 bench::gib(m.kv_bytes()), bench::gib(m.activation_bytes()));
    const cudaStream_t s = m.stream();
    const std::string prefix = model_name == "1.3b" ? "dit" : "dit" + model_name;
    bench::EventTimer timer;
    size_t used_peak = bench::device_used_bytes();

    auto record = [&](const std::string& item, const std::vector<double>& samples, int64_t cached) {
        used_peak = std::max(used_peak, bench::device_used_bytes());
        bench::JsonObject j;
        j.add("ms", bench::median(samples))
            .add("samples_ms", samples)
            .add("model", model_name)
            .add("height", r.height)
            .add("width", r.width)
            .add("latent_frames", kChunkFrames)
            .add("forwards", step.forwards())
            .add("tokens_per_frame", m.tokens_per_frame())
            .add("window_frames", kWindowFrames)
            .add("cached_frames", cached)
            .add("iters", iters)
            .add("warmup", o.warmup)
            .add("weight_bytes", static_cast<uint64_t>(m.weight_bytes()))
            .add("kv_cache_bytes", static_cast<uint64_t>(m.kv_bytes()))
            .add("activation_bytes", static_cast<uint64_t>(m.activation_bytes()))
            .add("planned_bytes", static_cast<uint64_t>(CudaWanModel::device_bytes(cfg, mo)))
            .add("cuda_graph_replays", static_cast<uint64_t>(m.graph_stats().replayed))
            .add("eager_forwards", static_cast<uint64_t>(m.graph_stats().eager))
            .add("peak_bytes", static_cast<uint64_t>(used_peak - used0));
        const std::string key = prefix + "." + item + "." + r.name;
        std::fprintf(stderr, "  %-36s %10.1f ms  peak %7.2f GiB\n", key.c_str(), bench::median(samples),
                     bench::gib(static_cast<double>(used_peak - used0)));
        out.add(key, j);
        rows.push_back({key, bench::median(samples), bench::gib(static_cast<double>(used_peak - used0))});
    };

    // first chunk: empty cache, prompt encoded inside the timed region
    std::vector<double> samples;
    for (int i = 0; i < o.warmup + iters; ++i) {
        m.reset_cache(0);
        timer.start(s);
        step.encode_prompt();
        step.chunk(0);
        timer.stop(s);
        const double ms = timer.ms();
        if (i >= o.warmup) samples.push_back(ms);
    }
    record("first_chunk", samples, 0);

    // steady state of the window: 18 frames cached, then chunks at 18, 21, 24, ...
    m.reset_cache(0);
    for (int64_t f = 0; f < kCachedFrames; f += kChunkFrames) step.clean_pass(f);
    samples.clear();
    int64_t start = kCachedFrames;
    for (int i = 0; i < o.warmup + iters; ++i, start += kChunkFrames) {
        timer.start(s);
        step.chunk(start);
        timer.stop(s);
        const double ms = timer.ms();
        if (i >= o.warmup) samples.push_back(ms);
    }
    record("full_window_chunk", samples, kCachedFrames);
}

#endif  // LONGROLL_HAS_CUDA

int run(int argc, char** argv) {
    const Options o = parse(argc, argv);
    bench::JsonObject doc = bench::header("bench/dit_bench", o.commit);
#ifdef LONGROLL_HAS_CUDA
    LR_RUNTIME(bench::gpu_info().total_bytes > 0, "no CUDA device");
    LR_CUDA_CHECK(cudaFree(nullptr));  // create the context before the baseline readings
    bench::JsonObject results;
    std::vector<Row> rows;
    for (const auto& r : o.sizes) bench_model(o, "1.3b", r, results, rows);
    if (o.with_14b) bench_model(o, "14b", bench::parse_resolution("480p"), results, rows);
    doc.add("dtype", "bf16 (fp32 accumulation)").add("seed", static_cast<uint64_t>(o.seed)).add("results", results);
    std::printf("\n%-38s %10s %9s   (longroll CUDA, %s)\n", "item", "median ms", "peak GiB",
                bench::gpu_info().name.c_str());
    for (const Row& row : rows) std::printf("%-38s %10.1f %9.2f\n", row.key.c_str(), row.ms, row.peak_gib);
    if (!o.json.empty() && !bench::write_json(o.json, doc)) return 1;
    return 0;
#else
    std::fprintf(stderr, "dit_bench: built without CUDA\n");
    return 1;
#endif
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    try {
        return lr::run(argc, argv);
    } catch (const lr::Error& e) {
        std::fprintf(stderr, "dit_bench: %s\n", e.what());
        return e.exit_code();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "dit_bench: %s\n", e.what());
        return 1;
    }
}
