// GemmRunner: bf16 GEMM with fp32 accumulation through cuBLASLt (see gemm_cuda.h).
//
// cuBLASLt is column-major. A row-major matrix [r, c] with row stride ld is the column-major matrix [c, r] with
// leading dimension ld, so y[m, n] = x[m, k] w[n, k]^T, read column-major, is y^T[n, m] = w[n, k] x^T[k, m]:
//   A = w as column-major [k, n] (ld = ldw), op T  -> [n, k]
//   B = x as column-major [k, m] (ld = ldx), op N  -> [k, m]
//   C = D = y as column-major [n, m] (ld = ldy)
// Nothing is copied or transposed. D has n rows, so cuBLASLt's bias vector (one value per row of D) is the
// Linear bias over output features, as it must be.
//
// Plans: a shape's matmul descriptor, three layouts and the heuristic's best algorithm are made once and kept,
// keyed by everything the heuristic looks at (sizes, strides, dtype, epilogue, accumulate and the alignment of
// each pointer: cuBLASLt assumes 256-byte aligned pointers unless told otherwise, and a kernel picked under that
// assumption may fault on a row view of a bigger buffer). After the warm-up a run is one cublasLtMatmul call,
// which is stream-ordered and CUDA-graph capturable (alpha/beta live on the host and are read at the call).
//
// The bias: cuBLASLt wants the bias vector in the output type (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: "generally
// the output type"; on an H100 with CUDA 13 the heuristic offers no algorithm for an f32 bias with a bf16 D). So
// an f32 y takes the caller's f32 bias as it is, and a bf16 y gets a bf16 copy made on the stream just before the
// GEMM (one tiny cast kernel into a runner-owned buffer; the epilogue still adds it in fp32 and rounds y once).
// Rounding the bias to bf16 is what the PyTorch reference does too, where the whole Linear is bf16. The
// alternative, a plain GEMM and then a separate bias(+GELU) pass, costs a full extra read and write of y (napkin
// math for the FFN up-projection at 480p: 168 MB, ~60 us at 3 TB/s, next to ~170 us for the GEMM itself).
// The workspace and this bias buffer are shared by all calls, so calls must be ordered (one stream, or streams
// joined by events), as the header's "one per thread of control" implies.
//
// cuBLASLt's GELU epilogue is the tanh form of gelu_tanh_cpu (measured on an H100 within 5e-6 of it, against up
// to 4.7e-4 from the erf form; tests/gpu/test_gemm_gpu.cpp GeluEpilogueIsTheTanhForm).
#include <cublasLt.h>
#include <dlfcn.h>

#include <algorithm>
#include <functional>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "kernels/cast.h"
#include "kernels/gemm_cuda.h"
#include "runtime/core/cuda_check.h"
#include "runtime/core/tensor.h"

