// Error messages: every semantic check names the file, line and column of the field and its path, syntax
// errors and unknown fields carry protobuf's message at the right place, and validate_config names fields.
#include <algorithm>
#include <string>
#include <vector>

#include "config_test_util.h"

namespace lr {
namespace {

using test::input_error;
using test::kModel;
using test::TempDir;

struct SemanticCase {
    std::string text;      // appended to kModel (six lines) unless it starts with "model"
    std::string expected;  // "<line>:<col>: <path>: <message start>", or "-: <path>: ..." for an absent field
    std::string found;     // a later part of the same message
    int lines = 1;         // messages reported: one mistake gives one, unless it is several fields' mistake
};

// Each case is written to a file and loaded: the message must point at the offending line and column.
const std::vector<SemanticCase> kSemanticCases = {
    {"video {\n  width: 100\n}\n", "8:3: video.width: expected a positive multiple of 16", "found 100"},
    {"video {\n  width: 0\n}\n", "8:3: video.width: expected a positive multiple of 16", "found 0"},
    {"video {\n  height: 1080\n}\n", "8:3: video.height: expected a positive multiple of 16", "set crop_height: 1080"},
    {"video { fps: 0 }\n", "7:9: video.fps: expected a positive number", "found 0"},
    {"video {\n  height: 480\n    crop_height: 482\n}\n", "9:5: video.crop_height: expected at most video.height (480)",
     "found 482"},
    {"video { crop_height: 479 }\n", "7:9: video.crop_height: expected 0 (no crop) or a positive even number",
     "found 479"},
    {"model {\n  dim: 64\n  ffn_dim: 128\n  num_heads: 3\n  num_layers: 2\n}\n",
     "2:3: model.dim: expected a multiple of model.num_heads (3)", "found 64"},
    {"model {\n  dim: 64\n  ffn_dim: 128\n  num_heads: 16\n  num_layers: 2\n}\n",
     "4:3: model.num_heads: expected a head size dim / num_heads that is even and at least 6", "64 / 16 = 4"},
    {"model {\n  dim: 66\n  ffn_dim: 128\n  num_heads: 6\n  num_layers: 2\n}\n",
     "4:3: model.num_heads: expected a head size dim / num_heads that is even", "66 / 6 = 11"},
    {"model {\n  dim: 64\n  ffn_dim: 0\n  num_heads: 2\n  num_layers: 2\n}\n",
     "3:3: model.ffn_dim: expected a positive number", "found 0"},
    {"model {\n  dim: 64\n  ffn_dim: 64\n  num_heads: 2\n  num_layers: -1\n}\n",
     "5:3: model.num_layers: expected a positive number", "found -1"},
    {"model {\n  dim: 64 ffn_dim: 64 num_heads: 2 num_layers: 1\n  eps: 0\n}\n",
     "3:3: model.eps: expected a positive number", "found 0"},
    {"model {\n  dim: 64 ffn_dim: 64 num_heads: 2 num_layers: 1\n  freq_dim: 255\n}\n",
     "3:3: model.freq_dim: expected a positive even number", "found 255"},
    {"model {\n  dim: 64 ffn_dim: 64 num_heads: 2 num_layers: 1\n  patch_size: 1\n  patch_size: 0\n"
     "  patch_size: 2\n}\n",
     "4:3: model.patch_size: expected a positive patch size for h", "found 0"},
    {"model {\n  dim: 64 ffn_dim: 64 num_heads: 2 num_layers: 1\n  patch_size: [1, 2]\n}\n",
     "3:3: model.patch_size: expected 3 values (t, h, w)", "found 2"},
    {"model {\n  dim: 64 ffn_dim: 64 num_heads: 2 num_layers: 1\n  model_type: \"i2v\"\n}\n",
     "3:3: model.model_type: expected \"t2v\"", "found \"i2v\""},
    {"model {\n  dim: 64 ffn_dim: 64 num_heads: 2 num_layers: 1\n  patch_size: [1, 2, 32]\n}\n",
     "-: video.width: expected a latent width (width / 8 = 104) of one or more whole patches of 32", "found 832"},
    {"model {\n  dim: 64\n}\n", "-: model.ffn_dim: required, not set", "-: model.num_layers: required, not set", 3},
    {"rollout {\n  frames_per_chunk: 0\n}\n", "8:3: rollout.frames_per_chunk: expected a positive number", "found 0"},
    {"rollout {\n  denoising_steps: []\n  num_train_timesteps: 0\n}\n",
     "9:3: rollout.num_train_timesteps: expected a positive number", "found 0"},
    {"rollout {\n  denoising_steps: 1000\n  denoising_steps: 0\n}\n",
     "9:3: rollout.denoising_steps: element 1: expected a timestep in (0, 1000]", "found 0"},
    {"rollout {\n  denoising_steps: 1001\n}\n",
     "8:3: rollout.denoising_steps: element 0: expected a timestep in (0, 1000]", "found 1001"},
    {"rollout {\n  denoising_steps: 500\n  denoising_steps: 750\n}\n",
     "9:3: rollout.denoising_steps: element 1: expected strictly decreasing timesteps", "found 500 then 750"},
    {"rollout {\n  timestep_shift: -1\n}\n", "8:3: rollout.timestep_shift: expected a positive number", "found -1"},
    {"rollout {\n  context_noise: 1000\n}\n", "8:3: rollout.context_noise: expected a timestep in [0, 1000)",
     "found 1000"},
    {"rollout {\n  sink_size: -2\n}\n", "8:3: rollout.sink_size: expected at least 0", "found -2"},
    {"rollout {\n  sink_size: 3\n  local_attn_size: 5\n}\n",
     "9:3: rollout.local_attn_size: expected -1 (keep the whole run) or at least rollout.frames_per_chunk + "
     "rollout.sink_size = 3 + 3 = 6 latent frames (the window holds the current chunk plus the sink)",
     "found 5"},
    {"rollout {\n  local_attn_size: -3\n}\n", "8:3: rollout.local_attn_size: expected -1", "found -3"},
    {"attention {\n  block_size: 96\n}\n", "8:3: attention.block_size: expected 64 or 128 tokens", "found 96"},
    {"attention {\n  policy: SINK_WINDOW\n}\n", "8:3: attention.policy: SINK_WINDOW needs a window", "found -1"},
    {"attention {\n  forcing_kv {\n    static_head_threshold: 1.5\n  }\n}\n",
     "9:5: attention.forcing_kv.static_head_threshold: expected a share of attention in (0, 1]", "found 1.5"},
    {"attention {\n  lvsa { anchor_interval: 0 }\n}\n", "8:10: attention.lvsa.anchor_interval: expected at least 2",
     "found 0"},
    {"parallel {\n  ulysses: 3\n}\n", "8:3: parallel.ulysses: expected a divisor of model.num_heads (2)", "found 3"},
    {"parallel {\n  ulysses: 0\n}\n", "8:3: parallel.ulysses: expected at least 1", "found 0"},
    {"video { width: 128 height: 64 }\nattention { block_size: 64 }\nparallel {\n  spatial: 2\n}\n",
     "10:3: parallel.spatial: expected at most 1 ranks: a 128x64 frame has 32 tokens = 1 blocks of 64", "found 2"},
    {"parallel {\n  vae: DEDICATED_RANKS\n  vae_ranks: 0\n}\n", "9:3: parallel.vae_ranks: expected at least 1",
     "found 0"},
    {"video { width: 128 height: 64 }\nparallel {\n  vae: DEDICATED_RANKS\n  vae_ranks: 9\n}\n",
     "10:3: parallel.vae_ranks: expected at most 8 ranks: the VAE ranks split a latent frame's 8 rows", "found 9"},
    {"parallel {\n  data_parallel: -1\n}\n", "8:3: parallel.data_parallel: expected at least 0", "found -1"},
    {"parallel {\n  overlap_groups: 0\n}\n", "8:3: parallel.overlap_groups: expected at least 1", "found 0"},
    {"parallel {\n  overlap_groups: 2\n}\n",
     "8:3: parallel.overlap_groups: expected 1 with one DiT rank (ulysses x spatial = 1 has no exchange to overlap)",
     "found 2"},
    {"parallel {\n  ulysses: 2\n  overlap_groups: 2\n}\n",
     "9:3: parallel.overlap_groups: expected a divisor of the heads of a Ulysses rank (model.num_heads / "
     "parallel.ulysses = 1): each group holds whole heads",
     "found 2"},
    {"runtime { device: CPU }\nparallel {\n  transport: NCCL\n}\n",
     "9:3: parallel.transport: expected MPI or AUTO with runtime.device CPU (NCCL moves GPU buffers", "found NCCL"},
    {"output {\n  crf: 52\n}\n", "8:3: output.crf: expected 0 (lossless) to 51", "found 52"},
    {"output {\n  preset: \"fastest\"\n}\n", "8:3: output.preset: expected an x264 preset", "found \"fastest\""},
    {"monitoring {\n  port: 70000\n}\n", "8:3: monitoring.port: expected a port in [0, 65535]", "found 70000"},
    {"monitoring {\n  port: -1\n}\n",
     "8:3: monitoring.port: expected a port in [0, 65535] (0 = ephemeral; to turn "
     "metrics off set monitoring.enabled: false",
     "found -1"},
    {"monitoring {\n  bind: \"\"\n}\n", "8:3: monitoring.bind: expected an address to listen on", "found \"\""},
};

TEST(ConfigErrors, SemanticErrorsPointAtTheField) {
    TempDir dir;
    for (size_t i = 0; i < kSemanticCases.size(); ++i) {
        const SemanticCase& c = kSemanticCases[i];
        const std::string text = c.text.starts_with("model") ? c.text : std::string(test::kModel) + c.text;
        const std::string path = dir.write("case" + std::to_string(i) + ".textproto", text);
        SCOPED_TRACE("case " + std::to_string(i) + ":\n" + text);
        const std::string msg = input_error([&] { load_config(path); });
        const std::string expected =
            c.expected.starts_with("-: ") ? path + ": " + c.expected.substr(3) : path + ":" + c.expected;
        EXPECT_STARTS_WITH(msg, expected);
        EXPECT_CONTAINS(msg, c.found.starts_with("-: ") ? path + ": " + c.found.substr(3) : c.found);
        EXPECT_EQ(std::count(msg.begin(), msg.end(), '\n') + 1, c.lines) << msg;
        // The path a message names is one `--set` accepts.
        const std::string rest = c.expected.substr(c.expected.find(": ") + 2);
        const std::string field = rest.substr(0, rest.find(": "));
        try {
            parse_config_text(text, "x", {parse_override(field + "=?")});
        } catch (const InputError& e) {
            EXPECT_LACKS(e.what(), "unknown field");
        }
    }
}

TEST(ConfigErrors, EveryProblemIsReportedOnItsOwnLine) {
    const std::string msg = input_error([] {
        parse_config_text(std::string(kModel) + "video {\n  width: 100\n  fps: 0\n}\noutput { crf: 99 }\n", "many");
    });
    EXPECT_CONTAINS(msg, "many:8:3: video.width: expected a positive multiple of 16");
    EXPECT_CONTAINS(msg, "\nmany:9:3: video.fps: expected a positive number, found 0");
    EXPECT_CONTAINS(msg, "\nmany:11:10: output.crf: expected 0 (lossless) to 51, found 99");
}

TEST(ConfigErrors, AbsentFieldIsBlamedOnTheFileWithoutALine) {
    // video.width keeps its default (832), which the 1.3B-sized spatial split cannot cover with 100 ranks.
    const std::string msg =
        input_error([] { parse_config_text(std::string(kModel) + "parallel {\n  spatial: 100\n}\n", "d.textproto"); });
    EXPECT_STARTS_WITH(msg,
                       "d.textproto:8:3: parallel.spatial: expected at most 13 ranks: a 832x480 frame has 1560 "
                       "tokens = 13 blocks of 128");
    const std::string no_model = input_error([] { parse_config_text("video { width: 128 }", "n.textproto"); });
    EXPECT_STARTS_WITH(no_model, "n.textproto: model: required, not set");
}

TEST(ConfigErrors, SyntaxErrorsCarryLineAndColumn) {
    TempDir dir;
    const std::string path = dir.write("syntax.textproto", "model {\n  dim: 64\n  ffn_dim 128x\n}\n");
    const std::string msg = input_error([&] { load_config(path); });
    EXPECT_STARTS_WITH(msg, path + ":3:");
    EXPECT_CONTAINS(msg, "Need space between number and identifier");

    EXPECT_STARTS_WITH(input_error([] { parse_config_text("model {\n  dim: 64\n", "eof.textproto"); }),
                       "eof.textproto:3:1: Expected identifier, got: the end of the file");
    EXPECT_STARTS_WITH(input_error([] { parse_config_text("model {\n  dim: 3.5\n}", "t.textproto"); }),
                       "t.textproto:2:8: Expected integer, got: 3.5");
    EXPECT_STARTS_WITH(input_error([] { parse_config_text("model { dim: 99999999999999999999 }", "t.textproto"); }),
                       "t.textproto:1:14: Integer out of range");
}

TEST(ConfigErrors, UnknownFieldPointsAtTheNameAndListsTheValidOnes) {
    TempDir dir;
    const std::string path = dir.write(
        "unknown.textproto", std::string(kModel) + "rollout {\n  frames_per_chunk: 3\n  loacl_attn_size: 3\n}\n");
    const std::string msg = input_error([&] { load_config(path); });
    EXPECT_STARTS_WITH(msg,
                       path + ":9:3: Message type \"longroll.config.Rollout\" has no field named \"loacl_attn_size\".");
    EXPECT_CONTAINS(msg, "Did you mean \"local_attn_size\"?");
    EXPECT_CONTAINS(msg, "Valid fields in rollout: frames_per_chunk, denoising_steps, timestep_shift");

    const std::string top = input_error([] { parse_config_text("modle {\n}\n", "top.textproto"); });
    EXPECT_STARTS_WITH(top, "top.textproto:1:1: Message type \"longroll.config.Config\" has no field named \"modle\".");
    EXPECT_CONTAINS(top, "Valid fields at the top level: model, rollout, video");
}

TEST(ConfigErrors, UnknownEnumValueListsTheValidOnes) {
    const std::string msg = input_error(
        [] { parse_config_text(std::string(kModel) + "attention {\n  policy: SPARSE\n}\n", "enum.textproto"); });
    EXPECT_STARTS_WITH(msg, "enum.textproto:8:11: Unknown enumeration value of \"SPARSE\" for field \"policy\".");
    EXPECT_CONTAINS(msg, "Valid values: DENSE, SINK_WINDOW, SPARSE_FORCING, PBSA, LIGHT_FORCING, FORCING_KV, LVSA.");
    // Blanks and a comment between the value and the next token.
    const std::string commented = input_error([] {
        parse_config_text(std::string(kModel) + "attention {\n  policy:   SPARSE  # try it\n\n}\n", "c.textproto");
    });
    EXPECT_STARTS_WITH(commented, "c.textproto:8:13: Unknown enumeration value of \"SPARSE\"");
    // A number the enum does not name is parsed (proto3), then refused.
    const std::string num =
        input_error([] { parse_config_text(std::string(kModel) + "attention {\n  policy: 9\n}\n", "num.textproto"); });
    EXPECT_STARTS_WITH(num, "num.textproto:8:3: attention.policy: expected one of DENSE, SINK_WINDOW");
    EXPECT_CONTAINS(num, "found 9");
    const std::string transport =
        input_error([] { parse_config_text(std::string(kModel) + "parallel {\n  transport: 5\n}\n", "t.textproto"); });
    EXPECT_STARTS_WITH(transport, "t.textproto:8:3: parallel.transport: expected one of AUTO, MPI, NCCL, found 5");
    const std::string sampler =
        input_error([] { parse_config_text(std::string(kModel) + "rollout {\n  sampler: 2\n}\n", "s.textproto"); });
    EXPECT_STARTS_WITH(sampler, "s.textproto:8:3: rollout.sampler: expected one of SELF_FORCING, EULER, found 2");
}

TEST(ConfigErrors, RepeatedScalarField) {
    const std::string msg =
        input_error([] { parse_config_text("model {\n  dim: 64\n  dim: 128\n}\n", "dup.textproto"); });
    EXPECT_STARTS_WITH(msg, "dup.textproto:3:3: Non-repeated field \"dim\" is specified multiple times.");
}

TEST(ConfigErrors, ValidateConfigNamesTheField) {
    Config c = default_config();
    EXPECT_NO_THROW(validate_config(c));
    c.video.width = 100;
    EXPECT_STARTS_WITH(input_error([&] { validate_config(c); }), "video.width: expected a positive multiple of 16");
    c = default_config();
    c.parallel.ulysses = 4;
    EXPECT_STARTS_WITH(input_error([&] { validate_config(c); }),
                       "parallel.ulysses: expected a divisor of model.num_heads (2)");
    c = default_config();
    c.runtime.dtype = DType::kI8;
    EXPECT_STARTS_WITH(input_error([&] { validate_config(c); }), "runtime.dtype: expected BF16, F16 or F32, found I8");
    c = default_config();
    c.parallel.vae = VaePlacement::kDedicatedRanks;  // set in code without vae_ranks
    EXPECT_STARTS_WITH(input_error([&] { validate_config(c); }), "parallel.vae_ranks: expected at least 1, found 0");
    c = default_config();
    c.parallel.transport = Transport::kNccl;
    EXPECT_NO_THROW(validate_config(c));  // runtime.device AUTO: whether NCCL can run is decided at start-up
    c.runtime.device = DeviceChoice::kCpu;
    EXPECT_STARTS_WITH(input_error([&] { validate_config(c); }),
                       "parallel.transport: expected MPI or AUTO with runtime.device CPU");
    c.parallel.transport = Transport::kMpi;
    EXPECT_NO_THROW(validate_config(c));
    c = default_config();
    c.model.num_heads = 0;  // no division by zero on the way to the message
    EXPECT_STARTS_WITH(input_error([&] { validate_config(c); }), "model.num_heads: expected a positive number");
    c = default_config();
    c.monitoring.enabled = false;
    c.monitoring.port = -5;  // not looked at while metrics are off
    EXPECT_NO_THROW(validate_config(c));
}

}  // namespace
}  // namespace lr
