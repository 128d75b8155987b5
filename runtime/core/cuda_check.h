// LR_CUDA_CHECK and the kernel launch check (STYLE.md rule 5). Include only from CUDA-enabled code.
#pragma once

#include <cuda_runtime_api.h>

#include "runtime/core/check.h"

#define LR_CUDA_CHECK(expr)                                                                                       \
    do {                                                                                                          \
        const cudaError_t lr_err_ = (expr);                                                                       \
        if (lr_err_ != cudaSuccess) [[unlikely]] {                                                                \
            ::lr::detail::throw_runtime_error(                                                                    \
                ::lr::str_cat(#expr, " failed at ", __FILE__, ":", __LINE__, ": ", cudaGetErrorString(lr_err_))); \
        }                                                                                                         \
    } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define LR_CUDA_LAUNCH_CHECK() LR_CUDA_CHECK(cudaGetLastError())
