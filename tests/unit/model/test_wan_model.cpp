#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>

#include "kernels/cast.h"
#include "runtime/core/check.h"
#include "runtime/io/safetensors.h"
#include "runtime/model/wan_model.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

using test::gaussian;
using test::rel_error;
using test::tiny_config;
using test::tiny_context;
using test::tiny_model;

constexpr int64_t kC = 16, kH = 4, kW = 6;  // latent: 2 x 3 patches = 6 tokens per frame

// Runs one forward; returns the flow [frames, 16, 4, 6].
std::vector<float> run(const WanModel& m, const std::vector<float>& x, const std::vector<float>& t, int64_t start,
                       const WanPrompt& prompt, KvCache* cache, int64_t causal_block = 0,
                       RopePositions rope = RopePositions::kAbsolute) {
    const int64_t frames = static_cast<int64_t>(t.size());
    std::vector<float> out(static_cast<size_t>(frames * kC * kH * kW));
    WanForwardArgs a;
    a.x = x.data();
    a.t = t.data();
    a.frames = frames;
    a.height = kH;
    a.width = kW;
    a.start_frame = start;
    a.prompt = &prompt;
    a.cache = cache;
    a.causal_block_frames = causal_block;
    a.rope = rope;
    m.forward(a, out.data());
    return out;
}

std::vector<float> slice_frames(const std::vector<float>& v, int64_t begin, int64_t end) {
    const int64_t fn = kC * kH * kW;
    return {v.begin() + begin * fn, v.begin() + end * fn};
}

// The chunked rollout's attention (KV cache, bidirectional within a chunk, chunks written repeatedly) equals one
// forward over the whole sequence with the block-causal mask (the reference's training path).
TEST(WanModel, ChunkedWithCacheEqualsFullSequenceWithBlockCausalMask) {
    const WanModel m = tiny_model();
    const WanPrompt prompt = m.encode_prompt(tiny_context(1).view);
    const int64_t chunk = 2, chunks = 4, T = chunk * chunks;
    const auto x = gaussian(T * kC * kH * kW, 2);
    std::vector<float> t(static_cast<size_t>(T));
    for (int64_t f = 0; f < T; ++f) t[static_cast<size_t>(f)] = static_cast<float>(1000 - 97 * (f / chunk) - 3 * f);
    const auto full = run(m, x, t, 0, prompt, nullptr, chunk);

    KvCache cache(m.kv_cache_config(kH, kW, -1, 0, T));
    for (int64_t c = 0; c < chunks; ++c) {
        const auto xc = slice_frames(x, c * chunk, (c + 1) * chunk);
        const std::vector<float> tc(t.begin() + c * chunk, t.begin() + (c + 1) * chunk);
        // A first pass with other inputs: its K/V must be overwritten in place by the second.
        run(m, gaussian(static_cast<int64_t>(xc.size()), 100 + static_cast<uint32_t>(c)), {500.0f, 250.0f}, c * chunk,
            prompt, &cache);
        const auto out = run(m, xc, tc, c * chunk, prompt, &cache);
        const auto want = slice_frames(full, c * chunk, (c + 1) * chunk);
        EXPECT_LT(rel_error(out, want, out.size()), 1e-5) << "chunk " << c;
    }
    EXPECT_EQ(cache.frames(), T);
}

TEST(WanModel, FirstChunkEqualsBidirectionalForward) {
    const WanModel m = tiny_model();
    const WanPrompt prompt = m.encode_prompt(tiny_context(3).view);
    const auto x = gaussian(3 * kC * kH * kW, 4);
    const std::vector<float> t{937.5f, 937.5f, 937.5f};
    KvCache cache(m.kv_cache_config(kH, kW, -1, 0, 3));
    const auto a = run(m, x, t, 0, prompt, &cache);
    const auto b = run(m, x, t, 0, prompt, nullptr);
    EXPECT_EQ(a, b);
    // Not trivially constant: the output depends on the input and on the prompt.
    const auto c = run(m, x, t, 0, m.encode_prompt(tiny_context(9).view), nullptr);
    EXPECT_GT(rel_error(c, b, c.size()), 1e-3);
    double norm = 0;
    for (float v : a) norm += v * v;
    EXPECT_GT(norm, 1.0);
}

