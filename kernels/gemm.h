// Single-precision matrix product on the CPU, the engine of linear layers and of attention tiles:
//   C[m, n] = (accumulate ? C : 0) + alpha * A[m, k] * op(B) + bias[n]
// where op(B) = B^T for B stored [n, k] (a Linear weight [out, in]) or B for B stored [k, n].
//
// Cache-blocked like BLIS: B is packed into k-panels of 16 columns, A into 6-row slivers, and a 6x16
// register-tile micro-kernel (AVX2 + FMA when the CPU has them, portable loops otherwise) runs over them.
// Results can differ from a naive loop in the last bits (summation order, FMA); they are deterministic for
// a given machine and thread count.
#pragma once

#include <cstdint>

namespace lr {

struct GemmParams {
    const float* a = nullptr;     // [m, k], rows lda elements apart
    const float* b = nullptr;     // b_transposed ? [n, k] : [k, n], rows ldb elements apart
    float* c = nullptr;           // [m, n], rows ldc elements apart
    const float* bias = nullptr;  // [n], or nullptr
    int64_t m = 0;
    int64_t n = 0;
    int64_t k = 0;
    int64_t lda = 0;
    int64_t ldb = 0;
    int64_t ldc = 0;
    bool b_transposed = true;
    float alpha = 1.0f;
    bool accumulate = false;  // add to C instead of overwriting it
    bool threaded = true;     // split over cpu_threads(); false inside an already parallel region
};

void gemm_cpu(const GemmParams& p);

}  // namespace lr
