// bf16 GEMM on the GPU through cuBLASLt with fp32 accumulation and fused epilogues: the Linear layers of the
// DiT and the VAE's convolutions-as-GEMM. CPU reference: gemm_cpu / linear_cpu (kernels/gemm.h, linear.h).
//
//   y[m, n] (+)= x[m, k] . w[n, k]^T  (+ bias[n])  (then GELU-tanh)
//
// x and w are bf16, row-major (w is a Linear weight [out, in]); y is bf16 or f32. The cuBLASLt plan for a
// shape (descriptors, layouts, heuristic algorithm) is made on first use and cached, so the rollout loop only
// launches; the workspace is allocated once when the runner is built. Everything is stream-ordered and CUDA
// graph capturable once every shape has been seen.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "runtime/core/dtype.h"
#include "runtime/core/stream.h"

namespace lr {

enum class GemmEpilogue : uint8_t {
    kNone,          // y = x w^T
    kBias,          // y = x w^T + bias
    kBiasGeluTanh,  // y = gelu_tanh(x w^T + bias)
};

struct CudaGemmParams {
    const void* x = nullptr;       // bf16 [m, k], rows ldx elements apart (0: k)
    const void* w = nullptr;       // bf16 [n, k], rows ldw elements apart (0: k)
    const float* bias = nullptr;   // f32 [n] (kBias, kBiasGeluTanh)
    void* y = nullptr;             // [m, n] of y_dtype, rows ldy elements apart (0: n)
    DType y_dtype = DType::kBF16;  // kBF16 or kF32
    int64_t m = 0;
    int64_t n = 0;
    int64_t k = 0;
    int64_t ldx = 0;
    int64_t ldw = 0;
    int64_t ldy = 0;
    GemmEpilogue epilogue = GemmEpilogue::kNone;
    // y += result instead of y = result (f32 y only; the residual add of a layer that has no gate).
    bool accumulate = false;
};

// Owns the cuBLASLt handle, the workspace and the per-shape plan cache. One per device and thread of control;
// not thread-safe. Constructing one in a build without CUDA throws RuntimeError.
class GemmRunner {
  public:
    explicit GemmRunner(size_t workspace_bytes = size_t{32} << 20);
    ~GemmRunner();
    GemmRunner(const GemmRunner&) = delete;
    GemmRunner& operator=(const GemmRunner&) = delete;

    // Asynchronous on `stream`. Bad parameters (null pointers, m/n/k <= 0, strides smaller than the rows,
    // accumulate with a bf16 y, an epilogue without a bias) are LR_ASSERT failures: callers plan shapes.
    void run(const CudaGemmParams& p, Stream stream);
    // Plans cached so far (for tests and for checking that a warm-up saw every shape).
    size_t cached_plans() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace lr
