// The VAE's convolutions as an implicit GEMM on bf16 tensor cores (launch_vae_conv in vae_cuda.h): the kernel
// that decides the decoder's speed. At 1088p one output frame takes ~16 TFLOP of 3x3(x3) convs.
//
// Measured on an H100 (bench in the report of the CUDA VAE; random bf16 data, 1088x1920 frames): 96 channels
// (K = 2592) ~335 TFLOP/s, 192 and 384 channels ~400 TFLOP/s, where cuBLASLt on a GEMM of the same shape (with an
// im2col that this kernel never writes) reaches 233 TFLOP/s for N = 96. The loader's instruction count, not
// memory, limited the first versions; see ConvStageLoader.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/vae_cuda.h"
#include "runtime/core/cuda_check.h"

namespace lr {
namespace {

using bf16 = __nv_bfloat16;
using bf162 = __nv_bfloat162;

// ---- implicit-GEMM convolution -----------------------------------------------------------------------------------
//
// GEMM view: M = output pixels, N = output channels, K = (dt, dy, dx, in channel). A block computes BM x BN of
// the output in K steps of 64; each step's A tile is gathered from the frames (the im2col, never stored) and its
// B tile is read from the weight, both by cp.async into a 4-stage ring of shared-memory tiles. A 16-byte chunk
// is 8 channels of one tap, so a step may span several taps and any in_ch % 8 == 0 works; chunks outside the
// frame, of a null frame or past K are zero-filled.
//
// Tiles are K-major, 128-byte rows (64 bf16) with the 128-byte swizzle (chunk ^ row % 8): conflict-free for
// ldmatrix and exactly the layout that Hopper's wgmma reads through a shared-memory descriptor. Two kernels
// consume them: wgmma (sm_90a; two warpgroups, N = 96 or 192, the decoder's widths) and mma.sync m16n8k16
// (any N, the portable one).

constexpr int kConvBK = 64;  // bf16 per smem row: 128 bytes = 8 chunks of 16 bytes
constexpr int kConvStages = 4;
constexpr int kConvThreads = 256;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; valid == false writes zeros (src is then not read but must be a valid address).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a K-major [rows][64] bf16 tile whose base is
// 1024-byte aligned. The XOR spreads the 8 rows that one ldmatrix phase reads (same logical chunk) over all 32
// banks; it is also the hardware's 128-byte swizzle.
__device__ __forceinline__ uint32_t tile_offset(int row, int chunk) {
    return static_cast<uint32_t>(row * (kConvBK * 2) + ((chunk ^ (row & 7)) << 4));
}

// One thread's share of loading the pipeline stages, K step after K step: chunk column tid % 8 of the A rows
// (output pixels) tid / 8 + 32 i and of the B rows (output channels) tid / 8 + 32 i. Everything that does not
// change along K is computed once: each A row's pixel offset and which of its taps fall inside the frame (bit dy,
// bit 8 + dx), each B row's weight offset. Along K the chunk's (tap, channel) advances incrementally: no divisions
// in the loop, whose instruction count otherwise limits the kernel more than the tensor cores do.
template <int BM, int BN>
struct ConvStageLoader {
    static constexpr int kRowsPerPass = kConvThreads / 8;
    static constexpr int kAIters = BM / kRowsPerPass;
    static constexpr int kBIters = (BN + kRowsPerPass - 1) / kRowsPerPass;
    static_assert(BM % kRowsPerPass == 0, "every thread loads the same number of A chunks");

    const bf16* frame0;
    const bf16* frame1;
    const bf16* frame2;
    const bf16* weight;
    int width, in_ch, kh, kw, k_total, row, chunk;
    int a_off[kAIters];
    uint32_t a_mask[kAIters];
    int b_off[kBIters];
    bool b_in[kBIters];
    int k, c, dx, dy, dt;  // the next K step's position of this thread's chunk

