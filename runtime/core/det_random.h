// Deterministic, order-independent pseudo-random numbers for the embedded default weights: element i of a
// tensor depends only on (seed, tensor name, i), so the weights do not depend on creation order or threads.
#pragma once

#include <cstdint>
#include <string_view>

namespace lr {

inline uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

inline uint64_t fnv1a(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
    return h;
}

// The stream key of a named tensor.
inline uint64_t tensor_stream_key(uint64_t seed, std::string_view name) { return splitmix64(seed ^ fnv1a(name)); }

// Element i of the stream `key`, uniform in [-1, 1) with 24 bits.
inline float uniform_pm1(uint64_t key, uint64_t i) {
    return static_cast<float>(splitmix64(key + i) >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
}

}  // namespace lr
