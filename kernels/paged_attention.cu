// CUDA paged attention (DESIGN.md section 6). Two kernels behind launch_paged_attention:
//
// head_dim 128 (Hopper wgmma + TMA, sm_90a; FlashAttention-3's structure): one CTA per (query block of 128
// rows, head), or a cluster of two that split the table row (see the launch). 3 warpgroups: a producer and
// two consumers of 64 query rows each. The KV blocks of the table row are walked in tiles of 128 keys, each
// made of two 64-key sub-tiles (a block of 64 tokens is one sub-tile, a block of 128 two; sub-tiles past a
// block's valid length are skipped). The producer's TMA loads fill a 3-stage shared-memory ring. Per tile and
// consumer: S = Q K^T (m64n128k16, Q and K from shared memory), padding keys masked, online softmax in fp32
// with exp2 (scale folded into log2 e), P rounded to bf16 in registers, O += P V (m64n64k16 per 64 dims, P
// from registers, V from shared memory). Iteration j issues S_j and P_{j-1} V_{j-1} together and runs the
// softmax of S_j while the latter executes (intra-warpgroup overlap), and the two consumers ping-pong: one
// issues its GEMMs while the other does its softmax. Q, K and V tiles are in the canonical 128-byte-swizzle
// layout the TMA writes and the wgmma descriptors describe.
//
// Measured on one H100 (bench/attention_bench, 12 heads, 21-frame window, 3-frame chunk), dense, TFLOP/s at
// 480p / 1088p: 470 (split in two) / 500 (not split), 0.92x / 0.87x of torch SDPA (cuDNN backend).
// Earlier versions, for the record (bench/results/attention_paged_*.json): mma.sync with 64-key tiles
// 231 / 281; wgmma with cp.async by all threads, 64-key tiles 275 / 341, with the overlap 296 / 360, 128-key
// tiles 317 / 387.
//
// Other even head_dim up to 256: one warp per (query row, head), keys one at a time, each lane holding up to
// 4 bf16 pairs of the head; simple, for the tiny test model and odd configurations.
#include <cuda.h>
#include <cudaTypedefs.h>
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
constexpr int kStages = 3;

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
// `len_head` is 0 with one length per block, else the head (block_len_heads = heads).
__device__ __forceinline__ int next_sub_tile(const PagedAttentionParams& p, int64_t e0, int it, int count,
                                             int tiles_per_block, int len_head, KvSubTile& tile) {
    for (; it < count; ++it) {
        const int block = __ldg(p.indices + e0 + it / tiles_per_block);
        const int t0 = (it % tiles_per_block) * kSubTile;
        const int len = __ldg(p.block_len + static_cast<int64_t>(block) * p.block_len_heads + len_head);
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

// ---- tiles, softmax and the two matmuls -------------------------------------------------------------------------
// Shared tiles ([rows][128] bf16: Q 128 rows, K and V 128 keys) are two halves of [rows][64 dims] with
// 128-byte rows, 16-byte chunk c of row r stored at chunk c ^ (r % 8): the canonical 128-byte swizzle, which
// TMA boxes of 64 dims with CU_TENSOR_MAP_SWIZZLE_128B write when they start on a 1024-byte boundary.
constexpr int kHalfBytes = 128 * 64 * 2;    // [128 rows][64 dims]: 16 KB
constexpr int kTileBytes = 2 * kHalfBytes;  // 32 KB

// 128 keys: two sub-tiles, each from its own block or half block, so that any block size that is a multiple
// of 64 works and a short last block does not cost a whole tile.
struct KvTile {
    KvSubTile sub[2];  // keys [0, 64) and [64, 128); sub[1].valid may be 0
};

// The next tile from sub-tile index `cursor` on: the next two sub-tiles that hold a valid key. False when
// there is none; cursor moves past what the tile took.
__device__ __forceinline__ bool next_tile(const PagedAttentionParams& p, int64_t e0, int& cursor, int count,
                                          int tiles_per_block, int len_head, KvTile& t) {
    const int a = next_sub_tile(p, e0, cursor, count, tiles_per_block, len_head, t.sub[0]);
    if (a >= count) {
        cursor = count;
        return false;
    }
    const int b = next_sub_tile(p, e0, a + 1, count, tiles_per_block, len_head, t.sub[1]);
    if (b >= count) {
        t.sub[1] = {t.sub[0].block, 0, 0};
        cursor = count;
    } else {
        cursor = b + 1;
    }
    return true;
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

// Online softmax of a masked [16, 128] S tile (every row holds a valid key): P into pa (bf16, A layout).
__device__ __forceinline__ void softmax_tile(float (&s)[kTileKeys / 8][4], int lane, float scale_log2,
                                             float (&row_max)[2], float (&correction)[2], float (&tile_sum)[2],
                                             uint32_t (&pa)[kTileKeys / 16][4]) {
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

// ---- the kernel: warp specialisation ------------------------------------------------------------------------
// Warpgroup 0 is the producer: one thread issues the TMA loads of Q and of the K/V tiles into the ring, each
// stage guarded by a "full" mbarrier with a byte count and an "empty" mbarrier the 256 consumer threads
// arrive on once their P V of that stage completed. Warpgroups 1 and 2 consume, ping-ponged with two named
// barriers. setmaxnreg moves registers from the producer to the consumers.
//
// K/V are read through a 3D tensor map [block][token][heads * 128] (strides kv_block_stride, kv_row_stride),
// one box of [64 tokens][64 dims] per sub-tile and dims half. A sub-tile of `valid` < 64 keys at token t0 is
// loaded from token t0 + valid - 64 on, so its valid keys are its LAST `valid` rows; the rows before them are
// either earlier (valid, finite) tokens of the same block or, for a negative token coordinate, zeros filled
// by the TMA. Either way no padding slot (which may hold NaN) is read, and 0 * finite keeps P V clean.
constexpr int kThreads = 3 * 128;
constexpr int kBarBytes = 64;
constexpr int kSmemBytes = 1024 + kTileBytes + kStages * 2 * kTileBytes + kBarBytes;  // 225 KB + 64
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
// setmaxnreg moves registers only within the CTA's launch allocation: __launch_bounds__(384, 1) gives each thread
// 168 (65536 / 384, down to a multiple of 8), and what the consumers' increase takes the producer's decrease must
// have freed, or the increase waits for ever (FlashAttention-3's 24 / 240 and CUTLASS's 40 / 232 are both exactly
// 168 x 384).
constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;
static_assert(kProducerRegs * 128 + kConsumerRegs * 256 <= kLaunchRegs * kThreads,
              "setmaxnreg: the consumers take more registers than the producer frees");

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "LAB_WAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra LAB_WAIT;\n"
        "}\n" ::"r"(bar),
        "r"(parity)
        : "memory");
}
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::
            "r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap* map, int c0, int c1, int c2,
                                            uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
        "[%5];\n" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
        : "memory");
}
// Named barriers 1 and 2 (0 is __syncthreads): consumer warpgroup w waits on 1 + w, the other arrives on it;
// 3 joins the two consumer warpgroups.
__device__ __forceinline__ void named_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void named_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }

