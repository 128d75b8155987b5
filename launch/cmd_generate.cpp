// `longroll generate`: config -> inputs -> rollout -> streamed video.
//
// Everything the user gave is checked before any work starts (config, lengths, weights, prompt
// embeddings, the output path), so a bad input costs seconds and leaves nothing on disk. The output is
// written under a temporary name and renamed when complete; the effective config is saved next to it.
//
// The DiT rollout and the VAE decoder arrive with their issues; until then the frames are a deterministic
// test pattern and the run says so. The rest of the pipeline (config, weights, chunk loop, progress,
// streamed encoding on a background thread, outputs) is the real one.
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "dist/process.h"
#include "launch/cli.h"
#include "launch/cli_args.h"
#include "launch/config.h"
#include "launch/generate_plan.h"
#include "runtime/core/build_info.h"
#include "runtime/core/check.h"
#include "runtime/core/device.h"
#include "runtime/core/progress.h"
#include "runtime/io/safetensors.h"
#include "runtime/model/wan_weights.h"
#include "runtime/video/video_writer.h"

namespace lr {
namespace {

const std::vector<FlagSpec> kGenerateFlags = {
    {"config", "FILE", "run config (protobuf text format); default: the embedded tiny model"},
    {"set", "PATH=VALUE", "override a config field, e.g. rollout.local_attn_size=12", true},
    {"weights", "FILE", "DiT weights (.safetensors or .safetensors.index.json); default: embedded tiny model"},
    {"vae", "FILE", "Wan2.1 VAE weights (.safetensors)"},
    {"prompt-embeds", "FILE", "text encoder output: tensor 'context' [L <= text_len, text_dim]"},
    {"size", "WxH", "video size in pixels (multiples of 16), e.g. 832x480; sets video.width/height"},
    {"latent-frames", "N", "latent frames to generate (a multiple of rollout.frames_per_chunk)"},
    {"seconds", "S", "seconds of video to generate (rounded up to whole chunks); default about 5 s"},
    {"seed", "N", "seed of the noise generator (sets runtime.seed)"},
    {"device", "cpu|cuda", "where to run (sets runtime.device); default: cuda when a GPU is visible"},
    {"out", "FILE", "output video, .mp4 (H.264) or .y4m"},
    {"save-latents", "FILE", "also save the generated latents as safetensors (tensor 'latents')"},
    {"noise", "FILE", "replay another run's noise (tensors 'noise' and 'step_noise')"},
    {"metrics-port", "P|0|off", "Prometheus exporter base port (+ local rank); 0 = ephemeral (sets monitoring)"},
    {"metrics-bind", "ADDR", "address the exporter binds (sets monitoring.bind)"},
    {"resume", "", "continue an interrupted run from its rollout checkpoint"},
    {"print-config", "", "print the effective config to stdout before generating"},
    {"quiet", "", "no progress output"},
};

struct Size {
    int width = 0;
    int height = 0;
};

Size parse_size(const std::string& s) {
    int w = 0, h = 0;
    char tail = 0;
    LR_CHECK(std::sscanf(s.c_str(), "%dx%d%c", &w, &h, &tail) == 2 && w > 0 && h > 0, "--size '", s,
             "': expected WIDTHxHEIGHT in pixels, e.g. 832x480");
    LR_CHECK(w % 16 == 0 && h % 16 == 0, "--size ", s,
             ": width and height must be multiples of 16 (the VAE downsamples by 8, the patch by 2); "
             "for 1080p use 1920x1088 with video.crop_height=1080");
    LR_CHECK(w <= 8192 && h <= 8192, "--size ", s, ": at most 8192 pixels per side");
    return {w, h};
}

// Applies the flags that set config fields. They come after the file and --set, so they win.
void apply_flags(const ParsedArgs& a, Config& cfg) {
    if (auto s = a.get("size")) {
        const Size size = parse_size(*s);
        cfg.video.width = size.width;
        cfg.video.height = size.height;
        if (cfg.video.crop_height > size.height) cfg.video.crop_height = 0;
    }
    if (auto seed = a.get_int("seed", 0, INT64_MAX)) cfg.runtime.seed = static_cast<uint64_t>(*seed);
    if (auto d = a.get("device")) {
        LR_CHECK(*d == "cpu" || *d == "cuda", "--device '", *d, "': expected cpu or cuda");
        cfg.runtime.device = *d == "cpu" ? DeviceChoice::kCpu : DeviceChoice::kCuda;
    }
    if (auto p = a.get("metrics-port")) {
        if (*p == "off") {
            cfg.monitoring.enabled = false;
        } else {
            cfg.monitoring.enabled = true;
            cfg.monitoring.port = static_cast<int>(*a.get_int("metrics-port", 0, 65535));
        }
    }
    if (auto b = a.get("metrics-bind")) cfg.monitoring.bind = *b;
}

WanDims dims_of(const ModelConfig& m) {
    WanDims d;
    d.dim = m.dim;
    d.ffn_dim = m.ffn_dim;
    d.num_heads = m.num_heads;
    d.num_layers = m.num_layers;
    d.in_dim = m.in_dim;
    d.out_dim = m.out_dim;
    d.text_dim = m.text_dim;
    d.freq_dim = m.freq_dim;
    d.patch = m.patch_size;
    return d;
}

int64_t parameter_count(const WanDims& d) {
    int64_t n = 0;
    for (const WeightSpec& s : wan_weight_specs(d)) n += s.shape.numel();
    return n;
}

// The DiT weights the run will use: a checked checkpoint, or the embedded default.
struct Weights {
    std::optional<SafetensorsCheckpoint> checkpoint;
    std::vector<std::pair<std::string, HostTensor>> embedded;
    std::string description;
};

Weights load_weights(const ParsedArgs& a, Config& cfg) {
    Weights w;
    if (auto path = a.get("weights")) {
        w.checkpoint = SafetensorsCheckpoint::open(*path);
        bool from_metadata = false;
        const WanDims d = wan_dims_from_metadata(*w.checkpoint, dims_of(cfg.model), &from_metadata);
        if (from_metadata) {
            // The checkpoint knows its own architecture better than a config file does.
            cfg.model.dim = d.dim;
            cfg.model.ffn_dim = d.ffn_dim;
            cfg.model.num_heads = d.num_heads;
            cfg.model.num_layers = d.num_layers;
            cfg.model.in_dim = d.in_dim;
            cfg.model.out_dim = d.out_dim;
            cfg.model.text_dim = d.text_dim;
            cfg.model.freq_dim = d.freq_dim;
            cfg.model.patch_size = d.patch;
            validate_config(cfg);
        }
        resolve_wan_weights(*w.checkpoint, d);
        w.description = str_cat(*path, " (", format_bytes(w.checkpoint->total_bytes()),
                                from_metadata ? ", model config from its metadata)" : ")");
        return w;
    }
    const WanDims d = dims_of(cfg.model);
    const int64_t params = parameter_count(d);
    constexpr int64_t kMaxEmbeddedParams = 64LL << 20;
    LR_CHECK(params <= kMaxEmbeddedParams, "no --weights given and the model (dim ", d.dim, ", ", d.num_layers,
             " layers, ", params / 1000000, "M parameters) is too large for the embedded default; give --weights "
             "FILE.safetensors (see tools/ to convert a PyTorch checkpoint) or use configs/tiny.textproto");
    w.embedded = make_default_wan_weights(d, /*seed=*/2026);
    w.description = str_cat("embedded default (", params / 1000, "K parameters, deterministic random weights: "
                            "NOT a trained model, the video shows no real content)");
    return w;
}

// Checks --prompt-embeds: tensor 'context' [L <= text_len, text_dim] of a floating type.
std::string check_prompt_embeds(const std::string& path, const ModelConfig& m) {
    const SafetensorsCheckpoint f = SafetensorsCheckpoint::open(path);
    const SafetensorsEntry* e = f.find("context");
    LR_CHECK(e != nullptr, path, ": no tensor 'context' (expected the text encoder output [L <= ", m.text_len, ", ",
             m.text_dim, "])");
    LR_CHECK(e->shape.ndim == 2 && e->shape[0] >= 1 && e->shape[0] <= m.text_len && e->shape[1] == m.text_dim, path,
             ": tensor 'context' has shape ", e->shape.str(), ", expected [L, ", m.text_dim, "] with 1 <= L <= ",
             m.text_len);
    LR_CHECK(e->dtype == DType::kF32 || e->dtype == DType::kBF16 || e->dtype == DType::kF16, path,
             ": tensor 'context' has dtype ", dtype_name(e->dtype), ", expected F32, BF16 or F16");
    return str_cat(path, " (", e->shape[0], " tokens)");
}

std::string device_summary(Config& cfg, const ProcessInfo& who) {
    const int gpus = cuda_device_count();
    if (cfg.runtime.device == DeviceChoice::kAuto) cfg.runtime.device = gpus > 0 ? DeviceChoice::kCuda : DeviceChoice::kCpu;
    if (cfg.runtime.device == DeviceChoice::kCpu) return "cpu";
#ifdef LONGROLL_HAS_CUDA
    LR_CHECK(gpus > 0, "--device cuda: no CUDA device is visible to this process (check CUDA_VISIBLE_DEVICES and "
                       "the driver), or use --device cpu");
    const int gpu = pick_cuda_device(who, gpus);
    return str_cat("cuda:", gpu, " ", cuda_device_description(gpu));
#else
    (void)who;
    LR_FAIL("--device cuda: this longroll was built without CUDA (rebuild with nvcc available, or use --device cpu)");
#endif
}

// Writes `text` to `path` through a temporary file, so a reader never sees half a file.
void write_text_file(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".partial";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        LR_CHECK(f.good(), "cannot write '", tmp, "'");
        f << text;
        f.close();
        LR_RUNTIME(f.good(), "writing '", tmp, "' failed");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        LR_RUNTIME(false, "cannot rename '", tmp, "' to '", path, "'");
    }
}

}  // namespace

