// The launchers of sparse_step_cuda.cu in a build without CUDA: they link, and fail with a clear message.
#ifndef LONGROLL_HAS_CUDA
#include "kernels/sparse_step.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

[[noreturn]] void no_cuda(const char* op) {
    detail::throw_runtime_error(str_cat(op, " on device memory: this longroll was built without CUDA"));
}

}  // namespace

void launch_copy_head_blocks(const CopyHeadBlocksParams&, Stream) { no_cuda("copy_head_blocks"); }
void launch_block_change(const BlockChangeParams&, Stream) { no_cuda("block_change"); }
void launch_block_salience(const BlockSalienceParams&, Stream) { no_cuda("block_salience"); }

}  // namespace lr
#endif