    __device__ ConvStageLoader(const VaeConvParams& p, int k_total_, int64_t m0, int n0)
        : frame0(static_cast<const bf16*>(p.frames[0])),
          frame1(static_cast<const bf16*>(p.frames[1])),
          frame2(static_cast<const bf16*>(p.frames[2])),
          weight(static_cast<const bf16*>(p.weight)),
          width(static_cast<int>(p.width)),
          in_ch(static_cast<int>(p.in_ch)),
          kh(static_cast<int>(p.kh)),
          kw(static_cast<int>(p.kw)),
          k_total(k_total_),
          row(static_cast<int>(threadIdx.x) / 8),
          chunk(static_cast<int>(threadIdx.x) % 8) {
        const int height = static_cast<int>(p.height);
        const int64_t pixels = p.height * p.width;
#pragma unroll
        for (int i = 0; i < kAIters; ++i) {
            const int64_t m = m0 + row + i * kRowsPerPass;
            const int y = static_cast<int>(m / width), x = static_cast<int>(m % width);
            uint32_t mask = 0;
            if (m < pixels) {
                for (int d = 0; d < kh; ++d) mask |= (y + d - kh / 2 >= 0 && y + d - kh / 2 < height) ? 1u << d : 0u;
                for (int d = 0; d < kw; ++d) mask |= (x + d - kw / 2 >= 0 && x + d - kw / 2 < width) ? 256u << d : 0u;
            }
            a_mask[i] = mask;
            a_off[i] = (y * width + x) * in_ch;
        }
#pragma unroll
        for (int i = 0; i < kBIters; ++i) {
            const int r = row + i * kRowsPerPass, n = n0 + r;
            b_in[i] = r < BN && n < p.out_ch;
            b_off[i] = n * k_total;
        }
        k = chunk * 8;
        const int tap = k / in_ch;
        c = k - tap * in_ch;
        dx = tap % kw;
        dy = (tap / kw) % kh;
        dt = tap / (kw * kh);
    }

