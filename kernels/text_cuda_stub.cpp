// The launchers of text_cuda.cu in a build without CUDA: they link, and fail with a clear message.
#ifndef LONGROLL_HAS_CUDA
#include "kernels/text_cuda.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

[[noreturn]] void no_cuda(const char* op) {
    detail::throw_runtime_error(str_cat(op, " on device memory: this longroll was built without CUDA"));
}

}  // namespace

void launch_relative_bias_attention(const RelativeBiasAttentionCudaParams&, Stream) {
    no_cuda("relative_bias_attention");
}
void launch_gated_gelu(const void*, const void*, void*, int64_t, Stream) { no_cuda("gated_gelu"); }
void launch_embedding_rows(const EmbeddingRowsCudaParams&, Stream) { no_cuda("embedding_rows"); }

}  // namespace lr
#endif
