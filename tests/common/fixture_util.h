// Shared by the tests that compare with reference fixtures (tests/data/parity, tests/data/vae): open a
// fixture (a missing one is a test failure that says how to make it), read a tensor as F32, and measure the
// error the way every parity bound in this project is stated.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cast.h"
#include "runtime/io/safetensors.h"

namespace lr::test {

// The fixture at `path`, or nullopt after recording a failure naming `how_to_make` (script and README).
inline std::optional<SafetensorsCheckpoint> open_fixture_file(const std::string& path, const std::string& how_to_make) {
    if (!std::filesystem::exists(path)) {
        ADD_FAILURE() << "fixture " << path << " is missing (" << how_to_make << ")";
        return std::nullopt;
    }
    return SafetensorsCheckpoint::open(path);
}

// A floating tensor of the fixture widened to F32.
inline std::vector<float> fixture_tensor(const SafetensorsCheckpoint& f, const std::string& name,
                                         Shape* shape = nullptr) {
    const TensorView v = f.view(name);
    std::vector<float> out(static_cast<size_t>(v.numel()));
    cast(v, TensorView(out.data(), DType::kF32, v.shape));
    if (shape) *shape = v.shape;
    return out;
}

// ||a - b|| / ||b||, in double.
inline double relative_error(const float* a, const float* b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
        num += d * d;
        den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
    }
    return std::sqrt(num / (den > 0.0 ? den : 1.0));
}

inline double max_abs_error(const float* a, const float* b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    return m;
}

}  // namespace lr::test