// All threads of the cluster (one CTA or two); the release / acquire orders the shared memory of either.
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}
// The shared address `addr` of this CTA mapped to the same offset in the cluster's CTA of rank 1.
__device__ __forceinline__ uint32_t map_to_rank1(uint32_t addr) {
    uint32_t out;
    asm volatile("mapa.shared::cluster.u32 %0, %1, 1;\n" : "=r"(out) : "r"(addr));
    return out;
}
__device__ __forceinline__ void st_shared_v4(uint32_t addr, const float (&v)[4]) {
    asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "f"(v[0]), "f"(v[1]), "f"(v[2]), "f"(v[3])
                 : "memory");
}
__device__ __forceinline__ void ld_cluster_v4(uint32_t addr, float (&v)[4]) {
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
                 : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3])
                 : "r"(addr)
                 : "memory");
}

// softmax_tile for the TMA layout: the valid keys of sub-tile i are its last valid[i].
__device__ __forceinline__ void mask_leading(float (&s)[kTileKeys / 8][4], const int (&valid)[2], int lane) {
    if (valid[0] < kSubTile || valid[1] < kSubTile) {
#pragma unroll
        for (int n = 0; n < kTileKeys / 8; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                if ((n % 8) * 8 + 2 * (lane % 4) + e % 2 < kSubTile - valid[n / 8]) s[n][e] = -INFINITY;
            }
        }
    }
}