    // Loads the next K step into the stage whose A tile is at a_base and B tile at b_base (shared addresses).
    __device__ __forceinline__ void load_next(uint32_t a_base, uint32_t b_base) {
        const bool k_in = k < k_total;
        const bf16* f = dt == 0 ? frame0 : dt == 1 ? frame1 : frame2;
        const bool f_in = k_in && f != nullptr;
        const int tap_off = ((dy - kh / 2) * width + (dx - kw / 2)) * in_ch + c;
        const uint32_t bits = (1u << dy) | (256u << dx);
#pragma unroll
        for (int i = 0; i < kAIters; ++i) {
            const bool in = f_in && (a_mask[i] & bits) == bits;
            cp_async16(a_base + tile_offset(row + i * kRowsPerPass, chunk), in ? f + (a_off[i] + tap_off) : weight, in);
        }
#pragma unroll
        for (int i = 0; i < kBIters; ++i) {
            if (row + i * kRowsPerPass < BN) {
                const bool in = b_in[i] && k_in;
                cp_async16(b_base + tile_offset(row + i * kRowsPerPass, chunk), in ? weight + (b_off[i] + k) : weight,
                           in);
            }
        }
        k += kConvBK;
        c += kConvBK;
        while (c >= in_ch) {  // at most once for in_ch >= 64
            c -= in_ch;
            if (++dx == kw) {
                dx = 0;
                if (++dy == kh) {
                    dy = 0;
                    ++dt;
                }
            }
        }
    }
};

// y[m][n, n + 1] (+)= v0, v1 (+ bias): the epilogue of both kernels, for one accumulator pair.
__device__ __forceinline__ void conv_store_pair(const VaeConvParams& p, int64_t ldy, int64_t m, int n, float v0,
                                                float v1) {
    if (p.bias) {
        v0 += p.bias[n];
        v1 += p.bias[n + 1];
    }
    if (p.y_dtype == DType::kF32) {
        float2* dst = reinterpret_cast<float2*>(static_cast<float*>(p.y) + m * ldy + n);
        if (p.accumulate) {
            const float2 old = *dst;
            v0 += old.x;
            v1 += old.y;
        }
        *dst = make_float2(v0, v1);
    } else {
        *reinterpret_cast<bf162*>(static_cast<bf16*>(p.y) + m * ldy + n) = __floats2bfloat162_rn(v0, v1);
    }
}

// ---- mma.sync kernel ----

template <int BM_, int BN_, int WM_, int WN_>
struct MmaTile {
    static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_;
    static constexpr int WTM = BM / WM, WTN = BN / WN;  // warp tile
    static constexpr int MT = WTM / 16, NT = WTN / 8;   // mma tiles per warp
    static constexpr int kStageBytes = (BM + BN) * kConvBK * 2;
    static constexpr int kSmemBytes = kConvStages * kStageBytes + 1024;  // + alignment slack
    static_assert(WM * WN == kConvThreads / 32, "8 warps tile the block");
    static_assert(WTM % 16 == 0 && WTN % 16 == 0, "B fragments are loaded two n8 tiles at a time");
};

using MmaTile192 = MmaTile<128, 192, 2, 4>;  // warp tile 64 x 48
using MmaTile128 = MmaTile<128, 128, 2, 4>;  // 64 x 32
using MmaTile96 = MmaTile<256, 96, 4, 2>;    // 64 x 48
using MmaTile64 = MmaTile<128, 64, 4, 2>;    // 32 x 32
using MmaTile32 = MmaTile<128, 32, 8, 1>;    // 16 x 32

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Shared memory of the stages, rounded up to 1024 bytes (the swizzle repeats every 8 rows of 128 bytes).
__device__ __forceinline__ uint32_t conv_smem_base() {
    extern __shared__ __align__(1024) uint8_t conv_smem[];
    return (smem_addr(conv_smem) + 1023u) & ~1023u;
}

template <typename Tile>
__global__ void __launch_bounds__(kConvThreads, 1)
    conv_mma_kernel(VaeConvParams p, int k_total, int64_t ldy, int n_tiles) {
    constexpr int BM = Tile::BM, BN = Tile::BN, WN = Tile::WN, WTM = Tile::WTM, WTN = Tile::WTN;
    constexpr int MT = Tile::MT, NT = Tile::NT, BK = kConvBK, S = kConvStages, kStageBytes = Tile::kStageBytes;
    const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
    const int warp_m = warp / WN, warp_n = warp % WN;
    // N tiles of one M tile are neighbours in launch order, so that they find its input pixels in L2.
    const int64_t m0 = static_cast<int64_t>(blockIdx.x / n_tiles) * BM;
    const int n0 = static_cast<int>(blockIdx.x % n_tiles) * BN;
    ConvStageLoader<BM, BN> loader(p, k_total, m0, n0);
    const uint32_t smem = conv_smem_base();

    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;

    const int k_steps = (k_total + BK - 1) / BK;
#pragma unroll
    for (int s = 0; s < S - 1; ++s) {
        if (s < k_steps) loader.load_next(smem + s * kStageBytes, smem + s * kStageBytes + BM * BK * 2);
        cp_async_commit();
    }
    for (int ks = 0; ks < k_steps; ++ks) {
        // Groups committed so far: S - 1 + ks; step ks's is complete when at most S - 2 are pending. The barrier
        // also tells every warp that the stage about to be refilled (the one read in step ks - 1) is free.
        cp_async_wait<S - 2>();
        __syncthreads();
        const int next = ks + S - 1;
        if (next < k_steps) {
            const uint32_t base = smem + (next % S) * kStageBytes;
            loader.load_next(base, base + BM * BK * 2);
        }
        cp_async_commit();

        const uint32_t a_base = smem + (ks % S) * kStageBytes;
        const uint32_t b_base = a_base + BM * BK * 2;
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            uint32_t af[MT][4], bfrag[NT][2];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                const int row = warp_m * WTM + mt * 16 + (lane & 15);
                ldmatrix_x4(af[mt], a_base + tile_offset(row, kk * 2 + (lane >> 4)));
            }
#pragma unroll
            for (int pair = 0; pair < NT / 2; ++pair) {
                const int row = warp_n * WTN + pair * 16 + ((lane >> 4) << 3) + (lane & 7);
                uint32_t r[4];
                ldmatrix_x4(r, b_base + tile_offset(row, kk * 2 + ((lane >> 3) & 1)));
                bfrag[2 * pair][0] = r[0];
                bfrag[2 * pair][1] = r[1];
                bfrag[2 * pair + 1][0] = r[2];
                bfrag[2 * pair + 1][1] = r[3];
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) mma_bf16_16816(acc[mt][nt], af[mt], bfrag[nt]);
        }
    }
    cp_async_wait<0>();

