#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "runtime/core/check.h"
#include "runtime/io/safetensors.h"
#include "runtime/model/wan_weights.h"

namespace lr {
namespace {

WanDims tiny() {
    WanDims d;
    d.dim = 32;
    d.ffn_dim = 48;
    d.num_heads = 2;
    d.num_layers = 2;
    d.text_dim = 24;
    d.freq_dim = 16;
    return d;
}

class TempDir : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("lr_wan_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    std::filesystem::path dir_;
};

// Shapes of the Wan2.1 1.3B model (DESIGN.md section 3): 825 tensors, 1,418,996,800 parameters.
TEST(WanWeights, SpecsOfThe13BModel) {
    WanDims d;
    d.dim = 1536;
    d.ffn_dim = 8960;
    d.num_heads = 12;
    d.num_layers = 30;
    const auto specs = wan_weight_specs(d);
    EXPECT_EQ(specs.size(), 8 + 2 + 2 + 30 * 27 + 3);
    int64_t params = 0;
    std::set<std::string> names;
    for (const auto& s : specs) {
        params += s.shape.numel();
        EXPECT_TRUE(names.insert(s.name).second) << "duplicate " << s.name;
    }
    EXPECT_EQ(params, 1418996800);  // the 1.3B model: 1.42B parameters
    auto shape_of = [&](const std::string& n) {
        for (const auto& s : specs) {
            if (s.name == n) return s.shape;
        }
        ADD_FAILURE() << "no " << n;
        return Shape{};
    };
    EXPECT_EQ(shape_of("patch_embedding.weight"), (Shape{1536, 16, 1, 2, 2}));
    EXPECT_EQ(shape_of("text_embedding.0.weight"), (Shape{1536, 4096}));
    EXPECT_EQ(shape_of("time_projection.1.weight"), (Shape{9216, 1536}));
    EXPECT_EQ(shape_of("blocks.29.ffn.0.weight"), (Shape{8960, 1536}));
    EXPECT_EQ(shape_of("blocks.0.modulation"), (Shape{1, 6, 1536}));
    EXPECT_EQ(shape_of("head.head.weight"), (Shape{64, 1536}));
    EXPECT_EQ(shape_of("head.modulation"), (Shape{1, 2, 1536}));
}

TEST(WanWeights, CanonicalNames) {
    EXPECT_EQ(canonical_wan_name("model.blocks.0.ffn.0.weight"), "blocks.0.ffn.0.weight");
    EXPECT_EQ(canonical_wan_name("model._fsdp_wrapped_module.blocks.1.self_attn.q.weight"),
              "blocks.1.self_attn.q.weight");
    EXPECT_EQ(canonical_wan_name("blocks.0._fsdp_wrapped_module.norm3.bias"), "blocks.0.norm3.bias");
    EXPECT_EQ(canonical_wan_name("head.head.bias"), "head.head.bias");
}

TEST(WanWeights, DefaultWeightsAreDeterministicAndScaled) {
    const auto a = make_default_wan_weights(tiny(), 11);
    const auto b = make_default_wan_weights(tiny(), 11);
    const auto c = make_default_wan_weights(tiny(), 12);
    ASSERT_EQ(a.size(), wan_weight_specs(tiny()).size());
    bool any_differs = false;
    for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].first, b[i].first);
        const int64_t n = a[i].second.view.numel();
        EXPECT_EQ(std::memcmp(a[i].second.view.data, b[i].second.view.data, static_cast<size_t>(n) * 4), 0);
        any_differs |= std::memcmp(a[i].second.view.data, c[i].second.view.data, static_cast<size_t>(n) * 4) != 0;
        const float* p = a[i].second.as<float>();
        float lo = p[0], hi = p[0];
        for (int64_t j = 0; j < n; ++j) {
            lo = std::min(lo, p[j]);
            hi = std::max(hi, p[j]);
        }
        if (a[i].first.find("norm_q.weight") != std::string::npos) {
            EXPECT_GT(lo, 0.85f);  // gains near 1
            EXPECT_LT(hi, 1.15f);
        }
        if (a[i].first == "blocks.0.ffn.2.weight") {  // fan_in 48: |w| < 1/sqrt(48)
            EXPECT_LT(hi, 0.1444f);
            EXPECT_GT(hi - lo, 0.2f);  // not constant
        }
    }
    EXPECT_TRUE(any_differs) << "the seed must change the weights";
}

using WanCheckpoint = TempDir;

