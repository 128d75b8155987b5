// CUDA cast: one thread per element, fp32 in registers. Memory bound; vectorising is not worth it for a
// conversion that runs once per weight at load time.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cast.h"
#include "runtime/core/cuda_check.h"

namespace lr {
namespace {

__device__ float load_f32(const void* p, DType t, int64_t i) {
    switch (t) {
        case DType::kBF16:
            return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
        case DType::kF16:
            return __half2float(static_cast<const __half*>(p)[i]);
        default:
            return static_cast<const float*>(p)[i];
    }
}

__device__ void store_f32(void* p, DType t, int64_t i, float v) {
    switch (t) {
        case DType::kBF16:
            static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
            break;
        case DType::kF16:
            static_cast<__half*>(p)[i] = __float2half_rn(v);
            break;
        default:
            static_cast<float*>(p)[i] = v;
            break;
    }
}

__global__ void cast_kernel(CastParams p) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        store_f32(p.dst, p.dst_dtype, i, load_f32(p.src, p.src_dtype, i));
    }
}

}  // namespace

void launch_cast(const CastParams& p, Stream stream) {
    LR_ASSERT(cast_supported(p.src_dtype, p.dst_dtype), "cast ", dtype_name(p.src_dtype), " -> ",
              dtype_name(p.dst_dtype));
    if (p.n == 0) return;
    constexpr int kThreads = 256;
    const int64_t blocks = std::min<int64_t>((p.n + kThreads - 1) / kThreads, 65535);
    cast_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
    LR_CUDA_LAUNCH_CHECK();
}

}  // namespace lr