// LongLive's window-relative RoPE: positions come from cache slots, so the same chunks at another absolute
// start give the same output bit for bit; before any eviction the slots are the absolute frames, so it equals
// absolute mode; after an eviction the sink sits right before the window instead of far in the past.
TEST(WanModel, WindowRelativeRopeDependsOnSlotsNotOnAbsoluteFrames) {
    const WanModel m = tiny_model();
    const WanPrompt prompt = m.encode_prompt(tiny_context(5).view);
    const auto x = gaussian(8 * kC * kH * kW, 6);
    auto roll = [&](int64_t offset, RopePositions rope, int64_t window) {
        KvCache cache(m.kv_cache_config(kH, kW, window, 1, window > 0 ? window : 8));
        cache.reset(offset);  // the run starts at latent frame `offset`
        std::vector<float> all;
        for (int64_t c = 0; c < 4; ++c) {
            const auto out =
                run(m, slice_frames(x, 2 * c, 2 * c + 2), {700.0f, 700.0f}, offset + 2 * c, prompt, &cache, 0, rope);
            all.insert(all.end(), out.begin(), out.end());
        }
        return all;
    };
    const auto rel0 = roll(0, RopePositions::kWindowRelative, 5);
    const auto rel50 = roll(50, RopePositions::kWindowRelative, 5);
    EXPECT_EQ(rel0, rel50);
    const auto abs0 = roll(0, RopePositions::kAbsolute, 5);
    const auto abs50 = roll(50, RopePositions::kAbsolute, 5);
    // RoPE only sees position differences, so a constant offset changes absolute mode by rounding only.
    EXPECT_LT(rel_error(abs50, abs0, abs0.size()), 1e-5);
    // Without eviction (window large enough), slots == frames: both modes agree.
    const auto rel_big = roll(0, RopePositions::kWindowRelative, -1);
    const auto abs_big = roll(0, RopePositions::kAbsolute, -1);
    EXPECT_LT(rel_error(rel_big, abs_big, abs_big.size()), 1e-6);
    // With eviction (window 5, sink 1, chunks of 2) they differ from frame 6 on.
    EXPECT_GT(rel_error(slice_frames(rel0, 6, 8), slice_frames(abs0, 6, 8), 2 * kC * kH * kW), 1e-5);
}

TEST(WanModel, DumpHookNamesIntermediates) {
    WanModel m = tiny_model();
    const WanPrompt prompt = m.encode_prompt(tiny_context(1).view);
    std::map<std::string, Shape> seen;
    m.set_dump([&](const std::string& name, const float*, const Shape& shape) { seen[name] = shape; });
    run(m, gaussian(kC * kH * kW, 1), {1000.0f}, 0, prompt, nullptr);
    EXPECT_EQ(seen.at("patch_embedding"), (Shape{6, 32}));
    EXPECT_EQ(seen.at("time_projection"), (Shape{1, 6, 32}));
    EXPECT_EQ(seen.at("blocks.1.self_attn.q"), (Shape{6, 2, 16}));
    EXPECT_EQ(seen.at("blocks.0.cross_attn"), (Shape{6, 32}));
    EXPECT_EQ(seen.at("blocks.1"), (Shape{6, 32}));
    EXPECT_EQ(seen.at("head"), (Shape{6, 64}));
}

TEST(WanModel, RejectsBadPromptAndShapes) {
    const WanModel m = tiny_model();
    HostTensor too_long(DType::kF32, Shape{9, 24});
    EXPECT_THROW(m.encode_prompt(too_long.view), InputError);
    HostTensor wrong_dim(DType::kF32, Shape{3, 25});
    EXPECT_THROW(m.encode_prompt(wrong_dim.view), InputError);
    const WanPrompt prompt = m.encode_prompt(tiny_context(1).view);
    std::vector<float> x(static_cast<size_t>(kC * 5 * kW)), out(x.size());
    const float t = 0;
    WanForwardArgs a;
    a.x = x.data();
    a.t = &t;
    a.frames = 1;
    a.height = 5;  // odd: not a whole number of 2x2 patches
    a.width = kW;
    a.prompt = &prompt;
    EXPECT_THROW(m.forward(a, out.data()), InputError);
    // A cache shaped for another latent size.
    a.height = kH;
    KvCache cache(m.kv_cache_config(kH, kW + 2, -1, 0, 3));
    a.cache = &cache;
    EXPECT_THROW(m.forward(a, out.data()), InputError);
}

// ---- Loading ---------------------------------------------------------------------------------------

