#include "kernels/cast.h"

#include "runtime/core/check.h"

namespace lr {
namespace {

bool is_cast_dtype(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

}  // namespace

bool cast_supported(DType src, DType dst) { return is_cast_dtype(src) && is_cast_dtype(dst); }

void cast_cpu(const CastParams& p) {
    LR_ASSERT(cast_supported(p.src_dtype, p.dst_dtype), "cast ", dtype_name(p.src_dtype), " -> ",
              dtype_name(p.dst_dtype));
    for (int64_t i = 0; i < p.n; ++i) store_from_f32(p.dst, p.dst_dtype, i, load_as_f32(p.src, p.src_dtype, i));
}

#ifndef LONGROLL_HAS_CUDA
void launch_cast(const CastParams&, Stream) {
    LR_RUNTIME(false, "cast on a device tensor: this longroll was built without CUDA");
}
#endif

void cast(const TensorView& src, const TensorView& dst, Stream stream) {
    LR_CHECK(cast_supported(src.dtype, dst.dtype), "cast from ", dtype_name(src.dtype), " to ", dtype_name(dst.dtype),
             " is not supported (F32, BF16 and F16 are)");
    LR_ASSERT(src.numel() == dst.numel(), "cast ", src.str(), " -> ", dst.str(), ": element counts differ");
    LR_ASSERT(src.is_contiguous() && dst.is_contiguous(), "cast needs contiguous views");
    LR_ASSERT(src.device == dst.device, "cast ", src.str(), " -> ", dst.str(), ": devices differ");
    const CastParams p{src.data, dst.data, src.dtype, dst.dtype, src.numel()};
    if (src.device == Device::kCpu) {
        cast_cpu(p);
    } else {
        launch_cast(p, stream);
    }
}

}  // namespace lr