    // Accumulator element e of (mt, nt) is row lane / 4 (+ 8 for e >= 2), columns 2 (lane % 4) + {0, 1}.
    const int64_t pixels = p.height * p.width;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const int n = n0 + warp_n * WTN + nt * 8 + (lane & 3) * 2;
            if (n >= p.out_ch) continue;  // out_ch is even: n + 1 is in range too
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int64_t m = m0 + warp_m * WTM + mt * 16 + (lane >> 2) + 8 * h;
                if (m < pixels) conv_store_pair(p, ldy, m, n, acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]);
            }
        }
    }
}

// ---- wgmma kernel (sm_90a) ----

// Two warpgroups; each owns WGM x 64 rows of the block and all BN columns: per k16 it issues WGM wgmmas
// m64nBNk16 that read A and B straight from the swizzled stage (no ldmatrix, no register staging).
template <int BN_, int WGM_>
struct WgmmaTile {
    static constexpr int BN = BN_, WGM = WGM_, BM = 2 * 64 * WGM;
    static constexpr int kStageBytes = (BM + BN) * kConvBK * 2;
    static constexpr int kSmemBytes = kConvStages * kStageBytes + 1024;
};
using WgmmaTile192 = WgmmaTile<192, 1>;  // 128 x 192, 96 accumulators per thread
using WgmmaTile96 = WgmmaTile<96, 2>;    // 256 x 96, 2 x 48

