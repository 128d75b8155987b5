// CUDA paged attention (DESIGN.md section 6). Two kernels behind launch_paged_attention:
//
// head_dim 128 (Hopper wgmma, sm_90a): one CTA per (query block of 128 rows, head), 8 warps = 2 warpgroups of
// 64 query rows. The KV blocks of the table row are walked in tiles of 128 keys, each made of two 64-key
// sub-tiles (a block of 64 tokens is one sub-tile, a block of 128 two; sub-tiles past a block's valid length
// are skipped), loaded with cp.async into a 3-stage shared-memory ring, rows past the valid length zeroed.
// Per tile and warpgroup: S = Q K^T (m64n128k16, Q and K from shared memory), padding keys masked, online
// softmax in fp32 with exp2 (scale folded into log2 e), P rounded to bf16 in registers, O += P V
// (m64n64k16 per 64 dims, P from registers, V from shared memory). FlashAttention-3's intra-warpgroup
// overlap: iteration j issues S_j and P_{j-1} V_{j-1} together and runs the softmax of S_j while the latter
// executes. Q, K and V tiles are in the canonical 128-byte-swizzle layout the descriptors describe.
//
// Measured on one H100 (bench/attention_bench, 12 heads, 21-frame window, 3-frame chunk): 317 TFLOP/s at 480p
// and 387 at 1088p, 0.62x and 0.67x of torch SDPA (cuDNN backend). Earlier versions, for the record
// (bench/results/attention_paged_*.json): mma.sync with 64-key tiles 231 and 281; wgmma with 64-key tiles 275
// and 341 without the overlap, 296 and 360 with it.
// What remains to FlashAttention-3: TMA loads by a producer warpgroup with mbarriers instead of cp.async by
// every thread and a CTA barrier per tile, and ping-pong scheduling of the two warpgroups.
//
// Other even head_dim up to 256: one warp per (query row, head), keys one at a time, each lane holding up to
// 4 bf16 pairs of the head; simple, for the tiny test model and odd configurations.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/paged_attention.h"
#include "runtime/core/cuda_check.h"

namespace lr {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// ---- head_dim 128 ------------------------------------------------------------------------------------------
constexpr int kHeadDim = 128;
constexpr int kQTile = 128;  // = q_block: one table row per CTA
constexpr int kSubTile = 64;
constexpr int kTileKeys = 2 * kSubTile;
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
constexpr int kStages = 3;

static_assert(kQTile == kWarps * 16, "each warp owns 16 query rows");
static_assert(kTileKeys * kChunks % kThreads == 0 && kQTile * kChunks % kThreads == 0, "tile loads split evenly");

// 16 bytes global -> shared, asynchronous; `valid` false writes zeros (padding keys may hold anything, NaN
// included, and 0 * NaN would poison P V; query rows past q_len are not memory at all).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
    const int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Two floats -> bf16x2 (lo in the low half, the element with the lower index).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

// ---- wgmma helpers -------------------------------------------------------------------------------------------
// Descriptor of a 128-byte-swizzled operand at shared address `addr`: 8-row groups 1024 bytes apart (SBO).
// The other stride (LBO) is unused by every operand here (Q and K are K-major; V is MN-major with N = 64, one
// swizzle atom wide), so it gets the same value.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr) {
    constexpr uint64_t kStride = 1024 >> 4;
    return static_cast<uint64_t>((addr & 0x3ffff) >> 4) | (kStride << 16) | (kStride << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving reads or writes of accumulator registers across the wgmma fences.
template <int kN>
__device__ __forceinline__ void fence_regs(float (&d)[kN][4]) {
#pragma unroll
    for (int n = 0; n < kN; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[n][e])::"memory");
    }
}

// d[64x64] += a[64x16] (registers, the mma.sync A layout per warp) * b[16x64] (shared, descriptor), per
// warpgroup. kTransB: b is stored N-major (V: [keys][dims]) instead of K-major (K: [keys][dims] as B^T).
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b_desc) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, %37;\n"
        "}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "n"(kTransB));
}

