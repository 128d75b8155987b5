// The run configuration as plain, validated C++ structs: what the rest of the engine reads.
//
// Configs are written as protobuf text format (launch/longroll_config.proto, configs/*.textproto) and
// adjusted with `--set path=value`; protobuf itself stays inside launch/ (DESIGN.md section 2). The
// default member values below are the defaults a file gets for fields it does not set, except the four
// model sizes, which a file must give, and model.out_dim, which defaults to model.in_dim.
//
// Every error is an lr::InputError (exit code 2) that says where the value came from:
//   "<file>:<line>:<col>: <message>"                 syntax errors and unknown fields
//   "<file>:<line>:<col>: <field.path>: <message>"   a bad value written in the file
//   "--set <path>=<value>: <message>"                 a bad override, or a bad value it set
//   "<file>: <field.path>: <message>"                 a field the file did not set (its default)
// Validation reports every problem it finds, one per line.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/dtype.h"

namespace lr {

// How a denoising step moves to the next timestep (DESIGN.md section 4).
enum class Sampler {
    kSelfForcing,  // x0, re-noised with fresh noise (the distilled few-step checkpoints)
    kEuler,        // the flow-matching ODE: x += (sigma_next - sigma) * flow
};

enum class RopeMode {
    kAbsolute,        // frame positions from the start of the run (Self-Forcing)
    kWindowRelative,  // positions relative to the cache window, re-applied every call (LongLive)
};

enum class AttentionPolicy {
    kDense,          // every cached block
    kSinkWindow,     // sink frames + rolling window
    kSparseForcing,  // persistent blocks + top-k in the window (Sparse Forcing / PBSA)
    kLightForcing,   // chunk-aware growth + frame-then-block top-k (Light Forcing)
    kForcingKv,      // head-wise KV pruning (Forcing-KV)
    kLvsa,           // window + rotating global anchors (LVSA)
};

enum class VaePlacement { kSameRanks, kDedicatedRanks };
// How a video's DiT ranks exchange device data: kAuto picks NCCL where it can run (launch/cmd_generate.cpp).
enum class Transport { kAuto, kMpi, kNccl };
enum class VideoCodec { kH264 };
enum class DeviceChoice { kAuto, kCpu, kCuda };

// The Wan2.1 causal DiT (DESIGN.md section 3).
struct ModelConfig {
    int64_t dim = 0;  // required
    int64_t ffn_dim = 0;
    int64_t num_heads = 0;
    int64_t num_layers = 0;
    int64_t in_dim = 16;
    int64_t out_dim = 16;
    int64_t text_dim = 4096;
    int64_t text_len = 512;
    int64_t freq_dim = 256;
    double eps = 1e-6;
    std::array<int64_t, 3> patch_size{1, 2, 2};  // (t, h, w) in latent pixels
    std::string model_type = "t2v";
    bool qk_norm = true;
    bool cross_attn_norm = true;

    int64_t head_dim() const { return num_heads > 0 ? dim / num_heads : 0; }
    friend bool operator==(const ModelConfig&, const ModelConfig&) = default;
};

// The chunked rollout (DESIGN.md section 4).
struct RolloutConfig {
    int frames_per_chunk = 3;
    std::vector<int> denoising_steps{1000, 750, 500, 250};
    double timestep_shift = 5.0;
    int context_noise = 0;
    int local_attn_size = -1;  // latent frames in the KV cache, current chunk included; -1 = the whole run
    int sink_size = 0;
    RopeMode rope_mode = RopeMode::kAbsolute;
    int num_train_timesteps = 1000;
    Sampler sampler = Sampler::kSelfForcing;

    friend bool operator==(const RolloutConfig&, const RolloutConfig&) = default;
};

struct VideoConfig {
    int width = 832;  // pixels generated; multiples of 16
    int height = 480;
    int fps = 16;
    int crop_height = 0;  // rows written, from the top; 0 = all

    int output_height() const { return crop_height > 0 ? crop_height : height; }
    friend bool operator==(const VideoConfig&, const VideoConfig&) = default;
};

struct SparseForcingConfig {
    int persistent_blocks = 64;
    int topk_blocks = -1;  // -1: auto (a quarter of the window's blocks outside the chunk)
    friend bool operator==(const SparseForcingConfig&, const SparseForcingConfig&) = default;
};

struct LightForcingConfig {
    bool chunk_aware_growth = true;
    int near_frames = 3;
    int topk_frames = -1;  // -1: auto (half the middle frames)
    int topk_blocks = -1;  // -1: auto (half the blocks the frame stage leaves)
    friend bool operator==(const LightForcingConfig&, const LightForcingConfig&) = default;
};

struct ForcingKvConfig {
    double static_head_threshold = 0.8;
    int recent_frames = 1;             // Forcing-KV's ring (spatial_context_length 1)
    double dynamic_keep_ratio = 0.33;  // Forcing-KV's sim_retention_ratio
    std::string head_profile;          // required by FORCING_KV: longroll profile-heads
    friend bool operator==(const ForcingKvConfig&, const ForcingKvConfig&) = default;
};

struct LvsaConfig {
    int window_frames = 3;
    int anchor_interval = 4;
    friend bool operator==(const LvsaConfig&, const LvsaConfig&) = default;
};

// Block-sparse attention over the KV cache (DESIGN.md section 6). Every policy's knobs are always
// filled in; only the selected policy's are read.
struct AttentionConfig {
    AttentionPolicy policy = AttentionPolicy::kDense;
    int block_size = 128;  // tokens per KV block: 64 or 128
    SparseForcingConfig sparse_forcing;
    LightForcingConfig light_forcing;
    ForcingKvConfig forcing_kv;
    LvsaConfig lvsa;

