// Element-type conversion between F32, BF16 and F16 (weights arrive in one dtype and run in another).
// CPU reference and CUDA implementation behind one parameter struct.
#pragma once

#include <cstdint>

#include "runtime/core/dtype.h"
#include "runtime/core/stream.h"
#include "runtime/core/tensor.h"

namespace lr {

struct CastParams {
    const void* src = nullptr;  // [n] of src_dtype
    void* dst = nullptr;        // [n] of dst_dtype
    DType src_dtype = DType::kF32;
    DType dst_dtype = DType::kF32;
    int64_t n = 0;
};

// True for the pairs both backends implement: any of F32, BF16, F16 to any of them.
bool cast_supported(DType src, DType dst);

void cast_cpu(const CastParams& p);
// Device pointers; asynchronous on `stream`.
void launch_cast(const CastParams& p, Stream stream);

// Checks shapes and devices, then runs the backend that owns the memory.
void cast(const TensorView& src, const TensorView& dst, Stream stream = nullptr);

}  // namespace lr