int cmd_generate(const std::vector<std::string>& args, const MpiSession& mpi) {
    const ParsedArgs a = parse_args("generate", kGenerateFlags, args);
    if (a.has("help")) {
        std::printf("%s", format_help("generate", "[--config FILE] [--weights FILE] [--prompt-embeds FILE] --out FILE",
                                      "Generates a video chunk by chunk and streams it to disk.\n"
                                      "Examples:\n"
                                      "  longroll generate --seconds 5 --out demo.mp4      (embedded tiny model)\n"
                                      "  longroll generate --config configs/wan2.1-t2v-1.3b-480p.textproto \\\n"
                                      "      --weights ckpt/self_forcing_dmd.safetensors --prompt-embeds prompt.safetensors \\\n"
                                      "      --seconds 60 --seed 7 --out video.mp4",
                                      kGenerateFlags)
                              .c_str());
        return 0;
    }
    LR_CHECK(a.positional().empty(), "longroll generate: unexpected argument '", a.positional()[0],
             "' (flags start with --; see longroll generate --help)");
    const ProcessInfo& who = mpi.info();
    const bool leader = who.rank == 0;

    // ---- Config: file (or the embedded default), then --set, then flags; validated as a whole.
    std::vector<ConfigOverride> overrides;
    for (const auto& s : a.get_all("set")) overrides.push_back(parse_override(s));
    Config cfg;
    if (auto path = a.get("config")) {
        cfg = load_config(*path, overrides);
    } else {
        cfg = parse_config_text(config_to_text(default_config()), "<embedded default config>", overrides);
    }
    apply_flags(a, cfg);
    validate_config(cfg);

    // ---- What this build cannot do yet is refused before any work, with the reason.
    LR_CHECK(!a.has("resume"), "--resume: rollout checkpoints are not implemented in this version");
    LR_CHECK(!a.has("noise"), "--noise: replaying noise needs the DiT rollout, which this version does not have yet");
    LR_CHECK(!a.has("save-latents"),
             "--save-latents: this version has no DiT yet, so there are no latents to save");
    const auto out = a.get("out");
    LR_CHECK(out.has_value(), "longroll generate: --out FILE.mp4|FILE.y4m is required");

    const FramePlan plan = plan_frames(cfg, a.get_int("latent-frames", 1, INT64_MAX),
                                       a.get_double("seconds", 0.0, 1e9));
    const std::string device = device_summary(cfg, who);

    // ---- Inputs: all opened and checked now, before the output file exists.
    Weights weights = load_weights(a, cfg);
    std::string prompt = "none (the embedded default uses a fixed prompt embedding)";
    if (auto p = a.get("prompt-embeds")) {
        prompt = check_prompt_embeds(*p, cfg.model);
    } else {
        LR_CHECK(!weights.checkpoint, "--prompt-embeds FILE is required with --weights (the engine takes the text "
                                      "encoder's output; see README: Prompts)");
    }
    std::string vae = "none";
    if (auto v = a.get("vae")) {
        const SafetensorsCheckpoint f = SafetensorsCheckpoint::open(*v);
        vae = str_cat(*v, " (", f.size(), " tensors)");
    }

    VideoSpec spec;
    spec.width = cfg.video.width;
    spec.height = cfg.video.height;
    spec.fps = cfg.video.fps;
    spec.crop_height = cfg.video.crop_height;
    spec.crf = cfg.output.crf;
    spec.preset = cfg.output.preset;
    std::unique_ptr<VideoWriter> writer;
    if (leader) writer = make_async_writer(open_video_writer(*out, spec));

    if (leader) {
        if (a.has("print-config")) std::fputs(config_to_text(cfg).c_str(), stdout);
        std::fprintf(stderr,
                     "longroll %s (git %s)\n"
                     "  model    dim %lld, %lld layers, %lld heads\n"
                     "  weights  %s\n"
                     "  prompt   %s\n"
                     "  vae      %s\n"
                     "  video    %dx%d at %d fps: %lld latent frames in %lld chunks -> %lld frames (%.2f s)\n"
                     "  device   %s; world %d rank%s\n"
                     "  output   %s\n"
                     "note: the DiT rollout and the VAE decoder are not in this version yet; the frames are a "
                     "test pattern.\n",
                     kVersion, kGitSha, static_cast<long long>(cfg.model.dim),
                     static_cast<long long>(cfg.model.num_layers), static_cast<long long>(cfg.model.num_heads),
                     weights.description.c_str(), prompt.c_str(), vae.c_str(), cfg.video.width,
                     cfg.video.output_height(), cfg.video.fps, static_cast<long long>(plan.latent_frames),
                     static_cast<long long>(plan.chunks), static_cast<long long>(plan.video_frames), plan.seconds,
                     device.c_str(), who.world_size, who.world_size == 1 ? "" : "s", out->c_str());
    }

    // ---- The chunk loop: each chunk of latent frames becomes its video frames, streamed to the writer.
    ProgressReporter progress(plan.chunks, plan.video_frames, cfg.video.fps, leader && !a.has("quiet"));
    HostBuffer frame(static_cast<size_t>(cfg.video.width) * static_cast<size_t>(cfg.video.height) * 3);
    const int64_t stride = int64_t{cfg.video.width} * 3;
    const int64_t per_chunk = cfg.rollout.frames_per_chunk;
    int64_t frames_done = 0;
    for (int64_t c = 0; c < plan.chunks; ++c) {
        const int64_t frames = video_frames_between(c * per_chunk, (c + 1) * per_chunk);
        for (int64_t i = 0; i < frames; ++i, ++frames_done) {
            if (!writer) continue;
            fill_test_pattern(frames_done, cfg.video.width, cfg.video.height, static_cast<uint8_t*>(frame.data()),
                              stride);
            writer->write_frame(static_cast<const uint8_t*>(frame.data()), stride);
        }
        progress.update(c + 1, frames_done);
    }
    LR_ASSERT(frames_done == plan.video_frames, "frame accounting: wrote ", frames_done, " of ", plan.video_frames);

    if (writer) {
        writer->finish();
        if (cfg.output.save_config) write_text_file(*out + ".config.textproto", config_to_text(cfg));
    }
    progress.finish();
    if (leader) {
        const ProgressSnapshot s = progress.snapshot();
        std::fprintf(stderr, "wrote %s: %lld frames, %dx%d at %d fps (%.2f s of video) in %.2f s\n", out->c_str(),
                     static_cast<long long>(frames_done), cfg.video.width, cfg.video.output_height(), cfg.video.fps,
                     plan.seconds, s.elapsed_s);
    }
    return 0;
}

}  // namespace lr
