// End to end on one GPU, as `longroll generate --device cuda` runs it: the Self-Forcing rollout of the 1.3B DiT
// (CudaRollout, 21-frame KV window, highest-priority stream) -> each chunk's latents pushed to a VaePipeline whose
// thread decodes them with CudaVaeStream (its own lowest-priority stream) while the DiT makes the next chunk -> the
// video writer (asynchronous encoder thread, MP4 when the build has libav, else Y4M) -> a file. Weights are random
// (seeded), so the video is noise; the work per frame is the real one.
//
// Reports the sustained video frame rate once the KV window is full (chunk 6 on: 18 frames cached before each
// chunk) while the DiT runs: the frames of chunks 6 .. N-4 over the time from the end of chunk 5's decode to the
// end of chunk N-4's (the last 3 chunks drain the VAE queue after the DiT is done; the writer's queue is bounded,
// so an encoder that falls behind slows the decodes down and is counted), plus the median per-chunk rate, the overall
// rate, the time to the first frame, the DiT's GPU time per chunk (the rollout's step observer: 5 forwards), the VAE
// decode and hand-over time per chunk, and the device memory in use minus before the model was built (sampled after
// every chunk; everything is planned up front).
//
// --policy runs an attention policy (bench/policies.h: the config defaults' budgets, 128-token tiles; FORCING_KV with
// its own ring of pages and every other head static) instead of DENSE; --chunks 80 --size 1088p is a minute of
// 1088p video (240 latent frames, 960 frames at 16 FPS).
//
//   e2e_bench [--size 480p] [--chunks 20] [--policy DENSE] [--out FILE.mp4|.y4m] [--preset veryfast] [--keep]
//             [--json FILE] [--commit SHA] [--seed N]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/policies.h"
#include "cache/tile_layout.h"
#include "runtime/core/check.h"
#include "runtime/video/video_writer.h"

#ifdef LONGROLL_HAS_CUDA
#include "runtime/model/wan_model_cuda.h"
#include "runtime/rollout/noise.h"
#include "runtime/rollout/rollout_cuda.h"
#include "runtime/vae/vae_pipeline.h"
#include "runtime/vae/wan_vae_cuda.h"
#endif