// 64 keys of a table row: `valid` keys starting at token t0 of physical block `block`.
struct KvSubTile {
    int block = 0;
    int t0 = 0;
    int valid = 0;
};

// The first sub-tile at or after index `it` (sub-tile it = the 64 keys it % tiles_per_block of the table row's
// block it / tiles_per_block) that holds a valid key; returns `count` when there is none.
__device__ __forceinline__ int next_sub_tile(const PagedAttentionParams& p, int64_t e0, int it, int count,
                                             int tiles_per_block, KvSubTile& tile) {
    for (; it < count; ++it) {
        const int block = __ldg(p.indices + e0 + it / tiles_per_block);
        const int t0 = (it % tiles_per_block) * kSubTile;
        const int len = __ldg(p.block_len + block);
        if (len > t0) {
            tile = {block, t0, min(kSubTile, len - t0)};
            return it;
        }
    }
    return count;
}

__device__ __forceinline__ void fence_o(float (&o)[kHeadDim / 8][4]) {
    fence_regs(*reinterpret_cast<float(*)[8][4]>(&o[0][0]));
    fence_regs(*reinterpret_cast<float(*)[8][4]>(&o[8][0]));
}

// ---- tiles, loads, softmax and the two matmuls -----------------------------------------------------------------
// Shared tiles ([rows][128] bf16: Q 128 rows, K and V 128 keys) are two halves of [rows][64 dims] with
// 128-byte rows, 16-byte chunk c of row r stored at chunk c ^ (r % 8): the canonical 128-byte swizzle. Every
// half starts on a 1024-byte boundary, so the hardware's address-based swizzle and this one agree.
constexpr int kHalfBytes = 128 * 64 * 2;                                  // [128 rows][64 dims]: 16 KB
constexpr int kTileBytes = 2 * kHalfBytes;                                // 32 KB
constexpr int kSmemBytes = kTileBytes + kStages * 2 * kTileBytes + 1024;  // Q + 3 x (K, V): 225 KB

__device__ __forceinline__ uint32_t swizzle(int r, int c) {
    return static_cast<uint32_t>((c / 8) * kHalfBytes + r * 128 + ((c % 8) ^ (r & 7)) * 16);
}

// 128 keys: two sub-tiles, each from its own block or half block, so that any block size that is a multiple
// of 64 works and a short last block does not cost a whole tile.
struct KvTile {
    KvSubTile sub[2];  // keys [0, 64) and [64, 128); sub[1].valid may be 0
};

// The next tile from sub-tile index `cursor` on: the next two sub-tiles that hold a valid key. False when
// there is none; cursor moves past what the tile took.
__device__ __forceinline__ bool next_tile(const PagedAttentionParams& p, int64_t e0, int& cursor, int count,
                                          int tiles_per_block, KvTile& t) {
    const int a = next_sub_tile(p, e0, cursor, count, tiles_per_block, t.sub[0]);
    if (a >= count) {
        cursor = count;
        return false;
    }
    const int b = next_sub_tile(p, e0, a + 1, count, tiles_per_block, t.sub[1]);
    if (b >= count) {
        t.sub[1] = {t.sub[0].block, 0, 0};
        cursor = count;
    } else {
        cursor = b + 1;
    }
    return true;
}

__device__ __forceinline__ void load_kv_tile(const PagedAttentionParams& p, int h, const KvTile& t, uint32_t k_smem,
                                             uint32_t v_smem, int tid) {
    const int c = tid % kChunks;
#pragma unroll
    for (int i = 0; i < kTileKeys * kChunks / kThreads; ++i) {
        const int r = tid / kChunks + i * (kThreads / kChunks);
        const KvSubTile& sub = t.sub[i / (kSubTile * kChunks / kThreads)];  // = r / 64, known at compile time
        const int rr = r % kSubTile;
        const bool ok = rr < sub.valid;
        const int64_t off = sub.block * p.kv_block_stride + (sub.t0 + (ok ? rr : 0)) * p.kv_row_stride + h * kHeadDim +
                            (ok ? c * 8 : 0);
        cp_async_16(k_smem + swizzle(r, c), static_cast<const __nv_bfloat16*>(p.k) + off, ok);
        cp_async_16(v_smem + swizzle(r, c), static_cast<const __nv_bfloat16*>(p.v) + off, ok);
    }
}