__global__ void __launch_bounds__(kThreads, 1)
    paged_attention_hd128_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                                 const __grid_constant__ CUtensorMap tm_v, const PagedAttentionParams p,
                                 int num_q_blocks, float scale_log2, int splits) {
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    const uint32_t raw = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
    const uint32_t q_smem = (raw + 1023) & ~1023u;
    const uint32_t kv_smem = q_smem + kTileBytes;  // stage s: K at kv_smem + 2 s T, V at + T
    const uint32_t bars = kv_smem + kStages * 2 * kTileBytes;
    auto k_stage = [&](int stage) { return kv_smem + stage * 2 * kTileBytes; };
    auto full_bar = [&](int stage) { return bars + 8 * stage; };
    auto empty_bar = [&](int stage) { return bars + 8 * (kStages + stage); };
    const uint32_t q_bar = bars + 8 * 2 * kStages;

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, wg = warp / 4;
    const int qb = blockIdx.x / splits, h = blockIdx.y;
    const int rank = blockIdx.x % splits;  // = the CTA's rank in its cluster
    const int64_t i0 = static_cast<int64_t>(qb) * kQTile;
    const int64_t row = static_cast<int64_t>(p.table_heads == 1 ? 0 : h) * num_q_blocks + qb;
    const int64_t e0 = p.indptr[row];
    const int tiles_per_block = p.block_size / kSubTile;
    const int len_head = p.block_len_heads == 1 ? 0 : h;
    // Sub-tiles [begin, end) of the table row: all of them, or an even-sized first part for rank 0.
    const int sub_tiles = static_cast<int>(p.indptr[row + 1] - e0) * tiles_per_block;
    const int mid = splits == 1 ? sub_tiles : sub_tiles / 4 * 2;
    const int begin = rank == 0 ? 0 : mid, end = rank == 0 ? mid : sub_tiles;

    if (tid == 0) {
        for (int s = 0; s < kStages; ++s) {
            mbar_init(full_bar(s), 1);
            mbar_init(empty_bar(s), 256);
        }
        mbar_init(q_bar, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {  // producer
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
        if (tid == 0) {
            mbar_expect_tx(q_bar, kTileBytes);
            tma_load_2d(q_smem, &tm_q, h * kHeadDim, static_cast<int>(i0), q_bar);
            tma_load_2d(q_smem + kHalfBytes, &tm_q, h * kHeadDim + 64, static_cast<int>(i0), q_bar);
            int cursor = begin;
            KvTile t;
            for (int j = 0; next_tile(p, e0, cursor, end, tiles_per_block, len_head, t); ++j) {
                const int s = j % kStages;
                if (j >= kStages) mbar_wait(empty_bar(s), ((j / kStages) + 1) & 1);
                mbar_expect_tx(full_bar(s), 2 * kTileBytes);
                // An empty second sub-tile loads the first one again (finite data; every key of it is masked).
                if (t.sub[1].valid == 0) t.sub[1] = {t.sub[0].block, t.sub[0].t0, 0};
                const int v1 = t.sub[1].valid == 0 ? t.sub[0].valid : t.sub[1].valid;
#pragma unroll
                for (int sub = 0; sub < 2; ++sub) {
                    const int token = sub == 0 ? t.sub[0].t0 + t.sub[0].valid - kSubTile : t.sub[1].t0 + v1 - kSubTile;
                    const int block = t.sub[sub].block;
#pragma unroll
                    for (int half = 0; half < 2; ++half) {
                        const uint32_t off = half * kHalfBytes + sub * (kHalfBytes / 2);
                        const int col = h * kHeadDim + half * 64;
                        tma_load_3d(k_stage(s) + off, &tm_k, col, token, block, full_bar(s));
                        tma_load_3d(k_stage(s) + kTileBytes + off, &tm_v, col, token, block, full_bar(s));
                    }
                }
            }
        }
        cluster_sync();  // the consumers' two: see below
        cluster_sync();
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
    const int cw = wg - 1;                           // consumer warpgroup: query rows [64 cw, 64 cw + 64)
    const uint32_t q_rows = q_smem + cw * 64 * 128;  // this warpgroup's 64 rows in each half
    const int my_bar = 1 + cw, other_bar = 2 - cw;
    mbar_wait(q_bar, 0);

    float o[kHeadDim / 8][4] = {};
    float row_max[2] = {-INFINITY, -INFINITY};  // raw scores (before scale)
    float row_sum[2] = {0.0f, 0.0f};            // this thread's partial sums; the quad is reduced at the end
    int cursor = begin;
    KvTile cur, next;
    bool have = next_tile(p, e0, cursor, end, tiles_per_block, len_head, cur);
    if (have) {
        // Ping-pong: warpgroup 0 issues first. Each warpgroup waits on its barrier before issuing its GEMMs
        // and arrives on the other's after; warpgroup 1 skips its last arrive, so the counts match (every
        // arrive on barrier 1 is matched by one sync of warpgroup 0, the initial arrive included).
        if (cw == 1) named_arrive(other_bar);
        uint32_t pa[kTileKeys / 16][4], pb[kTileKeys / 16][4];
        {
            mbar_wait(full_bar(0), 0);
            have = next_tile(p, e0, cursor, end, tiles_per_block, len_head, next);
            float s[kTileKeys / 8][4] = {};
            float correction[2], tile_sum[2];
            const int valid[2] = {cur.sub[0].valid, cur.sub[1].valid};
            fence_regs(s);
            named_sync(my_bar);
            wgmma_fence();
            issue_qk(s, q_rows, k_stage(0));
            wgmma_commit();
            if (cw == 0 || have) named_arrive(other_bar);
            wgmma_wait<0>();
            fence_regs(s);
            mask_leading(s, valid, lane);
            softmax_tile(s, lane, scale_log2, row_max, correction, tile_sum, pa);
            for (int r = 0; r < 2; ++r) row_sum[r] = tile_sum[r];
        }
        int j = 1;  // tiles processed so far; tile j is in stage j % 3
        cur = next;
        auto step = [&](uint32_t(&pa_in)[kTileKeys / 16][4], uint32_t(&pa_out)[kTileKeys / 16][4]) {
            mbar_wait(full_bar(j % kStages), (j / kStages) & 1);
            have = next_tile(p, e0, cursor, end, tiles_per_block, len_head, next);
            float s[kTileKeys / 8][4] = {};
            fence_regs(s);
            fence_o(o);
            fence_p(pa_in);
            named_sync(my_bar);
            wgmma_fence();
            issue_qk(s, q_rows, k_stage(j % kStages));
            wgmma_commit();
            issue_pv(o, pa_in, k_stage((j - 1) % kStages) + kTileBytes);
            wgmma_commit();
            if (cw == 0 || have) named_arrive(other_bar);
            wgmma_wait<1>();  // S_j is done; P_{j-1} V_{j-1} may still run
            fence_regs(s);
            float correction[2], tile_sum[2];
            const int valid[2] = {cur.sub[0].valid, cur.sub[1].valid};
            mask_leading(s, valid, lane);
            softmax_tile(s, lane, scale_log2, row_max, correction, tile_sum, pa_out);
            wgmma_wait<0>();
            fence_o(o);
            fence_p(pa_in);
            mbar_arrive(empty_bar((j - 1) % kStages));  // K and V of tile j - 1 are no longer read
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
        // `have` says whether tile j exists.
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

    // Split row: rank 1 leaves its partial o, row_max and row_sum in its shared memory (the K/V ring, free once
    // both consumer warpgroups are done), thread t's at float4 index n * 256 + t; rank 0 folds them into its
    // own after the first cluster barrier; the second keeps rank 1's memory alive until rank 0 has read it.
    const int ct = tid - 128;
    if (splits == 2) {
        if (rank == 1) {
            named_sync(3);
#pragma unroll
            for (int n = 0; n < kHeadDim / 8; ++n) st_shared_v4(kv_smem + (n * 256 + ct) * 16, o[n]);
            const float ml[4] = {row_max[0], row_max[1], row_sum[0], row_sum[1]};
            st_shared_v4(kv_smem + ((kHeadDim / 8) * 256 + ct) * 16, ml);
        }
        cluster_sync();
        if (rank == 0) {
            const uint32_t remote = map_to_rank1(kv_smem);
            float ml[4], f0[2], f1[2];
            ld_cluster_v4(remote + ((kHeadDim / 8) * 256 + ct) * 16, ml);
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const float m = fmaxf(row_max[r], ml[r]);  // -inf only when both parts saw no key
                f0[r] = row_max[r] == -INFINITY ? 0.0f : exp2f((row_max[r] - m) * scale_log2);
                f1[r] = ml[r] == -INFINITY ? 0.0f : exp2f((ml[r] - m) * scale_log2);
                row_sum[r] = row_sum[r] * f0[r] + ml[2 + r] * f1[r];
            }
#pragma unroll
            for (int n = 0; n < kHeadDim / 8; ++n) {
                float o1[4];
                ld_cluster_v4(remote + (n * 256 + ct) * 16, o1);
#pragma unroll
                for (int e = 0; e < 4; ++e) o[n][e] = o[n][e] * f0[e / 2] + o1[e] * f1[e / 2];
            }
        }
    } else {
        cluster_sync();
    }
    cluster_sync();
    if (rank != 0) return;

    const int cwarp = warp - 4;  // 16 query rows per consumer warp
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float sum = row_sum[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        const int64_t i = i0 + cwarp * 16 + lane / 4 + r * 8;
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
        const int len = p.block_len[block * p.block_len_heads + (p.block_len_heads == 1 ? 0 : h)];
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

// cuTensorMapEncodeTiled through the runtime's driver entry point (no link against libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
    static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void* f = nullptr;
        cudaDriverEntryPointQueryResult status{};
        LR_CUDA_CHECK(
            cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &status));
        LR_RUNTIME(status == cudaDriverEntryPointSuccess && f != nullptr,
                   "paged attention: the driver has no cuTensorMapEncodeTiled");
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
    }();
    return fn;
}

// A bf16 tensor map of rank N with 128-byte swizzle; strides in elements (dimension 1 on), box in elements.
template <int N>
void encode_bf16_map(CUtensorMap& map, const void* base, const cuuint64_t (&dims)[N], const int64_t (&strides)[N - 1],
                     const cuuint32_t (&box)[N]) {
    cuuint64_t stride_bytes[N - 1];
    for (int i = 0; i < N - 1; ++i) stride_bytes[i] = static_cast<cuuint64_t>(strides[i]) * 2;
    cuuint32_t element_strides[N];
    for (int i = 0; i < N; ++i) element_strides[i] = 1;
    const CUresult r =
        tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, N, const_cast<void*>(base), dims, stride_bytes,
                             box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    LR_RUNTIME(r == CUDA_SUCCESS, "paged attention: cuTensorMapEncodeTiled failed with ", static_cast<int>(r));
}

}  // namespace

void launch_paged_attention(const PagedAttentionParams& params, Stream stream) {
    const PagedAttentionParams p = resolve_paged_attention_params(params);
    if (p.q_len == 0) return;
    const int64_t q_blocks = paged_attention_q_blocks(p);
    LR_CHECK(q_blocks <= INT32_MAX, "paged attention: q_len ", p.q_len, " is too large");
    const float scale_log2 = p.scale * kLog2e;
    if (p.head_dim == kHeadDim) {
        CUtensorMap tm_q, tm_k, tm_v;
        const auto width = static_cast<cuuint64_t>(p.heads) * kHeadDim;
        encode_bf16_map(tm_q, p.q, {width, static_cast<cuuint64_t>(p.q_len)}, {p.q_row_stride}, {64, kQTile});
        // Block ids are int32: 2^31 bounds the block dimension (the pool's size is not a parameter).
        const cuuint64_t kv_dims[3] = {width, static_cast<cuuint64_t>(p.block_size), cuuint64_t{1} << 31};
        encode_bf16_map(tm_k, p.k, kv_dims, {p.kv_row_stride, p.kv_block_stride}, {64, kSubTile, 1});
        encode_bf16_map(tm_v, p.v, kv_dims, {p.kv_row_stride, p.kv_block_stride}, {64, kSubTile, 1});
        // Above the 48 KB default; setting it is cheap and not a stream operation (graph capture is fine).
        LR_CUDA_CHECK(cudaFuncSetAttribute(paged_attention_hd128_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           kSmemBytes));
        // One CTA per SM: split each table row over a cluster of two CTAs when that fills the last wave much
        // better (480p: 444 CTAs on 132 SMs are 3.36 waves, 888 are 6.73: 472 TFLOP/s instead of 420), the
        // partial results combined through distributed shared memory. A split costs about 1.5% when the waves
        // are already full (1088p: 2304 CTAs, 17.45 waves, 498 TFLOP/s split and 500-505 not), hence the margin.
        int device = 0, sms = 0;
        LR_CUDA_CHECK(cudaGetDevice(&device));
        LR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
        const int64_t ctas = p.split_ctas > 0 ? p.split_ctas : q_blocks * p.heads;
        auto fill = [&](int64_t n) { return static_cast<double>(n) / static_cast<double>((n + sms - 1) / sms * sms); };
        const int splits = fill(2 * ctas) > 1.05 * fill(ctas) ? 2 : 1;

        cudaLaunchConfig_t config = {};
        config.gridDim = dim3(static_cast<unsigned>(q_blocks * splits), static_cast<unsigned>(p.heads));
        config.blockDim = dim3(kThreads);
        config.dynamicSmemBytes = kSmemBytes;
        config.stream = stream;
        cudaLaunchAttribute cluster = {};
        cluster.id = cudaLaunchAttributeClusterDimension;
        cluster.val.clusterDim.x = static_cast<unsigned>(splits);
        cluster.val.clusterDim.y = 1;
        cluster.val.clusterDim.z = 1;
        config.attrs = &cluster;
        config.numAttrs = 1;
        LR_CUDA_CHECK(cudaLaunchKernelEx(&config, paged_attention_hd128_kernel, tm_q, tm_k, tm_v, p,
                                         static_cast<int>(q_blocks), scale_log2, splits));
    } else {
        const dim3 grid(static_cast<unsigned>((p.q_len + kGenericWarps - 1) / kGenericWarps),
                        static_cast<unsigned>(p.heads));
        paged_attention_generic_kernel<<<grid, kGenericWarps * 32, 0, stream>>>(p, static_cast<int>(q_blocks),
                                                                                scale_log2);
    }
    LR_CUDA_LAUNCH_CHECK();
}

}  // namespace lr
