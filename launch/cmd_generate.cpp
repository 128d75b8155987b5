// `longroll generate`: config -> inputs -> rollout -> streamed video.
//
// Everything the user gave is checked before any work starts (config, lengths, weights, prompt
// embeddings, the output path), so a bad input costs seconds and leaves nothing on disk. The output is
// written under a temporary name and renamed when complete; the effective config is saved next to it.
//
// The rollout is the Wan2.1 causal DiT on the CPU reference backend (runtime/rollout); every finished chunk
// of latents goes to the streaming Wan VAE (runtime/vae) behind it, on a decode thread of the group's first rank
// or on dedicated VAE ranks (launch/video_stage.h), and its frames go to the encoder thread, so memory holds a
// few chunks at a time whatever the length of the video.
#include <unistd.h>

#include "cache/tile_layout.h"
#include "runtime/model/head_profile.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "dist/fault.h"
#include "dist/mesh.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
#include "dist/sharded_attention_step_cuda.h"
#ifdef LONGROLL_HAS_NCCL
#include "dist/nccl_communicator.h"
#endif
#include "launch/cli.h"
#include "launch/cli_args.h"
#include "launch/config.h"
#include "launch/default_model.h"
#include "launch/exchange_meter.h"
#include "launch/generate_inputs.h"
#include "launch/generate_plan.h"
#include "launch/run_guard.h"
#include "launch/stop_vote.h"
#include "launch/video_stage.h"
#include "monitoring/metrics.h"
#include "runtime/core/build_info.h"
#include "runtime/core/check.h"
#include "runtime/core/device.h"
#include "runtime/core/interrupt.h"
#include "runtime/core/output_file.h"
#include "runtime/core/progress.h"
#include "runtime/core/stream.h"
#include "runtime/io/safetensors.h"
#include "runtime/model/wan_model_cuda.h"
#include "runtime/rollout/rollout_cuda.h"
#include "runtime/video/video_writer.h"

