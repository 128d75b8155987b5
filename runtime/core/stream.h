// The stream type that op launchers take. CPU-only builds still compile the same signatures.
#pragma once

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>
namespace lr {
using Stream = cudaStream_t;
}
#else
namespace lr {
using Stream = void*;
}
#endif
