// What GPUs this process can see. Works (reporting none) in CPU-only builds and on machines without a GPU.
#pragma once

#include <string>

namespace lr {

// Number of CUDA devices usable by this process; 0 without CUDA, a driver or a device.
int cuda_device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" for device `index`, or "" when there is none.
std::string cuda_device_description(int index);
// The device's UUID as nvidia-smi prints it ("GPU-..."), or "" when there is none.
std::string cuda_device_uuid(int index);
// Makes device `index` current for this thread (cudaSetDevice); RuntimeError when that fails or without CUDA.
void cuda_use_device(int index);

}  // namespace lr