// d[64x128] (+)= a[64x16] * b[16x128], both from shared memory (K-major), per warpgroup.
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[16][4], uint64_t a_desc, uint64_t b_desc) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]),
          "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]),
          "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
          "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]),
          "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),
          "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
        : "l"(a_desc), "l"(b_desc));
}

// softmax_tile for a [16, 128] S tile whose keys [64 i, 64 i + 64) have valid[i] valid keys (valid[0] > 0).
__device__ __forceinline__ void softmax_tile(float (&s)[kTileKeys / 8][4], const int (&valid)[2], int lane,
                                             float scale_log2, float (&row_max)[2], float (&correction)[2],
                                             float (&tile_sum)[2], uint32_t (&pa)[kTileKeys / 16][4]) {
    if (valid[0] < kSubTile || valid[1] < kSubTile) {
#pragma unroll
        for (int n = 0; n < kTileKeys / 8; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                if ((n % 8) * 8 + 2 * (lane % 4) + e % 2 >= valid[n / 8]) s[n][e] = -INFINITY;
            }
        }
    }
    float offset[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float m = row_max[r];
#pragma unroll
        for (int n = 0; n < kTileKeys / 8; ++n) m = fmaxf(m, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
        correction[r] = exp2f((row_max[r] - m) * scale_log2);
        row_max[r] = m;
        offset[r] = m * scale_log2;
        tile_sum[r] = 0.0f;
    }
#pragma unroll
    for (int n = 0; n < kTileKeys / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            s[n][e] = exp2f(fmaf(s[n][e], scale_log2, -offset[e / 2]));
            tile_sum[e / 2] += s[n][e];
        }
    }
#pragma unroll
    for (int ks = 0; ks < kTileKeys / 16; ++ks) {
        pa[ks][0] = pack_bf16(s[2 * ks][0], s[2 * ks][1]);
        pa[ks][1] = pack_bf16(s[2 * ks][2], s[2 * ks][3]);
        pa[ks][2] = pack_bf16(s[2 * ks + 1][0], s[2 * ks + 1][1]);
        pa[ks][3] = pack_bf16(s[2 * ks + 1][2], s[2 * ks + 1][3]);
    }
}

__device__ __forceinline__ void fence_p(uint32_t (&pa)[kTileKeys / 16][4]) {
#pragma unroll
    for (int ks = 0; ks < kTileKeys / 16; ++ks) {
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(pa[ks][e])::"memory");
    }
}

// S = Q K^T: A = this warpgroup's 64 Q rows, B = K, both K-major; k-step kk is 32 bytes into half kk / 4.
__device__ __forceinline__ void issue_qk(float (&s)[kTileKeys / 8][4], uint32_t q_rows, uint32_t k_tile) {
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
        const uint32_t off = (kk / 4) * kHalfBytes + (kk % 4) * 32;
        wgmma_m64n128k16_ss(s, sw128_desc(q_rows + off), sw128_desc(k_tile + off));
    }
}

// O += P V: MN-major B per dims half; keys [16 ks, 16 ks + 16) are 2 row groups at 2048 ks bytes.
__device__ __forceinline__ void issue_pv(float (&o)[kHeadDim / 8][4], const uint32_t (&pa)[kTileKeys / 16][4],
                                         uint32_t v_tile) {
    auto& o_lo = *reinterpret_cast<float(*)[8][4]>(&o[0][0]);
    auto& o_hi = *reinterpret_cast<float(*)[8][4]>(&o[8][0]);
#pragma unroll
    for (int ks = 0; ks < kTileKeys / 16; ++ks) {
        wgmma_m64n64k16<1>(o_lo, pa[ks], sw128_desc(v_tile + ks * 2048));
        wgmma_m64n64k16<1>(o_hi, pa[ks], sw128_desc(v_tile + kHalfBytes + ks * 2048));
    }
}