namespace lr {
namespace {

const std::vector<FlagSpec> kGenerateFlags = {
    {"config", "FILE", "run config (protobuf text format); default: the embedded tiny model"},
    {"set", "PATH=VALUE", "override a config field, e.g. rollout.local_attn_size=12", true},
    {"weights", "FILE", "DiT weights (.safetensors or .safetensors.index.json); default: embedded tiny model"},
    {"vae", "FILE", "Wan2.1 VAE weights (.safetensors); default: the embedded tiny VAE with the embedded model"},
    {"prompt", "TEXT", "the prompt, encoded by the UMT5 text encoder (needs --text-encoder and --tokenizer)"},
    {"text-encoder", "FILE", "UMT5-XXL encoder .safetensors (sets text.encoder; tools/convert_checkpoint.py)"},
    {"tokenizer", "FILE", "the encoder's sentencepiece model, spiece.model (sets text.tokenizer)"},
    {"prompt-embeds", "FILE", "text encoder output made elsewhere: tensor 'context' [L <= text_len, text_dim]"},
    {"size", "WxH", "video size in pixels (multiples of 16), e.g. 832x480; sets video.width/height"},
    {"latent-frames", "N", "latent frames to generate (a multiple of rollout.frames_per_chunk)"},
    {"seconds", "S", "seconds of video to generate (rounded up to whole chunks); default about 5 s"},
    {"seed", "N", "seed of the noise generator (sets runtime.seed)"},
    {"device", "cpu|cuda", "where to run (sets runtime.device); default: cuda when a GPU is visible"},
    {"out", "FILE", "output video, .mp4 (H.264) or .y4m"},
    {"save-latents", "FILE", "also save the generated latents as safetensors (tensor 'latents')"},
    {"noise", "FILE", "replay another run's noise (tensors 'noise' and 'step_noise')"},
    {"prompt-file", "FILE",
     "many videos: one job per line, 'PROMPT_EMBEDS OUTPUT [SEED]' or '\"TEXT\" OUTPUT [SEED]', spread over the "
     "data-parallel groups"},
    {"switch-prompt", "FRAME:FILE|TEXT",
     "from latent FRAME on, use this prompt: embeddings (a .safetensors file) or text (LongLive)", true},
    {"metrics-port", "P|0|off", "Prometheus exporter base port (+ local rank); 0 = ephemeral (sets monitoring)"},
    {"metrics-bind", "ADDR", "address the exporter binds (sets monitoring.bind)"},
    {"resume", "", "continue an interrupted run from its checkpoint (OUT.resume.safetensors); same flags otherwise"},
    {"overwrite", "", "replace existing output files (never the run's inputs)"},
    {"print-config", "", "print the effective config to stdout before generating"},
    {"quiet", "", "no start-up summary and no progress output (errors and the final line still print)"},
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
    if (auto t = a.get("text-encoder")) cfg.text.encoder = *t;
    if (auto t = a.get("tokenizer")) cfg.text.tokenizer = *t;
}

// Where the DiT runs. --device cuda needs a CUDA build and a visible GPU (head and spatial sharding run on the GPU:
// each rank its heads and its tiles, the exchanges over NCCL or staged through pinned host memory over MPI, see
// parallel.transport); auto picks the GPU when both hold. The VAE then decodes on the same GPU, on its own thread
// and stream behind the DiT, or on the dedicated VAE ranks' GPUs.
void resolve_device(Config& cfg) {
    const int gpus = cuda_device_count();
    if (cfg.runtime.device == DeviceChoice::kCuda) {
#ifndef LONGROLL_HAS_CUDA
        LR_CHECK(false, "--device cuda: this build has no CUDA backend (configure with -DLONGROLL_CUDA=ON)");
#endif
        LR_CHECK(gpus > 0, "--device cuda: no CUDA device is visible to this process");
    } else if (cfg.runtime.device == DeviceChoice::kAuto) {
#ifdef LONGROLL_HAS_CUDA
        cfg.runtime.device = gpus > 0 ? DeviceChoice::kCuda : DeviceChoice::kCpu;
#else
        cfg.runtime.device = DeviceChoice::kCpu;
#endif
    }
}

// The summary's device line, after resolve_device and plan_transport.
std::string device_summary(const Config& cfg, const MeshLayout& layout, Transport transport) {
    const int gpus = cuda_device_count();
    if (cfg.runtime.device == DeviceChoice::kCuda) {
        const char* how = transport == Transport::kNccl ? "NCCL, device buffers" : "MPI, host-staged";
        const std::string heads =
            layout.ulysses > 1 ? str_cat(", heads split over ", layout.ulysses, " ranks (", how, ")") : "";
        const std::string tiles =
            layout.spatial > 1 ? str_cat(", frame tiles split over ", layout.spatial, " ranks (", how, ")") : "";
        const std::string vae = layout.vae_ranks > 0 ? str_cat("the VAE on ", layout.vae_ranks, " dedicated GPU rank",
                                                               layout.vae_ranks == 1 ? "" : "s")
                                                     : std::string("the VAE on its own thread and stream");
        return str_cat("cuda (DiT and VAE, ", vae, heads, tiles, ")");
    }
    if (gpus > 0) return str_cat("cpu (", gpus, " GPU", gpus == 1 ? "" : "s", " visible)");
    return "cpu";
}

#ifdef LONGROLL_HAS_NCCL
constexpr bool kNcclBuilt = true;
#else
constexpr bool kNcclBuilt = false;
#endif

// parallel.transport, decided at start-up and the same on every rank: each rank says where its DiT runs (host,
// GPU), the world gathers it, and every rank applies plan_transport to the same list. The world is asked only
// where the answer can matter, by a condition on values every rank shares (so all ranks call the gather, or
// none); the world communicator made for it is kept for the mesh. An impossible NCCL request ends every rank
// with exit code 2 and the same message.
TransportPlan resolve_transport(const Config& cfg, const MeshLayout& layout, const ProcessInfo& who,
                                const MpiSession& mpi, int gpu, std::unique_ptr<MpiCommunicator>& world_comm) {
    TransportFacts facts;
    facts.requested = cfg.parallel.transport;
    facts.nccl_built = kNcclBuilt;
    facts.sequence_parallel = layout.sequence_parallel();
    const bool dit = mesh_coord(layout, who.rank).role == MeshRole::kDit;
    RankDevice mine{who.rank, who.host, dit, ""};
    if (cfg.runtime.device == DeviceChoice::kCuda && dit) {
        mine.gpu = cuda_device_uuid(gpu);
        if (mine.gpu.empty()) mine.gpu = str_cat("GPU ", gpu);
    }
    std::vector<RankDevice> ranks{mine};
    const bool ask = facts.nccl_built && facts.requested != Transport::kMpi &&
                     (facts.requested == Transport::kNccl || facts.sequence_parallel > 1);
    if (ask && mpi.active() && who.world_size > 1) {
        if (!world_comm) world_comm = MpiCommunicator::world();
        ranks = gather_rank_devices(*world_comm, mine);
    }
    for (const RankDevice& r : ranks) {
        if (r.takes_part && r.gpu.empty()) {
            facts.cpu_rank = r.rank;
            break;
        }
    }
    facts.shared = find_shared_gpus(ranks);
    try {
        return plan_transport(facts);
    } catch (const InputError& e) {
        throw CollectiveInputError(e.what());
    }
}

// The communicators a DiT rank exchanges over (ropts.mesh.ulysses_comm, ropts.mesh.spatial_comm):
// the mesh's MPI ones, or with NCCL their twins on this rank's GPU (one per group of more than one rank,
// bootstrapped over the MPI one). The DiT -> VAE latents (mesh.group()) and the VAE's rows (mesh.vae()) stay on
// MPI: host data.
struct DitComms {
    Communicator* ulysses = nullptr;
    Communicator* spatial = nullptr;
    // An NCCL twin's stream, for the sharded attention step (CudaSequenceMesh); null with MPI.
    Stream ulysses_stream = nullptr;
    Stream spatial_stream = nullptr;
    std::vector<std::unique_ptr<Communicator>> twins;  // the NCCL communicators, owned here
};

DitComms dit_communicators(const Mesh& mesh, Transport transport, int gpu) {
    DitComms c;
    c.ulysses = mesh.ulysses();
    c.spatial = mesh.spatial();
    if (transport != Transport::kNccl || !mesh.is_dit()) return c;
#ifdef LONGROLL_HAS_NCCL
    LR_ASSERT(gpu >= 0, "NCCL transport without a GPU");
    // Each creation is collective over its MPI group; every DiT rank makes them in the same order (Ulysses, then
    // spatial), so no group waits for a rank busy in another.
    const auto twin = [&](Communicator* host_comm, Communicator** use, Stream* stream) {
        if (host_comm == nullptr || host_comm->size() < 2) return;
        std::unique_ptr<NcclCommunicator> nccl = NcclCommunicator::create(*host_comm, gpu);
        *use = nccl.get();
        *stream = nccl->stream();
        c.twins.push_back(std::move(nccl));
    };
    twin(mesh.ulysses(), &c.ulysses, &c.ulysses_stream);
    twin(mesh.spatial(), &c.spatial, &c.spatial_stream);
#else
    (void)gpu;
    LR_ASSERT(false, "NCCL transport in a build without NCCL");
#endif
    return c;
}

// The mesh request of this job, from parallel.* and the latent frame size.
std::pair<MeshRequest, MeshShape> mesh_request(const Config& cfg) {
    const ParallelConfig& p = cfg.parallel;
    MeshRequest request;
    request.ulysses = p.ulysses;
    request.spatial = p.spatial;
    request.data_parallel = p.data_parallel;
    request.dedicated_vae = p.vae == VaePlacement::kDedicatedRanks;
    request.vae_ranks = p.vae_ranks;
    MeshShape shape;
    shape.num_heads = static_cast<int>(cfg.model.num_heads);
    shape.tokens_per_frame = static_cast<int>((cfg.video.height / 8 / cfg.model.patch_size[1]) *
                                              (cfg.video.width / 8 / cfg.model.patch_size[2]));
    shape.chunk_frames = cfg.rollout.frames_per_chunk;
    shape.latent_rows = static_cast<int>(cfg.video.height / 8);
    return {request, shape};
}

// The mesh layout from parallel.* and the world size; every rank computes the same verdict, so a bad layout
// ends every rank with exit code 2 and the same message, without MPI_Abort.
MeshLayout check_parallel_layout(const Config& cfg, const ProcessInfo& who) {
    const auto [request, shape] = mesh_request(cfg);
    return resolve_mesh_layout(request, who.world_size, shape);
}

// How a job begins: from its first chunk; from its checkpoint (--resume); or not at all (--resume of a
// --prompt-file run that had finished this job before it was stopped).
enum class JobStart { kFresh, kResume, kDone };

// One video to make: from the flags, or one line of --prompt-file.
struct VideoJob {
    int64_t index = 0;
    std::optional<PromptRef> prompt;  // empty: the embedded default prompt
    std::vector<std::string> switches;
    std::optional<std::string> out;
    std::optional<std::string> latents;
    std::optional<std::string> noise;
    uint64_t seed = 0;
    std::string where = "--out";  // names the job in messages: the flag, or the --prompt-file line
};

// A leading "TEXT" of a --prompt-file line (\" and \\ escape a quote and a backslash): the text, and `line` cut to
// what follows it. InputError naming `where` when the closing quote is missing.
std::string take_quoted(std::string& line, const std::string& where) {
    const size_t open = line.find_first_not_of(" \t");
    std::string text;
    size_t i = open + 1;
    for (; i < line.size() && line[i] != '"'; ++i) {
        if (line[i] == '\\' && i + 1 < line.size() && (line[i + 1] == '"' || line[i + 1] == '\\')) ++i;
        text.push_back(line[i]);
    }
    LR_CHECK(i < line.size(), where, ": the prompt's closing '\"' is missing");
    line = line.substr(i + 1);
    return text;
}

// --prompt-file: "PROMPT_EMBEDS OUTPUT [SEED]" or "\"TEXT\" OUTPUT [SEED]" per line ("-" for the embedded default
// prompt); blank lines and '#' comments (outside the quotes) skipped. Without a seed, job i uses runtime.seed + i, so
// every video differs and any of them can be regenerated alone.
std::vector<VideoJob> read_prompt_file(const std::string& path, uint64_t base_seed) {
    std::ifstream f(path);
    LR_CHECK(f.good(), "--prompt-file ", path, ": cannot open it");
    std::vector<VideoJob> jobs;
    std::string line;
    for (int line_no = 1; std::getline(f, line); ++line_no) {
        const std::string where = str_cat(path, ":", line_no);
        std::optional<std::string> text;
        if (const size_t first = line.find_first_not_of(" \t"); first != std::string::npos && line[first] == '"') {
            text = take_quoted(line, where);
        }
        if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
        std::istringstream in(line);
        std::string embeds, output, seed, extra;
        if (text) {
            embeds = str_cat("\"", *text, "\"");
        } else if (!(in >> embeds)) {
            continue;
        }
        LR_CHECK(static_cast<bool>(in >> output), path, ":", line_no,
                 ": expected 'PROMPT_EMBEDS OUTPUT [SEED]', found only '", embeds, "'");
        VideoJob job;
        job.index = static_cast<int64_t>(jobs.size());
        if (text) {
            job.prompt = PromptRef{*text, true, where};
        } else if (embeds != "-") {  // "-": the embedded default prompt
            job.prompt = PromptRef{embeds, false, where};
        }
        job.out = output;
        job.where = str_cat("--prompt-file ", where);
        job.seed = base_seed + static_cast<uint64_t>(job.index);
        if (in >> seed) {
            char* end = nullptr;
            const unsigned long long v = std::strtoull(seed.c_str(), &end, 10);
            LR_CHECK(end && *end == '\0' && seed[0] != '-', path, ":", line_no, ": seed '", seed,
                     "' is not a non-negative integer");
            job.seed = v;
        }
        LR_CHECK(!(in >> extra), path, ":", line_no, ": unexpected '", extra, "' after the seed");
        for (const VideoJob& other : jobs) {
            LR_CHECK(*other.out != output, path, ":", line_no, ": output '", output, "' is also written by line ",
                     other.index + 1, " of the jobs");
        }
        jobs.push_back(std::move(job));
    }
    LR_CHECK(!jobs.empty(), "--prompt-file ", path, ": no jobs in it");
    return jobs;
}

// Writes `text` to `path` through a temporary file, so a reader never sees half a file.
void write_text_file(const std::string& path, const std::string& text) {
    const std::string tmp = unique_temp_path_for(path);
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
        std::printf(
            "%s", format_help("generate",
                              "[--config FILE] [--weights FILE] [--prompt TEXT | --prompt-embeds FILE] --out FILE",
                              "Generates a video chunk by chunk and streams it to disk.\n"
                              "Examples:\n"
                              "  longroll generate --seconds 5 --out demo.mp4      (embedded tiny model)\n"
                              "  longroll generate --config configs/wan2.1-t2v-1.3b-480p.textproto \\\n"
                              "      --weights ckpt/self_forcing_dmd.safetensors --vae ckpt/wan2.1_vae.safetensors \\\n"
                              "      --text-encoder ckpt/umt5-xxl-enc.safetensors --tokenizer ckpt/spiece.model \\\n"
                              "      --prompt \"a red fox running through snow\" \\\n"
                              "      --seconds 60 --seed 7 --out video.mp4",
                              kGenerateFlags)
                      .c_str());
        return 0;
    }
    LR_CHECK(a.positional().empty(), "longroll generate: unexpected argument '", a.positional()[0],
             "' (flags start with --; see longroll generate --help)");
    const ProcessInfo& who = mpi.info();
    // A first SIGINT/SIGTERM/SIGHUP stops after the chunk in flight with everything made so far finalised; under
    // mpirun the ranks of a video agree on that chunk (launch/stop_vote.h), and rank 0 alone announces the stop.
    install_interrupt_handlers(who.rank == 0);

