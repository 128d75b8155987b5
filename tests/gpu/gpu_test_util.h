// Shared by the gpu tests: skip without a device, copy to and from device memory.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "runtime/core/device.h"
#include "runtime/core/tensor.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "runtime/core/cuda_check.h"
#endif

// GTEST_SKIP (reported by ctest as skipped) when this build or this machine has no GPU.
#define LR_REQUIRE_GPU()                                                      \
    do {                                                                      \
        if (::lr::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
    } while (0)

#ifdef LONGROLL_HAS_CUDA
namespace lr::test {

inline DeviceBuffer to_device(const void* host, size_t bytes) {
    DeviceBuffer d(bytes);
    LR_CUDA_CHECK(cudaMemcpy(d.data(), host, bytes, cudaMemcpyHostToDevice));
    return d;
}

template <typename T>
std::vector<T> to_host(const DeviceBuffer& d, size_t count) {
    std::vector<T> h(count);
    LR_CUDA_CHECK(cudaMemcpy(h.data(), d.data(), count * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

}  // namespace lr::test
#endif
