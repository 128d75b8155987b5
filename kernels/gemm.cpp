#include "kernels/gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "runtime/core/check.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define LR_GEMM_HAS_AVX2_PATH 1
#endif

namespace lr {
namespace {

constexpr int64_t kMR = 6;     // rows of the register tile
constexpr int64_t kNR = 16;    // columns of the register tile (two AVX vectors)
constexpr int64_t kKC = 256;   // depth of a packed block: an A sliver (6 KiB) and a B panel (16 KiB) stay in L1/L2
constexpr int64_t kMC = 96;    // rows of A per task (a multiple of kMR)
constexpr int64_t kNC = 4096;  // columns of B packed at once
constexpr int64_t kPanelsPerTask = 8;  // 128 columns of C per task

// acc[kMR][kNR] = sum over p < kc of ap[p][0..kMR) (outer) bp[p][0..kNR).
void micro_kernel_portable(int64_t kc, const float* ap, const float* bp, float* acc) {
    float c[kMR][kNR] = {};
    for (int64_t p = 0; p < kc; ++p, ap += kMR, bp += kNR) {
        for (int64_t i = 0; i < kMR; ++i) {
            const float a = ap[i];
            for (int64_t j = 0; j < kNR; ++j) c[i][j] += a * bp[j];
        }
    }
    std::memcpy(acc, c, sizeof(c));
}

#ifdef LR_GEMM_HAS_AVX2_PATH
__attribute__((target("avx2,fma"))) void micro_kernel_avx2(int64_t kc, const float* ap, const float* bp, float* acc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps();
    __m256 c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps();
    __m256 c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; ++p, ap += kMR, bp += kNR) {
        const __m256 b0 = _mm256_loadu_ps(bp);
        const __m256 b1 = _mm256_loadu_ps(bp + 8);
        __m256 a = _mm256_broadcast_ss(ap + 0);
        c00 = _mm256_fmadd_ps(a, b0, c00);
        c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(ap + 1);
        c10 = _mm256_fmadd_ps(a, b0, c10);
        c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(ap + 2);
        c20 = _mm256_fmadd_ps(a, b0, c20);
        c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(ap + 3);
        c30 = _mm256_fmadd_ps(a, b0, c30);
        c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(ap + 4);
        c40 = _mm256_fmadd_ps(a, b0, c40);
        c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(ap + 5);
        c50 = _mm256_fmadd_ps(a, b0, c50);
        c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    _mm256_storeu_ps(acc + 0 * kNR, c00);
    _mm256_storeu_ps(acc + 0 * kNR + 8, c01);
    _mm256_storeu_ps(acc + 1 * kNR, c10);
    _mm256_storeu_ps(acc + 1 * kNR + 8, c11);
    _mm256_storeu_ps(acc + 2 * kNR, c20);
    _mm256_storeu_ps(acc + 2 * kNR + 8, c21);
    _mm256_storeu_ps(acc + 3 * kNR, c30);
    _mm256_storeu_ps(acc + 3 * kNR + 8, c31);
    _mm256_storeu_ps(acc + 4 * kNR, c40);
    _mm256_storeu_ps(acc + 4 * kNR + 8, c41);
    _mm256_storeu_ps(acc + 5 * kNR, c50);
    _mm256_storeu_ps(acc + 5 * kNR + 8, c51);
}
#endif

using MicroKernel = void (*)(int64_t, const float*, const float*, float*);

MicroKernel pick_micro_kernel() {
#ifdef LR_GEMM_HAS_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return micro_kernel_avx2;
#endif
    return micro_kernel_portable;
}

const MicroKernel g_micro_kernel = pick_micro_kernel();

// B[pc:pc+kc, jc:jc+nc] of op(B) into panels [panel][p][kNR], zero-padded past nc.
void pack_b(const GemmParams& g, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* out) {
    const int64_t panels = (nc + kNR - 1) / kNR;
    for (int64_t jp = 0; jp < panels; ++jp) {
        float* dst = out + jp * kc * kNR;
        const int64_t j0 = jc + jp * kNR;
        const int64_t w = std::min(kNR, jc + nc - j0);
        if (g.b_transposed) {  // element (p, j) is b[j * ldb + p]
            for (int64_t p = 0; p < kc; ++p) {
                for (int64_t j = 0; j < w; ++j) dst[p * kNR + j] = g.b[(j0 + j) * g.ldb + pc + p];
                for (int64_t j = w; j < kNR; ++j) dst[p * kNR + j] = 0.0f;
            }
        } else {  // element (p, j) is b[p * ldb + j]
            for (int64_t p = 0; p < kc; ++p) {
                const float* src = g.b + (pc + p) * g.ldb + j0;
                std::memcpy(dst + p * kNR, src, static_cast<size_t>(w) * sizeof(float));
                for (int64_t j = w; j < kNR; ++j) dst[p * kNR + j] = 0.0f;
            }
        }
    }
}

// A[ic:ic+mc, pc:pc+kc] into slivers [sliver][p][kMR], zero-padded past mc.
void pack_a(const GemmParams& g, int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* out) {
    const int64_t slivers = (mc + kMR - 1) / kMR;
    for (int64_t s = 0; s < slivers; ++s) {
        float* dst = out + s * kc * kMR;
        const int64_t i0 = ic + s * kMR;
        const int64_t h = std::min(kMR, ic + mc - i0);
        for (int64_t i = 0; i < h; ++i) {
            const float* src = g.a + (i0 + i) * g.lda + pc;
            for (int64_t p = 0; p < kc; ++p) dst[p * kMR + i] = src[p];
        }
        for (int64_t i = h; i < kMR; ++i) {
            for (int64_t p = 0; p < kc; ++p) dst[p * kMR + i] = 0.0f;
        }
    }
}

// One task: rows [ic, ic+mc) x panels [jp0, jp1) of the packed B block, depth [pc, pc+kc).
void run_task(const GemmParams& g, const float* bpack, int64_t pc, int64_t kc, int64_t jc, int64_t nc, int64_t ic,
              int64_t mc, int64_t jp0, int64_t jp1, std::vector<float>& apack) {
    apack.resize(static_cast<size_t>(((mc + kMR - 1) / kMR) * kMR * kc));
    pack_a(g, ic, mc, pc, kc, apack.data());
    const bool first = pc == 0;
    const bool overwrite = first && !g.accumulate;
    alignas(64) float acc[kMR * kNR];
    for (int64_t jp = jp0; jp < jp1; ++jp) {
        const int64_t j0 = jc + jp * kNR;
        const int64_t w = std::min(kNR, jc + nc - j0);
        const float* bp = bpack + jp * kc * kNR;
        for (int64_t s = 0; s * kMR < mc; ++s) {
            const int64_t i0 = ic + s * kMR;
            const int64_t h = std::min(kMR, ic + mc - i0);
            g_micro_kernel(kc, apack.data() + s * kc * kMR, bp, acc);
            for (int64_t i = 0; i < h; ++i) {
                float* crow = g.c + (i0 + i) * g.ldc + j0;
                const float* arow = acc + i * kNR;
                if (overwrite) {
                    for (int64_t j = 0; j < w; ++j) crow[j] = g.alpha * arow[j];
                } else {
                    for (int64_t j = 0; j < w; ++j) crow[j] += g.alpha * arow[j];
                }
                if (first && g.bias) {
                    for (int64_t j = 0; j < w; ++j) crow[j] += g.bias[j0 + j];
                }
            }
        }
    }
}

}  // namespace

void gemm_cpu(const GemmParams& g) {
    LR_ASSERT(g.m >= 0 && g.n >= 0 && g.k >= 0, "gemm: negative size m=", g.m, " n=", g.n, " k=", g.k);
    if (g.m == 0 || g.n == 0) return;
    LR_ASSERT(g.c && (g.k == 0 || (g.a && g.b)), "gemm: null operand");
    LR_ASSERT(g.lda >= g.k && g.ldc >= g.n && g.ldb >= (g.b_transposed ? g.k : g.n),
              "gemm: leading dimension too small");
    if (g.k == 0) {  // C = (accumulate ? C : 0) + bias
        for (int64_t i = 0; i < g.m; ++i) {
            float* crow = g.c + i * g.ldc;
            for (int64_t j = 0; j < g.n; ++j) crow[j] = (g.accumulate ? crow[j] : 0.0f) + (g.bias ? g.bias[j] : 0.0f);
        }
        return;
    }
    thread_local std::vector<float> bpack;
    thread_local std::vector<float> apack;
    // Below ~4 MFLOP, starting threads costs more than it saves.
    const bool threaded = g.threaded && g.m * g.n * g.k >= (int64_t{1} << 21);
    for (int64_t jc = 0; jc < g.n; jc += kNC) {
        const int64_t nc = std::min(kNC, g.n - jc);
        const int64_t panels = (nc + kNR - 1) / kNR;
        for (int64_t pc = 0; pc < g.k; pc += kKC) {
            const int64_t kc = std::min(kKC, g.k - pc);
            bpack.resize(static_cast<size_t>(panels * kNR * kc));
            pack_b(g, pc, kc, jc, nc, bpack.data());
            const float* bp = bpack.data();
            const int64_t row_blocks = (g.m + kMC - 1) / kMC;
            const int64_t col_groups = (panels + kPanelsPerTask - 1) / kPanelsPerTask;
            auto task_range = [&](int64_t t0, int64_t t1, std::vector<float>& ap) {
                for (int64_t t = t0; t < t1; ++t) {
                    const int64_t rb = t / col_groups, cg = t % col_groups;
                    const int64_t ic = rb * kMC;
                    const int64_t jp0 = cg * kPanelsPerTask;
                    run_task(g, bp, pc, kc, jc, nc, ic, std::min(kMC, g.m - ic), jp0,
                             std::min(panels, jp0 + kPanelsPerTask), ap);
                }
            };
            if (threaded) {
                parallel_for(row_blocks * col_groups, 1, [&](int64_t t0, int64_t t1) {
                    thread_local std::vector<float> worker_apack;
                    task_range(t0, t1, worker_apack);
                });
            } else {
                task_range(0, row_blocks * col_groups, apack);
            }
        }
    }
}

}  // namespace lr