TEST_F(WanCheckpoint, ResolvesPrefixedNamesAndReportsProblemsByName) {
    const WanDims d = tiny();
    auto weights = make_default_wan_weights(d, 3);
    std::vector<NamedTensor> tensors;
    for (auto& [name, t] : weights) tensors.push_back({"model." + name, t.view});
    write_safetensors(path("sf.safetensors"), tensors, {{"config", R"({"dim": 32, "num_layers": 2})"}});
    const auto ckpt = SafetensorsCheckpoint::open(path("sf.safetensors"));
    const auto resolved = resolve_wan_weights(ckpt, d);
    EXPECT_EQ(resolved.size(), weights.size());
    EXPECT_EQ(resolved.at("blocks.1.cross_attn.o.weight"), "model.blocks.1.cross_attn.o.weight");

    // Missing tensor.
    std::vector<NamedTensor> missing(tensors.begin(), tensors.end());
    missing.erase(missing.begin() + 5);
    write_safetensors(path("missing.safetensors"), missing);
    try {
        resolve_wan_weights(SafetensorsCheckpoint::open(path("missing.safetensors")), d);
        FAIL() << "expected a missing-tensor error";
    } catch (const InputError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("missing.safetensors"), std::string::npos) << m;
        EXPECT_NE(m.find("missing tensor '" + weights[5].first + "'"), std::string::npos) << m;
    }
    // Wrong shape: the model config does not match the file.
    WanDims wider = d;
    wider.ffn_dim = 64;
    try {
        resolve_wan_weights(ckpt, wider);
        FAIL() << "expected a shape error";
    } catch (const InputError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("model.blocks.0.ffn.0.weight' has shape [48, 32], expected [64, 32]"), std::string::npos) << m;
    }
    // Wrong dtype.
    std::vector<NamedTensor> ints(tensors.begin(), tensors.end());
    ints[0].view.dtype = DType::kI32;
    write_safetensors(path("ints.safetensors"), ints);
    EXPECT_THROW(resolve_wan_weights(SafetensorsCheckpoint::open(path("ints.safetensors")), d), InputError);
}

TEST_F(WanCheckpoint, DimsFromMetadata) {
    HostTensor t(DType::kF32, Shape{2});
    t.as<float>()[0] = 1.5f;
    t.as<float>()[1] = -0.5f;
    write_safetensors(path("m.safetensors"), {{"x", t.view}},
                      {{"config", R"({"dim": 1536, "ffn_dim": 8960, "num_heads": 12, "num_layers": 30,
                                      "patch_size": [1, 2, 2], "model_type": "t2v", "eps": 1e-06})"}});
    bool found = false;
    const WanDims d = wan_dims_from_metadata(SafetensorsCheckpoint::open(path("m.safetensors")), tiny(), &found);
    EXPECT_TRUE(found);
    EXPECT_EQ(d.dim, 1536);
    EXPECT_EQ(d.num_layers, 30);
    EXPECT_EQ(d.text_dim, tiny().text_dim);  // absent: kept from the base

    write_safetensors(path("bad.safetensors"), {{"x", t.view}}, {{"config", R"({"dim": -4})"}});
    try {
        wan_dims_from_metadata(SafetensorsCheckpoint::open(path("bad.safetensors")), tiny());
        FAIL();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("'dim' must be a positive integer"), std::string::npos) << e.what();
    }
    write_safetensors(path("nocfg.safetensors"), {{"x", t.view}});
    wan_dims_from_metadata(SafetensorsCheckpoint::open(path("nocfg.safetensors")), tiny(), &found);
    EXPECT_FALSE(found);
}

TEST_F(WanCheckpoint, DimsInferredFromShapes) {
    WanDims d = tiny();
    d.num_layers = 3;
    d.patch = {1, 2, 2};
    auto weights = make_default_wan_weights(d, 5);
    std::vector<NamedTensor> tensors;
    for (auto& [name, t] : weights) tensors.push_back({"model._fsdp_wrapped_module." + name, t.view});
    write_safetensors(path("noconfig.safetensors"), tensors);
    const auto ckpt = SafetensorsCheckpoint::open(path("noconfig.safetensors"));
    WanDims base;  // the 1.3B numbers: everything but num_heads must come from the shapes
    base.dim = 1536;
    base.ffn_dim = 8960;
    base.num_heads = 12;
    base.num_layers = 30;
    const auto got = infer_wan_dims(ckpt, base);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->dim, d.dim);
    EXPECT_EQ(got->ffn_dim, d.ffn_dim);
    EXPECT_EQ(got->num_layers, 3);
    EXPECT_EQ(got->text_dim, d.text_dim);
    EXPECT_EQ(got->freq_dim, d.freq_dim);
    EXPECT_EQ(got->out_dim, 16);
    EXPECT_EQ(got->num_heads, 1);  // dim 32: one head of 128 is the fallback guess
    EXPECT_NO_THROW(resolve_wan_weights(ckpt, *got));
    HostTensor t(DType::kF32, Shape{2});
    write_safetensors(path("other.safetensors"), {{"x", t.view}});
    EXPECT_FALSE(infer_wan_dims(SafetensorsCheckpoint::open(path("other.safetensors")), base).has_value());
}

}  // namespace
}  // namespace lr