    // ---- Config: file (or the embedded default), then --set, then flags; validated as a whole. Every rank
    // reads the same file and flags, so a problem here is the same on every rank: each exits 2 with the
    // message instead of one aborting the job.
    Config cfg;
    MeshLayout layout;
    // Neither --config nor --weights: the embedded default model, trained (models/tiny-shapes) when shipped.
    std::optional<DefaultModel> shipped;
    try {
        if (!a.has("config") && !a.has("weights")) shipped = find_default_model();
        std::vector<ConfigOverride> overrides;
        for (const auto& s : a.get_all("set")) overrides.push_back(parse_override(s));
        // The flags go in before validation, so that checks relating fields see them (--size with
        // parallel.spatial: the frame's blocks).
        // The model is the checkpoint's, settled here (a contradicting config refused) so that the validation
        // (parallel layout, sizes, policies) judges the model actually loaded.
        ModelSource source;
        source.config_file = a.has("config");
        for (const ConfigOverride& o : overrides) {
            if (o.path.starts_with("model.")) source.set_fields.push_back(o.path.substr(6));
        }
        const ConfigAdjust flags = [&](Config& c) {
            apply_flags(a, c);
            if (auto w = a.get("weights")) settle_checkpoint_model(*w, c, source, who.rank == 0);
        };
        if (auto path = a.get("config")) {
            cfg = load_config(*path, overrides, flags);
        } else if (shipped) {
            cfg = load_config(shipped->config, overrides, flags);
        } else {
            cfg = parse_config_text(config_to_text(default_config()), "<embedded default config>", overrides, flags);
        }
        validate_config(cfg);
        layout = check_parallel_layout(cfg, who);
    } catch (const CollectiveInputError&) {
        throw;
    } catch (const InputError& e) {
        throw CollectiveInputError(e.what());
    }
    // ---- The videos to make: the flags' one, or one per --prompt-file line, spread over the data-parallel
    // groups (job i on group i mod groups; the group's first rank writes it). Checked on every rank alike.
    std::vector<VideoJob> jobs;
    try {
        if (auto pf = a.get("prompt-file")) {
            for (const char* flag : {"prompt", "prompt-embeds", "out", "save-latents", "noise", "switch-prompt"}) {
                LR_CHECK(!a.has(flag), "--prompt-file gives every job its prompt and output: drop --", flag);
            }
            jobs = read_prompt_file(*pf, cfg.runtime.seed);
        } else {
            VideoJob job;
            LR_CHECK(!(a.has("prompt") && a.has("prompt-embeds")),
                     "give --prompt TEXT or --prompt-embeds FILE, not both");
            if (auto t = a.get("prompt")) job.prompt = PromptRef{*t, true, "--prompt"};
            if (auto f = a.get("prompt-embeds")) job.prompt = PromptRef{*f, false, "--prompt-embeds"};
            job.switches = a.get_all("switch-prompt");
            job.out = a.get("out");
            job.latents = a.get("save-latents");
            job.noise = a.get("noise");
            job.seed = cfg.runtime.seed;
            LR_CHECK(job.out || job.latents,
                     "longroll generate: give --out FILE.mp4|FILE.y4m and/or --save-latents FILE (or --prompt-file)");
            jobs.push_back(std::move(job));
        }
        for (const VideoJob& job : jobs) {
            if (job.out) video_format_for_path(*job.out);
            // Checked again by load_vae; here so that a missing --vae fails before a large checkpoint is read.
            LR_CHECK(!(job.out && a.has("weights") && !a.has("vae")),
                     "--vae FILE is required to write video with --weights (the Wan2.1 VAE, converted with "
                     "tools/convert_checkpoint.py); or give only --save-latents to skip decoding");
        }
    } catch (const InputError& e) {
        throw CollectiveInputError(e.what());
    }
    const MeshCoord coord = mesh_coord(layout, who.rank);
    const bool dedicated_vae = layout.vae_ranks > 0;
    const bool vae_rank = coord.role == MeshRole::kVae;
    // Of its data-parallel group: the first rank writes the latents (and, with the VAE on the DiT ranks, the
    // video); with dedicated VAE ranks the first VAE rank writes the video.
    const bool latents_rank = coord.group_rank == 0;
    const bool video_rank = dedicated_vae ? coord.vae_index == 0 : coord.group_rank == 0;
    const bool any_video = std::any_of(jobs.begin(), jobs.end(), [](const VideoJob& j) { return j.out.has_value(); });

