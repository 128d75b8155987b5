// Single DiT forwards against the PyTorch reference (Self-Forcing's causal_model.py; LongLive's
// causal_model_infinity.py for window-relative RoPE), fp32 on both sides.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "runtime/core/check.h"
#include "tests/unit/model/parity_util.h"

namespace lr {
namespace {

using test::fixture_meta;
using test::fixture_tensor;
using test::kParityBound;
using test::open_fixture;
using test::relative_error;

// One latent chunk through the model; out: [frames, 16, H, W].
std::vector<float> forward(const WanModel& m, const std::vector<float>& x, const std::vector<float>& t, int64_t start,
                           int64_t h, int64_t w, const WanPrompt& prompt, KvCache& cache, RopePositions rope) {
    const int64_t frames = static_cast<int64_t>(t.size());
    std::vector<float> out(x.size());
    WanForwardArgs a;
    a.x = x.data();
    a.t = t.data();
    a.frames = frames;
    a.height = h;
    a.width = w;
    a.start_frame = start;
    a.prompt = &prompt;
    a.cache = &cache;
    a.rope = rope;
    m.forward(a, out.data());
    return out;
}

class ForwardParity : public ::testing::TestWithParam<const char*> {};

TEST_P(ForwardParity, MatchesReference) {
    const std::string name = std::string("forward_") + GetParam() + ".safetensors";
    const auto f = open_fixture(name);
    if (!f) return;
    const json::Value meta = fixture_meta(*f, "case");
    ASSERT_TRUE(meta.is_object());
    const WanModel m = test::load_fixture_model(meta.find("weights")->as_string());
    Shape xs;
    const auto x = fixture_tensor(*f, "x", &xs);
    const auto t = fixture_tensor(*f, "t");
    const auto want = fixture_tensor(*f, "out");
    ASSERT_EQ(xs.ndim, 4);
    const int64_t frame = xs[1] * xs[2] * xs[3], h = xs[2], w = xs[3];
    const WanPrompt prompt = m.encode_prompt(f->view("context"));
    const RopePositions rope = test::rope_of(meta.find("rope_mode")->as_string());
    const int64_t window = meta.find("local_attn_size")->as_int64();
    const int64_t sink = meta.find("sink_size")->as_int64();
    const int64_t cache_frames = meta.find("kv_cache_frames")->as_int64();
    KvCache cache(m.kv_cache_config(h, w, window, sink, cache_frames));

    const json::Value* prefill = meta.find("cache_prefill");
    if (prefill && prefill->is_object()) {
        if (const json::Value* at = prefill->find("empty_cache_at_frame"); at && !at->is_null()) {
            cache.reset(at->as_int64());  // no keys cached, the cache's clock at this frame
        }
        if (const json::Value* calls = prefill->find("calls"); calls && !calls->as_array().empty()) {
            const auto px = fixture_tensor(*f, "prefill_x");
            const auto pout = fixture_tensor(*f, "prefill_out");
            int64_t done = 0;
            for (const json::Value& call : calls->as_array()) {
                const int64_t f0 = call.find("frames")->as_array()[0].as_int64();
                const int64_t f1 = call.find("frames")->as_array()[1].as_int64();
                const float tc = static_cast<float>(call.find("t")->as_number());
                const std::vector<float> xc(px.begin() + f0 * frame, px.begin() + f1 * frame);
                const auto got =
                    forward(m, xc, std::vector<float>(static_cast<size_t>(f1 - f0), tc), f0, h, w, prompt, cache, rope);
                const double err = relative_error(got.data(), pout.data() + done * frame, got.size());
                EXPECT_LT(err, kParityBound) << name << ": prefill call frames [" << f0 << ", " << f1 << ")";
                done += f1 - f0;
            }
        }
    }
    const int64_t start = meta.find("start_frame")->as_int64();
    const auto got = forward(m, x, t, start, h, w, prompt, cache, rope);
    ASSERT_EQ(got.size(), want.size());
    const double err = relative_error(got.data(), want.data(), got.size());
    const double max_abs = test::max_abs_error(got.data(), want.data(), got.size());
    std::printf("[ parity   ] %s: rel error %.3g, max abs %.3g\n", name.c_str(), err, max_abs);
    RecordProperty("rel_error", std::to_string(err));
    EXPECT_LT(err, kParityBound) << name;
    EXPECT_LT(max_abs, test::kParityMaxAbs) << name;
}

INSTANTIATE_TEST_SUITE_P(Parity, ForwardParity,
                         ::testing::Values("tiny_empty", "tiny_prefill", "tiny_evict_absolute", "tiny_evict_relative",
                                           "hd128_f0", "hd128_f1021"));

// The intermediates of the first forward of rollout_sf (chunk 0, step 0, empty cache), by name: localizes a
// discrepancy to a module.
TEST(ForwardParity, IntermediatesOfTheFirstRolloutForward) {
    const auto dbg = open_fixture("debug_rollout_sf.safetensors");
    const auto roll = open_fixture("rollout_sf.safetensors");
    if (!dbg || !roll) return;
    WanModel m = test::load_fixture_model("weights_tiny.safetensors");
    std::map<std::string, std::vector<float>> seen;
    m.set_dump([&](const std::string& name, const float* data, const Shape& shape) {
        seen[name].assign(data, data + shape.numel());
    });
    const WanPrompt prompt = m.encode_prompt(roll->view("context"));
    Shape ns;
    const auto noise = fixture_tensor(*roll, "noise", &ns);
    const int64_t frame = ns[1] * ns[2] * ns[3];
    const std::vector<float> x(noise.begin(), noise.begin() + 3 * frame);
    KvCache cache(m.kv_cache_config(ns[2], ns[3], -1, 0, 21));
    const auto flow =
        forward(m, x, {1000.0f, 1000.0f, 1000.0f}, 0, ns[2], ns[3], prompt, cache, RopePositions::kAbsolute);
    std::map<std::string, std::string> names = {{"patch_embedding", "patch_embedding"},
                                                {"time_embedding", "time_embedding"},
                                                {"time_projection", "time_projection"},
                                                {"text_embedding", "text_embedding"},
                                                {"head", "head"}};
    for (int64_t l = 0; l < m.num_layers(); ++l) {
        names[str_cat("block", l, "_self_attn")] = str_cat("blocks.", l, ".self_attn");
        names[str_cat("block", l, "_cross_attn")] = str_cat("blocks.", l, ".cross_attn");
        names[str_cat("block", l, "_out")] = str_cat("blocks.", l);
    }
    for (const auto& [ref_name, our_name] : names) {
        ASSERT_TRUE(dbg->find(ref_name)) << "debug fixture lacks " << ref_name;
        ASSERT_TRUE(seen.count(our_name)) << "no dump named " << our_name;
        const auto want = fixture_tensor(*dbg, ref_name);
        const auto& got = seen[our_name];
        ASSERT_EQ(got.size(), want.size()) << ref_name;
        EXPECT_LT(relative_error(got.data(), want.data(), got.size()), kParityBound) << ref_name;
    }
    const auto want_flow = fixture_tensor(*dbg, "chunk0_step0_flow");
    EXPECT_LT(relative_error(flow.data(), want_flow.data(), flow.size()), kParityBound);
}

}  // namespace
}  // namespace lr
