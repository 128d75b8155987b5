// The streaming decoder against Self-Forcing's Wan2.1 VAE (tests/data/vae, fp32 on both sides), and the
// streaming contract: chunked decode == whole-clip decode, frame counts, reset, the 8-bit conversion.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "runtime/core/check.h"
#include "tests/unit/kernels/kernel_test_util.h"
#include "tests/unit/vae/vae_test_util.h"

namespace lr {
namespace {

using test::fixture_tensor;
using test::max_abs_error;
using test::open_vae_fixture;
using test::relative_error;

// tests/data/vae/README.md: the fixture's own fp32 error (against a float64 rerun) is ~1e-6.
constexpr double kParityBound = 1e-4;  // ||ours - ref|| / ||ref||

struct Fixture {
    std::optional<SafetensorsCheckpoint> weights, decode;
};

Fixture open_fixtures() {
    return {open_vae_fixture("weights_tiny_vae.safetensors"), open_vae_fixture("decode_tiny.safetensors")};
}

WanVaeDecoder load(const SafetensorsCheckpoint& weights) {
    const WanVaeConfig cfg = wan_vae_config_from_checkpoint(weights, WanVaeConfig{});
    EXPECT_EQ(cfg.dim, 8);
    return WanVaeDecoder::from_checkpoint(weights, cfg);
}

TEST(VaeParity, WholeClipMatchesReference) {
    const Fixture f = open_fixtures();
    if (!f.weights || !f.decode) return;
    const WanVaeDecoder vae = load(*f.weights);
    Shape zs, vs;
    const auto latents = fixture_tensor(*f.decode, "latents", &zs);
    const auto raw = fixture_tensor(*f.decode, "video_raw", &vs);
    ASSERT_EQ(zs, (Shape{7, 16, 4, 6}));
    ASSERT_EQ(vs, (Shape{25, 3, 32, 48}));
    const int64_t h = zs[2], w = zs[3], frame = 3 * vs[2] * vs[3];

    // Intermediates, channels-first per frame like the fixture.
    std::map<std::string, std::vector<float>> seen;
    VaeStream stream(vae, VaeFrameFormat::kFloatPlanar);
    stream.set_dump([&](const std::string& name, const float* data, const Shape& s) {
        const auto chw = test::to_chw(data, s[0], s[1], s[2]);
        auto& v = seen[name];
        v.insert(v.end(), chw.begin(), chw.end());
    });
    std::vector<float> video;
    stream.decode(latents.data(), zs[0], h, w,
                  [&](const VaeFrame& fr) { video.insert(video.end(), fr.planar, fr.planar + frame); });
    ASSERT_EQ(video.size(), raw.size());

    const auto& head = seen["head"];  // before the clamp
    ASSERT_EQ(head.size(), raw.size());
    const double err = relative_error(head.data(), raw.data(), raw.size());
    const double max_abs = max_abs_error(head.data(), raw.data(), raw.size());
    std::printf("[ parity ] video_raw: rel %.3g, max abs %.3g\n", err, max_abs);
    EXPECT_LT(err, kParityBound);

    std::vector<float> clamped(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) clamped[i] = std::clamp(raw[i], -1.0f, 1.0f);
    const double err_clamped = relative_error(video.data(), clamped.data(), clamped.size());
    std::printf("[ parity ] video (clamped): rel %.3g, max abs %.3g\n", err_clamped,
                max_abs_error(video.data(), clamped.data(), clamped.size()));
    EXPECT_LT(err_clamped, kParityBound);
    for (float v : video) ASSERT_TRUE(v >= -1.0f && v <= 1.0f);

    for (const char* name : {"conv2", "middle", "upsample0"}) {
        Shape s;
        const auto want = fixture_tensor(*f.decode, name, &s);
        const auto& got = seen[name];
        ASSERT_EQ(got.size(), want.size()) << name << " " << s.str();
        const double e = relative_error(got.data(), want.data(), want.size());
        std::printf("[ parity ] %s %s: rel %.3g\n", name, s.str().c_str(), e);
        EXPECT_LT(e, kParityBound) << name;
    }
}

// The reference pipeline's 8-bit frames: (x * 0.5 + 0.5).clamp(0, 1) * 255, truncated by write_video's cast.
TEST(VaeParity, Rgb24MatchesReferencePipeline) {
    const Fixture f = open_fixtures();
    if (!f.weights || !f.decode) return;
    const WanVaeDecoder vae = load(*f.weights);
    Shape zs;
    const auto latents = fixture_tensor(*f.decode, "latents", &zs);
    const TensorView want = f.decode->view("video_u8");
    ASSERT_EQ(want.dtype, DType::kU8);
    ASSERT_EQ(want.shape, (Shape{25, 32, 48, 3}));
    const uint8_t* ref = want.as<const uint8_t>();
    VaeStream stream(vae);  // kRgb24
    int64_t frames = 0, differ = 0, values = 0;
    const int64_t frame_bytes = 32 * 48 * 3;
    // Chunked like the rollout delivers it: the first frame alone, then chunks of 3.
    for (const auto& [f0, n] : {std::pair<int64_t, int64_t>{0, 1}, {1, 3}, {4, 3}}) {
        stream.decode(latents.data() + f0 * 16 * 4 * 6, n, 4, 6, [&](const VaeFrame& fr) {
            ASSERT_NE(fr.rgb24, nullptr);
            for (int64_t i = 0; i < frame_bytes; ++i) {
                const int d = std::abs(int{fr.rgb24[i]} - int{ref[frames * frame_bytes + i]});
                ASSERT_LE(d, 1) << "frame " << frames << " byte " << i;
                differ += d != 0;
                ++values;
            }
            ++frames;
        });
    }
    EXPECT_EQ(frames, 25);
    std::printf("[ parity ] video_u8: %lld of %lld bytes differ by 1, none by more\n", static_cast<long long>(differ),
                static_cast<long long>(values));
    // fp32 noise of ~1e-6 moves a value across an integer boundary with probability ~2e-4.
    EXPECT_LE(differ, values / 1000);
}

TEST(VaeStreaming, ChunkedDecodeEqualsWholeClip) {
    const Fixture f = open_fixtures();
    if (!f.weights || !f.decode) return;
    const WanVaeDecoder vae = load(*f.weights);
    const auto latents = fixture_tensor(*f.decode, "latents");
    int64_t frames = 0;
    const auto whole = test::decode_chunks(vae, latents, 4, 6, {7}, &frames);
    EXPECT_EQ(frames, 1 + 4 * 6);
    for (const std::vector<int64_t>& chunks :
         {std::vector<int64_t>{1, 3, 3}, {1, 1, 1, 1, 1, 1, 1}, {2, 5}, {4, 3}, {1, 6}}) {
        EXPECT_EQ(test::decode_chunks(vae, latents, 4, 6, chunks), whole) << "chunks of " << chunks.size();
    }
}

TEST(VaeStreaming, FrameCountsResetAndSizeChanges) {
    const WanVaeDecoder vae = WanVaeDecoder::make_default();
    EXPECT_EQ(vae.config().dim, 8);
    EXPECT_GT(vae.parameter_count(), 100000);
    const int64_t h = 2, w = 3;
    const auto z = test::random_vector(7 * 16 * h * w, 5, -2.0f, 2.0f);
    VaeStream stream(vae);
    EXPECT_EQ(stream.frames_for(3), 1 + 4 * 2);
    std::vector<std::vector<uint8_t>> first;
    auto collect = [&](std::vector<std::vector<uint8_t>>& out) {
        return [&out](const VaeFrame& f) {
            EXPECT_EQ(f.height, 16);
            EXPECT_EQ(f.width, 24);
            out.emplace_back(f.rgb24, f.rgb24 + f.height * f.width * 3);
        };
    };
    stream.decode(z.data(), 1, h, w, collect(first));
    EXPECT_EQ(first.size(), 1u);
    EXPECT_EQ(stream.frames_for(3), 12);
    stream.decode(z.data() + 16 * h * w, 3, h, w, collect(first));
    EXPECT_EQ(first.size(), 13u);
    EXPECT_EQ(stream.frames_emitted(), 13);
    EXPECT_GT(stream.state_bytes(), 0u);
    // Not a constant picture: the default weights make a varied (if meaningless) video.
    std::set<uint8_t> levels(first[5].begin(), first[5].end());
    EXPECT_GT(levels.size(), 20u);

    // Another latent size needs a reset; after it the stream starts over and repeats itself exactly.
    EXPECT_THROW(stream.decode(z.data(), 1, h + 1, w, collect(first)), InputError);
    stream.reset();
    std::vector<std::vector<uint8_t>> again;
    stream.decode(z.data(), 4, h, w, collect(again));
    EXPECT_EQ(again, first);
    stream.reset();
    std::vector<std::vector<uint8_t>> bigger;
    stream.decode(z.data(), 1, 3, 2, [&](const VaeFrame& f) {
        EXPECT_EQ(f.height, 24);
        EXPECT_EQ(f.width, 16);
        bigger.emplace_back(f.rgb24, f.rgb24 + f.height * f.width * 3);
    });
    EXPECT_EQ(bigger.size(), 1u);
    stream.decode(z.data(), 0, 3, 2, collect(bigger));  // nothing to do
    EXPECT_THROW(stream.decode(nullptr, 1, 3, 2, collect(bigger)), InputError);
}

TEST(VaeParity, FixturesStaySmall) {
    uintmax_t total = 0;
    for (const auto& e : std::filesystem::directory_iterator(test::vae_fixture_path(""))) total += e.file_size();
    EXPECT_LT(total, 3u * 1024 * 1024) << "tests/data/vae must stay under 3 MB";
}

TEST(VaeRgb, EightBitConversionTruncatesLikeTheReference) {
    const float x[] = {-2.0f, -1.0f, -0.999f, 0.0f, 0.5f, 0.996f, 0.99999f, 1.0f, 3.0f, std::nanf("")};
    // (clamp(x, -1, 1) * 0.5 + 0.5).clamp(0, 1) * 255 in fp32, then truncated: 0.5 -> 191.25 -> 191.
    const uint8_t want[] = {0, 0, 0, 127, 191, 254, 254, 255, 255, 0};
    uint8_t got[10];
    vae_rgb_to_u8(x, got, 10);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(int{got[i]}, int{want[i]}) << "x = " << x[i];
    // Against the formula on many values.
    const auto v = test::random_vector(10000, 9, -1.2f, 1.2f);
    std::vector<uint8_t> out(v.size());
    vae_rgb_to_u8(v.data(), out.data(), static_cast<int64_t>(v.size()));
    for (size_t i = 0; i < v.size(); ++i) {
        const float u = std::clamp(std::clamp(v[i], -1.0f, 1.0f) * 0.5f + 0.5f, 0.0f, 1.0f) * 255.0f;
        ASSERT_EQ(int{out[i]}, static_cast<int>(std::floor(u)));
    }
}

}  // namespace
}  // namespace lr
