// `--set path=value`: parsing the flag, applying it through the schema, and its errors.
#include <limits>
#include <string>
#include <vector>

#include "config_test_util.h"

namespace lr {
namespace {

using test::input_error;
using test::kModel;

Config with(const std::vector<std::string>& sets, std::string_view text = kModel) {
    std::vector<ConfigOverride> overrides;
    for (const std::string& s : sets) overrides.push_back(parse_override(s));
    return parse_config_text(text, "base.textproto", overrides);
}

std::string set_error(const std::string& set) {
    return input_error([&] { with({set}); });
}

TEST(ConfigOverride, ParseSplitsAtTheFirstEquals) {
    ConfigOverride o = parse_override("rollout.local_attn_size=6");
    EXPECT_EQ(o.path, "rollout.local_attn_size");
    EXPECT_EQ(o.value, "6");
    o = parse_override("monitoring.bind=a=b");
    EXPECT_EQ(o.path, "monitoring.bind");
    EXPECT_EQ(o.value, "a=b");
    o = parse_override("monitoring.file_sd_path=");
    EXPECT_EQ(o.path, "monitoring.file_sd_path");
    EXPECT_EQ(o.value, "");
}

TEST(ConfigOverride, ParseRefusesMissingEqualsAndEmptyPath) {
    EXPECT_CONTAINS(input_error([] { parse_override("rollout.local_attn_size"); }),
                    "--set rollout.local_attn_size: expected path=value");
    EXPECT_CONTAINS(input_error([] { parse_override("=6"); }), "--set =6: expected path=value");
    EXPECT_CONTAINS(input_error([] { parse_override("=6"); }), "empty path");
}

TEST(ConfigOverride, Scalars) {
    const Config c = with({"rollout.local_attn_size=6", "video.width=256", "video.height= 128", "parallel.ulysses=2",
                           "rollout.timestep_shift=3.5", "model.model_type=t2v", "output.preset=slow",
                           "runtime.seed=18446744073709551615"});
    EXPECT_EQ(c.rollout.local_attn_size, 6);
    EXPECT_EQ(c.video.width, 256);
    EXPECT_EQ(c.video.height, 128);
    EXPECT_EQ(c.parallel.ulysses, 2);
    EXPECT_DOUBLE_EQ(c.rollout.timestep_shift, 3.5);
    EXPECT_EQ(c.model.model_type, "t2v");
    EXPECT_EQ(c.output.preset, "slow");
    EXPECT_EQ(c.runtime.seed, std::numeric_limits<uint64_t>::max());
}

TEST(ConfigOverride, EnumsByNameIgnoringCase) {
    const std::string text = std::string(kModel) + "rollout { local_attn_size: 12 sink_size: 3 }\n";
    EXPECT_EQ(with({"attention.policy=SINK_WINDOW"}, text).attention.policy, AttentionPolicy::kSinkWindow);
    EXPECT_EQ(with({"attention.policy=sink_window"}, text).attention.policy, AttentionPolicy::kSinkWindow);
    EXPECT_EQ(with({"attention.policy=light-forcing"}, text).attention.policy, AttentionPolicy::kLightForcing);
    EXPECT_EQ(with({"attention.policy=pbsa"}, text).attention.policy, AttentionPolicy::kSparseForcing);
    EXPECT_EQ(with({"rollout.rope_mode=window_relative"}, text).rollout.rope_mode, RopeMode::kWindowRelative);
    EXPECT_EQ(with({"rollout.sampler=euler"}, text).rollout.sampler, Sampler::kEuler);
    EXPECT_EQ(with({"rollout.sampler=SELF_FORCING"}, text).rollout.sampler, Sampler::kSelfForcing);
    EXPECT_EQ(with({"runtime.device=cpu"}, text).runtime.device, DeviceChoice::kCpu);
    EXPECT_EQ(with({"runtime.dtype=f32"}, text).runtime.dtype, DType::kF32);
    EXPECT_EQ(with({"parallel.transport=NCCL"}, text).parallel.transport, Transport::kNccl);
    EXPECT_EQ(with({"parallel.transport=mpi"}, text).parallel.transport, Transport::kMpi);
    EXPECT_EQ(with({"parallel.transport=nccl", "parallel.transport=Auto"}, text).parallel.transport, Transport::kAuto);
}

TEST(ConfigOverride, RepeatedFieldsTakeLists) {
    Config c = with({"rollout.denoising_steps=1000,750,500"});
    EXPECT_EQ(c.rollout.denoising_steps, (std::vector<int>{1000, 750, 500}));
    c = with({"rollout.denoising_steps=[1000, 500]"});
    EXPECT_EQ(c.rollout.denoising_steps, (std::vector<int>{1000, 500}));
    c = with({"rollout.denoising_steps=800"});
    EXPECT_EQ(c.rollout.denoising_steps, (std::vector<int>{800}));
    c = with({"model.patch_size=1,2,2"});
    EXPECT_EQ(c.model.patch_size, (std::array<int64_t, 3>{1, 2, 2}));
    // The list replaces the file's, it does not append to it.
    c = with({"rollout.denoising_steps=600,300"},
             std::string(kModel) + "rollout { denoising_steps: [1000, 750, 500, 250] }\n");
    EXPECT_EQ(c.rollout.denoising_steps, (std::vector<int>{600, 300}));
}

TEST(ConfigOverride, AppliedInOrderLastWins) {
    const Config c = with({"video.width=256", "video.width=512"});
    EXPECT_EQ(c.video.width, 512);
}

TEST(ConfigOverride, CanSupplyRequiredFields) {
    const Config c = with({"model.dim=128", "model.ffn_dim=256", "model.num_heads=4", "model.num_layers=1"}, "");
    EXPECT_EQ(c.model.dim, 128);
    EXPECT_EQ(c.model.head_dim(), 32);
}

TEST(ConfigOverride, MonitoringPortOffAndOn) {
    Config c = with({"monitoring.port=off"});
    EXPECT_FALSE(c.monitoring.enabled);
    c = with({"monitoring.port=OFF"});
    EXPECT_FALSE(c.monitoring.enabled);
    c = with({"monitoring.port=0"}, std::string(kModel) + "monitoring { enabled: false }\n");
    EXPECT_TRUE(c.monitoring.enabled);
    EXPECT_EQ(c.monitoring.port, 0);
    c = with({"monitoring.enabled=false"});
    EXPECT_FALSE(c.monitoring.enabled);
}

TEST(ConfigOverride, UnknownTopLevelFieldListsTheSections) {
    const std::string msg = set_error("rollot.local_attn_size=6");
    EXPECT_STARTS_WITH(msg, "--set rollot.local_attn_size=6: unknown field 'rollot'");
    EXPECT_CONTAINS(msg, "did you mean 'rollout'?");
    EXPECT_CONTAINS(msg, "valid fields: model, rollout, video, attention, parallel, output, monitoring, runtime");
}

TEST(ConfigOverride, UnknownNestedFieldListsItsSiblings) {
    const std::string msg = set_error("rollout.local_attn_sise=6");
    EXPECT_STARTS_WITH(msg, "--set rollout.local_attn_sise=6: unknown field 'local_attn_sise' in rollout");
    EXPECT_CONTAINS(msg, "did you mean 'local_attn_size'?");
    EXPECT_CONTAINS(msg, "valid fields of rollout: frames_per_chunk, denoising_steps");
    EXPECT_CONTAINS(set_error("attention.lvsa.anchors=3"),
                    "valid fields of attention.lvsa: window_frames, anchor_interval");
}

TEST(ConfigOverride, SectionsAreNotValues) {
    EXPECT_CONTAINS(set_error("rollout=3"), "--set rollout=3: 'rollout' is a section, not a value");
    EXPECT_CONTAINS(set_error("rollout.sink_size.x=1"), "'rollout.sink_size' is a value, not a section");
}

TEST(ConfigOverride, BadValuesNameTheTypeExpected) {
    EXPECT_CONTAINS(set_error("rollout.sink_size=abc"),
                    "--set rollout.sink_size=abc: expected an integer (int32), found 'abc'");
    EXPECT_CONTAINS(set_error("rollout.sink_size=1.5"), "expected an integer (int32), found '1.5'");
    EXPECT_CONTAINS(set_error("video.width=99999999999"), "expected an integer (int32), found '99999999999'");
    EXPECT_CONTAINS(set_error("runtime.seed=-1"), "expected a non-negative integer (uint64), found '-1'");
    EXPECT_CONTAINS(set_error("rollout.timestep_shift=fast"), "expected a finite number, found 'fast'");
    EXPECT_CONTAINS(set_error("rollout.timestep_shift=nan"), "expected a finite number, found 'nan'");
    EXPECT_CONTAINS(set_error("model.qk_norm=maybe"), "expected a boolean (true or false), found 'maybe'");
    EXPECT_CONTAINS(set_error("attention.policy=sparse"),
                    "--set attention.policy=sparse: expected one of DENSE, SINK_WINDOW, SPARSE_FORCING, PBSA, "
                    "LIGHT_FORCING, FORCING_KV, LVSA, found 'sparse'");
    EXPECT_CONTAINS(set_error("parallel.transport=gloo"),
                    "--set parallel.transport=gloo: expected one of AUTO, MPI, NCCL, found 'gloo'");
    EXPECT_CONTAINS(set_error("rollout.denoising_steps="), "expected a comma-separated list of an integer (int32)");
    EXPECT_CONTAINS(set_error("rollout.denoising_steps=1000,x,500"),
                    "expected an integer (int32) per element, found 'x'");
    EXPECT_CONTAINS(set_error("monitoring.port=on"), "expected an integer (int32), found 'on'");
}

TEST(ConfigOverride, NcclOnTheCpuPointsAtTheOverride) {
    const std::string msg = input_error([] { with({"runtime.device=cpu", "parallel.transport=NCCL"}); });
    EXPECT_STARTS_WITH(msg, "--set parallel.transport=NCCL: expected MPI or AUTO with runtime.device CPU");
    EXPECT_CONTAINS(msg, "found NCCL");
}

TEST(ConfigOverride, SemanticErrorsPointAtTheOverride) {
    const std::string msg = set_error("video.width=100");
    EXPECT_STARTS_WITH(msg, "--set video.width=100: expected a positive multiple of 16");
    EXPECT_CONTAINS(msg, "found 100");
    // An override of a field the file set takes the blame from then on, and no longer the file's line.
    const std::string text = std::string(kModel) + "rollout {\n  local_attn_size: 12\n}\n";
    const std::string m2 = input_error([&] { with({"rollout.local_attn_size=2"}, text); });
    EXPECT_STARTS_WITH(m2, "--set rollout.local_attn_size=2: expected -1 (keep the whole run) or at least");
    EXPECT_LACKS(m2, "base.textproto:8");
    // Repeated fields: the element's problem is the override's.
    EXPECT_STARTS_WITH(set_error("rollout.denoising_steps=1000,1000"),
                       "--set rollout.denoising_steps=1000,1000: element 1: expected strictly decreasing");
}

TEST(ConfigOverride, FixingAFileErrorWithAnOverride) {
    const std::string text = std::string(kModel) + "video {\n  width: 100\n}\n";
    EXPECT_CONTAINS(input_error([&] { with({}, text); }), "base.textproto:8:3: video.width");
    EXPECT_EQ(with({"video.width=112"}, text).video.width, 112);
}

// The CLI's flags (--size, ...) adjust the parsed config before validation: a check that relates fields sees the
// adjusted values (two spatial ranks need two blocks of 128 tokens in a frame).
TEST(ConfigOverride, AdjustRunsBeforeValidation) {
    const std::vector<ConfigOverride> spatial{parse_override("parallel.spatial=2")};
    const auto size = [](int64_t w, int64_t h) {
        return [w, h](Config& c) {
            c.video.width = w;
            c.video.height = h;
        };
    };
    const std::string msg = input_error([&] { parse_config_text(kModel, "base.textproto", spatial, size(128, 64)); });
    EXPECT_CONTAINS(msg, "parallel.spatial");
    EXPECT_CONTAINS(msg, "a 128x64 frame");
    const Config cfg = parse_config_text(kModel, "base.textproto", spatial, size(512, 256));
    EXPECT_EQ(cfg.parallel.spatial, 2);
    EXPECT_EQ(cfg.video.width, 512);
    // An adjusted value that is wrong is reported like any other.
    EXPECT_CONTAINS(input_error([&] { parse_config_text(kModel, "base.textproto", {}, size(100, 64)); }),
                    "video.width");
}

}  // namespace
}  // namespace lr