    // ---- Outputs, before any work: none may be an input or another output, none may exist unless --overwrite (or
    // it is the interrupted run's own, with --resume), every directory must be writable. Checked on every rank
    // alike; then each rank locks the files it writes, so that two runs never write one file.
    const bool resume = a.has("resume");
    std::vector<OutputLock> output_locks;
    try {
        std::vector<NamedPath> inputs;
        for (const char* flag :
             {"config", "weights", "vae", "prompt-embeds", "noise", "text-encoder", "tokenizer", "prompt-file"}) {
            if (auto v = a.get(flag)) inputs.push_back({*v, str_cat("--", flag)});
        }
        for (const VideoJob& job : jobs) {
            if (job.prompt && !job.prompt->is_text) inputs.push_back({job.prompt->value, job.prompt->where});
            if (job.noise) inputs.push_back({*job.noise, "--noise"});
            for (const std::string& s : job.switches) {
                const size_t colon = s.find(':');
                if (colon != std::string::npos && s.ends_with(".safetensors")) {
                    inputs.push_back({s.substr(colon + 1), "--switch-prompt"});
                }
            }
        }
        std::vector<NamedPath> outputs;
        std::vector<std::string> may_exist;
        for (const VideoJob& job : jobs) {
            const std::string primary = job.out ? *job.out : *job.latents;
            const std::string ckpt = checkpoint_path_for(primary);
            if (job.out) outputs.push_back({*job.out, job.where});
            if (job.out && cfg.output.save_config)
                outputs.push_back({*job.out + ".config.textproto", job.where + "'s config"});
            if (job.latents) outputs.push_back({*job.latents, "--save-latents"});
            outputs.push_back({ckpt, "the resume checkpoint"});
            may_exist.push_back(ckpt);  // checked below, once the lock says no other run is writing it
            if (resume) {
                for (const NamedPath& o : outputs) may_exist.push_back(o.path);
            }
        }
        check_outputs(outputs, inputs, a.has("overwrite"), may_exist);
    } catch (const InputError& e) {
        throw CollectiveInputError(e.what());
    }
    // How each job of this rank's group starts. Every rank of the group decides alike from the same files, before
    // any of them writes (the mesh is built collectively after this).
    std::vector<JobStart> starts(jobs.size(), JobStart::kFresh);
    for (const VideoJob& job : jobs) {
        if (job.index % layout.data_parallel != coord.dp_group) continue;
        std::vector<NamedPath> mine;
        if (video_rank && job.out) mine.push_back({*job.out, job.where});
        if (latents_rank && !vae_rank && job.latents) mine.push_back({*job.latents, "--save-latents"});
        for (OutputLock& l : lock_outputs(mine)) output_locks.push_back(std::move(l));
        // Locked: a checkpoint here is an interrupted run's, not one being written.
        const std::string primary = job.out ? *job.out : *job.latents;
        const std::string ckpt = checkpoint_path_for(primary);
        if (resume) {
            const bool many = a.has("prompt-file");
            if (std::filesystem::exists(ckpt)) {
                starts[static_cast<size_t>(job.index)] = JobStart::kResume;
            } else if (many) {
                // The interrupted run finished this job (its video is in place, no checkpoint) or never began it.
                if (std::filesystem::exists(primary)) starts[static_cast<size_t>(job.index)] = JobStart::kDone;
            } else {
                LR_CHECK(false, "--resume: no checkpoint '", ckpt,
                         "' to continue from (a run writes it every output.checkpoint_every chunks and when a signal "
                         "stops it); run without --resume to start over");
            }
        } else {
            LR_CHECK(!std::filesystem::exists(ckpt) || a.has("overwrite"), "an interrupted run left '", ckpt,
                     "': add --resume to continue it, or --overwrite to start over");
        }
    }

    // ---- Metrics: started before the inputs load, so that a busy port fails before any work and the time to
    // first frame counts the whole start-up.
    resolve_device(cfg);
    const int gpu = cfg.runtime.device == DeviceChoice::kCuda ? pick_cuda_device(who, cuda_device_count()) : -1;
    if (gpu >= 0) cuda_use_device(gpu);
    std::unique_ptr<MpiCommunicator> world_comm;
    const TransportPlan transport = resolve_transport(cfg, layout, who, mpi, gpu, world_comm);
    const std::string device = device_summary(cfg, layout, transport.transport);
    const std::unique_ptr<Metrics> metrics = Metrics::start(
        MetricsOptions{cfg.monitoring.enabled, cfg.monitoring.port, cfg.monitoring.bind, cfg.monitoring.file_sd_path},
        who, gpu >= 0 ? cuda_device_uuid(gpu) : "",
        RunInfo{a.get("config") ? std::filesystem::path(*a.get("config")).stem().string() : "tiny", cfg.video.width,
                cfg.video.output_height(), cfg.video.fps});