// Shared-memory matrix descriptor of a K-major tile of 128-byte rows with the 128-byte swizzle: start address,
// leading byte offset (unused by swizzled K-major layouts, 16 by convention), stride byte offset 1024 (8 rows),
// swizzle mode 1 (128 B) in bits 62-63.
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t addr) {
    return static_cast<uint64_t>((addr & 0x3FFFFu) >> 4) | (uint64_t{16 >> 4} << 16) | (uint64_t{1024 >> 4} << 32) |
           (uint64_t{1} << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// cp.async writes are generic-proxy writes; wgmma reads through the async proxy.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Pins the accumulators at this point of the program: the compiler must not move their reads or writes across
// the asynchronous wgmma window (it cannot see that the hardware writes them until wgmma.wait_group).
template <int N>
__device__ __forceinline__ void fence_accumulators(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// D[64 x N] += A[64 x 16] . B[N x 16]^T, A and B K-major in shared memory (descriptors), D in registers.
template <int N>
struct Wgmma;

template <>
struct Wgmma<96> {
    __device__ static void run(float (&d)[48], uint64_t a, uint64_t b) {
        asm volatile(
            "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
            "}, %48, %49, 1, 1, 1, 0, 0;\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
            : "l"(a), "l"(b));
    }
};

template <>
struct Wgmma<192> {
    __device__ static void run(float (&d)[96], uint64_t a, uint64_t b) {
        asm volatile(
            "wgmma.mma_async.sync.aligned.m64n192k16.f32.bf16.bf16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
            "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
            "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
            "}, %96, %97, 1, 1, 1, 0, 0;\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
              "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
              "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
              "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
              "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
            : "l"(a), "l"(b));
    }
};

template <typename Tile>
__global__ void __launch_bounds__(kConvThreads, 1)
    conv_wgmma_kernel(VaeConvParams p, int k_total, int64_t ldy, int n_tiles) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int BM = Tile::BM, BN = Tile::BN, WGM = Tile::WGM, BK = kConvBK, S = kConvStages;
    constexpr int kStageBytes = Tile::kStageBytes;
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31;
    const int wg = tid / 128, warp_in_wg = (tid / 32) % 4;
    const int64_t m0 = static_cast<int64_t>(blockIdx.x / n_tiles) * BM;
    const int n0 = static_cast<int>(blockIdx.x % n_tiles) * BN;
    ConvStageLoader<BM, BN> loader(p, k_total, m0, n0);
    const uint32_t smem = conv_smem_base();

    float acc[WGM][BN / 2];
#pragma unroll
    for (int mi = 0; mi < WGM; ++mi)
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) acc[mi][i] = 0.0f;

    const int k_steps = (k_total + BK - 1) / BK;
#pragma unroll
    for (int s = 0; s < S - 1; ++s) {
        if (s < k_steps) loader.load_next(smem + s * kStageBytes, smem + s * kStageBytes + BM * BK * 2);
        cp_async_commit();
    }
    for (int ks = 0; ks < k_steps; ++ks) {
        // Step ks's tiles have landed (see conv_mma_kernel) and are made visible to the async proxy; after the
        // barrier both warpgroups have also finished step ks - 1's wgmmas (each waited for them).
        cp_async_wait<S - 2>();
        fence_proxy_async();
        __syncthreads();
        const uint32_t a_base = smem + (ks % S) * kStageBytes;
        const uint32_t b_base = a_base + BM * BK * 2;
#pragma unroll
        for (int mi = 0; mi < WGM; ++mi) fence_accumulators(acc[mi]);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            const uint64_t b_desc = wgmma_desc(b_base + kk * 32);
#pragma unroll
            for (int mi = 0; mi < WGM; ++mi) {
                const uint32_t a_rows = a_base + static_cast<uint32_t>((wg * WGM + mi) * 64 * BK * 2);
                Wgmma<BN>::run(acc[mi], wgmma_desc(a_rows + kk * 32), b_desc);
            }
        }
        wgmma_commit();
        // Refill the stage that step ks - 1 read while the tensor cores work on step ks.
        const int next = ks + S - 1;
        if (next < k_steps) {
            const uint32_t base = smem + (next % S) * kStageBytes;
            loader.load_next(base, base + BM * BK * 2);
        }
        cp_async_commit();
        wgmma_wait_all();
#pragma unroll
        for (int mi = 0; mi < WGM; ++mi) fence_accumulators(acc[mi]);
    }
    cp_async_wait<0>();

    // wgmma's accumulator layout: warp w of the warpgroup holds rows 16 w .. 16 w + 15 of each m64 tile; per n8
    // block j, elements 4 j + {0, 1} are row lane / 4, columns 8 j + 2 (lane % 4) + {0, 1}, and 4 j + {2, 3} the
    // same columns 8 rows down (mma.sync's C fragment, repeated along N).
    const int64_t pixels = p.height * p.width;
#pragma unroll
    for (int mi = 0; mi < WGM; ++mi) {
        const int64_t row0 = m0 + (wg * WGM + mi) * 64 + warp_in_wg * 16 + lane / 4;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
            const int n = n0 + j * 8 + (lane & 3) * 2;
            if (n >= p.out_ch) continue;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int64_t m = row0 + 8 * h;
                if (m < pixels) conv_store_pair(p, ldy, m, n, acc[mi][4 * j + 2 * h], acc[mi][4 * j + 2 * h + 1]);
            }
        }
    }
#else
    __trap();  // launched only on sm_90 devices, which this build must then include (CMAKE_CUDA_ARCHITECTURES 90a)
#endif
}

