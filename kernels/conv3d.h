// 3D convolution over a window of channels-last frames, stride 1, "same" spatial zero padding, no time
// padding: the caller passes the frames the window covers. The Wan VAE's causal convs (3x3x3, 3x1x1 time
// conv, 1x1x1) and its Conv2d layers (kt = 1) are all this op:
//   out[t][y][x][o] = bias[o] + sum_{dt, dy, dx, i} w[o][dt][dy][dx][i] * in_{t + dt}[y + dy - kh/2][x + dx - kw/2][i]
// A causal conv with a cache of the last kt - 1 input frames passes them first; a null frame pointer is a
// frame of zeros (the reference's zero time padding before the first frame) and costs nothing.
//
// CPU: per frame of the window, im2col of a tile of output pixels ([tile, kh * kw * in]) and the blocked GEMM
// against that frame's slice of the weight, accumulated over the window; tiles run in parallel
// (cpu_parallel) when there are enough, otherwise the GEMM itself splits. 1x1 spatial kernels need no im2col.
// The weight is stored [kt, kh, kw, in, out] (taps, then the GEMM's [k, n]), so that the GEMM packs it from
// contiguous rows: it is packed again for every tile.
#pragma once

#include <cstdint>

namespace lr {

struct Conv3dParams {
    const float* const* frames = nullptr;  // [out_frames + kt - 1] pointers to [height, width, in_ch], or nullptr
    const float* weight = nullptr;         // [kt, kh, kw, in_ch, out_ch] (conv3d_pack_weight)
    const float* bias = nullptr;           // [out_ch], or nullptr
    float* out = nullptr;                  // [out_frames, height, width, out_ch]
    int64_t out_frames = 1;
    int64_t height = 0;
    int64_t width = 0;
    int64_t in_ch = 0;
    int64_t out_ch = 0;
    int64_t kt = 1;
    int64_t kh = 1;           // odd: padding kh / 2
    int64_t kw = 1;           // odd: padding kw / 2
    bool accumulate = false;  // out += conv (a fused residual add) instead of out = conv
};

void conv3d_cpu(const Conv3dParams& p);

// PyTorch's Conv3d weight [out, in, kt, kh, kw] (a Conv2d weight [out, in, kh, kw] is kt = 1) ->
// [kt, kh, kw, in, out], the layout conv3d_cpu takes. `dst` must not alias `src`.
void conv3d_pack_weight(const float* src, float* dst, int64_t out_ch, int64_t in_ch, int64_t kt, int64_t kh,
                        int64_t kw);

}  // namespace lr