namespace lr {
namespace {

// cuBLASLt is opened with dlopen on first use instead of being linked: a linked libcublasLt puts its ~94 KB of
// thread-local storage into the static TLS block of every thread of the process, and threads created with small
// explicit stacks then fail to start (civetweb's, behind the Prometheus exporter: "Cannot create first worker
// thread"). Opened later, its TLS is allocated per thread on first use and costs other threads nothing.
struct CublasLtApi {
    decltype(&::cublasLtCreate) Create = nullptr;
    decltype(&::cublasLtDestroy) Destroy = nullptr;
    decltype(&::cublasLtGetStatusName) GetStatusName = nullptr;
    decltype(&::cublasLtGetStatusString) GetStatusString = nullptr;
    decltype(&::cublasLtMatmul) Matmul = nullptr;
    decltype(&::cublasLtMatmulAlgoGetHeuristic) MatmulAlgoGetHeuristic = nullptr;
    decltype(&::cublasLtMatmulDescCreate) MatmulDescCreate = nullptr;
    decltype(&::cublasLtMatmulDescDestroy) MatmulDescDestroy = nullptr;
    decltype(&::cublasLtMatmulDescSetAttribute) MatmulDescSetAttribute = nullptr;
    decltype(&::cublasLtMatmulPreferenceCreate) MatmulPreferenceCreate = nullptr;
    decltype(&::cublasLtMatmulPreferenceDestroy) MatmulPreferenceDestroy = nullptr;
    decltype(&::cublasLtMatmulPreferenceSetAttribute) MatmulPreferenceSetAttribute = nullptr;
    decltype(&::cublasLtMatrixLayoutCreate) MatrixLayoutCreate = nullptr;
    decltype(&::cublasLtMatrixLayoutDestroy) MatrixLayoutDestroy = nullptr;
};

const CublasLtApi& cublaslt() {
    static const CublasLtApi api = [] {
        void* lib = nullptr;
        for (const char* name : {"libcublasLt.so.13", "libcublasLt.so"}) {
            if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
        }
        LR_RUNTIME(lib != nullptr, "cannot load cuBLASLt (libcublasLt.so.13): ", dlerror(),
                   "; put the CUDA 13 libraries on the loader path (LD_LIBRARY_PATH)");
        CublasLtApi a;
        const auto bind = [lib](auto& fn, const char* symbol) {
            fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, symbol));
            LR_RUNTIME(fn != nullptr, "cuBLASLt has no symbol ", symbol);
        };
        bind(a.Create, "cublasLtCreate");
        bind(a.Destroy, "cublasLtDestroy");
        bind(a.GetStatusName, "cublasLtGetStatusName");
        bind(a.GetStatusString, "cublasLtGetStatusString");
        bind(a.Matmul, "cublasLtMatmul");
        bind(a.MatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic");
        bind(a.MatmulDescCreate, "cublasLtMatmulDescCreate");
        bind(a.MatmulDescDestroy, "cublasLtMatmulDescDestroy");
        bind(a.MatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
        bind(a.MatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate");
        bind(a.MatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy");
        bind(a.MatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute");
        bind(a.MatrixLayoutCreate, "cublasLtMatrixLayoutCreate");
        bind(a.MatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
        return a;
    }();
    return api;
}

}  // namespace
}  // namespace lr

#define LR_CUBLASLT_CHECK(expr)                                                                                  \
    do {                                                                                                         \
        const cublasStatus_t lr_status_ = (expr);                                                                \
        if (lr_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]] {                                                  \
            ::lr::detail::throw_runtime_error(::lr::str_cat(#expr, " failed at ", __FILE__, ":", __LINE__, ": ", \
                                                            cublaslt().GetStatusName(lr_status_), " (",          \
                                                            cublaslt().GetStatusString(lr_status_), ")"));       \
        }                                                                                                        \
    } while (0)

namespace lr {
namespace {

// cuBLASLt's default alignment assumption for every pointer; larger alignments change nothing.
constexpr uint32_t kMaxAlignment = 256;
// The bf16 bias buffer's first size: wider than any Wan layer (the 14B FFN has 13824 outputs).
constexpr int64_t kInitialBiasElements = 32768;

uint32_t pointer_alignment(const void* p) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    if (a == 0) return kMaxAlignment;
    return static_cast<uint32_t>(std::min<uintptr_t>(kMaxAlignment, a & (~a + 1)));
}

const char* epilogue_name(GemmEpilogue e) {
    switch (e) {
        case GemmEpilogue::kNone:
            return "none";
        case GemmEpilogue::kBias:
            return "bias";
        case GemmEpilogue::kBiasGeluTanh:
            return "bias+gelu_tanh";
    }
    return "?";
}

struct PlanKey {
    int64_t m = 0, n = 0, k = 0, ldx = 0, ldw = 0, ldy = 0;
    DType y_dtype = DType::kBF16;
    GemmEpilogue epilogue = GemmEpilogue::kNone;
    bool accumulate = false;
    uint32_t align_x = 0, align_w = 0, align_y = 0, align_bias = 0;
    bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
    size_t operator()(const PlanKey& key) const {
        size_t h = 0;
        const auto mix = [&h](uint64_t v) {
            h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        };
        for (const int64_t v : {key.m, key.n, key.k, key.ldx, key.ldw, key.ldy}) mix(static_cast<uint64_t>(v));
        mix(static_cast<uint64_t>(key.y_dtype) | static_cast<uint64_t>(key.epilogue) << 8 |
            static_cast<uint64_t>(key.accumulate) << 16);
        mix(uint64_t{key.align_x} | uint64_t{key.align_w} << 16 | uint64_t{key.align_y} << 32 |
            uint64_t{key.align_bias} << 48);
        return h;
    }
};

// Descriptors and the chosen algorithm of one key. Owns the cuBLASLt objects.
struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr;  // w
    cublasLtMatrixLayout_t b = nullptr;  // x
    cublasLtMatrixLayout_t d = nullptr;  // y, also C
    cublasLtMatmulAlgo_t algo{};

    Plan() = default;
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    ~Plan() {
        // Destroy calls only free host memory; their status cannot be acted on in a destructor.
        if (desc) cublaslt().MatmulDescDestroy(desc);
        if (a) cublaslt().MatrixLayoutDestroy(a);
        if (b) cublaslt().MatrixLayoutDestroy(b);
        if (d) cublaslt().MatrixLayoutDestroy(d);
    }
};

}  // namespace

struct GemmRunner::Impl {
    cublasLtHandle_t handle = nullptr;
    DeviceBuffer workspace;
    DeviceBuffer bias_bf16;  // the bias of a bf16-output call, cast on the stream before its GEMM
    std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans;