template <typename Tile, typename Kernel>
void launch_conv_kernel(Kernel kernel, const VaeConvParams& p, int k_total, int64_t ldy, Stream stream) {
    // Above the 48 KiB default: opt in (once per kernel; the attribute is per function).
    static const cudaError_t attr =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile::kSmemBytes);
    LR_CUDA_CHECK(attr);
    const int n_tiles = static_cast<int>((p.out_ch + Tile::BN - 1) / Tile::BN);
    const int64_t m_tiles = (p.height * p.width + Tile::BM - 1) / Tile::BM;
    LR_ASSERT(m_tiles * n_tiles < (int64_t{1} << 31), "conv grid too large: ", m_tiles, " x ", n_tiles, " tiles");
    kernel<<<static_cast<unsigned>(m_tiles * n_tiles), kConvThreads, Tile::kSmemBytes, stream>>>(p, k_total, ldy,
                                                                                                 n_tiles);
    LR_CUDA_LAUNCH_CHECK();
}

template <typename Tile>
void launch_mma(const VaeConvParams& p, int k_total, int64_t ldy, Stream stream) {
    launch_conv_kernel<Tile>(conv_mma_kernel<Tile>, p, k_total, ldy, stream);
}
template <typename Tile>
void launch_wgmma(const VaeConvParams& p, int k_total, int64_t ldy, Stream stream) {
    launch_conv_kernel<Tile>(conv_wgmma_kernel<Tile>, p, k_total, ldy, stream);
}

// wgmma needs an sm_90 device (and this build's sm_90a code, the default architecture).
bool device_has_wgmma() {
    int device = 0, major = 0;
    LR_CUDA_CHECK(cudaGetDevice(&device));
    LR_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    return major == 9;
}

}  // namespace

void launch_vae_conv(const VaeConvParams& p, Stream stream) {
    const int64_t ldy = p.ldy > 0 ? p.ldy : p.out_ch;
    const int64_t k_total = p.kt * p.kh * p.kw * p.in_ch;
    LR_ASSERT(p.weight && p.y && p.height > 0 && p.width > 0 && p.in_ch > 0 && p.in_ch % 8 == 0 && p.out_ch > 0 &&
                  p.out_ch % 2 == 0 && ldy >= p.out_ch && ldy % 2 == 0 && p.kt >= 1 && p.kt <= 3 && p.kh % 2 == 1 &&
                  p.kh <= 7 && p.kw % 2 == 1 && p.kw <= 7 && (p.y_dtype == DType::kF32 || p.y_dtype == DType::kBF16) &&
                  !(p.accumulate && p.y_dtype != DType::kF32),
              "vae_conv: bad arguments (in ", p.in_ch, ", out ", p.out_ch, ", ldy ", ldy, ")");
    // The loader's offsets are 32-bit: a frame (plus a tile of rows past its end) and the weight must fit.
    constexpr int64_t kMax = int64_t{1} << 31;
    LR_ASSERT((p.height * p.width + 256) * p.in_ch < kMax && (p.out_ch + 192) * k_total < kMax, "vae_conv: a ",
              p.height, "x", p.width, "x", p.in_ch, " frame or a ", p.out_ch, "x", k_total,
              " weight is beyond 32-bit offsets");
    // A tile whose width divides the output channels (the decoder's 96, 192, 384, 768), else the narrowest that
    // wastes little: 64 up to 64 channels, 128 beyond.
    const int k = static_cast<int>(k_total);
    static const bool wgmma = device_has_wgmma();
    const bool use_wgmma = wgmma && p.kernel == VaeConvKernel::kAuto;
    if (p.out_ch % 192 == 0) {
        use_wgmma ? launch_wgmma<WgmmaTile192>(p, k, ldy, stream) : launch_mma<MmaTile192>(p, k, ldy, stream);
    } else if (p.out_ch % 96 == 0) {
        use_wgmma ? launch_wgmma<WgmmaTile96>(p, k, ldy, stream) : launch_mma<MmaTile96>(p, k, ldy, stream);
    } else if (p.out_ch % 128 == 0 || p.out_ch > 64) {
        launch_mma<MmaTile128>(p, k, ldy, stream);
    } else if (p.out_ch > 32) {
        launch_mma<MmaTile64>(p, k, ldy, stream);
    } else {
        launch_mma<MmaTile32>(p, k, ldy, stream);
    }
}

}  // namespace lr
