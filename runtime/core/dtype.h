// Element types, their sizes and safetensors names, and the scalar conversions the CPU reference uses.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace lr {

enum class DType : uint8_t {
    kF64,
    kF32,
    kF16,
    kBF16,
    kF8E4M3,
    kF8E5M2,
    kI64,
    kI32,
    kI16,
    kI8,
    kU8,
    kBool,
};

// Bytes per element.
int dtype_size(DType dtype);
// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
std::string_view dtype_name(DType dtype);
// Inverse of dtype_name; nullopt for names longroll does not know.
std::optional<DType> dtype_from_name(std::string_view name);
bool dtype_is_float(DType dtype);

// bf16 is the upper half of an f32; conversion rounds to nearest even and keeps NaN a NaN.
inline uint16_t f32_to_bf16_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

inline float bf16_bits_to_f32(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// IEEE half, round to nearest even, with subnormals, infinities and NaN.
uint16_t f32_to_f16_bits(float f);
float f16_bits_to_f32(uint16_t h);

// Reads element i of a buffer of `dtype` as float (floating types only; integers are converted).
float load_as_f32(const void* data, DType dtype, int64_t i);
// Writes a float into element i of a buffer of `dtype` (floating types only).
void store_from_f32(void* data, DType dtype, int64_t i, float value);

}  // namespace lr
