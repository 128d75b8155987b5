// copy_rows_cpu: the host reference of launch_copy_rows (dit_ops_cuda.h), compiled in every build.
#include <cstring>

#include "kernels/dit_ops_cuda.h"
#include "runtime/core/check.h"

namespace lr {

void copy_rows_cpu(const CopyRowsParams& p) {
    LR_ASSERT(p.rows >= 0 && p.row_bytes > 0, "copy_rows: rows ", p.rows, ", row_bytes ", p.row_bytes);
    const int64_t src_stride = p.src_stride ? p.src_stride : p.row_bytes;
    const int64_t dst_stride = p.dst_stride ? p.dst_stride : p.row_bytes;
    for (int64_t r = 0; r < p.rows; ++r) {
        const int64_t s = p.src_row ? p.src_row[r] : r;
        const int64_t d = p.dst_row ? p.dst_row[r] : r;
        if (s < 0 || d < 0) continue;
        std::memcpy(static_cast<char*>(p.dst) + d * dst_stride, static_cast<const char*>(p.src) + s * src_stride,
                    static_cast<size_t>(p.row_bytes));
    }
}

}  // namespace lr
