// The Wan2.1 VAE streaming decode of longroll's CUDA decoder (CudaVaeStream) at the real channel counts, timed as
// bench/reference/sf_reference.py times the reference's WanVAE_.cached_decode:
//
//   vae.decode_chunk.<size>  3 latent frames -> 12 RGB frames, after a first chunk (3 latent frames -> 9 frames)
//                            has warmed the causal caches; the latents come from host memory (as the rollout's
//                            chunk callback gives them) and every frame is emitted as uint8 RGB in host memory,
//                            so the figure compares with the reference's `ms_to_host_u8` (decode, clamp, 8 bits,
//                            copy to the host); its `ms` (the decode alone) is the stricter yardstick
//
// Wall clock around decode() (it returns after its last frame was emitted), after --warmup chunks, median of
// --iters (1088p: --iters-1088). Weights drawn on the device (CudaVaeStream::with_random_weights, seeded).
// --conv-algo both also times each convolution kernel choice (keys ...implicit_gemm / ...im2col_gemm).
// Memory: the plan (weights + state_bytes) and the device memory in use after the runs minus before the stream was
// built (cudaMemGetInfo; the stream allocates everything up front).
//
//   vae_bench [--sizes 480p,1088p] [--iters 5] [--iters-1088 3] [--warmup 1] [--conv-algo default|both]
//             [--json FILE] [--commit SHA] [--seed N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "runtime/core/check.h"

#ifdef LONGROLL_HAS_CUDA
#include "runtime/vae/wan_vae_cuda.h"
#endif

