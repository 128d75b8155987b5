// A tiny Wan model and its inputs for the model and rollout tests.
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "runtime/model/wan_model.h"

namespace lr::test {

inline WanModelConfig tiny_config() {
    WanModelConfig c;
    c.dims.dim = 32;
    c.dims.ffn_dim = 48;
    c.dims.num_heads = 2;  // head_dim 16: RoPE pairs 4 + 2 + 2
    c.dims.num_layers = 2;
    c.dims.text_dim = 24;
    c.dims.freq_dim = 16;
    c.text_len = 8;
    return c;
}

inline WanModel tiny_model(uint64_t seed = 5) {
    return WanModel::from_weights(make_default_wan_weights(tiny_config().dims, seed), tiny_config());
}

inline std::vector<float> gaussian(int64_t n, uint32_t seed, float stddev = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
}

// A prompt embedding [len, text_dim] (shorter than text_len: the padding path is exercised).
inline HostTensor tiny_context(uint32_t seed, int64_t len = 5) {
    HostTensor t(DType::kF32, Shape{len, tiny_config().dims.text_dim});
    const auto v = gaussian(t.view.numel(), seed);
    std::copy(v.begin(), v.end(), t.as<float>());
    return t;
}

template <typename A, typename B>
double rel_error(const A& a, const B& b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
        num += d * d;
        den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
    }
    return std::sqrt(num / (den > 0.0 ? den : 1.0));
}

}  // namespace lr::test
