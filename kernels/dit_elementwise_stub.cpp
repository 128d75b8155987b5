// The launchers of dit_elementwise_cuda.cu in a build without CUDA: they link, and fail with a clear message.
#ifndef LONGROLL_HAS_CUDA
#include "kernels/dit_ops_cuda.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

[[noreturn]] void no_cuda(const char* op) {
    detail::throw_runtime_error(str_cat(op, " on device memory: this longroll was built without CUDA"));
}

}  // namespace

void launch_add_broadcast(const AddBroadcastParams&, Stream) { no_cuda("add_broadcast"); }
void launch_unary(const UnaryParams&, Stream) { no_cuda("unary"); }
void launch_copy_rows(const CopyRowsParams&, Stream) { no_cuda("copy_rows"); }
void launch_timestep_embedding(const TimestepEmbeddingParams&, Stream) { no_cuda("timestep_embedding"); }
void launch_patchify(const PatchifyCudaParams&, Stream) { no_cuda("patchify"); }
void launch_unpatchify(const UnpatchifyParams&, Stream) { no_cuda("unpatchify"); }
void launch_flow_to_x0(const float*, const float*, double, float*, int64_t, Stream) { no_cuda("flow_to_x0"); }
void launch_add_noise(const float*, const float*, float, float*, int64_t, Stream) { no_cuda("add_noise"); }
void launch_euler_step(const float*, double, float*, int64_t, Stream) { no_cuda("euler_step"); }

}  // namespace lr
#endif
