// Shared helpers for the CPU op tests: random inputs (never zeros) and error measures.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace lr::test {

// Uniform in [lo, hi), deterministic per seed.
inline std::vector<float> random_vector(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
}

// ||a - b|| / ||b|| over n elements, in double.
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

template <typename A, typename B>
double max_abs_diff(const A& a, const B& b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    return m;
}

}  // namespace lr::test
