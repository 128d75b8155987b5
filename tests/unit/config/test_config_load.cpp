// Loading configs: the shipped presets, defaults, the text round trip and file errors.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "config_test_util.h"

namespace lr {
namespace {

using test::input_error;
using test::kModel;
using test::source_path;
using test::TempDir;

const std::vector<std::string> kPresets = {"tiny.textproto", "wan2.1-t2v-1.3b-480p.textproto",
                                           "wan2.1-t2v-1.3b-1080p.textproto", "wan2.1-t2v-14b-480p.textproto"};

TEST(ConfigPresets, EveryPresetInConfigsIsTested) {
    std::vector<std::string> found;
    for (const auto& entry : std::filesystem::directory_iterator(source_path("configs"))) {
        if (entry.path().extension() == ".textproto") found.push_back(entry.path().filename().string());
    }
    for (const std::string& name : found) {
        EXPECT_NE(std::find(kPresets.begin(), kPresets.end(), name), kPresets.end())
            << "configs/" << name << " is not in kPresets";
    }
}

TEST(ConfigPresets, EveryPresetLoadsValidatesAndRoundTrips) {
    for (const std::string& name : kPresets) {
        SCOPED_TRACE(name);
        const Config cfg = load_config(source_path("configs/" + name));
        EXPECT_NO_THROW(validate_config(cfg));
        EXPECT_EQ(parse_config_text(config_to_text(cfg), "roundtrip"), cfg);
    }
}

TEST(ConfigPresets, Wan13B480pIsSelfForcing) {
    const Config c = load_config(source_path("configs/wan2.1-t2v-1.3b-480p.textproto"));
    EXPECT_EQ(c.model.dim, 1536);
    EXPECT_EQ(c.model.ffn_dim, 8960);
    EXPECT_EQ(c.model.num_heads, 12);
    EXPECT_EQ(c.model.head_dim(), 128);
    EXPECT_EQ(c.model.num_layers, 30);
    EXPECT_EQ(c.model.text_len, 512);
    EXPECT_EQ(c.model.text_dim, 4096);
    EXPECT_EQ(c.model.freq_dim, 256);
    EXPECT_DOUBLE_EQ(c.model.eps, 1e-6);
    EXPECT_EQ(c.model.patch_size, (std::array<int64_t, 3>{1, 2, 2}));
    EXPECT_EQ(c.video.width, 832);
    EXPECT_EQ(c.video.height, 480);
    EXPECT_EQ(c.video.fps, 16);
    EXPECT_EQ(c.rollout.local_attn_size, 21);
    EXPECT_EQ(c.rollout.sink_size, 0);
    EXPECT_EQ(c.rollout.frames_per_chunk, 3);
    EXPECT_EQ(c.rollout.denoising_steps, (std::vector<int>{1000, 750, 500, 250}));
    EXPECT_EQ(c.rollout.rope_mode, RopeMode::kAbsolute);
}

TEST(ConfigPresets, Wan13B1080pIsLongLiveStyle) {
    const Config c = load_config(source_path("configs/wan2.1-t2v-1.3b-1080p.textproto"));
    EXPECT_EQ(c.model.dim, 1536);
    EXPECT_EQ(c.video.width, 1920);
    EXPECT_EQ(c.video.height, 1088);
    EXPECT_EQ(c.video.crop_height, 1080);
    EXPECT_EQ(c.video.output_height(), 1080);
    EXPECT_EQ(c.rollout.local_attn_size, 12);
    EXPECT_EQ(c.rollout.sink_size, 3);
    EXPECT_EQ(c.rollout.rope_mode, RopeMode::kWindowRelative);
    EXPECT_EQ(c.attention.policy, AttentionPolicy::kSinkWindow);
    EXPECT_EQ(c.attention.block_size, 128);
    EXPECT_EQ(c.parallel.ulysses * c.parallel.spatial, 8);
}

TEST(ConfigPresets, Wan14B480p) {
    const Config c = load_config(source_path("configs/wan2.1-t2v-14b-480p.textproto"));
    EXPECT_EQ(c.model.dim, 5120);
    EXPECT_EQ(c.model.ffn_dim, 13824);
    EXPECT_EQ(c.model.num_heads, 40);
    EXPECT_EQ(c.model.num_layers, 40);
    EXPECT_EQ(c.model.head_dim(), 128);
    EXPECT_EQ(c.model.num_heads % c.parallel.ulysses, 0);
}

TEST(ConfigPresets, DefaultConfigIsTheTinyPreset) {
    const Config tiny = load_config(source_path("configs/tiny.textproto"));
    EXPECT_EQ(default_config(), tiny);
    EXPECT_EQ(tiny.model.dim, 64);
    EXPECT_EQ(tiny.model.ffn_dim, 128);
    EXPECT_EQ(tiny.model.num_heads, 2);
    EXPECT_EQ(tiny.model.head_dim(), 32);
    EXPECT_EQ(tiny.model.num_layers, 2);
    EXPECT_EQ(tiny.model.in_dim, 16);
    EXPECT_EQ(tiny.model.out_dim, 16);
    EXPECT_EQ(tiny.model.text_dim, 64);
    EXPECT_EQ(tiny.model.text_len, 16);
    EXPECT_EQ(tiny.video.width, 128);
    EXPECT_EQ(tiny.video.height, 64);
    EXPECT_EQ(tiny.rollout.local_attn_size, -1);
}

TEST(ConfigDefaults, AbsentFieldsGetTheDocumentedDefaults) {
    const Config c = parse_config_text(kModel, "min.textproto");
    const ModelConfig& m = c.model;
    EXPECT_EQ(m.in_dim, 16);
    EXPECT_EQ(m.out_dim, 16);
    EXPECT_EQ(m.text_dim, 4096);
    EXPECT_EQ(m.text_len, 512);
    EXPECT_EQ(m.freq_dim, 256);
    EXPECT_DOUBLE_EQ(m.eps, 1e-6);
    EXPECT_EQ(m.patch_size, (std::array<int64_t, 3>{1, 2, 2}));
    EXPECT_EQ(m.model_type, "t2v");
    EXPECT_TRUE(m.qk_norm);
    EXPECT_TRUE(m.cross_attn_norm);

    const RolloutConfig& r = c.rollout;
    EXPECT_EQ(r.frames_per_chunk, 3);
    EXPECT_EQ(r.denoising_steps, (std::vector<int>{1000, 750, 500, 250}));
    EXPECT_DOUBLE_EQ(r.timestep_shift, 5.0);
    EXPECT_EQ(r.context_noise, 0);
    EXPECT_EQ(r.local_attn_size, -1);
    EXPECT_EQ(r.sink_size, 0);
    EXPECT_EQ(r.rope_mode, RopeMode::kAbsolute);
    EXPECT_EQ(r.num_train_timesteps, 1000);
    EXPECT_EQ(r.sampler, Sampler::kSelfForcing);

    EXPECT_EQ(c.video.width, 832);
    EXPECT_EQ(c.video.height, 480);
    EXPECT_EQ(c.video.fps, 16);
    EXPECT_EQ(c.video.crop_height, 0);
    EXPECT_EQ(c.video.output_height(), 480);

    EXPECT_EQ(c.attention.policy, AttentionPolicy::kDense);
    EXPECT_EQ(c.attention.block_size, 128);
    EXPECT_DOUBLE_EQ(c.attention.forcing_kv.static_head_threshold, 0.8);
    EXPECT_EQ(c.attention.forcing_kv.recent_frames, 1);  // Forcing-KV's ring

    EXPECT_EQ(c.parallel.ulysses, 1);
    EXPECT_EQ(c.parallel.spatial, 1);
    EXPECT_EQ(c.parallel.data_parallel, 0);
    EXPECT_EQ(c.parallel.vae, VaePlacement::kSameRanks);
    EXPECT_EQ(c.parallel.vae_ranks, 0);
    EXPECT_EQ(c.parallel.transport, Transport::kAuto);

    EXPECT_EQ(c.output.codec, VideoCodec::kH264);
    EXPECT_EQ(c.output.crf, 18);
    EXPECT_EQ(c.output.preset, "medium");
    EXPECT_TRUE(c.output.save_config);

    EXPECT_TRUE(c.monitoring.enabled);
    EXPECT_EQ(c.monitoring.port, 9400);
    EXPECT_EQ(c.monitoring.bind, "0.0.0.0");
    EXPECT_EQ(c.monitoring.file_sd_path, "");

    EXPECT_EQ(c.runtime.device, DeviceChoice::kAuto);
    EXPECT_EQ(c.runtime.seed, 0u);
    EXPECT_EQ(c.runtime.dtype, DType::kBF16);
}

TEST(ConfigDefaults, ExplicitValuesReplaceDefaults) {
    const Config c = parse_config_text(std::string(kModel) +
                                           "rollout { sink_size: 0 local_attn_size: 9 denoising_steps: [900, 100] }\n"
                                           "runtime { device: CPU seed: 7 dtype: F32 }\n",
                                       "set.textproto");
    EXPECT_EQ(c.rollout.local_attn_size, 9);
    EXPECT_EQ(c.rollout.denoising_steps, (std::vector<int>{900, 100}));
    EXPECT_EQ(c.runtime.device, DeviceChoice::kCpu);
    EXPECT_EQ(c.runtime.seed, 7u);
    EXPECT_EQ(c.runtime.dtype, DType::kF32);
}

TEST(ConfigDefaults, OutDimFollowsInDimWhenAbsent) {
    // in_dim 32 is refused (the VAE has 16 channels); the point is that out_dim, not written, followed it and
    // its message says that it was not in the file.
    const std::string msg = input_error([] {
        parse_config_text("model { dim: 64 ffn_dim: 128 num_heads: 2 num_layers: 2 in_dim: 32 }", "io.textproto");
    });
    EXPECT_CONTAINS(msg, "io.textproto:1:57: model.in_dim: expected 16 (the Wan VAE's latent channels), found 32");
    EXPECT_CONTAINS(msg, "io.textproto: model.out_dim: expected 16 (the Wan VAE's latent channels), found 32");
}

TEST(ConfigDefaults, VaeRanksDefaultDependsOnPlacement) {
    const Config dedicated = parse_config_text(std::string(kModel) + "parallel { vae: DEDICATED_RANKS }", "v");
    EXPECT_EQ(dedicated.parallel.vae, VaePlacement::kDedicatedRanks);
    EXPECT_EQ(dedicated.parallel.vae_ranks, 1);
    const Config two = parse_config_text(std::string(kModel) + "parallel { vae: DEDICATED_RANKS vae_ranks: 2 }", "v");
    EXPECT_EQ(two.parallel.vae_ranks, 2);
    const Config same = parse_config_text(std::string(kModel) + "parallel { vae: SAME_RANKS }", "v");
    EXPECT_EQ(same.parallel.vae_ranks, 0);
}

TEST(ConfigDefaults, TransportByName) {
    for (const auto& [name, want] : {std::pair{"AUTO", Transport::kAuto}, std::pair{"MPI", Transport::kMpi},
                                     std::pair{"NCCL", Transport::kNccl}}) {
        const Config c =
            parse_config_text(std::string(kModel) + "parallel { ulysses: 2 transport: " + name + " }", "t");
        EXPECT_EQ(c.parallel.transport, want) << name;
        EXPECT_EQ(transport_name(want), name);
        // Written back by name, and read back to the same value.
        EXPECT_CONTAINS(config_to_text(c), std::string("transport: ") + name);
        EXPECT_EQ(parse_config_text(config_to_text(c), "again").parallel.transport, want);
    }
}

TEST(ConfigDefaults, PolicyAliasesAndSubMessages) {
    const Config c = parse_config_text(std::string(kModel) +
                                           "rollout { local_attn_size: 21 }\n"
                                           "attention {\n"
                                           "  policy: PBSA\n"
                                           "  block_size: 64\n"
                                           "  sparse_forcing { persistent_blocks: 32 topk_blocks: 8 }\n"
                                           "  lvsa { anchor_interval: 6 }\n"
                                           "}\n",
                                       "a.textproto");
    EXPECT_EQ(c.attention.policy, AttentionPolicy::kSparseForcing);
    EXPECT_EQ(attention_policy_name(c.attention.policy), "SPARSE_FORCING");
    EXPECT_EQ(c.attention.block_size, 64);
    EXPECT_EQ(c.attention.sparse_forcing.persistent_blocks, 32);
    EXPECT_EQ(c.attention.sparse_forcing.topk_blocks, 8);
    EXPECT_EQ(c.attention.lvsa.anchor_interval, 6);
    EXPECT_EQ(c.attention.lvsa.window_frames, 3);  // default kept next to a set sibling
}

TEST(ConfigText, RoundTripKeepsEveryNonDefaultValue) {
    Config c = default_config();
    c.model.eps = 1.2345678901234567e-7;
    c.model.text_len = 77;
    c.rollout.denoising_steps = {999, 500, 1};
    c.rollout.timestep_shift = 3.1415926535897931;
    c.rollout.local_attn_size = 9;
    c.rollout.sink_size = 3;
    c.rollout.rope_mode = RopeMode::kWindowRelative;
    c.rollout.sampler = Sampler::kEuler;
    c.video.width = 256;
    c.video.height = 128;
    c.video.crop_height = 120;
    c.attention.policy = AttentionPolicy::kLvsa;  // FORCING_KV would refuse the window of 9
    c.attention.forcing_kv.head_profile = "profiles/heads \"v1\".json";
    c.attention.forcing_kv.dynamic_keep_ratio = 0.3;
    c.attention.light_forcing.chunk_aware_growth = false;
    c.parallel.vae = VaePlacement::kDedicatedRanks;
    c.parallel.vae_ranks = 2;
    c.output.crf = 0;
    c.output.preset = "veryslow";
    c.output.save_config = false;
    c.monitoring.enabled = true;
    c.monitoring.port = 0;
    c.monitoring.bind = "127.0.0.1";
    c.monitoring.file_sd_path = "/tmp/sd.json";
    c.runtime.device = DeviceChoice::kCuda;
    c.runtime.seed = std::numeric_limits<uint64_t>::max();
    c.runtime.dtype = DType::kF16;
    ASSERT_NO_THROW(validate_config(c));

    const std::string text = config_to_text(c);
    const Config back = parse_config_text(text, "effective.textproto");
    EXPECT_EQ(back, c) << text;
    EXPECT_EQ(back.runtime.seed, std::numeric_limits<uint64_t>::max());
    EXPECT_EQ(back.model.eps, c.model.eps);
    EXPECT_CONTAINS(text, "policy: LVSA");
    EXPECT_CONTAINS(text, "rope_mode: WINDOW_RELATIVE");
    EXPECT_CONTAINS(text, "sampler: EULER");
    EXPECT_CONTAINS(text, "denoising_steps: [999, 500, 1]");
}

TEST(ConfigText, ConfigsDifferingInOneFieldAreNotEqual) {
    const Config a = default_config();
    Config b = a;
    EXPECT_EQ(a, b);
    b.attention.lvsa.anchor_interval += 1;
    EXPECT_FALSE(a == b);
    b = a;
    b.runtime.seed = 1;
    EXPECT_FALSE(a == b);
    EXPECT_FALSE(lr::operator==(a, b));  // the API's declaration, as well as the hidden friend
    EXPECT_TRUE(a != b);
}

TEST(ConfigFiles, LoadsAFileAndNamesItInMessages) {
    TempDir dir;
    const std::string path = dir.write("run.textproto", std::string(kModel) + "video {\n  width: 100\n}\n");
    const std::string msg = input_error([&] { load_config(path); });
    EXPECT_STARTS_WITH(msg, path + ":8:3: video.width: expected a positive multiple of 16");
    EXPECT_CONTAINS(msg, "found 100");
}

TEST(ConfigFiles, MissingFile) {
    TempDir dir;
    const std::string path = dir.path() + "/nope.textproto";
    const std::string msg = input_error([&] { load_config(path); });
    EXPECT_STARTS_WITH(msg, path + ": cannot open config file: No such file or directory");
}

TEST(ConfigFiles, DirectoryAndEmptyPath) {
    TempDir dir;
    EXPECT_CONTAINS(input_error([&] { load_config(dir.path()); }), dir.path() + ": expected a config file");
    EXPECT_CONTAINS(input_error([&] { load_config(""); }), "expected a path, found an empty one");
}

TEST(ConfigFiles, PathThroughAFile) {
    TempDir dir;
    const std::string path = dir.write("plain.textproto", kModel) + "/inside.textproto";
    EXPECT_STARTS_WITH(input_error([&] { load_config(path); }), path + ": cannot open config file: Not a directory");
}

TEST(ConfigFiles, UnreadableFile) {
    if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
    TempDir dir;
    const std::string path = dir.write("secret.textproto", kModel);
    ASSERT_EQ(::chmod(path.c_str(), 0), 0);
    EXPECT_STARTS_WITH(input_error([&] { load_config(path); }), path + ": cannot open config file: Permission denied");
}

TEST(ConfigFiles, EmptyFileNeedsAModel) {
    TempDir dir;
    const std::string path = dir.write("empty.textproto", "# nothing yet\n");
    const std::string msg = input_error([&] { load_config(path); });
    EXPECT_STARTS_WITH(msg, path + ": model: required, not set");
    // One message for the missing section, not one per field of it.
    EXPECT_LACKS(msg, "model.dim");
}

}  // namespace
}  // namespace lr

namespace lr {
namespace {

// The Wan2.1 norms are always applied: a config that turns them off is refused, not silently ignored.
TEST(ConfigValidate, ArchitectureSwitchesTheEngineAlwaysAppliesAreRefusedWhenOff) {
    Config c = default_config();
    c.model.qk_norm = false;
    EXPECT_CONTAINS(input_error([&] { validate_config(c); }), "model.qk_norm");
    c.model.qk_norm = true;
    c.model.cross_attn_norm = false;
    EXPECT_CONTAINS(input_error([&] { validate_config(c); }), "model.cross_attn_norm");
    c.model.cross_attn_norm = true;
    EXPECT_NO_THROW(validate_config(c));
}

}  // namespace
}  // namespace lr