__global__ void __launch_bounds__(kThreads, 1)
    paged_attention_hd128_kernel(const PagedAttentionParams p, int num_q_blocks, float scale_log2) {
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    const uint32_t raw = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
    const uint32_t q_smem = (raw + 1023) & ~1023u;
    const uint32_t kv_smem = q_smem + kTileBytes;  // stage s: K at kv_smem + 2 s T, V at + T
    auto k_stage = [&](int stage) { return kv_smem + stage * 2 * kTileBytes; };

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int qb = blockIdx.x, h = blockIdx.y;
    const int64_t i0 = static_cast<int64_t>(qb) * kQTile;
    const int64_t row = static_cast<int64_t>(p.table_heads == 1 ? 0 : h) * num_q_blocks + qb;
    const int64_t e0 = p.indptr[row];
    const int tiles_per_block = p.block_size / kSubTile;
    const int count = static_cast<int>(p.indptr[row + 1] - e0) * tiles_per_block;
    const uint32_t q_rows = q_smem + (warp / 4) * 64 * 128;  // this warpgroup's 64 rows in each half

    {  // Q tile: [128, 128] of head h, rows past q_len zero.
        const auto* q = static_cast<const __nv_bfloat16*>(p.q) + i0 * p.q_row_stride + h * kHeadDim;
        const int c = tid % kChunks;
#pragma unroll
        for (int i = 0; i < kQTile * kChunks / kThreads; ++i) {
            const int r = tid / kChunks + i * (kThreads / kChunks);
            const bool ok = i0 + r < p.q_len;
            cp_async_16(q_smem + swizzle(r, c), q + (ok ? r * p.q_row_stride + c * 8 : 0), ok);
        }
    }
    int cursor = 0;
    KvTile cur, next;
    bool have = next_tile(p, e0, cursor, count, tiles_per_block, cur);
    if (have) load_kv_tile(p, h, cur, k_stage(0), k_stage(0) + kTileBytes, tid);
    cp_async_commit();
    cp_async_wait<0>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();

    float o[kHeadDim / 8][4] = {};
    float row_max[2] = {-INFINITY, -INFINITY};  // raw scores (before scale)
    float row_sum[2] = {0.0f, 0.0f};            // this thread's partial sums; the quad is reduced at the end
    if (have) {
        have = next_tile(p, e0, cursor, count, tiles_per_block, next);
        if (have) load_kv_tile(p, h, next, k_stage(1), k_stage(1) + kTileBytes, tid);
        cp_async_commit();

        uint32_t pa[kTileKeys / 16][4], pb[kTileKeys / 16][4];
        {
            float s[kTileKeys / 8][4] = {};
            float correction[2], tile_sum[2];
            const int valid[2] = {cur.sub[0].valid, cur.sub[1].valid};
            fence_regs(s);
            wgmma_fence();
            issue_qk(s, q_rows, k_stage(0));
            wgmma_commit();
            wgmma_wait<0>();
            fence_regs(s);
            softmax_tile(s, valid, lane, scale_log2, row_max, correction, tile_sum, pa);
            for (int r = 0; r < 2; ++r) row_sum[r] = tile_sum[r];
        }
        int j = 1;  // tiles processed so far; tile j is in stage j % 3
        cur = next;
        // One iteration: P_{j-1} (pa_in) V_{j-1} and S_j issued together, the softmax of S_j into pa_out while
        // the former runs. The tensor cores read pa_in until the final wait, so pa_out must be other registers:
        // the loop is unrolled by two with the roles swapped (copying pa_out to pa_in instead makes ptxas
        // serialize the wgmma). The one barrier per iteration makes tile j visible and frees stage (j+1) % 3,
        // last read by P_{j-2} V_{j-2}, which completed in iteration j-1.
        auto step = [&](uint32_t(&pa_in)[kTileKeys / 16][4], uint32_t(&pa_out)[kTileKeys / 16][4]) {
            cp_async_wait<0>();
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            __syncthreads();
            have = next_tile(p, e0, cursor, count, tiles_per_block, next);
            if (have) {
                const uint32_t nk = k_stage((j + 1) % kStages);
                load_kv_tile(p, h, next, nk, nk + kTileBytes, tid);
            }
            cp_async_commit();

            float s[kTileKeys / 8][4] = {};
            fence_regs(s);
            fence_o(o);
            fence_p(pa_in);
            wgmma_fence();
            issue_qk(s, q_rows, k_stage(j % kStages));
            wgmma_commit();
            issue_pv(o, pa_in, k_stage((j - 1) % kStages) + kTileBytes);
            wgmma_commit();
            wgmma_wait<1>();  // S_j is done; P_{j-1} V_{j-1} may still run
            fence_regs(s);
            float correction[2], tile_sum[2];
            const int valid[2] = {cur.sub[0].valid, cur.sub[1].valid};
            softmax_tile(s, valid, lane, scale_log2, row_max, correction, tile_sum, pa_out);
            wgmma_wait<0>();
            fence_o(o);
            fence_p(pa_in);
#pragma unroll
            for (int n = 0; n < kHeadDim / 8; ++n) {
#pragma unroll
                for (int e = 0; e < 4; ++e) o[n][e] *= correction[e / 2];
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) row_sum[r] = row_sum[r] * correction[r] + tile_sum[r];
            ++j;
            cur = next;
        };
        auto finish = [&](uint32_t(&pa_in)[kTileKeys / 16][4]) {
            fence_o(o);
            fence_p(pa_in);
            wgmma_fence();
            issue_pv(o, pa_in, k_stage((j - 1) % kStages) + kTileBytes);
            wgmma_commit();
            wgmma_wait<0>();
            fence_o(o);
        };
        // `have` says whether tile j exists (it was prefetched by the previous step or the prologue).
        while (true) {
            if (!have) {
                finish(pa);
                break;
            }
            step(pa, pb);
            if (!have) {
                finish(pb);
                break;
            }
            step(pb, pa);
        }
    }
    cp_async_wait<0>();  // nothing may stay in flight into shared memory when the CTA exits

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float sum = row_sum[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        const int64_t i = i0 + warp * 16 + lane / 4 + r * 8;
        if (i >= p.q_len) continue;
        auto* dst = static_cast<__nv_bfloat16*>(p.out) + i * p.out_row_stride + h * kHeadDim + 2 * (lane % 4);
#pragma unroll
        for (int n = 0; n < kHeadDim / 8; ++n) {
            *reinterpret_cast<__nv_bfloat162*>(dst + n * 8) =
                __floats2bfloat162_rn(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
        }
    }
}

// ---- any even head_dim <= 256 ---------------------------------------------------------------------------------
constexpr int kGenericWarps = 4;
constexpr int kGenericPairs = 4;  // bf16 pairs per lane: 32 lanes x 4 x 2 = 256 dims

__global__ void __launch_bounds__(kGenericWarps * 32)
    paged_attention_generic_kernel(const PagedAttentionParams p, int num_q_blocks, float scale_log2) {
    const int lane = threadIdx.x % 32;
    const int64_t i = static_cast<int64_t>(blockIdx.x) * kGenericWarps + threadIdx.x / 32;
    if (i >= p.q_len) return;
    const int h = blockIdx.y;
    const int pairs = p.head_dim / 2;
    const int64_t row = static_cast<int64_t>(p.table_heads == 1 ? 0 : h) * num_q_blocks + i / p.q_block;

    const auto* q = reinterpret_cast<const __nv_bfloat162*>(static_cast<const __nv_bfloat16*>(p.q) +
                                                            i * p.q_row_stride + h * p.head_dim);
    float2 qv[kGenericPairs], acc[kGenericPairs];
#pragma unroll
    for (int j = 0; j < kGenericPairs; ++j) {
        const int pair = lane + 32 * j;
        qv[j] = pair < pairs ? __bfloat1622float2(q[pair]) : make_float2(0.0f, 0.0f);
        acc[j] = make_float2(0.0f, 0.0f);
    }
    float m = -INFINITY, l = 0.0f;  // running max (log2 units) and sum
    for (int64_t e = p.indptr[row]; e < p.indptr[row + 1]; ++e) {
        const int64_t block = p.indices[e];
        const int len = p.block_len[block];
        const int64_t base = block * p.kv_block_stride + h * p.head_dim;
        for (int t = 0; t < len; ++t) {
            const auto* k = reinterpret_cast<const __nv_bfloat162*>(static_cast<const __nv_bfloat16*>(p.k) + base +
                                                                    t * p.kv_row_stride);
            const auto* v = reinterpret_cast<const __nv_bfloat162*>(static_cast<const __nv_bfloat16*>(p.v) + base +
                                                                    t * p.kv_row_stride);
            float dot = 0.0f;
#pragma unroll
            for (int j = 0; j < kGenericPairs; ++j) {
                const int pair = lane + 32 * j;
                if (pair < pairs) {
                    const float2 kv = __bfloat1622float2(k[pair]);
                    dot = fmaf(qv[j].x, kv.x, fmaf(qv[j].y, kv.y, dot));
                }
            }
#pragma unroll
            for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
            const float s = dot * scale_log2;
            const float m_new = fmaxf(m, s);
            const float correction = exp2f(m - m_new);
            const float pexp = exp2f(s - m_new);
            l = l * correction + pexp;
            m = m_new;
#pragma unroll
            for (int j = 0; j < kGenericPairs; ++j) {
                const int pair = lane + 32 * j;
                if (pair < pairs) {
                    const float2 vv = __bfloat1622float2(v[pair]);
                    acc[j].x = fmaf(pexp, vv.x, acc[j].x * correction);
                    acc[j].y = fmaf(pexp, vv.y, acc[j].y * correction);
                }
            }
        }
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    auto* out =
        reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(p.out) + i * p.out_row_stride + h * p.head_dim);
#pragma unroll
    for (int j = 0; j < kGenericPairs; ++j) {
        const int pair = lane + 32 * j;
        if (pair < pairs) out[pair] = __floats2bfloat162_rn(acc[j].x * inv, acc[j].y * inv);
    }
}

}  // namespace