namespace lr {
namespace {

constexpr int64_t kChunkFrames = 3;
constexpr int64_t kWindowFrames = 21;
constexpr int64_t kFirstFullChunk = (kWindowFrames - kChunkFrames) / kChunkFrames;  // 6: 18 frames cached before it
constexpr size_t kDrainChunks = 3;  // chunks still queued for the VAE when the DiT finishes

struct Options : bench::OutputFlags {
    bench::Resolution size = bench::parse_resolution("480p");
    int64_t chunks = 20;
    std::string out;
    std::string preset;  // empty: the writer's default
    std::string policy = "DENSE";
    bool keep = false;
};

Options parse(int argc, char** argv) {
    Options o;
    o.seed = 20260504;
    bench::parse_flags(argc, argv,
                       "usage: e2e_bench [--size 480p|1088p|WxH] [--chunks N] [--policy NAME] [--out FILE.mp4|.y4m]\n"
                       "                 [--preset P] [--keep] [--json FILE] [--commit SHA] [--seed N]\n",
                       o, [&](const std::string& a, const std::function<std::string()>& value) {
                           if (a == "--size")
                               o.size = bench::parse_resolution(value());
                           else if (a == "--chunks")
                               o.chunks = std::stoll(value());
                           else if (a == "--out")
                               o.out = value();
                           else if (a == "--preset")
                               o.preset = value();
                           else if (a == "--policy")
                               o.policy = value();
                           else if (a == "--keep")
                               o.keep = true;
                           else
                               return false;
                           return true;
                       });
    LR_CHECK(o.chunks > kFirstFullChunk, "--chunks must be more than ", kFirstFullChunk,
             " (the chunks before the window is full are not counted as sustained)");
    return o;
}

#ifdef LONGROLL_HAS_CUDA

struct ChunkRecord {
    int64_t frames = 0;
    double end_s = 0;   // since the start of run(), when the chunk's frames were handed to the writer
    double vae_s = 0;   // decode() on the pipeline thread, emits (writer hand-over) included
    double dit_ms = 0;  // GPU time of the chunk's forwards (step observer)
};

int run_e2e(const Options& o) {
    const bench::Resolution& r = o.size;
    const int64_t h = r.latent_h(), w = r.latent_w();
    const WanModelConfig cfg = bench::wan_config("1.3b");
    RolloutOptions ro;
    ro.frames_per_chunk = kChunkFrames;
    ro.block_size = 128;
    const TileLayout tiles(h / cfg.dims.patch[1], w / cfg.dims.patch[2], tile_shape_for_block(ro.block_size));
    ro.policy = bench::policy_config(o.policy, tiles.tiles_per_frame(), cfg.dims.num_layers, cfg.dims.num_heads);
    ro.local_attn_size = bench::policy_window_frames(ro.policy);
    ro.sink_size = bench::policy_sink_frames(ro.policy);
    RolloutShape shape{o.chunks * kChunkFrames, h, w};

    std::string path = o.out;
    if (path.empty()) {
        path =
            (std::filesystem::temp_directory_path() / ("longroll_e2e_" + r.name + (mp4_supported() ? ".mp4" : ".y4m")))
                .string();
    }
    VideoSpec spec;
    spec.width = static_cast<int>(r.width);
    spec.height = static_cast<int>(r.height);
    spec.fps = 16;
    spec.crop_height = r.height == 1088 ? 1080 : 0;
    if (!o.preset.empty()) spec.preset = o.preset;

    LR_CUDA_CHECK(cudaFree(nullptr));
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const size_t used0 = bench::device_used_bytes();
    const auto t_build = std::chrono::steady_clock::now();
    CudaWanModel model = CudaWanModel::with_random_weights(cfg, CudaRollout::model_options(ro, shape, false), o.seed);
    CudaRollout rollout(model, ro, shape);
    cudaStream_t vae_stream = nullptr;
    int least_priority = 0, greatest_priority = 0;  // the VAE behind the DiT, as generate runs it
    LR_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least_priority, &greatest_priority));
    LR_CUDA_CHECK(cudaStreamCreateWithPriority(&vae_stream, cudaStreamNonBlocking, least_priority));
    double peak = 0;
    std::vector<ChunkRecord> rec(static_cast<size_t>(rollout.num_chunks()));
    double build_s = 0, total_s = 0, first_frame_s = -1, finish_s = 0, density_sum = 0;
    uint64_t kv_held = 0;
    int64_t density_chunks = 0;
    int64_t frames_total = 0;
    {
        CudaVaeStream vae =
            CudaVaeStream::with_random_weights(WanVaeConfig{}, h, w, o.seed + 1, VaeFrameFormat::kRgb24, vae_stream);
        std::unique_ptr<VideoWriter> writer = make_async_writer(open_video_writer(path, spec));
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        build_s = bench::seconds_since(t_build);
        size_t used_peak = bench::device_used_bytes();
        std::fprintf(stderr, "[e2e_bench] %s: built in %.1f s; %lld chunks -> %s\n", r.name.c_str(), build_s,
                     static_cast<long long>(rollout.num_chunks()), path.c_str());

        const SeededNoise noise(o.seed + 2, rollout.channels(), h, w);
        const auto context = bench::gaussian(static_cast<size_t>(120 * 4096), o.seed + 3);
        const std::vector<PromptSegment> prompts{
            PromptSegment{0, TensorView(const_cast<float*>(context.data()), DType::kF32, Shape{120, 4096})}};
        rollout.set_step_observer([&](int64_t chunk, int64_t, double seconds) {
            if (chunk >= 0 && chunk < static_cast<int64_t>(rec.size()))
                rec[static_cast<size_t>(chunk)].dit_ms += 1e3 * seconds;
        });

        const auto t0 = std::chrono::steady_clock::now();
        // As `longroll generate` runs it: the decode of chunk k on a pipeline thread (the VAE's own low-priority
        // stream) while the DiT makes chunk k + 1; frames go to the asynchronous writer from that thread.
        VaePipeline pipeline(
            [&](const float* latents, int64_t frames, const VaeFrameFn& emit) {
                const int64_t before = vae.frames_emitted();
                vae.decode(latents, frames, emit);
                return vae.frames_emitted() - before;
            },
            rollout.channels(), h, w,
            [&](const VaeFrame& f) {
                writer->write_frame(f.rgb24, f.width * 3);
                if (first_frame_s < 0) first_frame_s = bench::seconds_since(t0);
            },
            [&](const VaeChunkDone& d) {
                ChunkRecord& cr = rec[static_cast<size_t>(d.index)];
                cr.frames = d.frames;
                cr.vae_s = d.seconds;
                cr.end_s = bench::seconds_since(t0);
                frames_total += d.frames;
            });
        rollout.run(prompts, noise, [&](const RolloutChunk& c) {
            pipeline.push(c.index, c.latents, c.num_frames);
            used_peak = std::max(used_peak, bench::device_used_bytes());
            if (c.index >= kFirstFullChunk) {
                density_sum += model.attention_stats().density();
                kv_held = std::max<uint64_t>(kv_held, static_cast<uint64_t>(model.attention_stats().kv_bytes_held));
                ++density_chunks;
            }
            if ((c.index + 1) % 10 == 0)
                std::fprintf(stderr, "[e2e_bench] chunk %lld/%lld at %.1f s\n", static_cast<long long>(c.index + 1),
                             static_cast<long long>(rollout.num_chunks()), bench::seconds_since(t0));
        });
        pipeline.finish();
        writer->finish();
        total_s = bench::seconds_since(t0);
        finish_s = total_s - rec.back().end_s;
        used_peak = std::max(used_peak, bench::device_used_bytes());
        peak = static_cast<double>(used_peak - used0);
    }
    LR_CUDA_CHECK(cudaStreamDestroy(vae_stream));
    if (!o.keep && o.out.empty()) std::filesystem::remove(path);