    // ---- Inputs shared by every job: all opened and checked now, before any output file exists. A dedicated VAE
    // rank reads the model's config but not its weights.
    const auto t_load = std::chrono::steady_clock::now();
    const LoadedModel model = shipped ? load_default_model(*shipped, cfg, /*weights=*/!vae_rank)
                                      : load_model(a.get("weights"), cfg, /*weights=*/!vae_rank);
    const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
    const FramePlan plan =
        plan_frames(cfg, a.get_int("latent-frames", 1, INT64_MAX), a.get_double("seconds", 0.0, 1e9));
    metrics->weights_loaded(load_seconds);
    const LoadedVae vae = load_vae(shipped && !a.has("vae") ? std::optional(shipped->vae) : a.get("vae"),
                                   model.embedded, any_video && (dedicated_vae ? vae_rank : video_rank));
    RolloutOptions ropts = rollout_options(cfg.rollout);
    // Head and/or spatial parallelism: the U x S ranks of a sequence-parallel group run the same rollout, each
    // with its share of the heads and of the spatial blocks (and of the KV cache); the group's first rank writes.
    // Declared before the model, which enqueues on the NCCL twins' streams, so that they outlive it.
    std::optional<Mesh> mesh;
    DitComms dit_comms;
    if (layout.sequence_parallel() > 1 || dedicated_vae) {
        if (!world_comm) world_comm = MpiCommunicator::world();
        const auto [request, mesh_shape] = mesh_request(cfg);
        mesh.emplace(Mesh::create(*world_comm, request, mesh_shape));
        dit_comms = dit_communicators(*mesh, transport.transport, gpu);
        if (!vae_rank) {
            SequenceMesh& sm = ropts.mesh;
            if (layout.ulysses > 1) {
                sm.ulysses_rank = coord.ulysses_index;
                sm.ulysses = layout.ulysses;
                sm.ulysses_comm = dit_comms.ulysses;
            }
            if (layout.spatial > 1) {
                sm.spatial_rank = coord.spatial_index;
                sm.spatial = layout.spatial;
                sm.spatial_comm = dit_comms.spatial;
            }
            sm.overlap_groups = cfg.parallel.overlap_groups;
        }
    }
    // The communicators' byte counters, reported to longroll_exchanged_bytes_total after every DiT forward and
    // every chunk a VAE rank decodes: those that carry the bytes (the NCCL twins when the DiT exchanges over NCCL).
    ExchangeMeter exchange;
    if (mesh) {
        exchange.watch(dit_comms.ulysses, CommOp::kAllToAll, ExchangeOp::kAllToAll);
        exchange.watch(dit_comms.ulysses, CommOp::kAllGather, ExchangeOp::kAllGather);
        exchange.watch(dit_comms.spatial, CommOp::kSendRecv, ExchangeOp::kKvBlocks);
        exchange.watch(dit_comms.spatial, CommOp::kAllGather, ExchangeOp::kAllGather);
        if (dedicated_vae && latents_rank) exchange.watch(&mesh->group(), CommOp::kSendRecv, ExchangeOp::kVaeLatents);
        exchange.watch(mesh->vae(), CommOp::kSendRecv, ExchangeOp::kVaeHalo);
        exchange.watch(mesh->vae(), CommOp::kAllGather, ExchangeOp::kAllGather);
    }
    const RolloutShape shape{plan.latent_frames, cfg.video.height / 8, cfg.video.width / 8};
    if (!vae_rank) {
        ropts.policy = block_policy_config(cfg, model.model->config(), shape.height, shape.width, shape.frames);
        ropts.block_size = cfg.attention.block_size;
    }
    const int64_t channels = cfg.model.in_dim;
    const LatentFrameShape latent_frame{channels, shape.height, shape.width};
    const int64_t steps = static_cast<int64_t>(ropts.denoising_steps.size());
    // Every job's prompt is read now, so a bad file stops the run before the first video; the text prompts of all
    // the jobs go through the UMT5 encoder in one pass, and the encoder is freed before the DiT plans its memory.
    std::vector<std::vector<std::pair<int64_t, PromptRef>>> switches;
    std::vector<PromptRef> all_prompts;
    for (const VideoJob& job : jobs) {
        switches.push_back(parse_prompt_switches(job.switches, cfg, plan.latent_frames));
        if (job.prompt) all_prompts.push_back(*job.prompt);
        for (const auto& s : switches.back()) all_prompts.push_back(s.second);
    }
    const EncodedTexts texts =
        encode_text_prompts(all_prompts, cfg, who.rank == 0, gpu, shipped ? shipped->text : std::string());
    std::vector<Prompts> prompts;
    for (size_t j = 0; j < jobs.size(); ++j) {
        const VideoJob& job = jobs[j];
        const auto main =
            job.prompt || !shipped ? job.prompt : std::optional(PromptRef{shipped->prompt, false, "default model"});
        prompts.push_back(load_prompts(main, switches[j], cfg, texts));
        LR_CHECK(job.prompt || model.embedded,
                 "--weights needs a prompt: --prompt TEXT (with --text-encoder and --tokenizer) or --prompt-embeds "
                 "FILE (see README: Prompts)");
        if (job.latents) {
            const std::filesystem::path dir = std::filesystem::absolute(*job.latents).parent_path();
            LR_CHECK(std::filesystem::is_directory(dir), "--save-latents ", *job.latents, ": directory '", dir.string(),
                     "' does not exist");
        }
    }

    // What a resumed run must share with the interrupted one (run_guard.h): the config minus what does not change
    // the result, the weights files, every prompt's embeddings, the noise.
    const std::string weights_fp =
        str_cat(a.get("weights") ? file_fingerprint(*a.get("weights")) : "embedded " + model.description, "/",
                a.get("vae") ? file_fingerprint(*a.get("vae")) : std::string("embedded vae"));
    const auto run_fingerprint = [&](size_t j) {
        RunFingerprint fp;
        Config c = cfg;
        c.runtime.seed = 0;  // the noise's fingerprint says which seed
        c.output.checkpoint_every = 0;
        c.monitoring = MonitoringConfig{};
        const std::string text = config_to_text(c);
        fp.config = digest_hex(text.data(), text.size());
        fp.weights = weights_fp;
        std::string p;
        for (const PromptSegment& s : prompts[j].segments) {
            p += str_cat(s.start_frame, ":", digest_hex(s.context.data, static_cast<size_t>(s.context.nbytes())), ";");
        }
        fp.prompts = digest_hex(p.data(), p.size());
        fp.noise = jobs[j].noise ? "file " + file_fingerprint(*jobs[j].noise) : str_cat("seed ", jobs[j].seed);
        fp.latent_frames = plan.latent_frames;
        return fp;
    };