void launch_paged_attention(const PagedAttentionParams& params, Stream stream) {
    const PagedAttentionParams p = resolve_paged_attention_params(params);
    if (p.q_len == 0) return;
    const int64_t q_blocks = paged_attention_q_blocks(p);
    LR_CHECK(q_blocks <= INT32_MAX, "paged attention: q_len ", p.q_len, " is too large");
    const float scale_log2 = p.scale * kLog2e;
    if (p.head_dim == kHeadDim) {
        // Above the 48 KB default; setting it is cheap and not a stream operation (graph capture is fine).
        LR_CUDA_CHECK(cudaFuncSetAttribute(paged_attention_hd128_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           kSmemBytes));
        const dim3 grid(static_cast<unsigned>(q_blocks), static_cast<unsigned>(p.heads));
        paged_attention_hd128_kernel<<<grid, kThreads, kSmemBytes, stream>>>(p, static_cast<int>(q_blocks), scale_log2);
    } else {
        const dim3 grid(static_cast<unsigned>((p.q_len + kGenericWarps - 1) / kGenericWarps),
                        static_cast<unsigned>(p.heads));
        paged_attention_generic_kernel<<<grid, kGenericWarps * 32, 0, stream>>>(p, static_cast<int>(q_blocks),
                                                                                scale_log2);
    }
    LR_CUDA_LAUNCH_CHECK();
}

}  // namespace lr
