// Wan's 3D rotary position embedding with an explicit (frame, row, col) position per token.
//
// A head of size d holds d/2 complex pairs of adjacent elements (2i, 2i+1). With a = d - 4*(d//6) and
// b = 2*(d//6), the first a/2 pairs rotate by the frame position with frequencies theta^(-2j/a), the next
// b/2 by the row and the last b/2 by the column, both with theta^(-2j/b) (j counts from 0 in each part).
// For d = 128: 22 + 21 + 21 pairs. Angles (up to ~1000 rad) and the rotation are computed in double, as
// the reference does, then rounded to fp32. Positions are explicit so that a tiled token order, a window-
// relative frame position (LongLive) and absolute positions past the reference's 1024-frame table all work.
#pragma once

#include <cstdint>

namespace lr {

struct Rope3dParams {
    const float* x = nullptr;            // [tokens, heads, head_dim], tokens x_stride elements apart
    float* y = nullptr;                  // [tokens, heads, head_dim], tokens y_stride elements apart; may be x
    const int64_t* positions = nullptr;  // [tokens, 3]: (frame, row, col) of each token
    int64_t tokens = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;  // even
    int64_t x_stride = 0;  // 0: heads * head_dim
    int64_t y_stride = 0;  // 0: heads * head_dim
    double theta = 10000.0;
};

// Pairs of the frame part (a/2) and of each spatial part (b/2) for a head of size d.
int64_t rope_frame_pairs(int64_t head_dim);
int64_t rope_spatial_pairs(int64_t head_dim);

void rope_3d_cpu(const Rope3dParams& p);

}  // namespace lr