    // Makes `key`'s descriptors and asks the heuristic for its best algorithm; `bias` is the pointer the epilogue
    // will read (its alignment matters to the heuristic).
    std::unique_ptr<Plan> make_plan(const PlanKey& key, const void* bias) {
        auto plan = std::make_unique<Plan>();
        const cudaDataType_t y_type = key.y_dtype == DType::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
        LR_CUBLASLT_CHECK(cublaslt().MatrixLayoutCreate(&plan->a, CUDA_R_16BF, static_cast<uint64_t>(key.k),
                                                        static_cast<uint64_t>(key.n), key.ldw));
        LR_CUBLASLT_CHECK(cublaslt().MatrixLayoutCreate(&plan->b, CUDA_R_16BF, static_cast<uint64_t>(key.k),
                                                        static_cast<uint64_t>(key.m), key.ldx));
        LR_CUBLASLT_CHECK(cublaslt().MatrixLayoutCreate(&plan->d, y_type, static_cast<uint64_t>(key.n),
                                                        static_cast<uint64_t>(key.m), key.ldy));

        LR_CUBLASLT_CHECK(cublaslt().MatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
        LR_CUBLASLT_CHECK(
            cublaslt().MatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)));
        LR_CUBLASLT_CHECK(
            cublaslt().MatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)));
        if (key.epilogue != GemmEpilogue::kNone) {
            const cublasLtEpilogue_t epilogue =
                key.epilogue == GemmEpilogue::kBiasGeluTanh ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
            LR_CUBLASLT_CHECK(cublaslt().MatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                                sizeof(epilogue)));
            LR_CUBLASLT_CHECK(cublaslt().MatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                                &y_type, sizeof(y_type)));
            LR_CUBLASLT_CHECK(
                cublaslt().MatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
        }

        cublasLtMatmulPreference_t pref = nullptr;
        LR_CUBLASLT_CHECK(cublaslt().MatmulPreferenceCreate(&pref));
        const uint64_t workspace_bytes = workspace.size();
        cublasStatus_t status = cublaslt().MatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                                        &workspace_bytes, sizeof(workspace_bytes));
        const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w},
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x},
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_y},
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_y},
        };
        for (const auto& [attr, bytes] : alignments) {
            if (status == CUBLAS_STATUS_SUCCESS) {
                status = cublaslt().MatmulPreferenceSetAttribute(pref, attr, &bytes, sizeof(bytes));
            }
        }
        cublasLtMatmulHeuristicResult_t result{};
        int found = 0;
        if (status == CUBLAS_STATUS_SUCCESS) {
            status = cublaslt().MatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->d, plan->d, pref, 1,
                                                       &result, &found);
        }
        cublaslt().MatmulPreferenceDestroy(pref);
        if (status == CUBLAS_STATUS_SUCCESS && found < 1) status = CUBLAS_STATUS_NOT_SUPPORTED;
        if (status == CUBLAS_STATUS_SUCCESS) status = result.state;
        LR_RUNTIME(status == CUBLAS_STATUS_SUCCESS, "cuBLASLt has no algorithm for y[", key.m, ", ", key.n, "] (",
                   dtype_name(key.y_dtype), ", row stride ", key.ldy, ") = x[", key.m, ", ", key.k,
                   "] (BF16, row stride ", key.ldx, ") . w[", key.n, ", ", key.k, "]^T (BF16, row stride ", key.ldw,
                   "), epilogue ", epilogue_name(key.epilogue), ", accumulate ", key.accumulate,
                   ", pointer alignment x/w/y ", key.align_x, "/", key.align_w, "/", key.align_y,
                   " bytes: ", cublaslt().GetStatusName(status),
                   " (the fast bf16 kernels want 16-byte aligned pointers and row strides that are multiples of 8)");
        LR_ASSERT(result.workspaceSize <= workspace.size(), "cuBLASLt picked an algorithm needing ",
                  result.workspaceSize, " workspace bytes, more than the ", workspace.size(), " it was offered");
        plan->algo = result.algo;
        return plan;
    }
};

