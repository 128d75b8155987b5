#include "runtime/core/device.h"

#include <cstdio>

#include "runtime/core/check.h"
#include "runtime/core/tensor.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>
#endif

namespace lr {

int cuda_device_count() {
#ifdef LONGROLL_HAS_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error so later calls start clean
        return 0;
    }
    return n;
#else
    return 0;
#endif
}

std::string cuda_device_description(int index) {
#ifdef LONGROLL_HAS_CUDA
    cudaDeviceProp prop{};
    if (index < 0 || index >= cuda_device_count() || cudaGetDeviceProperties(&prop, index) != cudaSuccess) return "";
    return str_cat(prop.name, " (sm_", prop.major, prop.minor, ", ", format_bytes(prop.totalGlobalMem), ")");
#else
    (void)index;
    return "";
#endif
}

std::string cuda_device_uuid(int index) {
#ifdef LONGROLL_HAS_CUDA
    cudaDeviceProp prop{};
    if (index < 0 || index >= cuda_device_count() || cudaGetDeviceProperties(&prop, index) != cudaSuccess) return "";
    const auto* b = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
    char buf[64];
    std::snprintf(buf, sizeof buf, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                  b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return buf;
#else
    (void)index;
    return "";
#endif
}

void cuda_use_device(int index) {
#ifdef LONGROLL_HAS_CUDA
    const cudaError_t err = cudaSetDevice(index);
    LR_RUNTIME(err == cudaSuccess, "cudaSetDevice(", index, "): ", cudaGetErrorString(err));
#else
    LR_RUNTIME(false, "cuda_use_device(", index, "): this build has no CUDA backend");
#endif
}

}  // namespace lr
