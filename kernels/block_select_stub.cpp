// The launchers of block_select_cuda.cu in a build without CUDA: they link, and fail with a clear message.
#ifndef LONGROLL_HAS_CUDA
#include "kernels/block_select.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

[[noreturn]] void no_cuda(const char* op) {
    detail::throw_runtime_error(str_cat(op, " on device memory: this longroll was built without CUDA"));
}

}  // namespace

void launch_block_select(const BlockSelectParams&, Stream) { no_cuda("block_select"); }
void launch_segment_mean_bf16(const SegmentMeanBf16Params&, Stream) { no_cuda("segment_mean_bf16"); }
void launch_segment_means_bf16(const SegmentMeanBf16Params*, int, Stream) { no_cuda("segment_means_bf16"); }

}  // namespace lr
#endif
