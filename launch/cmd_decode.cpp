// `longroll decode LATENTS --out FILE [--vae FILE]`: saved latents (generate --save-latents, or a resume checkpoint)
// to video, chunk by chunk through the streaming VAE, as generate decodes them. For debugging a run and for video
// from a latents-only run.
#include <cstdio>
#include <filesystem>
#include <optional>

#include "launch/cli.h"
#include "launch/cli_args.h"
#include "launch/config.h"
#include "launch/generate_inputs.h"
#include "launch/run_guard.h"
#include "launch/video_stage.h"
#include "runtime/core/check.h"
#include "runtime/io/safetensors.h"
#include "runtime/video/video_writer.h"

namespace lr {
namespace {

const std::vector<FlagSpec> kDecodeFlags = {
    {"vae", "FILE",
     "Wan2.1 VAE weights (.safetensors); default: the embedded tiny VAE (latents of the embedded model)"},
    {"out", "FILE", "output video, .mp4 (H.264) or .y4m"},
    {"fps", "N", "frame rate; default: the run's (the config saved in the latents file), else 16"},
    {"overwrite", "", "replace an existing output"},
};

}  // namespace

int cmd_decode(const std::vector<std::string>& args) {
    const ParsedArgs a = parse_args("decode", kDecodeFlags, args);
    if (a.has("help")) {
        std::printf("%s",
                    format_help("decode", "LATENTS.safetensors --out FILE [--vae FILE]",
                                "Decodes saved latents (tensor 'latents' [T, 16, H/8, W/8]) to a video.", kDecodeFlags)
                        .c_str());
        return 0;
    }
    LR_CHECK(a.positional().size() == 1, "longroll decode: expected one LATENTS file (see longroll decode --help)");
    const std::string path = a.positional()[0];
    LR_CHECK(a.get("out"), "longroll decode: --out FILE.mp4|FILE.y4m is required");
    const std::string out = *a.get("out");
    check_outputs({{out, "--out"}}, {{path, "LATENTS"}, {a.get("vae").value_or(""), "--vae"}}, a.has("overwrite"));
    std::vector<OutputLock> locks = lock_outputs({{out, "--out"}});

    const SafetensorsFile f = SafetensorsFile::open(path);
    const SafetensorsEntry* e = f.find("latents");
    LR_CHECK(e != nullptr, path, ": no tensor 'latents' (expected [T, C, H, W] from generate --save-latents)");
    const TensorView v = f.view(*e);
    LR_CHECK(v.dtype == DType::kF32 && v.ndim() == 4 && v.shape[0] > 0, path, ": tensor 'latents' is ", v.str(),
             ", expected F32 [T, C, H, W]");
    // The run's config, when saved with the latents: frame rate, crop and chunk length as the run had them.
    std::optional<Config> run;
    if (const std::string* text = f.metadata_value("config")) run = parse_config_text(*text, path + " (its config)");
    VideoSpec spec;
    spec.width = static_cast<int>(v.shape[3] * 8);
    spec.height = static_cast<int>(v.shape[2] * 8);
    spec.fps = run ? run->video.fps : 16;
    if (auto fps = a.get_int("fps", 1, 1000)) spec.fps = static_cast<int>(*fps);
    if (run && run->video.height == spec.height) spec.crop_height = run->video.crop_height;
    if (run) {
        spec.crf = run->output.crf;
        spec.preset = run->output.preset;
    }
    const int64_t fpc = run ? run->rollout.frames_per_chunk : 3;

    const LoadedVae vae = load_vae(a.get("vae"), /*model_embedded=*/!a.has("vae"), /*need_video=*/true);
    const LatentFrameShape shape{v.shape[1], v.shape[2], v.shape[3]};
    std::unique_ptr<VideoWriter> writer = make_async_writer(open_video_writer(out, spec));
    int64_t frames = 0;
    {
        DitVideoSink sink(*vae.decoder, *writer, shape, [&](const ChunkVideo& c) { frames += c.frames; });
        for (int64_t start = 0, c = 0; start < v.shape[0]; start += fpc, ++c) {
            sink.push(RolloutChunk{c, start, std::min(fpc, v.shape[0] - start),
                                   static_cast<const float*>(v.data) + start * shape.numel()});
        }
        sink.finish();
    }
    writer->finish();
    std::fprintf(stderr, "decoded %lld latent frames into %lld video frames; wrote %s\n",
                 static_cast<long long>(v.shape[0]), static_cast<long long>(frames), out.c_str());
    return 0;
}

}  // namespace lr