// Wan -> diffusers names, as diffusers' scripts/convert_wan_to_diffusers.py renames them.
std::string to_diffusers(std::string n) {
    static const std::vector<std::pair<std::string, std::string>> kRename = {
        {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
        {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
        {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
        {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
        {"time_projection.1", "condition_embedder.time_proj"},
        {"head.modulation", "scale_shift_table"},
        {"head.head", "proj_out"},
        {"modulation", "scale_shift_table"},
        {"ffn.0", "ffn.net.0.proj"},
        {"ffn.2", "ffn.net.2"},
        {"norm3", "norm2"},
        {"self_attn.q", "attn1.to_q"},
        {"self_attn.k", "attn1.to_k"},
        {"self_attn.v", "attn1.to_v"},
        {"self_attn.o", "attn1.to_out.0"},
        {"cross_attn.q", "attn2.to_q"},
        {"cross_attn.k", "attn2.to_k"},
        {"cross_attn.v", "attn2.to_v"},
        {"cross_attn.o", "attn2.to_out.0"},
        {"self_attn.norm_q", "attn1.norm_q"},
        {"self_attn.norm_k", "attn1.norm_k"},
        {"cross_attn.norm_q", "attn2.norm_q"},
        {"cross_attn.norm_k", "attn2.norm_k"},
    };
    for (const auto& [from, to] : kRename) {
        for (size_t p; (p = n.find(from)) != std::string::npos;) n.replace(p, from.size(), to);
    }
    return n;
}

class WanModelLoading : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ =
            std::filesystem::temp_directory_path() / ("lr_model_" + std::to_string(::getpid()) + "_" +
                                                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    std::filesystem::path dir_;
};

TEST_F(WanModelLoading, OriginalSelfForcingAndDiffusersNamesGiveTheSameModel) {
    const WanModelConfig cfg = tiny_config();
    const auto weights = make_default_wan_weights(cfg.dims, 5);
    std::vector<NamedTensor> original, self_forcing, diffusers;
    std::set<std::string> diffusers_names;
    for (const auto& [name, t] : weights) {
        original.push_back({name, t.view});
        self_forcing.push_back({"model._fsdp_wrapped_module." + name, t.view});
        diffusers.push_back({to_diffusers(name), t.view});
        diffusers_names.insert(to_diffusers(name));
    }
    // The diffusers file really uses diffusers names.
    EXPECT_TRUE(diffusers_names.count("blocks.1.attn2.to_out.0.weight"));
    EXPECT_TRUE(diffusers_names.count("blocks.0.attn1.norm_k.weight"));
    EXPECT_TRUE(diffusers_names.count("blocks.0.norm2.bias"));
    EXPECT_TRUE(diffusers_names.count("blocks.0.scale_shift_table"));
    EXPECT_TRUE(diffusers_names.count("scale_shift_table"));
    EXPECT_TRUE(diffusers_names.count("condition_embedder.time_proj.weight"));
    EXPECT_TRUE(diffusers_names.count("proj_out.bias"));
    EXPECT_TRUE(diffusers_names.count("blocks.1.ffn.net.0.proj.weight"));
    write_safetensors(path("orig.safetensors"), original);
    write_safetensors(path("sf.safetensors"), self_forcing);
    write_safetensors(path("diffusers.safetensors"), diffusers);

    const WanModel ref = tiny_model(5);
    const WanPrompt prompt = ref.encode_prompt(tiny_context(2).view);
    const auto x = gaussian(2 * kC * kH * kW, 3);
    const auto want = run(ref, x, {833.3333f, 833.3333f}, 0, prompt, nullptr);
    for (const char* file : {"orig.safetensors", "sf.safetensors", "diffusers.safetensors"}) {
        const WanModel m = WanModel::from_checkpoint(SafetensorsCheckpoint::open(path(file)), cfg);
        EXPECT_EQ(run(m, x, {833.3333f, 833.3333f}, 0, m.encode_prompt(tiny_context(2).view), nullptr), want) << file;
    }

    // BF16 weights are widened to F32: close to the F32 model, within bf16 rounding of the weights.
    std::vector<HostTensor> bf16;
    std::vector<NamedTensor> half;
    for (const auto& [name, t] : weights) {
        bf16.emplace_back(DType::kBF16, t.view.shape);
        cast(t.view, bf16.back().view);
        half.push_back({"model." + name, bf16.back().view});
    }
    write_safetensors(path("bf16.safetensors"), half);
    const WanModel mb = WanModel::from_checkpoint(SafetensorsCheckpoint::open(path("bf16.safetensors")), cfg);
    const auto got = run(mb, x, {833.3333f, 833.3333f}, 0, mb.encode_prompt(tiny_context(2).view), nullptr);
    EXPECT_LT(rel_error(got, want, want.size()), 3e-2);
    EXPECT_GT(rel_error(got, want, want.size()), 0.0);
}

TEST_F(WanModelLoading, ErrorsNameTheTensor) {
    const WanModelConfig cfg = tiny_config();
    const auto weights = make_default_wan_weights(cfg.dims, 5);
    std::vector<NamedTensor> tensors;
    for (const auto& [name, t] : weights) {
        if (name != "blocks.1.cross_attn.k.weight") tensors.push_back({to_diffusers(name), t.view});
    }
    write_safetensors(path("missing.safetensors"), tensors);
    try {
        WanModel::from_checkpoint(SafetensorsCheckpoint::open(path("missing.safetensors")), cfg);
        FAIL() << "expected an error";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("missing tensor 'blocks.1.cross_attn.k.weight'"), std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find("missing.safetensors"), std::string::npos) << e.what();
    }
    // A mis-shaped tensor is reported under its name in the file.
    HostTensor wrong(DType::kF32, Shape{32, 33});
    tensors.push_back({"blocks.1.attn2.to_k.weight", wrong.view});
    write_safetensors(path("shape.safetensors"), tensors);
    try {
        WanModel::from_checkpoint(SafetensorsCheckpoint::open(path("shape.safetensors")), cfg);
        FAIL() << "expected an error";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("'blocks.1.attn2.to_k.weight' has shape [32, 33], expected [32, 32]"),
                  std::string::npos)
            << e.what();
    }
    // from_weights checks too.
    auto partial = make_default_wan_weights(cfg.dims, 5);
    partial.pop_back();
    EXPECT_THROW(WanModel::from_weights(std::move(partial), cfg), InputError);
}

TEST_F(WanModelLoading, ConfigFromMetadata) {
    HostTensor t(DType::kF32, Shape{1});
    t.as<float>()[0] = 1;
    write_safetensors(path("m.safetensors"), {{"x", t.view}},
                      {{"config", R"({"dim": 64, "num_layers": 3, "text_len": 77, "eps": 1e-05})"}});
    bool found = false;
    const WanModelConfig c =
        wan_model_config_from_metadata(SafetensorsCheckpoint::open(path("m.safetensors")), tiny_config(), &found);
    EXPECT_TRUE(found);
    EXPECT_EQ(c.dims.dim, 64);
    EXPECT_EQ(c.dims.num_layers, 3);
    EXPECT_EQ(c.text_len, 77);
    EXPECT_DOUBLE_EQ(c.eps, 1e-5);
    EXPECT_EQ(c.dims.ffn_dim, tiny_config().dims.ffn_dim);
}

TEST(WanWeightsNames, DiffusersNamesMapToOriginalOnes) {
    EXPECT_EQ(diffusers_to_wan_name("blocks.12.attn1.to_out.0.weight"), "blocks.12.self_attn.o.weight");
    EXPECT_EQ(diffusers_to_wan_name("blocks.0.attn2.norm_q.weight"), "blocks.0.cross_attn.norm_q.weight");
    EXPECT_EQ(diffusers_to_wan_name("blocks.3.norm2.bias"), "blocks.3.norm3.bias");
    EXPECT_EQ(diffusers_to_wan_name("blocks.3.scale_shift_table"), "blocks.3.modulation");
    EXPECT_EQ(diffusers_to_wan_name("scale_shift_table"), "head.modulation");
    EXPECT_EQ(diffusers_to_wan_name("proj_out.weight"), "head.head.weight");
    EXPECT_EQ(diffusers_to_wan_name("condition_embedder.text_embedder.linear_2.bias"), "text_embedding.2.bias");
    EXPECT_EQ(diffusers_to_wan_name("blocks.0.ffn.net.2.weight"), "blocks.0.ffn.2.weight");
    EXPECT_EQ(diffusers_to_wan_name("blocks.0.self_attn.q.weight"), std::nullopt);  // already original
    EXPECT_EQ(canonical_wan_name("model.diffusion_model.blocks.0.attn1.to_q.bias"), "blocks.0.self_attn.q.bias");
    EXPECT_EQ(canonical_wan_name("patch_embedding.weight"), "patch_embedding.weight");
}

}  // namespace
}  // namespace lr
