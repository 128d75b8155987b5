// Access to the parity fixtures under tests/data/parity (made by tools/make_parity_fixtures.py from the public
// PyTorch references; tests/data/parity/README.md documents them). A missing fixture is a test failure, not a
// skip: parity is the point of the CPU reference.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cast.h"
#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"
#include "runtime/model/wan_model.h"
#include "tests/common/fixture_util.h"

namespace lr::test {

// tests/data/parity/README.md: a correct fp32 implementation reaches rel err <= 1e-5 and max abs <= 1e-4 (the
// fixtures' own fp32-vs-fp64 error is ~2e-7).
inline constexpr double kParityBound = 1e-5;  // ||ours - ref|| / ||ref||
inline constexpr double kParityMaxAbs = 1e-4;

inline std::string parity_path(const std::string& name) {
    return std::string(LONGROLL_SOURCE_DIR) + "/tests/data/parity/" + name;
}

// The fixture, or nullopt after recording a failure that says how to make it.
inline std::optional<SafetensorsCheckpoint> open_fixture(const std::string& name) {
    return open_fixture_file(parity_path(name),
                             "generate it with tools/make_parity_fixtures.py; see tests/data/parity/README.md");
}

// __metadata__[key] parsed as JSON (the generator stores JSON strings).
inline json::Value fixture_meta(const SafetensorsCheckpoint& f, const std::string& key) {
    const std::string* text = f.metadata_value(key);
    if (!text) {
        ADD_FAILURE() << f.path() << ": no __metadata__[\"" << key << "\"]";
        return {};
    }
    return json::parse(*text, f.path());
}

inline WanModel load_fixture_model(const std::string& weights_file) {
    const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(parity_path(weights_file));
    bool found = false;
    const WanModelConfig cfg = wan_model_config_from_metadata(ckpt, WanModelConfig{}, &found);
    EXPECT_TRUE(found) << weights_file << " carries no model config";
    return WanModel::from_checkpoint(ckpt, cfg);
}

inline RopePositions rope_of(const std::string& mode) {
    if (mode == "absolute") return RopePositions::kAbsolute;
    if (mode == "window_relative") return RopePositions::kWindowRelative;
    ADD_FAILURE() << "unknown rope_mode '" << mode << "'";
    return RopePositions::kAbsolute;
}

}  // namespace lr::test
