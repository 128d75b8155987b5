// The UMT5 encoder against transformers' UMT5EncoderModel (tests/data/text/umt5_tiny_expected.safetensors, made by
// make_fixtures.py, which also checked Wan's T5Encoder with its 512-token padding and mask against it), under both
// naming schemes, and its refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "runtime/core/check.h"
#include "runtime/io/safetensors.h"
#include "runtime/text/umt5_encoder.h"
#include "tests/common/error_capture.h"
#include "tests/common/fixture_util.h"

namespace lr {
namespace {

const std::string kDir = std::string(LONGROLL_SOURCE_DIR) + "/tests/data/text/";

struct Expected {
    std::vector<std::vector<int32_t>> ids;
    std::vector<std::vector<float>> contexts;
};

Expected read_expected() {
    const SafetensorsCheckpoint f = SafetensorsCheckpoint::open(kDir + "umt5_tiny_expected.safetensors");
    Expected e;
    for (int i = 0; f.find("ids_" + std::to_string(i)); ++i) {
        const TensorView ids = f.view("ids_" + std::to_string(i));
        e.ids.emplace_back(ids.as<int32_t>(), ids.as<int32_t>() + ids.numel());
        e.contexts.push_back(test::fixture_tensor(f, "context_" + std::to_string(i)));
    }
    return e;
}

TEST(Umt5Encoder, MatchesTransformersUnderBothNamings) {
    const Expected ex = read_expected();
    ASSERT_EQ(ex.ids.size(), 5u);
    EXPECT_EQ(ex.ids.back().size(), 512u);  // offsets up to 511: every log bucket and the clamp at 128
    for (const auto& [file, naming] : {std::pair{"umt5_tiny_hf.safetensors", Umt5Naming::kHuggingFace},
                                       std::pair{"umt5_tiny_wan.safetensors", Umt5Naming::kWan}}) {
        const Umt5Encoder enc = Umt5Encoder::open(kDir + file);
        EXPECT_EQ(enc.naming(), naming);
        const Umt5Config& c = enc.config();
        EXPECT_EQ(c.vocab_size, 196);
        EXPECT_EQ(c.d_model, 64);
        EXPECT_EQ(c.num_heads, 4);
        EXPECT_EQ(c.d_kv, 20);
        EXPECT_EQ(c.d_ff, 96);
        EXPECT_EQ(c.num_layers, 2);
        EXPECT_EQ(c.num_buckets, 32);
        EXPECT_EQ(c.max_distance, 128);
        const std::vector<HostTensor> out = enc.encode(ex.ids);  // every prompt in one call
        ASSERT_EQ(out.size(), ex.ids.size());
        for (size_t i = 0; i < out.size(); ++i) {
            ASSERT_EQ(out[i].view.shape, (Shape{static_cast<int64_t>(ex.ids[i].size()), 64}));
            const double err = test::relative_error(out[i].as<float>(), ex.contexts[i].data(), ex.contexts[i].size());
            EXPECT_LE(err, 1e-5) << file << " prompt " << i;
            // One prompt alone gives the same as in the batch.
            const std::vector<HostTensor> alone = enc.encode({ex.ids[i]});
            EXPECT_EQ(test::max_abs_error(alone[0].as<float>(), out[i].as<float>(), ex.contexts[i].size()), 0.0);
        }
    }
}

TEST(Umt5Encoder, RelativeBucketsFollowT5) {
    // Offsets < 8 each their own bucket, keys after the query in the upper half, log-spaced up to 128, then clamped.
    for (int64_t r = 0; r < 8; ++r) {
        EXPECT_EQ(umt5_relative_bucket(-r, 32, 128), r);
        EXPECT_EQ(umt5_relative_bucket(r, 32, 128), r == 0 ? 0 : 16 + r);
    }
    int64_t prev = 7;
    for (int64_t r = 8; r < 1000; ++r) {
        const int64_t b = umt5_relative_bucket(-r, 32, 128);
        EXPECT_TRUE(b == prev || b == prev + 1) << r;
        EXPECT_EQ(umt5_relative_bucket(r, 32, 128), 16 + b);
        if (r >= 128) {
            EXPECT_EQ(b, 15) << r;
        }
        prev = b;
    }
    EXPECT_EQ(umt5_relative_bucket(-127, 32, 128), 15);
    EXPECT_EQ(umt5_relative_bucket(-16, 32, 128), 10);  // 8 + trunc(log(2) / log(16) * 8) = 8 + 2
}

TEST(Umt5Encoder, RefusesOtherModelsAndBrokenFiles) {
    const std::string dit = std::string(LONGROLL_SOURCE_DIR) + "/tests/data/parity/weights_tiny.safetensors";
    const std::string vae = std::string(LONGROLL_SOURCE_DIR) + "/tests/data/vae/weights_tiny_vae.safetensors";
    EXPECT_NE(
        test::input_error_of([&] { Umt5Encoder::open(dit); }).find("Wan2.1 DiT checkpoint (give it as --weights)"),
        std::string::npos);
    EXPECT_NE(test::input_error_of([&] { Umt5Encoder::open(vae); }).find("VAE checkpoint (give it as --vae)"),
              std::string::npos);

    // Copies of the HF fixture without one tensor, with a wrong shape, and with a NaN.
    const SafetensorsCheckpoint src = SafetensorsCheckpoint::open(kDir + "umt5_tiny_hf.safetensors");
    const std::filesystem::path tmp = std::filesystem::temp_directory_path() / ("lr_umt5_" + std::to_string(getpid()));
    std::filesystem::create_directories(tmp);
    const std::string victim = "encoder.block.1.layer.1.DenseReluDense.wo.weight";
    std::vector<float> nan_copy;
    const auto write = [&](const std::string& name, int mode) {
        std::vector<NamedTensor> ts;
        for (const std::string& n : src.names()) {
            TensorView v = src.view(n);
            if (n == victim && mode == 0) continue;
            if (n == victim && mode == 1) v = v.reshape(Shape{v.size(1), v.size(0)});
            if (n == victim && mode == 2) {
                nan_copy.assign(v.as<float>(), v.as<float>() + v.numel());
                nan_copy[5] = std::nanf("");
                v = TensorView(nan_copy.data(), DType::kF32, v.shape);
            }
            ts.push_back({n, v});
        }
        const std::string path = (tmp / name).string();
        write_safetensors(path, ts);
        return path;
    };
    const std::string missing = write("missing.safetensors", 0);
    EXPECT_NE(test::input_error_of([&] { Umt5Encoder::open(missing); }).find("'" + victim + "' [64, 96] is missing"),
              std::string::npos);
    const std::string shape = write("shape.safetensors", 1);
    EXPECT_NE(test::input_error_of([&] { Umt5Encoder::open(shape); }).find("has shape [96, 64], expected [64, 96]"),
              std::string::npos);
    const std::string nan = write("nan.safetensors", 2);
    const Umt5Encoder enc = Umt5Encoder::open(nan);
    EXPECT_NE(test::input_error_of([&] {
                  enc.encode({{3, 4, 1}});
              }).find("'" + victim + "' holds NaN or Inf"),
              std::string::npos);
    std::filesystem::remove_all(tmp);
}

}  // namespace
}  // namespace lr
