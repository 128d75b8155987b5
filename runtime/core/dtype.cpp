#include "runtime/core/dtype.h"

#include <array>
#include <cmath>

#include "runtime/core/check.h"

namespace lr {
namespace {

struct DTypeInfo {
    DType dtype;
    std::string_view name;
    int size;
    bool is_float;
};

constexpr std::array kDTypes = {
    DTypeInfo{DType::kF64, "F64", 8, true},        DTypeInfo{DType::kF32, "F32", 4, true},
    DTypeInfo{DType::kF16, "F16", 2, true},        DTypeInfo{DType::kBF16, "BF16", 2, true},
    DTypeInfo{DType::kF8E4M3, "F8_E4M3", 1, true}, DTypeInfo{DType::kF8E5M2, "F8_E5M2", 1, true},
    DTypeInfo{DType::kI64, "I64", 8, false},       DTypeInfo{DType::kI32, "I32", 4, false},
    DTypeInfo{DType::kI16, "I16", 2, false},       DTypeInfo{DType::kI8, "I8", 1, false},
    DTypeInfo{DType::kU8, "U8", 1, false},         DTypeInfo{DType::kBool, "BOOL", 1, false},
};

const DTypeInfo& info(DType dtype) {
    for (const auto& i : kDTypes) {
        if (i.dtype == dtype) return i;
    }
    LR_ASSERT(false, "unknown dtype ", static_cast<int>(dtype));
    return kDTypes[0];
}

}  // namespace

int dtype_size(DType dtype) { return info(dtype).size; }
std::string_view dtype_name(DType dtype) { return info(dtype).name; }
bool dtype_is_float(DType dtype) { return info(dtype).is_float; }

std::optional<DType> dtype_from_name(std::string_view name) {
    for (const auto& i : kDTypes) {
        if (i.name == name) return i.dtype;
    }
    return std::nullopt;
}

uint16_t f32_to_f16_bits(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow (rounds to inf)
    if (abs < 0x38800000u) {
        // Subnormal or zero in half: value = m * 2^-24 with m rounded to nearest even.
        if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // below half of the smallest subnormal
        const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        const int shift = 113 - static_cast<int>(abs >> 23) + 13;  // 126 - exp + 13
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u))) ++h;
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = ((abs - 0x38000000u) >> 13);  // rebias exponent 127 -> 15
    const uint32_t rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
}

float f16_bits_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    uint32_t x;
    if (exp == 0) {
        if (mant == 0) {
            x = sign;
        } else {
            const float v = std::ldexp(static_cast<float>(mant), -24);
            std::memcpy(&x, &v, 4);
            x |= sign;
        }
    } else if (exp == 31) {
        x = sign | 0x7f800000u | (mant << 13);
    } else {
        x = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

float load_as_f32(const void* data, DType dtype, int64_t i) {
    switch (dtype) {
        case DType::kF64:
            return static_cast<float>(static_cast<const double*>(data)[i]);
        case DType::kF32:
            return static_cast<const float*>(data)[i];
        case DType::kF16:
            return f16_bits_to_f32(static_cast<const uint16_t*>(data)[i]);
        case DType::kBF16:
            return bf16_bits_to_f32(static_cast<const uint16_t*>(data)[i]);
        case DType::kI64:
            return static_cast<float>(static_cast<const int64_t*>(data)[i]);
        case DType::kI32:
            return static_cast<float>(static_cast<const int32_t*>(data)[i]);
        case DType::kI16:
            return static_cast<float>(static_cast<const int16_t*>(data)[i]);
        case DType::kI8:
            return static_cast<float>(static_cast<const int8_t*>(data)[i]);
        case DType::kU8:
        case DType::kBool:
            return static_cast<float>(static_cast<const uint8_t*>(data)[i]);
        default:
            LR_FAIL("cannot read dtype ", dtype_name(dtype), " as F32");
    }
}

void store_from_f32(void* data, DType dtype, int64_t i, float value) {
    switch (dtype) {
        case DType::kF64:
            static_cast<double*>(data)[i] = value;
            return;
        case DType::kF32:
            static_cast<float*>(data)[i] = value;
            return;
        case DType::kF16:
            static_cast<uint16_t*>(data)[i] = f32_to_f16_bits(value);
            return;
        case DType::kBF16:
            static_cast<uint16_t*>(data)[i] = f32_to_bf16_bits(value);
            return;
        default:
            LR_FAIL("cannot write F32 values into dtype ", dtype_name(dtype));
    }
}

}  // namespace lr