    // sustained: chunks with a full window while the DiT still runs. The last kDrainChunks chunks are left out:
    // once the DiT is done, the decodes queued behind it (VaePipeline's 2 waiting + 1 decoding) finish without
    // the DiT beside them, faster than the steady state would. The per-chunk rates cover every full-window chunk.
    int64_t steady_frames = 0;
    std::vector<double> chunk_fps, dit_ms, vae_ms;
    const size_t first = static_cast<size_t>(kFirstFullChunk);
    const size_t steady_end = rec.size() > first + kDrainChunks ? rec.size() - kDrainChunks : rec.size();
    for (size_t k = first; k < rec.size(); ++k) {
        if (k < steady_end) steady_frames += rec[k].frames;
        chunk_fps.push_back(rec[k].frames / (rec[k].end_s - rec[k - 1].end_s));
        dit_ms.push_back(rec[k].dit_ms);
        vae_ms.push_back(1e3 * rec[k].vae_s);
    }
    const double steady_s = (steady_end == rec.size() ? total_s : rec[steady_end - 1].end_s) - rec[first - 1].end_s;
    const double fps_sustained = steady_frames / steady_s;
    std::vector<double> end_s;
    for (const auto& c : rec) end_s.push_back(c.end_s);

    bench::JsonObject j;
    j.add("fps_sustained", fps_sustained)
        .add("fps_median_chunk", bench::median(chunk_fps))
        .add("fps_overall", frames_total / total_s)
        .add("ms", 1e3 * steady_s / static_cast<double>(steady_end - first))
        .add("frames", frames_total)
        .add("sustained_frames", steady_frames)
        .add("sustained_from_chunk", kFirstFullChunk)
        .add("chunks", static_cast<int64_t>(rec.size()))
        .add("seconds", total_s)
        .add("first_frame_seconds", first_frame_s)
        .add("finish_seconds", finish_s)
        .add("build_seconds", build_s)
        .add("dit_ms_median", bench::median(dit_ms))
        .add("vae_ms_median", bench::median(vae_ms))
        .add("chunk_end_seconds", end_s)
        .add("policy", o.policy)
        .add("density", ro.policy.kind == BlockPolicyKind::kDense || density_chunks == 0
                            ? 1.0
                            : density_sum / static_cast<double>(density_chunks))
        .add("kv_bytes_held",
             ro.policy.kind == BlockPolicyKind::kDense ? static_cast<uint64_t>(model.kv_bytes()) : kv_held)
        .add("height", r.height)
        .add("width", r.width)
        .add("window_frames", ro.local_attn_size)
        .add("output", mp4_supported() && path.size() > 4 && path.substr(path.size() - 4) == ".mp4" ? "mp4" : "y4m")
        .add("preset", spec.preset)
        .add("weight_bytes", static_cast<uint64_t>(model.weight_bytes()))
        .add("kv_cache_bytes", static_cast<uint64_t>(model.kv_bytes()))
        .add("peak_bytes", static_cast<uint64_t>(peak));
    const std::string key = o.policy == "DENSE" ? "e2e." + r.name : "e2e." + o.policy + "." + r.name;
    bench::JsonObject results;
    results.add(key, j);
    bench::JsonObject doc = bench::header("bench/e2e_bench", o.commit);
    doc.add("dtype", "bf16 (fp32 accumulation)").add("seed", static_cast<uint64_t>(o.seed)).add("results", results);

    std::printf("\n%-28s %9s %9s %9s %9s %9s %9s %9s %9s   (longroll CUDA, %s)\n", "item", "fps sust.", "fps chunk",
                "fps all", "DiT ms", "VAE ms", "1st frame", "wall s", "peak GiB", bench::gpu_info().name.c_str());
    std::printf("%-28s %9.1f %9.1f %9.1f %9.1f %9.1f %9.2f %9.1f %9.2f\n", key.c_str(), fps_sustained,
                bench::median(chunk_fps), frames_total / total_s, bench::median(dit_ms), bench::median(vae_ms),
                first_frame_s, total_s, bench::gib(peak));
    if (!o.json.empty() && !bench::write_json(o.json, doc)) return 1;
    return 0;
}

#endif  // LONGROLL_HAS_CUDA

int run(int argc, char** argv) {
    const Options o = parse(argc, argv);
#ifdef LONGROLL_HAS_CUDA
    LR_RUNTIME(bench::gpu_info().total_bytes > 0, "no CUDA device");
    return run_e2e(o);
#else
    (void)o;
    std::fprintf(stderr, "e2e_bench: built without CUDA\n");
    return 1;
#endif
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    try {
        return lr::run(argc, argv);
    } catch (const lr::Error& e) {
        std::fprintf(stderr, "e2e_bench: %s\n", e.what());
        return e.exit_code();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "e2e_bench: %s\n", e.what());
        return 1;
    }
}
