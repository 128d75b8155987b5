// Whole rollouts against the PyTorch reference pipelines (Self-Forcing's CausalInferencePipeline, LongLive's
// CausalInferencePipeline and InteractiveCausalInferencePipeline), replaying their noise; and the schedule.
#include <gtest/gtest.h>

#include <cstdio>

#include "runtime/rollout/rollout.h"
#include "tests/unit/model/parity_util.h"

namespace lr {
namespace {

using test::fixture_meta;
using test::fixture_tensor;
using test::kParityBound;
using test::open_fixture;
using test::relative_error;

TEST(SchedulerParity, TablesAndWarpedStepsMatchTheReference) {
    const auto f = open_fixture("scheduler.safetensors");
    if (!f) return;
    const json::Value meta = fixture_meta(*f, "scheduler");
    const FlowMatchScheduler s(meta.find("shift")->as_number(),
                               static_cast<int>(meta.find("num_train_timesteps")->as_int64()));
    const auto sigmas = fixture_tensor(*f, "sigmas");
    const auto timesteps = fixture_tensor(*f, "timesteps");
    ASSERT_EQ(sigmas.size(), s.sigmas().size());
    int exact = 0;
    for (size_t i = 0; i < sigmas.size(); ++i) {
        // torch.linspace's vectorized path may round differently in the last bit.
        ASSERT_NEAR(s.sigmas()[i], sigmas[i], 2e-7) << i;
        ASSERT_NEAR(s.timesteps()[i], timesteps[i], 2e-4) << i;
        exact += s.sigmas()[i] == sigmas[i] && s.timesteps()[i] == timesteps[i];
    }
    std::vector<int> steps;
    for (const json::Value& v : meta.find("denoising_steps")->as_array())
        steps.push_back(static_cast<int>(v.as_int64()));
    const auto warped = s.warp(steps);
    const auto want = fixture_tensor(*f, "denoising_timesteps");
    const auto sig = fixture_tensor(*f, "sigmas_at_steps");
    ASSERT_EQ(warped.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(warped[i], want[i]) << i;  // the timesteps the model sees: exact
        EXPECT_EQ(s.sigma_at(want[i]), sig[i]) << i;
        EXPECT_EQ(s.index_of(want[i]), meta.find("step_ids")->as_array()[i].as_int64()) << i;
    }
    std::printf("[ parity   ] scheduler: %d of %zu table entries bit-exact; warped steps %.4f %.4f %.4f %.4f\n", exact,
                sigmas.size(), warped[0], warped[1], warped[2], warped[3]);
}

class RolloutParity : public ::testing::TestWithParam<const char*> {};

TEST_P(RolloutParity, LatentsMatchReference) {
    const std::string name = std::string("rollout_") + GetParam() + ".safetensors";
    const auto f = open_fixture(name);
    if (!f) return;
    const json::Value meta = fixture_meta(*f, "rollout");
    ASSERT_TRUE(meta.is_object());
    ASSERT_TRUE(meta.find("global_sink") == nullptr || meta.find("global_sink")->as_bool())
        << "only LongLive's global_sink = true is implemented";
    const WanModel m = test::load_fixture_model(meta.find("weights")->as_string());

    RolloutOptions o;
    o.frames_per_chunk = meta.find("frames_per_chunk")->as_int64();
    o.denoising_steps.clear();
    for (const json::Value& v : meta.find("denoising_steps")->as_array()) {
        o.denoising_steps.push_back(static_cast<int>(v.as_int64()));
    }
    o.timestep_shift = meta.find("timestep_shift")->as_number();
    o.context_noise = static_cast<int>(meta.find("context_noise")->as_int64());
    o.local_attn_size = meta.find("local_attn_size")->as_int64();
    o.sink_size = meta.find("sink_size")->as_int64();
    o.rope = test::rope_of(meta.find("rope_mode")->as_string());

    Shape ls;
    const auto want = fixture_tensor(*f, "latents", &ls);
    ASSERT_EQ(ls.ndim, 4);
    const int64_t T = ls[0], C = ls[1], H = ls[2], W = ls[3], frame = C * H * W;
    std::vector<PromptSegment> prompts{{0, f->view("context")}};
    for (const json::Value& sw : meta.find("prompt_switches")->as_array()) {
        prompts.push_back({sw.as_array()[0].as_int64(), f->view(sw.as_array()[1].as_string())});
    }
    const ReplayNoise noise(f->view("noise"), f->view("step_noise"), T, static_cast<int64_t>(o.denoising_steps.size()),
                            C, H, W, name);
    Rollout r(m, o, RolloutShape{T, H, W});
    HostTensor got(DType::kF32, Shape{T, C, H, W});
    r.run(prompts, noise, collect_latents(got));

    const double err = relative_error(got.as<float>(), want.data(), want.size());
    const double max_abs = test::max_abs_error(got.as<float>(), want.data(), want.size());
    std::printf("[ parity   ] %s: rel error %.3g, max abs %.3g over %lld frames\n", name.c_str(), err, max_abs,
                static_cast<long long>(T));
    RecordProperty("rel_error", std::to_string(err));
    EXPECT_LT(err, kParityBound) << name;
    EXPECT_LT(max_abs, test::kParityMaxAbs) << name;
    for (int64_t c = 0; c * o.frames_per_chunk < T; ++c) {
        const int64_t f0 = c * o.frames_per_chunk, n = std::min(o.frames_per_chunk, T - f0);
        const double e =
            relative_error(got.as<float>() + f0 * frame, want.data() + f0 * frame, static_cast<size_t>(n * frame));
        EXPECT_LT(e, kParityBound) << name << ": chunk " << c << " (frames " << f0 << ".." << f0 + n - 1 << ")";
    }
}

INSTANTIATE_TEST_SUITE_P(Parity, RolloutParity,
                         ::testing::Values("sf", "window_absolute", "window_relative", "switch_absolute",
                                           "switch_relative"));

}  // namespace
}  // namespace lr