    // Memory is planned before the run: the KV cache is the part that grows with the window. On the GPU the
    // model plans every device buffer (weights, paged KV, activations) and refuses to start when they do not fit.
    const bool on_gpu = cfg.runtime.device == DeviceChoice::kCuda && !vae_rank;
    // The sharded attention step of a sequence-parallel rank is handed to the model, which must not outlive it.
    std::unique_ptr<CudaAttentionStep> gpu_step;
    std::unique_ptr<CudaWanModel> gpu_model;
    size_t cache_bytes = 0;
    if (on_gpu) {
        const bool switches =
            std::any_of(prompts.begin(), prompts.end(), [](const Prompts& p) { return p.segments.size() > 1; });
        CudaModelOptions model_opts = CudaRollout::model_options(ropts, shape, switches);
        if (ropts.mesh.ulysses > 1 || ropts.mesh.spatial > 1) {
            // This rank's step of the U x S group (dist/sharded_attention_step_cuda.h): it owns the exchanges. An
            // NCCL twin takes device buffers on its own stream, which the step orders the model's stream against;
            // with MPI (host-staged) there is none.
            CudaSequenceMesh sm;
            sm.mesh = ropts.mesh;
            sm.ulysses_stream = dit_comms.ulysses_stream;
            sm.spatial_stream = dit_comms.spatial_stream;
            gpu_step = make_cuda_attention_step(attention_step_config(model.model->config(), model_opts), sm);
            model_opts.step = gpu_step.get();
        }
        gpu_model = std::make_unique<CudaWanModel>(*model.model, model_opts);
        cache_bytes = gpu_model->kv_bytes();
        metrics->gpu_memory_reserved(
            static_cast<int64_t>(gpu_model->weight_bytes() + gpu_model->kv_bytes() + gpu_model->activation_bytes()));
    } else if (!vae_rank) {
        cache_bytes = Rollout::kv_cache_bytes(*model.model, ropts, shape);
        const uint64_t host_bytes =
            static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
        LR_CHECK(cache_bytes < host_bytes / 2, "the KV cache of this run needs ", format_bytes(cache_bytes),
                 " but the host has ", format_bytes(host_bytes),
                 "; set a window (rollout.local_attn_size) or generate fewer frames");
    }
    if (who.rank == 0 && a.has("print-config")) std::fputs(config_to_text(cfg).c_str(), stdout);
    if (who.rank == 0 && !a.has("quiet")) {
        const std::string vae_text =
            dedicated_vae && any_video
                ? str_cat(a.get("vae") ? *a.get("vae") : std::string("embedded default"), " on ", layout.vae_ranks,
                          " dedicated rank", layout.vae_ranks == 1 ? "" : "s", " per group, frames split by rows")
                : vae.description;
        std::fprintf(
            stderr,
            "longroll %s (git %s)\n"
            "  model    dim %lld, %lld layers, %lld heads\n"
            "  weights  %s, loaded in %.2f s\n"
            "  prompt   %s\n"
            "%s"
            "  vae      %s\n"
            "  video    %dx%d at %d fps: %lld latent frames in %lld chunks -> %lld frames (%.2f s)\n"
            "  rollout  %zu steps (%s sampler), window %s, sink %d, %s RoPE; KV cache %s\n"
            "  attention  %s, KV blocks of %d tokens (%lldx%lld-patch tiles)\n"
            "  device   %s; %s\n"
            "  transport  %s (%s)\n"
            "  metrics  %s\n",
            kVersion, kGitSha, static_cast<long long>(cfg.model.dim), static_cast<long long>(cfg.model.num_layers),
            static_cast<long long>(cfg.model.num_heads), model.description.c_str(), load_seconds,
            jobs.size() == 1 ? prompts[0].description.c_str()
                             : str_cat(jobs.size(), " jobs from ", *a.get("prompt-file")).c_str(),
            texts.description.empty() ? "" : str_cat("  text     ", texts.description, "\n").c_str(), vae_text.c_str(),
            cfg.video.width, cfg.video.output_height(), cfg.video.fps, static_cast<long long>(plan.latent_frames),
            static_cast<long long>(plan.chunks), static_cast<long long>(plan.video_frames), plan.seconds,
            ropts.denoising_steps.size(), std::string(sampler_name(cfg.rollout.sampler)).c_str(),
            cfg.rollout.local_attn_size < 0 ? "the whole run" : str_cat(cfg.rollout.local_attn_size, " frames").c_str(),
            cfg.rollout.sink_size, std::string(rope_mode_name(cfg.rollout.rope_mode)).c_str(),
            format_bytes(cache_bytes).c_str(), block_policy_name(ropts.policy.kind), cfg.attention.block_size,
            static_cast<long long>(tile_shape_for_block(cfg.attention.block_size).rows),
            static_cast<long long>(tile_shape_for_block(cfg.attention.block_size).cols), device.c_str(),
            describe(layout).c_str(), transport.transport == Transport::kNccl ? "nccl" : "mpi", transport.why.c_str(),
            metrics->enabled() ? str_cat("http://", cfg.monitoring.bind == "0.0.0.0" ? who.host : cfg.monitoring.bind,
                                         ":", metrics->port(), "/metrics",
                                         who.world_size > 1 ? " (rank 0; rank r on its host: + local rank)" : "")
                                     .c_str()
                               : "off");
    }

