// Access to the VAE parity fixtures under tests/data/vae (made by tools/make_vae_fixtures.py from Self-Forcing's
// wan/modules/vae.py; tests/data/vae/README.md documents them), and a decode-everything helper. A missing fixture
// is a failure, not a skip.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cast.h"
#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"
#include "runtime/vae/wan_vae.h"
#include "tests/common/fixture_util.h"

namespace lr::test {

inline std::string vae_fixture_path(const std::string& name) {
    return std::string(LONGROLL_SOURCE_DIR) + "/tests/data/vae/" + name;
}

inline std::optional<SafetensorsCheckpoint> open_vae_fixture(const std::string& name) {
    return open_fixture_file(vae_fixture_path(name),
                             "generate it with tools/make_vae_fixtures.py; see tests/data/vae/README.md");
}

// Channels-last [h, w, c] -> channels-first [c, h, w] (the fixtures' layout).
inline std::vector<float> to_chw(const float* hwc, int64_t h, int64_t w, int64_t c) {
    std::vector<float> out(static_cast<size_t>(h * w * c));
    for (int64_t p = 0; p < h * w; ++p) {
        for (int64_t k = 0; k < c; ++k) out[static_cast<size_t>(k * h * w + p)] = hwc[p * c + k];
    }
    return out;
}

// Decodes latents [T, z, h, w] through one stream in chunks of the given sizes; returns the planar float frames
// [F, 3, 8h, 8w] concatenated.
inline std::vector<float> decode_chunks(const WanVaeDecoder& vae, const std::vector<float>& latents, int64_t h,
                                        int64_t w, const std::vector<int64_t>& chunks, int64_t* frames = nullptr) {
    VaeStream stream(vae, VaeFrameFormat::kFloatPlanar);
    std::vector<float> out;
    const int64_t per_latent = vae.config().z_dim * h * w;
    int64_t done = 0, emitted = 0;
    for (const int64_t n : chunks) {
        const int64_t expect = stream.frames_for(n);
        int64_t got = 0;
        stream.decode(latents.data() + done * per_latent, n, h, w, [&](const VaeFrame& f) {
            EXPECT_EQ(f.index, emitted + got);
            EXPECT_EQ(f.height, 8 * h);
            EXPECT_EQ(f.width, 8 * w);
            EXPECT_NE(f.planar, nullptr);
            out.insert(out.end(), f.planar, f.planar + 3 * f.height * f.width);
            ++got;
        });
        EXPECT_EQ(got, expect) << "chunk of " << n << " latent frames after " << done;
        done += n;
        emitted += got;
    }
    EXPECT_EQ(stream.latent_frames_decoded(), done);
    EXPECT_EQ(stream.frames_emitted(), emitted);
    if (frames) *frames = emitted;
    return out;
}

}  // namespace lr::test