GemmRunner::GemmRunner(size_t workspace_bytes) : impl_(std::make_unique<Impl>()) {
    impl_->workspace = DeviceBuffer(workspace_bytes);
    impl_->bias_bf16 = DeviceBuffer(size_t{kInitialBiasElements} * 2);
    LR_CUBLASLT_CHECK(cublaslt().Create(&impl_->handle));
}

GemmRunner::~GemmRunner() {
    impl_->plans.clear();
    if (impl_->handle) cublaslt().Destroy(impl_->handle);
}

size_t GemmRunner::cached_plans() const { return impl_->plans.size(); }

void GemmRunner::run(const CudaGemmParams& p, Stream stream) {
    const int64_t ldx = p.ldx ? p.ldx : p.k;
    const int64_t ldw = p.ldw ? p.ldw : p.k;
    const int64_t ldy = p.ldy ? p.ldy : p.n;
    LR_ASSERT(p.x && p.w && p.y, "gemm: null x, w or y");
    LR_ASSERT(p.m > 0 && p.n > 0 && p.k > 0, "gemm: m, n, k must be positive, found ", p.m, ", ", p.n, ", ", p.k);
    LR_ASSERT(ldx >= p.k && ldw >= p.k && ldy >= p.n, "gemm: row strides ldx ", ldx, ", ldw ", ldw, ", ldy ", ldy,
              " are shorter than the rows (k ", p.k, ", n ", p.n, ")");
    LR_ASSERT(p.y_dtype == DType::kBF16 || p.y_dtype == DType::kF32, "gemm: y must be BF16 or F32, found ",
              dtype_name(p.y_dtype));
    LR_ASSERT(!p.accumulate || p.y_dtype == DType::kF32, "gemm: accumulate needs an F32 y");
    // cuBLASLt applies the epilogue after adding C, which would give gelu(y + x w^T + b), not y + gelu(...).
    LR_ASSERT(!p.accumulate || p.epilogue != GemmEpilogue::kBiasGeluTanh,
              "gemm: accumulate with the GELU epilogue is not supported");
    LR_ASSERT(p.epilogue == GemmEpilogue::kNone || p.bias, "gemm: epilogue ", epilogue_name(p.epilogue),
              " without a bias");

    // The vector the epilogue reads: the caller's f32 bias, or its bf16 copy for a bf16 y.
    const void* bias = nullptr;
    if (p.epilogue != GemmEpilogue::kNone) {
        if (p.y_dtype == DType::kF32) {
            bias = p.bias;
        } else {
            if (impl_->bias_bf16.size() < static_cast<size_t>(p.n) * 2) {
                // A wider layer than any before (warm-up time, never inside a captured graph): the old buffer may
                // still be read by queued GEMMs.
                LR_CUDA_CHECK(cudaDeviceSynchronize());
                impl_->bias_bf16 = DeviceBuffer(static_cast<size_t>(p.n) * 2);
            }
            bias = impl_->bias_bf16.data();
            launch_cast({p.bias, impl_->bias_bf16.data(), DType::kF32, DType::kBF16, p.n}, stream);
        }
    }
    const PlanKey key{p.m,
                      p.n,
                      p.k,
                      ldx,
                      ldw,
                      ldy,
                      p.y_dtype,
                      p.epilogue,
                      p.accumulate,
                      pointer_alignment(p.x),
                      pointer_alignment(p.w),
                      pointer_alignment(p.y),
                      bias ? pointer_alignment(bias) : 0};
    auto it = impl_->plans.find(key);
    if (it == impl_->plans.end()) it = impl_->plans.emplace(key, impl_->make_plan(key, bias)).first;
    Plan& plan = *it->second;

    if (bias) {
        LR_CUBLASLT_CHECK(
            cublaslt().MatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    const float alpha = 1.0f;
    const float beta = p.accumulate ? 1.0f : 0.0f;
    LR_CUBLASLT_CHECK(cublaslt().Matmul(impl_->handle, plan.desc, &alpha, p.w, plan.a, p.x, plan.b, &beta, p.y, plan.d,
                                        p.y, plan.d, &plan.algo, impl_->workspace.data(), impl_->workspace.size(),
                                        stream));
}

}  // namespace lr