namespace lr {
namespace {

constexpr int64_t kChunkFrames = 3;

struct Options : bench::TimingFlags, bench::OutputFlags {
    bool both_algos = false;
};

Options parse(int argc, char** argv) {
    Options o;
    o.iters_1088 = 3;
    o.seed = 20260503;
    bench::parse_flags(argc, argv,
                       "usage: vae_bench [--sizes 480p,1088p] [--iters N] [--iters-1088 N] [--warmup N]\n"
                       "                 [--conv-algo default|both] [--json FILE] [--commit SHA] [--seed N]\n",
                       o, [&](const std::string& a, const std::function<std::string()>& value) {
                           if (a != "--conv-algo") return o.take(a, value);
                           const std::string v = value();
                           LR_CHECK(v == "default" || v == "both", "--conv-algo: default or both, not '", v, "'");
                           o.both_algos = v == "both";
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

const char* algo_name(VaeConvAlgo a) { return a == VaeConvAlgo::kImplicitGemm ? "implicit_gemm" : "im2col_gemm"; }

void bench_size(const Options& o, const bench::Resolution& r, bench::JsonObject& out, std::vector<Row>& rows) {
    const WanVaeConfig cfg;  // Wan2.1: base 96 channels, decoder 384/384/384/192/96
    const bool big = r.height * r.width > 1000000;
    const int iters = big ? o.iters_1088 : o.iters;
    const int64_t h = r.latent_h(), w = r.latent_w();

    cudaStream_t stream = nullptr;
    LR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const size_t used0 = bench::device_used_bytes();
    const auto t_build = std::chrono::steady_clock::now();
    {
        CudaVaeStream vae = CudaVaeStream::with_random_weights(cfg, h, w, o.seed, VaeFrameFormat::kRgb24, stream);
        LR_CUDA_CHECK(cudaStreamSynchronize(stream));
        std::fprintf(stderr, "[vae_bench] %s: built in %.1f s (weights %.2f GiB, state %.2f GiB)\n", r.name.c_str(),
                     bench::seconds_since(t_build), bench::gib(vae.weight_bytes()), bench::gib(vae.state_bytes()));
        const auto latents =
            bench::gaussian(static_cast<size_t>(kChunkFrames * cfg.z_dim * h * w), o.seed + 1);  // [3, 16, h, w]
        int64_t emitted = 0;
        uint64_t checksum = 0;  // reads every frame, as a writer would
        const VaeFrameFn emit = [&](const VaeFrame& f) {
            ++emitted;
            checksum += f.rgb24[0] + f.rgb24[static_cast<size_t>(f.height * f.width * 3 - 1)];
        };

        std::vector<VaeConvAlgo> algos{vae.conv_algo()};
        if (o.both_algos) {
            algos = {VaeConvAlgo::kImplicitGemm, VaeConvAlgo::kIm2colGemm};
        }
        const VaeConvAlgo default_algo = vae.conv_algo();
        size_t used_peak = bench::device_used_bytes();
        for (const VaeConvAlgo algo : algos) {
            vae.set_conv_algo(algo);
            vae.reset();
            emitted = 0;
            vae.decode(latents.data(), kChunkFrames, emit);  // the stream's first chunk: warms the caches
            const int64_t first_frames = emitted;
            std::vector<double> samples;
            for (int i = 0; i < o.warmup + iters; ++i) {
                emitted = 0;
                const auto t0 = std::chrono::steady_clock::now();
                vae.decode(latents.data(), kChunkFrames, emit);
                const double ms = 1e3 * bench::seconds_since(t0);
                LR_ASSERT(emitted == 4 * kChunkFrames, "vae_bench: a chunk gave ", emitted, " frames");
                if (i >= o.warmup) samples.push_back(ms);
            }
            used_peak = std::max(used_peak, bench::device_used_bytes());
            const double peak = static_cast<double>(used_peak - used0);
            bench::JsonObject j;
            j.add("ms", bench::median(samples))
                .add("samples_ms", samples)
                .add("height", r.height)
                .add("width", r.width)
                .add("latent_frames", kChunkFrames)
                .add("frames", emitted)
                .add("first_chunk_frames", first_frames)
                .add("conv_algo", algo_name(algo))
                .add("latents", "host f32; frames emitted as host uint8 RGB")
                .add("iters", iters)
                .add("warmup", o.warmup)
                .add("weight_bytes", static_cast<uint64_t>(vae.weight_bytes()))
                .add("state_bytes", static_cast<uint64_t>(vae.state_bytes()))
                .add("planned_bytes", static_cast<uint64_t>(CudaVaeStream::device_bytes(cfg, h, w)))
                .add("peak_bytes", static_cast<uint64_t>(used_peak - used0))
                .add("checksum", checksum);
            std::string key = "vae.decode_chunk." + r.name;
            if (o.both_algos) key += std::string(".") + algo_name(algo);
            std::fprintf(stderr, "  %-44s %10.1f ms  peak %7.2f GiB\n", key.c_str(), bench::median(samples),
                         bench::gib(peak));
            rows.push_back({key, bench::median(samples), bench::gib(peak)});
            out.add(key, j);
            if (o.both_algos && algo == default_algo) {  // the default's figure under the plain key too
                out.add("vae.decode_chunk." + r.name, j);
                rows.push_back({"vae.decode_chunk." + r.name, bench::median(samples), bench::gib(peak)});
            }
        }
    }
    LR_CUDA_CHECK(cudaStreamDestroy(stream));
}

#endif  // LONGROLL_HAS_CUDA

int run(int argc, char** argv) {
    const Options o = parse(argc, argv);
    bench::JsonObject doc = bench::header("bench/vae_bench", o.commit);
#ifdef LONGROLL_HAS_CUDA
    LR_RUNTIME(bench::gpu_info().total_bytes > 0, "no CUDA device");
    LR_CUDA_CHECK(cudaFree(nullptr));  // create the context before the baseline readings
    bench::JsonObject results;
    std::vector<Row> rows;
    for (const auto& r : o.sizes) bench_size(o, r, results, rows);
    doc.add("dtype", "bf16 (fp32 accumulation)").add("seed", static_cast<uint64_t>(o.seed)).add("results", results);
    std::printf("\n%-46s %10s %9s   (longroll CUDA, %s)\n", "item", "median ms", "peak GiB",
                bench::gpu_info().name.c_str());
    for (const Row& row : rows) std::printf("%-46s %10.1f %9.2f\n", row.key.c_str(), row.ms, row.peak_gib);
    if (!o.json.empty() && !bench::write_json(o.json, doc)) return 1;
    return 0;
#else
    std::fprintf(stderr, "vae_bench: built without CUDA\n");
    return 1;
#endif
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    try {
        return lr::run(argc, argv);
    } catch (const lr::Error& e) {
        std::fprintf(stderr, "vae_bench: %s\n", e.what());
        return e.exit_code();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vae_bench: %s\n", e.what());
        return 1;
    }
}
