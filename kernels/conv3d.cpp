#include "kernels/conv3d.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "kernels/gemm.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

// The GEMM packs the whole weight slice (out_ch * kcol) for every tile: tiles of a few hundred rows (an im2col
// buffer of ~4 MiB per thread) keep that packing small next to the tile's multiply-adds.
constexpr int64_t kColFloats = int64_t{1} << 20;
constexpr int64_t kMinTile = 96;
constexpr int64_t kMaxTile = 2048;

// col[i] = the kh x kw x in_ch neighbourhood of output pixel p0 + i of a channels-last frame, zero outside.
// [n, kh * kw * in_ch]
void im2col(const Conv3dParams& p, const float* frame, int64_t p0, int64_t n, float* col) {
    const int64_t c = p.in_ch, ph = p.kh / 2, pw = p.kw / 2;
    const int64_t kcol = p.kh * p.kw * c;
    const size_t row_bytes = static_cast<size_t>(c) * sizeof(float);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t y = (p0 + i) / p.width, x = (p0 + i) % p.width;
        // Columns x - pw + dx for dx in [dx0, dx1) are inside the frame: one contiguous copy per kernel row.
        const int64_t dx0 = std::max<int64_t>(0, pw - x), dx1 = std::min(p.kw, p.width - x + pw);
        float* dst = col + i * kcol;
        for (int64_t dy = 0; dy < p.kh; ++dy, dst += p.kw * c) {
            const int64_t yy = y + dy - ph;
            if (yy < 0 || yy >= p.height || dx1 <= dx0) {
                std::memset(dst, 0, row_bytes * static_cast<size_t>(p.kw));
                continue;
            }
            if (dx0 > 0) std::memset(dst, 0, row_bytes * static_cast<size_t>(dx0));
            std::memcpy(dst + dx0 * c, frame + (yy * p.width + x - pw + dx0) * c,
                        row_bytes * static_cast<size_t>(dx1 - dx0));
            if (dx1 < p.kw) std::memset(dst + dx1 * c, 0, row_bytes * static_cast<size_t>(p.kw - dx1));
        }
    }
}

// Output pixels [p0, p0 + n) of output frame t.
void run_tile(const Conv3dParams& p, int64_t t, int64_t p0, int64_t n, bool threaded, std::vector<float>& col) {
    const int64_t pixels = p.height * p.width;
    const int64_t kcol = p.kh * p.kw * p.in_ch;
    float* out = p.out + (t * pixels + p0) * p.out_ch;  // [n, out_ch]
    bool first = true;
    for (int64_t dt = 0; dt < p.kt; ++dt) {
        const float* frame = p.frames[t + dt];
        if (frame == nullptr) continue;  // zeros contribute nothing
        GemmParams g;
        if (p.kh * p.kw == 1) {
            g.a = frame + p0 * p.in_ch;
        } else {
            col.resize(static_cast<size_t>(n * kcol));
            im2col(p, frame, p0, n, col.data());
            g.a = col.data();
        }
        g.lda = kcol;
        g.b = p.weight + dt * kcol * p.out_ch;  // this frame's slice of [kt, kh * kw * in_ch, out_ch]
        g.ldb = p.out_ch;
        g.b_transposed = false;
        g.c = out;
        g.ldc = p.out_ch;
        g.m = n;
        g.n = p.out_ch;
        g.k = kcol;
        g.bias = first ? p.bias : nullptr;
        g.accumulate = !first || p.accumulate;
        g.threaded = threaded;
        gemm_cpu(g);
        first = false;
    }
    if (first) {  // a window of zero frames: the bias alone
        for (int64_t i = 0; i < n; ++i) {
            float* row = out + i * p.out_ch;
            for (int64_t o = 0; o < p.out_ch; ++o) {
                row[o] = (p.accumulate ? row[o] : 0.0f) + (p.bias ? p.bias[o] : 0.0f);
            }
        }
    }
}

}  // namespace

void conv3d_cpu(const Conv3dParams& p) {
    LR_ASSERT(p.frames && p.weight && p.out, "conv3d: null frames, weight or out");
    LR_ASSERT(p.out_frames >= 0 && p.height > 0 && p.width > 0 && p.in_ch > 0 && p.out_ch > 0,
              "conv3d: bad size frames=", p.out_frames, " ", p.height, "x", p.width, " ", p.in_ch, "->", p.out_ch);
    LR_ASSERT(p.kt >= 1 && p.kh >= 1 && p.kw >= 1 && p.kh % 2 == 1 && p.kw % 2 == 1, "conv3d: bad kernel ", p.kt, "x",
              p.kh, "x", p.kw, " (spatial sizes must be odd)");
    const int64_t pixels = p.height * p.width;
    const int64_t kcol = p.kh * p.kw * p.in_ch;
    const int threads = cpu_threads();
    for (int64_t t = 0; t < p.out_frames; ++t) {
        std::vector<float> col;
        if (p.kh * p.kw == 1) {  // a plain GEMM over the frame; it splits over threads itself
            run_tile(p, t, 0, pixels, true, col);
            continue;
        }
        const int64_t tile = std::clamp(kColFloats / kcol, kMinTile, kMaxTile);
        int64_t tiles = (pixels + tile - 1) / tile;
        if (tiles < threads) {  // a small frame: few tiles, each GEMM threaded
            for (int64_t p0 = 0; p0 < pixels; p0 += tile) run_tile(p, t, p0, std::min(tile, pixels - p0), true, col);
            continue;
        }
        // A multiple of the thread count, so that every thread gets the same number of equal tiles.
        tiles = (tiles + threads - 1) / threads * threads;
        const int64_t size = (pixels + tiles - 1) / tiles;
        tiles = (pixels + size - 1) / size;
        parallel_for(tiles, 1, [&](int64_t t0, int64_t t1) {
            std::vector<float> local;
            for (int64_t i = t0; i < t1; ++i) {
                const int64_t p0 = i * size;
                run_tile(p, t, p0, std::min(size, pixels - p0), false, local);
            }
        });
    }
}

void conv3d_pack_weight(const float* src, float* dst, int64_t out_ch, int64_t in_ch, int64_t kt, int64_t kh,
                        int64_t kw) {
    const int64_t taps = kt * kh * kw;
    for (int64_t o = 0; o < out_ch; ++o) {
        for (int64_t i = 0; i < in_ch; ++i) {
            const float* s = src + (o * in_ch + i) * taps;  // [taps]
            for (int64_t k = 0; k < taps; ++k) dst[(k * in_ch + i) * out_ch + o] = s[k];
        }
    }
}

}  // namespace lr