    friend bool operator==(const AttentionConfig&, const AttentionConfig&) = default;
};

// DESIGN.md section 7. The world size is not known here: the launcher checks the layout against it.
struct ParallelConfig {
    int ulysses = 1;
    int spatial = 1;
    int data_parallel = 0;  // 0 = all the ranks ulysses x spatial (and the VAE ranks) leave
    VaePlacement vae = VaePlacement::kSameRanks;
    int vae_ranks = 0;  // ranks per VAE group with kDedicatedRanks (a file's default: 1); 0 otherwise
    Transport transport = Transport::kAuto;
    int overlap_groups = 1;  // head groups whose exchanges overlap the attention of the group before

    friend bool operator==(const ParallelConfig&, const ParallelConfig&) = default;
};

struct OutputConfig {
    VideoCodec codec = VideoCodec::kH264;
    int crf = 18;
    std::string preset = "medium";
    bool save_config = true;
    int checkpoint_every = 4;  // chunks between resume checkpoints; 0 = only when stopped by a signal

    friend bool operator==(const OutputConfig&, const OutputConfig&) = default;
};

struct MonitoringConfig {
    bool enabled = true;
    int port = 9400;  // base port, + local rank; 0 = ephemeral
    std::string bind = "0.0.0.0";
    std::string file_sd_path;  // empty = none

    friend bool operator==(const MonitoringConfig&, const MonitoringConfig&) = default;
};

struct RuntimeConfig {
    DeviceChoice device = DeviceChoice::kAuto;
    uint64_t seed = 0;
    DType dtype = DType::kBF16;  // kBF16, kF16 or kF32; the CPU path computes in f32 regardless

    friend bool operator==(const RuntimeConfig&, const RuntimeConfig&) = default;
};

// The prompt text encoder's files (both or neither; checked when a text prompt needs them).
struct TextConfig {
    std::string encoder;                       // UMT5 encoder .safetensors; empty = none
    std::string tokenizer;                     // sentencepiece model; empty = none
    bool keep_encoder_in_host_memory = false;  // only false is valid (config_validate.cpp says why)
    friend bool operator==(const TextConfig&, const TextConfig&) = default;
};

struct Config {
    ModelConfig model;
    RolloutConfig rollout;
    VideoConfig video;
    AttentionConfig attention;
    ParallelConfig parallel;
    OutputConfig output;
    MonitoringConfig monitoring;
    RuntimeConfig runtime;
    TextConfig text;

    // Defaulted in config.cpp: memberwise, so a new section is compared without anyone remembering to.
    friend bool operator==(const Config& a, const Config& b);
};

bool operator==(const Config& a, const Config& b);

// One `--set path=value`.
struct ConfigOverride {
    std::string path;
    std::string value;
};

// "rollout.local_attn_size=6" -> {path, value}, split at the first '='. InputError without '=' or with an
// empty path. The value may be empty (a string field); whether path and value fit the schema is checked
// when the override is applied.
ConfigOverride parse_override(std::string_view arg);

// Adjusts the parsed config before validation: the CLI's flags that set fields (--size, --device, ...), so that
// the checks that relate fields (spatial ranks vs the frame's blocks, ...) see their values.
using ConfigAdjust = std::function<void(Config&)>;

// Reads a textproto file, applies defaults, then the overrides in order, then `adjust`, then validates.
// Override paths name fields (rollout.local_attn_size, attention.policy); enum values are matched by
// name without regard to case; repeated fields take comma-separated lists (rollout.denoising_steps=
// 1000,750,500); monitoring.port also takes "off" (monitoring.enabled=false), and a number turns
// monitoring on.
Config load_config(const std::string& path, const std::vector<ConfigOverride>& overrides = {},
                   const ConfigAdjust& adjust = {});

// The same from text (tests, embedded presets); `name` plays the role of the file name in messages.
Config parse_config_text(std::string_view text, std::string_view name,
                         const std::vector<ConfigOverride>& overrides = {}, const ConfigAdjust& adjust = {});

// The built-in default when no --config is given: the tiny test model (same as configs/tiny.textproto).
Config default_config();

// The effective config as text format, every field written; parse_config_text reads it back to an
// equal Config.
std::string config_to_text(const Config& cfg);

// Validation alone (after the CLI sets fields from flags such as --size): InputError "<field.path>: ...".
void validate_config(const Config& cfg);

// Stable names for logs and metrics: "SINK_WINDOW", "WINDOW_RELATIVE", ... (the schema's enum names).
std::string_view attention_policy_name(AttentionPolicy policy);
std::string_view rope_mode_name(RopeMode mode);
std::string_view sampler_name(Sampler sampler);
std::string_view transport_name(Transport transport);

}  // namespace lr
