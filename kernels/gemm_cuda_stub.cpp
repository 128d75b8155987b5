// GemmRunner in a build without CUDA (gemm_cuda.cu is compiled only with CUDA): the type exists so that the
// model compiles everywhere, and constructing one says why it cannot run.
#ifndef LONGROLL_HAS_CUDA
#include "kernels/gemm_cuda.h"
#include "runtime/core/check.h"

namespace lr {

struct GemmRunner::Impl {};

GemmRunner::GemmRunner(size_t) { LR_RUNTIME(false, "GemmRunner: this longroll was built without CUDA"); }

GemmRunner::~GemmRunner() = default;

void GemmRunner::run(const CudaGemmParams&, Stream) {
    LR_RUNTIME(false, "GemmRunner: this longroll was built without CUDA");
}

size_t GemmRunner::cached_plans() const { return 0; }

}  // namespace lr
#endif
