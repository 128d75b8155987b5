// The VAE decoder's tensor table, the three naming schemes (original / ComfyUI, prefixed, diffusers), the config
// read from a checkpoint, and the errors that name the offending tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>

#include "kernels/cast.h"
#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/vae/wan_vae.h"
#include "tests/common/error_capture.h"
#include "tests/unit/kernels/kernel_test_util.h"
#include "tests/unit/vae/vae_test_util.h"

namespace lr {
namespace {

class VaeCheckpoint : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("lr_vae_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    // Writes `weights` under the names `rename` gives (empty: drop), in `dtype`, plus `extra` tensors.
    template <typename Rename>
    std::string write(const std::string& file, const std::vector<std::pair<std::string, HostTensor>>& weights,
                      Rename rename, DType dtype = DType::kF32,
                      const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
        std::vector<HostTensor> storage;
        std::vector<NamedTensor> named;
        storage.reserve(weights.size() + 2);
        for (const auto& [name, t] : weights) {
            const std::string key = rename(name);
            if (key.empty()) continue;
            storage.emplace_back(dtype, t.view.shape);
            cast(t.view, storage.back().view);
            named.push_back({key, storage.back().view});
        }
        // Encoder-side tensors that a full VAE file has and the decoder must ignore.
        storage.emplace_back(DType::kF32, Shape{32, 32, 1, 1, 1});
        named.push_back(
            {rename("conv1.weight").empty() ? "conv1.weight" : rename("conv1.weight"), storage.back().view});
        storage.emplace_back(DType::kI32, Shape{4});
        named.push_back({"encoder.conv1.num_batches_tracked", storage.back().view});
        write_safetensors(path(file), named, metadata);
        return path(file);
    }
    std::filesystem::path dir_;
};

// Values exact in both BF16 and F16 (rounded to bf16's 8 mantissa bits, then to f16, whose subnormals keep fewer),
// so that F32, BF16 and F16 files all hold the same weights.
std::vector<std::pair<std::string, HostTensor>> half_exact_default(const WanVaeConfig& cfg) {
    auto w = make_default_wan_vae_weights(cfg, 7);
    for (auto& [name, t] : w) {
        float* p = t.as<float>();
        for (int64_t i = 0; i < t.view.numel(); ++i) {
            p[i] = f16_bits_to_f32(f32_to_f16_bits(bf16_bits_to_f32(f32_to_bf16_bits(p[i]))));
        }
    }
    return w;
}

std::vector<float> decode_two_chunks(const WanVaeDecoder& vae, int64_t h, int64_t w) {
    const auto z = test::random_vector(4 * vae.config().z_dim * h * w, 99, -2.0f, 2.0f);
    return test::decode_chunks(vae, z, h, w, {1, 3});
}

// The Wan2.1 VAE: 108 decoder tensors (with conv2), 73,295,603 parameters (counted from the reference module).
TEST(VaeWeights, SpecsOfTheRealVae) {
    const WanVaeConfig cfg;
    cfg.validate();
    EXPECT_EQ(cfg.dims(), (std::vector<int64_t>{384, 384, 384, 192, 96}));
    EXPECT_EQ(cfg.frames_per_latent(), 4);
    EXPECT_EQ(cfg.spatial_factor(), 8);
    const auto specs = wan_vae_weight_specs(cfg);
    EXPECT_EQ(specs.size(), 108u);
    int64_t params = 0;
    std::map<std::string, Shape> by_name;
    for (const auto& s : specs) {
        params += s.shape.numel();
        EXPECT_TRUE(by_name.emplace(s.name, s.shape).second) << "duplicate " << s.name;
    }
    EXPECT_EQ(params, 73295603);
    EXPECT_EQ(by_name.at("conv2.weight"), (Shape{16, 16, 1, 1, 1}));
    EXPECT_EQ(by_name.at("decoder.conv1.weight"), (Shape{384, 16, 3, 3, 3}));
    EXPECT_EQ(by_name.at("decoder.middle.1.norm.gamma"), (Shape{384, 1, 1}));
    EXPECT_EQ(by_name.at("decoder.middle.1.to_qkv.weight"), (Shape{1152, 384, 1, 1}));
    EXPECT_EQ(by_name.at("decoder.upsamples.3.time_conv.weight"), (Shape{768, 384, 3, 1, 1}));
    EXPECT_EQ(by_name.at("decoder.upsamples.3.resample.1.weight"), (Shape{192, 384, 3, 3}));
    EXPECT_EQ(by_name.at("decoder.upsamples.4.shortcut.weight"), (Shape{384, 192, 1, 1, 1}));
    EXPECT_EQ(by_name.at("decoder.upsamples.7.time_conv.weight"), (Shape{768, 384, 3, 1, 1}));
    EXPECT_EQ(by_name.at("decoder.upsamples.11.resample.1.weight"), (Shape{96, 192, 3, 3}));
    EXPECT_EQ(by_name.count("decoder.upsamples.11.time_conv.weight"), 0u);  // upsample2d
    EXPECT_EQ(by_name.at("decoder.upsamples.14.residual.6.weight"), (Shape{96, 96, 3, 3, 3}));
    EXPECT_EQ(by_name.at("decoder.head.0.gamma"), (Shape{96, 1, 1, 1}));
    EXPECT_EQ(by_name.at("decoder.head.2.weight"), (Shape{3, 96, 3, 3, 3}));
}

TEST(VaeWeights, DiffusersNamesRoundTrip) {
    const WanVaeConfig cfg;
    for (const auto& s : wan_vae_weight_specs(cfg)) {
        const auto d = wan_vae_diffusers_name(s.name);
        ASSERT_TRUE(d.has_value()) << s.name;
        EXPECT_NE(*d, s.name);
        EXPECT_EQ(canonical_wan_vae_name(*d), s.name) << *d;
        EXPECT_EQ(canonical_wan_vae_name(s.name), s.name);
    }
    const std::pair<const char*, const char*> known[] = {
        {"conv2.weight", "post_quant_conv.weight"},
        {"decoder.conv1.bias", "decoder.conv_in.bias"},
        {"decoder.middle.2.residual.3.gamma", "decoder.mid_block.resnets.1.norm2.gamma"},
        {"decoder.middle.1.proj.weight", "decoder.mid_block.attentions.0.proj.weight"},
        {"decoder.upsamples.4.shortcut.weight", "decoder.up_blocks.1.resnets.0.conv_shortcut.weight"},
        {"decoder.upsamples.7.time_conv.bias", "decoder.up_blocks.1.upsamplers.0.time_conv.bias"},
        {"decoder.upsamples.11.resample.1.weight", "decoder.up_blocks.2.upsamplers.0.resample.1.weight"},
        {"decoder.upsamples.14.residual.6.weight", "decoder.up_blocks.3.resnets.2.conv2.weight"},
        {"decoder.head.0.gamma", "decoder.norm_out.gamma"},
        {"decoder.head.2.weight", "decoder.conv_out.weight"},
    };
    for (const auto& [original, diffusers] : known) {
        EXPECT_EQ(wan_vae_diffusers_name(original), diffusers);
        EXPECT_EQ(canonical_wan_vae_name(diffusers), original);
    }
}

// The fixture records, for every decoder tensor of the tiny VAE, the name diffusers' own converter
// (convert_wan_vae_to_diffusers, checked by a strict load into AutoencoderKLWan) gives it.
TEST(VaeWeights, DiffusersNamesMatchDiffusersConverter) {
    const auto f = test::open_vae_fixture("decode_tiny.safetensors");
    if (!f) return;
    const std::string* text = f->metadata_value("diffusers_names");
    ASSERT_NE(text, nullptr) << "the fixture was made without diffusers";
    const json::Value names = json::parse(*text, "diffusers_names");
    const auto specs = wan_vae_weight_specs(wan_vae_tiny_config());
    ASSERT_EQ(names.as_object().size(), specs.size());
    for (const auto& [original, diffusers] : names.as_object()) {
        EXPECT_EQ(canonical_wan_vae_name(diffusers.as_string()), original);
        EXPECT_EQ(wan_vae_diffusers_name(original), diffusers.as_string());
    }
}

TEST(VaeWeights, PrefixesAndWrapperNames) {
    EXPECT_EQ(canonical_wan_vae_name("model.decoder.conv1.weight"), "decoder.conv1.weight");  // WanVAEWrapper
    EXPECT_EQ(canonical_wan_vae_name("vae.conv2.bias"), "conv2.bias");
    EXPECT_EQ(canonical_wan_vae_name("first_stage_model.decoder.head.0.gamma"), "decoder.head.0.gamma");
    EXPECT_EQ(canonical_wan_vae_name("model._orig_mod.decoder.middle.0.residual.0.gamma"),
              "decoder.middle.0.residual.0.gamma");
    EXPECT_EQ(canonical_wan_vae_name("vae.decoder.up_blocks.0.upsamplers.0.time_conv.weight"),
              "decoder.upsamples.3.time_conv.weight");
    EXPECT_EQ(canonical_wan_vae_name("encoder.conv1.weight"), "encoder.conv1.weight");  // kept, then ignored
    // The flat index of a diffusers up block depends on the residual blocks per stage.
    EXPECT_EQ(canonical_wan_vae_name("decoder.up_blocks.1.resnets.0.conv1.weight", 3),
              "decoder.upsamples.5.residual.2.weight");
}

TEST_F(VaeCheckpoint, ThreeNamingSchemesLoadTheSameDecoder) {
    const WanVaeConfig cfg = wan_vae_tiny_config();
    const auto weights = half_exact_default(cfg);
    const std::string original = write("wan2.1_vae.safetensors", weights, [](const std::string& n) { return n; });
    // ComfyUI's wan_2.1_vae.safetensors: the original names; here in BF16.
    const std::string comfy = write(
        "wan_2.1_vae.safetensors", weights, [](const std::string& n) { return n; }, DType::kBF16);
    const std::string prefixed = write(
        "combined.safetensors", weights, [](const std::string& n) { return "first_stage_model." + n; }, DType::kF16);
    const std::string diffusers = write("diffusion_pytorch_model.safetensors", weights, [](const std::string& n) {
        if (n == "conv1.weight") return std::string("quant_conv.weight");
        return wan_vae_diffusers_name(n).value_or(n);
    });
    const auto want = decode_two_chunks(WanVaeDecoder::from_weights(half_exact_default(cfg), cfg), 3, 2);
    ASSERT_EQ(want.size(), static_cast<size_t>((1 + 4 * 3) * 3 * 24 * 16));
    for (const std::string& file : {original, comfy, prefixed, diffusers}) {
        const auto ckpt = SafetensorsCheckpoint::open(file);
        const WanVaeConfig got_cfg = wan_vae_config_from_checkpoint(ckpt, WanVaeConfig{});
        EXPECT_EQ(got_cfg.dim, 8) << file;  // from the head conv's shape: no config in these files
        EXPECT_EQ(got_cfg.z_dim, 16) << file;
        EXPECT_EQ(decode_two_chunks(WanVaeDecoder::from_checkpoint(ckpt, got_cfg), 3, 2), want) << file;
    }
}

TEST_F(VaeCheckpoint, MissingTensorIsNamed) {
    const WanVaeConfig cfg = wan_vae_tiny_config();
    const auto weights = make_default_wan_vae_weights(cfg);
    const std::string file = write("missing.safetensors", weights, [](const std::string& n) {
        return n == "decoder.upsamples.7.time_conv.bias" ? std::string() : n;
    });
    const std::string msg =
        test::input_error_of([&] { WanVaeDecoder::from_checkpoint(SafetensorsCheckpoint::open(file), cfg); });
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing VAE tensor 'decoder.upsamples.7.time_conv.bias'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("decoder.up_blocks.1.upsamplers.0.time_conv.bias"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[64]"), std::string::npos) << msg;

    // The first missing one in decode order is the one reported.
    const std::string two = write("two.safetensors", weights, [](const std::string& n) {
        return n == "decoder.head.2.bias" || n == "decoder.middle.1.proj.weight" ? std::string() : n;
    });
    const std::string msg2 =
        test::input_error_of([&] { WanVaeDecoder::from_checkpoint(SafetensorsCheckpoint::open(two), cfg); });
    EXPECT_NE(msg2.find("'decoder.middle.1.proj.weight'"), std::string::npos) << msg2;
}

TEST_F(VaeCheckpoint, MisShapedTensorIsNamed) {
    const WanVaeConfig cfg = wan_vae_tiny_config();
    auto weights = make_default_wan_vae_weights(cfg);
    for (auto& [name, t] : weights) {
        if (name == "decoder.upsamples.4.residual.2.weight") t = HostTensor(DType::kF32, Shape{32, 16, 3, 3, 1});
    }
    const std::string file =
        write("shape.safetensors", weights, [](const std::string& n) { return wan_vae_diffusers_name(n).value_or(n); });
    const std::string msg =
        test::input_error_of([&] { WanVaeDecoder::from_checkpoint(SafetensorsCheckpoint::open(file), cfg); });
    EXPECT_NE(msg.find("'decoder.up_blocks.1.resnets.0.conv1.weight' has shape [32, 16, 3, 3, 1], expected "
                       "[32, 16, 3, 3, 3]"),
              std::string::npos)
        << msg;

    // A real-size config against the tiny file: the first tensor already disagrees.
    const std::string msg2 = test::input_error_of(
        [&] { WanVaeDecoder::from_checkpoint(SafetensorsCheckpoint::open(file), WanVaeConfig{}); });
    EXPECT_NE(msg2.find("'decoder.conv_in.weight' has shape [32, 16, 3, 3, 3], expected [384, 16, 3, 3, 3]"),
              std::string::npos)
        << msg2;
}

TEST_F(VaeCheckpoint, BadDtypeAndDuplicateNames) {
    const WanVaeConfig cfg = wan_vae_tiny_config();
    const auto weights = make_default_wan_vae_weights(cfg);
    {
        std::vector<HostTensor> storage;
        std::vector<NamedTensor> named;
        storage.reserve(weights.size());
        for (const auto& [name, t] : weights) {
            const DType dt = name == "decoder.head.0.gamma" ? DType::kI32 : DType::kF32;
            storage.emplace_back(dt, t.view.shape);
            if (dt == DType::kF32) cast(t.view, storage.back().view);
            named.push_back({name, storage.back().view});
        }
        write_safetensors(path("dtype.safetensors"), named);
        const std::string msg = test::input_error_of(
            [&] { WanVaeDecoder::from_checkpoint(SafetensorsCheckpoint::open(path("dtype.safetensors")), cfg); });
        EXPECT_NE(msg.find("'decoder.head.0.gamma' has dtype I32"), std::string::npos) << msg;
    }
    {
        std::vector<NamedTensor> named;
        for (const auto& [name, t] : weights) named.push_back({name, t.view});
        named.push_back({"decoder.conv_in.weight", weights[2].second.view});  // diffusers' name of decoder.conv1
        ASSERT_EQ(weights[2].first, "decoder.conv1.weight");
        write_safetensors(path("dup.safetensors"), named);
        const std::string msg = test::input_error_of(
            [&] { WanVaeDecoder::from_checkpoint(SafetensorsCheckpoint::open(path("dup.safetensors")), cfg); });
        EXPECT_NE(msg.find("both name the VAE tensor 'decoder.conv1.weight'"), std::string::npos) << msg;
    }
}

TEST_F(VaeCheckpoint, ConfigFromMetadata) {
    const WanVaeConfig cfg = wan_vae_tiny_config();
    const auto weights = make_default_wan_vae_weights(cfg);
    auto same = [](const std::string& n) { return n; };
    const std::string good = write("meta.safetensors", weights, same, DType::kF32,
                                   {{"config", R"({"model_type": "wan2.1_vae", "z_dim": 16, "dim": 8,
                                        "temperal_upsample": [true, true, false], "num_res_blocks": 2})"}});
    const WanVaeConfig c = wan_vae_config_from_checkpoint(SafetensorsCheckpoint::open(good), WanVaeConfig{});
    EXPECT_EQ(c.dim, 8);
    EXPECT_EQ(c.temporal_upsample, (std::vector<bool>{true, true, false}));
    EXPECT_EQ(c.latents_std, WanVaeConfig{}.latents_std);

    const std::string bad =
        write("bad.safetensors", weights, same, DType::kF32, {{"config", R"({"temperal_upsample": [true, false]})"}});
    const std::string msg =
        test::input_error_of([&] { wan_vae_config_from_checkpoint(SafetensorsCheckpoint::open(bad), WanVaeConfig{}); });
    EXPECT_NE(msg.find("temperal_upsample must have 3 entries"), std::string::npos) << msg;
    const std::string bad2 = write("bad2.safetensors", weights, same, DType::kF32, {{"config", R"({"dim": "eight"})"}});
    const std::string msg2 = test::input_error_of(
        [&] { wan_vae_config_from_checkpoint(SafetensorsCheckpoint::open(bad2), WanVaeConfig{}); });
    EXPECT_NE(msg2.find("'dim' must be a non-negative integer"), std::string::npos) << msg2;
}

TEST(VaeWeights, FromWeightsChecksNamesAndShapes) {
    const WanVaeConfig cfg = wan_vae_tiny_config();
    auto w = make_default_wan_vae_weights(cfg);
    w.erase(w.begin() + 5);
    EXPECT_THROW(WanVaeDecoder::from_weights(std::move(w), cfg), InputError);
    auto w2 = make_default_wan_vae_weights(cfg);
    w2[0].second = HostTensor(DType::kF32, Shape{16, 16, 1, 1});
    const std::string msg = test::input_error_of([&] { WanVaeDecoder::from_weights(std::move(w2), cfg); });
    EXPECT_NE(msg.find("'conv2.weight' has shape [16, 16, 1, 1]"), std::string::npos) << msg;
    WanVaeConfig odd = cfg;
    odd.latents_mean.pop_back();
    EXPECT_THROW(odd.validate(), InputError);
}

}  // namespace
}  // namespace lr