    VideoSpec spec;
    spec.width = cfg.video.width;
    spec.height = cfg.video.height;
    spec.fps = cfg.video.fps;
    spec.crop_height = cfg.video.crop_height;
    spec.crf = cfg.output.crf;
    spec.preset = cfg.output.preset;
    using Clock = std::chrono::steady_clock;
    // One chunk's video made on this rank: its stage times, frames and progress; `delivers`: the rank that writes
    // the video counts its frames in the metrics. `frames_done` is touched only by the thread that calls this.
    const auto report_video = [&](const ChunkVideo& v, bool delivers, int64_t& frames_done,
                                  ProgressReporter& progress) {
        frames_done += v.frames;
        const int64_t latents_done = std::min(plan.latent_frames, (v.index + 1) * cfg.rollout.frames_per_chunk);
        LR_ASSERT(frames_done == video_frames_for_latents(latents_done), "chunk ", v.index, ": the VAE gave ", v.frames,
                  " frames");
        if (v.wait_seconds > 0) metrics->stage_time(Stage::kComm, v.wait_seconds);
        metrics->stage_time(Stage::kVae, v.decode_seconds);
        metrics->vae_decode(v.decode_seconds);
        metrics->stage_time(Stage::kEncode, v.encode_seconds);
        metrics->encode(v.encode_seconds);
        metrics->chunk_done(v.latent_frames, delivers ? v.frames : 0, v.interval_seconds);
        progress.update(v.index + 1, frames_done);
    };
    for (size_t j = 0; j < jobs.size(); ++j) {
        const VideoJob& job = jobs[j];
        if (job.index % layout.data_parallel != coord.dp_group) continue;
        // Latents only: the group's first rank delivers the video's frames (counted from the latents).
        const bool delivers = job.out ? video_rank : latents_rank;
        if (starts[j] == JobStart::kDone) {
            if (delivers) {
                std::fprintf(stderr, "video %lld/%zu (%s): finished before the stop, kept\n",
                             static_cast<long long>(job.index + 1), jobs.size(), job.where.c_str());
            }
            continue;
        }
        // The checkpoint of a resumed job: read and checked on every rank of the group (the DiT ranks replay its
        // chunks), so that a mismatch ends them all alike, before any of them waits for another.
        const std::string primary = job.out ? *job.out : *job.latents;
        const std::string ckpt_path = checkpoint_path_for(primary);
        const RunFingerprint fingerprint = run_fingerprint(j);
        std::optional<RunCheckpoint> resumed;
        if (starts[j] == JobStart::kResume) {
            try {
                resumed = read_run_checkpoint(ckpt_path, fingerprint, channels, shape.height, shape.width,
                                              cfg.rollout.frames_per_chunk);
            } catch (const InputError& e) {
                throw CollectiveInputError(e.what());
            }
        }
        const int64_t resume_chunks = resumed ? resumed->chunks_done : 0;
        // The ranks that vote on stopping after each chunk (launch/stop_vote.h): the DiT ranks of the video, and its
        // dedicated VAE ranks when they decode it. Alone (null), a rank decides by itself.
        Communicator* stop_group = nullptr;
        if (mesh) stop_group = dedicated_vae && job.out ? &mesh->group() : mesh->sequence();
        std::unique_ptr<VideoWriter> writer;
        if (video_rank && job.out) writer = make_async_writer(open_video_writer(*job.out, spec));
        if (delivers && jobs.size() > 1) {
            std::fprintf(stderr, "video %lld/%zu on rank %d: %s (seed %llu)\n", static_cast<long long>(job.index + 1),
                         jobs.size(), who.rank, job.out ? job.out->c_str() : job.latents->c_str(),
                         static_cast<unsigned long long>(job.seed));
        }
        ProgressReporter progress(plan.chunks, plan.video_frames, cfg.video.fps, who.rank == 0 && !a.has("quiet"));
        int64_t frames_done = 0;
        // The secondary outputs (the config next to the video, the latents when there is a video) are written after
        // the primary one is in place: a failure there is reported (exit code 1) but never discards the video.
        std::string secondary_failure;
        const auto secondary = [&](const std::string& what, const std::function<void()>& write) {
            try {
                write();
            } catch (const Error& e) {
                secondary_failure += str_cat(secondary_failure.empty() ? "" : "; ", what, ": ", e.what());
            }
        };
        const auto job_done = [&](const std::string& wrote) {
            progress.finish();
            if (!delivers) return;
            if (writer) writer->finish();
            if (job.out && cfg.output.save_config) {
                Config saved = cfg;
                saved.runtime.seed = job.seed;
                secondary("the config next to the video",
                          [&] { write_text_file(*job.out + ".config.textproto", config_to_text(saved)); });
            }
            metrics->video_done(VideoStatus::kOk);
            const ProgressSnapshot snap = progress.snapshot();
            std::fprintf(stderr, "done: %lld latent frames, %lld video frames (%.2f s of video) in %.2f s%s\n",
                         static_cast<long long>(plan.latent_frames), static_cast<long long>(frames_done), plan.seconds,
                         snap.elapsed_s, wrote.c_str());
        };

        // ---- A dedicated VAE rank: the job's chunks come from the group's first DiT rank.
        if (vae_rank) {
            if (!job.out) continue;  // latents only: nothing to decode
            std::vector<int64_t> chunk_frames;
            for (int64_t c = 0; c < plan.chunks; ++c) {
                const int64_t start = c * cfg.rollout.frames_per_chunk;
                chunk_frames.push_back(std::min<int64_t>(cfg.rollout.frames_per_chunk, plan.latent_frames - start));
            }
            bool stopped = false;
            const auto stop_after = [&](int64_t chunk) {
                if (chunk + 1 >= plan.chunks) return false;
                stopped = vote_stop(stop_group, /*replaying=*/false).stop;
                return stopped;
            };
            try {
                run_vae_rank(
                    mesh->group(), *mesh->vae(), *vae.decoder, writer.get(), latent_frame, chunk_frames,
                    [&](const ChunkVideo& v) {
                        report_video(v, delivers, frames_done, progress);
                        exchange.report(*metrics);
                    },
                    gpu, nullptr, stop_after);
                if (stopped) {  // the video so far is finalised; the group's first DiT rank writes the checkpoint
                    progress.finish();
                    if (writer) writer->finish();
                    return 128 + interrupt_signal();
                }
                LR_ASSERT(frames_done == plan.video_frames, "frame accounting: ", frames_done, " of ",
                          plan.video_frames);
                job_done(delivers ? str_cat("; wrote ", *job.out) : std::string());
            } catch (...) {
                if (delivers) metrics->video_done(VideoStatus::kFailed);
                throw;
            }
            continue;
        }

        // ---- A DiT rank: the rollout, every finished chunk of latents straight to the video side.
        std::unique_ptr<NoiseSource> noise;
        if (job.noise) {
            noise = ReplayNoise::open(*job.noise, plan.latent_frames, steps, channels, shape.height, shape.width);
        } else {
            noise = std::make_unique<SeededNoise>(job.seed, channels, shape.height, shape.width);
        }
        std::unique_ptr<DitVideoSink> sink;
        if (writer) {  // the VAE on this rank, behind the DiT
            sink = std::make_unique<DitVideoSink>(
                *vae.decoder, *writer, latent_frame,
                [&](const ChunkVideo& v) { report_video(v, true, frames_done, progress); }, on_gpu ? gpu : -1);
        } else if (dedicated_vae && latents_rank && job.out) {
            std::vector<int> vae_group_ranks;
            for (int v = 0; v < layout.vae_ranks; ++v) vae_group_ranks.push_back(layout.sequence_parallel() + v);
            sink = std::make_unique<DitVideoSink>(mesh->group(), std::move(vae_group_ranks), latent_frame);
        } else {
            sink = std::make_unique<DitVideoSink>();
        }
        auto chunk_start = Clock::now();
        // The DiT's exchange time (host-side communicators: MPI, and NCCL's enqueue) is the "comm" stage, not "dit".
        const auto dit_comm_seconds = [&] {
            double s = 0;
            if (dit_comms.ulysses) s += dit_comms.ulysses->busy_seconds();
            if (dit_comms.spatial && dit_comms.spatial != dit_comms.ulysses) s += dit_comms.spatial->busy_seconds();
            return s;
        };
        double comm_mark = dit_comm_seconds();
        // Of that, the part that ran hidden under compute (overlapped head groups) stays in "dit": the step
        // observers keep the running total here.
        double dit_hidden_seconds = 0, hidden_mark = 0;
        const ChunkCallback to_video = [&](const RolloutChunk& c) {
            const double dit_s = std::chrono::duration<double>(Clock::now() - chunk_start).count();
            const double comm_now = dit_comm_seconds();
            const double comm_s = std::clamp(comm_now - comm_mark - (dit_hidden_seconds - hidden_mark), 0.0, dit_s);
            comm_mark = comm_now;
            hidden_mark = dit_hidden_seconds;
            metrics->stage_time(Stage::kDit, dit_s - comm_s);
            if (comm_s > 0) metrics->stage_time(Stage::kComm, comm_s);
            const auto t_send = Clock::now();
            sink->push(c);
            const double send_s = std::chrono::duration<double>(Clock::now() - t_send).count();
            if (!sink->decodes()) {  // this rank's part of the chunk ends here
                if (send_s > 0 && dedicated_vae && latents_rank) metrics->stage_time(Stage::kComm, send_s);
                // Latent frame 0 stands for 1 video frame, every later one for 4.
                const int64_t frames = video_frames_between(c.start_frame, c.start_frame + c.num_frames);
                frames_done += frames;
                progress.update(c.index + 1, frames_done);
                metrics->chunk_done(c.num_frames, delivers ? frames : 0, dit_s + send_s);
            }
            chunk_start = Clock::now();
        };
        // Every finished chunk's clean latents are kept when they are saved or checkpointed: the checkpoint holds
        // them all (the rollout replays their clean passes on --resume, the VAE decodes them again).
        const bool checkpointed = latents_rank;
        HostTensor latents;
        if (job.latents || checkpointed)
            latents = HostTensor(DType::kF32, Shape{plan.latent_frames, channels, shape.height, shape.width});
        int64_t chunks_done = 0;
        const auto latents_done = [&] {
            const int64_t frames = std::min(plan.latent_frames, chunks_done * cfg.rollout.frames_per_chunk);
            TensorView v = latents.view;
            v.shape = Shape{frames, channels, shape.height, shape.width};
            return v;
        };
        // After each chunk: its latents are in `latents` and on their way to the video. The ranks agree whether a
        // signal stops the run here (a stop leaves the rollout, StopAfterChunk, with everything made so far intact);
        // every checkpoint_every chunks the checkpoint is replaced atomically.
        struct StopAfterChunk {};
        const ChunkCallback after_chunk = [&](const RolloutChunk& c) {
            to_video(c);
            chunks_done = c.index + 1;
            if (chunks_done >= plan.chunks) return;
            if (vote_stop(stop_group, chunks_done <= resume_chunks).stop) throw StopAfterChunk{};
            if (!checkpointed || chunks_done <= resume_chunks) return;
            const int every = cfg.output.checkpoint_every;
            if (every > 0 && chunks_done % every == 0) {
                write_run_checkpoint(ckpt_path, fingerprint, chunks_done, latents_done());
            }
        };
        // The step observer: denoising-step times, KV cache use and exchanged bytes after every forward.
        const auto observe = [&](int64_t step, double seconds, int64_t used_frames, int64_t max_frames) {
            if (step < steps) metrics->denoise_step(seconds);
            const auto capacity = static_cast<int64_t>(cache_bytes);
            metrics->kv_cache(capacity * used_frames / std::max<int64_t>(max_frames, 1), capacity);
            exchange.report(*metrics);
        };
        // Exchange time that ran under another head group's attention (parallel.overlap_groups), from the sharded
        // step's running total.
        const auto report_hidden = [&](const ExchangeTime& t) {
            const double hidden = t.hidden_comm_seconds();
            if (hidden > dit_hidden_seconds) metrics->exchange_hidden(hidden - dit_hidden_seconds);
            dit_hidden_seconds = std::max(dit_hidden_seconds, hidden);
        };
        const auto* sharded_gpu_step = dynamic_cast<const ShardedCudaAttentionStep*>(gpu_step.get());
        std::optional<Rollout> cpu_rollout;
        std::optional<CudaRollout> gpu_rollout;
        if (on_gpu) {
            gpu_rollout.emplace(*gpu_model, ropts, shape);
            gpu_rollout->set_step_observer([&](int64_t, int64_t step, double seconds) {
                const CudaAttentionStep& kv = gpu_model->attention_step();
                if (sharded_gpu_step) report_hidden(sharded_gpu_step->exchange_time());
                if (ropts.policy.kind != BlockPolicyKind::kDense && ropts.policy.kind != BlockPolicyKind::kSinkWindow) {
                    // The sparse step: blocks its tables read, K/V held (window + retained blocks).
                    const AttentionStats st = gpu_model->attention_stats();
                    if (step < steps) metrics->denoise_step(seconds);
                    metrics->kv_cache(st.kv_bytes_held, static_cast<int64_t>(cache_bytes));
                    metrics->attention_sparsity(1.0 - st.density());
                    exchange.report(*metrics);
                    return;
                }
                observe(step, seconds, kv.cached_frames(), kv.max_cached_frames());
            });
        } else {
            cpu_rollout.emplace(*model.model, ropts, shape);
            cpu_rollout->set_step_observer([&](int64_t, int64_t step, double seconds) {
                // What this rank's tables read and the K/V bytes it holds (window + retained blocks; every head
                // group's).
                const AttentionStats st = cpu_rollout->attention().stats();
                if (step < steps) metrics->denoise_step(seconds);
                metrics->kv_cache(st.kv_bytes_held, static_cast<int64_t>(cache_bytes));
                metrics->attention_sparsity(1.0 - st.density());
                exchange.report(*metrics);
                report_hidden(cpu_rollout->exchange_time());
            });
        }
        metrics->kv_cache(0, static_cast<int64_t>(cache_bytes));
        // Updated after every forward on the CPU (the share of the window's keys this rank's tables skip) and by the
        // GPU sparse step; the GPU's dense paths read every block.
        metrics->attention_sparsity(0.0);
        const auto save_latents = [&](const TensorView& v) {
            write_safetensors(*job.latents, {{"latents", v}},
                              {{"config", config_to_text(cfg)}, {"seed", std::to_string(job.seed)}});
        };
        try {
            const ChunkCallback on_chunk = latents.view.data ? collect_latents(latents, after_chunk) : after_chunk;
            // A signal before the first chunk stops a rank that decides alone; ranks that vote stop after a chunk.
            const bool alone = stop_group == nullptr || stop_group->size() == 1;
            bool stopped = alone && interrupt_signal() != 0;
            if (resumed && !stopped) {
                // The video and the latents are rebuilt from the checkpoint's chunks (VAE only); the rollout replays
                // their clean passes to rebuild the KV cache, then goes on with chunk resume_chunks.
                if (latents_rank && !a.has("quiet")) {
                    std::fprintf(stderr, "resuming after chunk %lld/%lld from %s\n",
                                 static_cast<long long>(resume_chunks), static_cast<long long>(plan.chunks),
                                 ckpt_path.c_str());
                }
                const int64_t fpc = cfg.rollout.frames_per_chunk;
                for (int64_t c = 0; c < resume_chunks; ++c) {
                    const int64_t start = c * fpc;
                    on_chunk(RolloutChunk{c, start, std::min(fpc, plan.latent_frames - start),
                                          resumed->latents.as<float>() + start * latent_frame.numel()});
                }
            }
            if (!stopped) {
                try {
                    if (gpu_rollout) {
                        gpu_rollout->run(prompts[j].segments, *noise, on_chunk, resume_chunks,
                                         resumed ? resumed->latents.as<float>() : nullptr);
                    } else {
                        cpu_rollout->run(prompts[j].segments, *noise, on_chunk, resume_chunks,
                                         resumed ? resumed->latents.as<float>() : nullptr);
                    }
                } catch (const StopAfterChunk&) {
                    stopped = true;
                }
            }
            // A stop: the checkpoint and the latents first, from memory, then the video side drains its queue (up to
            // three chunks behind the DiT). A launcher that kills the ranks soon after its signal (Open MPI's mpirun:
            // odls_base_sigkill_timeout) then costs at most the end of the video, never the resume point.
            if (stopped && checkpointed && chunks_done > 0) {
                write_run_checkpoint(ckpt_path, fingerprint, chunks_done, latents_done());
                if (job.latents) secondary("--save-latents " + *job.latents, [&] { save_latents(latents_done()); });
            }
            sink->finish();
            exchange.report(*metrics);
            if (stopped) {
                // A signal: what exists is finalised (the video plays up to the last finished chunk), the checkpoint
                // says where to go on from, and the exit code is 128 + the signal's number.
                const int sig = interrupt_signal();
                progress.finish();
                if (chunks_done == 0) {
                    std::fprintf(stderr, "longroll: stopped by %s before the first chunk; nothing was written\n",
                                 signal_name(sig).c_str());
                    return 128 + sig;
                }
                if (writer) writer->finish();
                if (!checkpointed) return 128 + sig;  // the group's first rank finalises and says how to go on
                std::fprintf(stderr,
                             "longroll: stopped by %s after chunk %lld/%lld (%lld video frames)%s%s; checkpoint %s. "
                             "To continue, run the same command with --resume\n",
                             signal_name(sig).c_str(), static_cast<long long>(chunks_done),
                             static_cast<long long>(plan.chunks), static_cast<long long>(frames_done),
                             job.out ? str_cat("; the video so far in ", *job.out).c_str() : "",
                             job.latents ? str_cat("; latents so far in ", *job.latents).c_str() : "",
                             ckpt_path.c_str());
                LR_RUNTIME(secondary_failure.empty(), secondary_failure);
                return 128 + sig;
            }
            // With dedicated VAE ranks the frames are counted there; here, what the latents stand for.
            LR_ASSERT(frames_done == plan.video_frames, "frame accounting: ", frames_done, " of ", plan.video_frames);
            if (latents_rank && job.latents) {
                if (writer) {
                    writer->finish();  // the primary output first: a latents failure must not discard it
                    secondary("--save-latents " + *job.latents, [&] { save_latents(latents.view); });
                } else {
                    save_latents(latents.view);
                }
            }
            job_done(str_cat(writer ? "; wrote " + *job.out : std::string(),
                             latents_rank && job.latents && secondary_failure.empty() ? "; latents in " + *job.latents
                                                                                      : std::string()));
            if (checkpointed) std::filesystem::remove(ckpt_path);
            LR_RUNTIME(secondary_failure.empty(), secondary_failure,
                       writer ? str_cat("; the video ", *job.out, " is complete") : std::string());
        } catch (...) {
            if (delivers) metrics->video_done(VideoStatus::kFailed);
            throw;
        }
    }
    return 0;
}

}  // namespace lr
