// The DiT's fused norms on the GPU against the CPU references, on random inputs:
//   launch_layer_norm_mod  vs layer_norm_cpu (modulation per frame, a shard starting inside a frame, affine),
//   launch_norm_rope       vs rms_norm_cpu + rope_3d_cpu (q, k into a paged pool, v store, re-rotation),
//   launch_rope_retained   vs rope_3d_cpu per head at each retained token's own position,
//   launch_gated_residual  vs x += y * gate as the model's add_gated computes it.
// bf16 outputs are compared with the CPU fp32 result rounded to bf16: |got - want| <= 1e-2 |want| + 1e-3 (the
// normalised values are O(1)); pure stores must be bit exact; the f32 residual is within 1e-6 relative.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/dit_ops_cuda.h"
#include "kernels/layer_norm.h"
#include "kernels/rms_norm.h"
#include "kernels/rope_3d.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

#ifdef LONGROLL_HAS_CUDA

constexpr float kEps = 1e-6f;
constexpr double kBf16Rel = 1e-2;
constexpr double kBf16Abs = 1e-3;

std::vector<float> random_vec(int64_t n, std::mt19937& rng, float mean, float stddev) {
    std::normal_distribution<float> dist(mean, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& e : v) e = dist(rng);
    return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
    std::vector<uint16_t> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16_bits(v[i]);
    return out;
}

// The values a bf16 tensor holds, as f32 (what the CPU reference reads for a bf16 input).
std::vector<float> round_to_bf16(const std::vector<float>& v) {
    std::vector<float> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_bits_to_f32(f32_to_bf16_bits(v[i]));
    return out;
}

template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
    return test::to_device(v.data(), v.size() * sizeof(T));
}

// Counts bf16 values of `got` outside rel * |want| + abs of the CPU result rounded to bf16, reporting a few.
// got and want: n elements each.
int64_t count_bf16_mismatches(const uint16_t* got, const float* want, int64_t n, double rel, double abs,
                              const std::string& what) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
        const double w = bf16_bits_to_f32(f32_to_bf16_bits(want[i]));
        const double g = bf16_bits_to_f32(got[i]);
        if (!(std::abs(g - w) <= rel * std::abs(w) + abs)) {
            if (++bad <= 5) ADD_FAILURE() << what << " element " << i << ": gpu " << g << ", cpu " << want[i];
        }
    }
    return bad;
}

// ---- LayerNorm + modulation -------------------------------------------------------------------------------

struct LayerNormCase {
    int64_t rows = 0;
    int64_t dim = 0;
    bool affine = false;
    bool modulated = false;
    int64_t rows_per_group = 1;
    int64_t row0 = 0;
    int64_t x_stride = 0;  // 0: dim
    int64_t y_stride = 0;  // 0: dim
};

std::string describe(const LayerNormCase& c) {
    return str_cat("layer_norm_mod rows ", c.rows, " dim ", c.dim, c.affine ? " affine" : "",
                   c.modulated ? str_cat(" modulated rows_per_group ", c.rows_per_group, " row0 ", c.row0) : "",
                   " x_stride ", c.x_stride, " y_stride ", c.y_stride);
}

void check_layer_norm(const LayerNormCase& c, uint32_t seed) {
    SCOPED_TRACE(describe(c));
    std::mt19937 rng(seed);
    const int64_t dim = c.dim;
    const int64_t xs = c.x_stride > 0 ? c.x_stride : dim;
    const int64_t ys = c.y_stride > 0 ? c.y_stride : dim;
    // A mean well away from 0 and a spread of 2: the centring and the variance both matter.
    const std::vector<float> x = random_vec(c.rows * xs, rng, 0.5f, 2.0f);  // [rows, xs]
    const std::vector<float> weight = random_vec(dim, rng, 1.0f, 0.3f);
    const std::vector<float> bias = random_vec(dim, rng, 0.0f, 0.3f);
    // The model's table: [frames, 6, dim], frame f's (shift_ff, scale_ff) at slots 3 and 4.
    const int64_t frames = c.modulated ? (c.row0 + c.rows - 1) / c.rows_per_group + 1 : 1;
    const int64_t mod_stride = 6 * dim;
    const std::vector<float> table = random_vec(frames * mod_stride, rng, 0.0f, 0.5f);

    // CPU: compact rows, one layer_norm_cpu call per frame segment (it has no row0).
    std::vector<float> xc(static_cast<size_t>(c.rows * dim));  // [rows, dim]
    for (int64_t r = 0; r < c.rows; ++r) std::copy_n(x.data() + r * xs, dim, xc.data() + r * dim);
    std::vector<float> want(xc.size());  // [rows, dim]
    for (int64_t r = 0; r < c.rows;) {
        LayerNormParams p;
        p.x = xc.data() + r * dim;
        p.y = want.data() + r * dim;
        p.dim = dim;
        p.eps = kEps;
        if (c.affine) {
            p.weight = weight.data();
            p.bias = bias.data();
        }
        int64_t end = c.rows;
        if (c.modulated) {
            const int64_t g = (c.row0 + r) / c.rows_per_group;
            end = std::min(c.rows, (g + 1) * c.rows_per_group - c.row0);
            p.shift = table.data() + g * mod_stride + 3 * dim;
            p.scale = table.data() + g * mod_stride + 4 * dim;
            p.rows_per_group = end - r;
            p.mod_stride = mod_stride;
        }
        p.rows = end - r;
        layer_norm_cpu(p);
        r = end;
    }

    // GPU: y starts as a sentinel so that writes past dim (into the stride padding) are caught.
    constexpr uint16_t kSentinel = 0x5a5a;
    const DeviceBuffer d_x = upload(x);
    const DeviceBuffer d_w = upload(weight);
    const DeviceBuffer d_b = upload(bias);
    const DeviceBuffer d_table = upload(table);
    const DeviceBuffer d_y = upload(std::vector<uint16_t>(static_cast<size_t>(c.rows * ys), kSentinel));
    LayerNormModParams p;
    p.x = static_cast<const float*>(d_x.data());
    p.y = d_y.data();
    p.x_stride = c.x_stride;
    p.y_stride = c.y_stride;
    p.rows = c.rows;
    p.dim = dim;
    p.eps = kEps;
    if (c.affine) {
        p.weight = static_cast<const float*>(d_w.data());
        p.bias = static_cast<const float*>(d_b.data());
    }
    if (c.modulated) {
        p.shift = static_cast<const float*>(d_table.data()) + 3 * dim;
        p.scale = static_cast<const float*>(d_table.data()) + 4 * dim;
        p.rows_per_group = c.rows_per_group;
        p.mod_stride = mod_stride;
        p.row0 = c.row0;
    }
    launch_layer_norm_mod(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto y = test::to_host<uint16_t>(d_y, static_cast<size_t>(c.rows * ys));  // [rows, ys]

    std::vector<uint16_t> got(want.size());  // [rows, dim]
    int64_t padding_writes = 0;
    for (int64_t r = 0; r < c.rows; ++r) {
        std::copy_n(y.data() + r * ys, dim, got.data() + r * dim);
        for (int64_t i = dim; i < ys; ++i) padding_writes += y[static_cast<size_t>(r * ys + i)] != kSentinel;
    }
    EXPECT_EQ(count_bf16_mismatches(got.data(), want.data(), c.rows * dim, kBf16Rel, kBf16Abs, "y"), 0);
    EXPECT_EQ(padding_writes, 0) << "elements written between rows";
}

// ---- RMSNorm + RoPE + store -------------------------------------------------------------------------------

struct NormRopeCase {
    const char* name = "";
    int64_t rows = 0;
    int64_t heads = 0;
    int64_t head_dim = 0;
    DType x_dtype = DType::kBF16;
    bool norm = false;
    bool rope = false;
    int64_t x_rows = 0;        // > 0: x holds this many rows, read through a random src_row
    int64_t y_rows = 0;        // > 0: y holds this many rows, written through a random dst_row with some -1
    int64_t x_stride = 0;      // 0: heads * head_dim
    int64_t y_stride = 0;      // 0: heads * head_dim
    int64_t max_frame = 1500;  // past the reference's 1024-frame table
};

void check_norm_rope(const NormRopeCase& c, uint32_t seed) {
    SCOPED_TRACE(
        str_cat("norm_rope ", c.name, ": rows ", c.rows, ", ", c.heads, "x", c.head_dim, " ", dtype_name(c.x_dtype)));
    std::mt19937 rng(seed);
    const int64_t width = c.heads * c.head_dim;
    const int64_t xs = c.x_stride > 0 ? c.x_stride : width;
    const int64_t ys = c.y_stride > 0 ? c.y_stride : width;
    const int64_t x_rows = c.x_rows > 0 ? c.x_rows : c.rows;
    const int64_t y_rows = c.y_rows > 0 ? c.y_rows : c.rows;

    // x as the CPU sees it: f32, or the values of the bf16 tensor.
    std::vector<float> x = random_vec(x_rows * xs, rng, 0.2f, 1.5f);  // [x_rows, xs]
    if (c.x_dtype == DType::kBF16) x = round_to_bf16(x);
    const std::vector<float> weight = random_vec(width, rng, 1.0f, 0.3f);

    // src_row: distinct random rows of x; dst_row: distinct random rows of y, every 7th skipped (-1).
    std::vector<int32_t> src_row, dst_row;
    if (c.x_rows > 0) {
        std::vector<int32_t> perm(static_cast<size_t>(x_rows));
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        src_row.assign(perm.begin(), perm.begin() + c.rows);
    }
    if (c.y_rows > 0) {
        std::vector<int32_t> perm(static_cast<size_t>(y_rows));
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        dst_row.assign(perm.begin(), perm.begin() + c.rows);
        for (size_t r = 3; r < dst_row.size(); r += 7) dst_row[r] = -1;
    }
    // (frame, row, col) per row; row 0 at the largest frame.
    std::vector<int32_t> pos(static_cast<size_t>(3 * c.rows));  // [rows, 3]
    std::uniform_int_distribution<int32_t> frame(0, static_cast<int32_t>(c.max_frame));
    std::uniform_int_distribution<int32_t> prow(0, 59);
    std::uniform_int_distribution<int32_t> pcol(0, 103);
    for (int64_t r = 0; r < c.rows; ++r) {
        pos[static_cast<size_t>(3 * r)] = r == 0 ? static_cast<int32_t>(c.max_frame) : frame(rng);
        pos[static_cast<size_t>(3 * r + 1)] = prow(rng);
        pos[static_cast<size_t>(3 * r + 2)] = pcol(rng);
    }

    // CPU: gather the source rows, rms_norm_cpu, then rope_3d_cpu, all in place on [rows, width].
    std::vector<float> want(static_cast<size_t>(c.rows * width));
    for (int64_t r = 0; r < c.rows; ++r) {
        const int64_t s = src_row.empty() ? r : src_row[static_cast<size_t>(r)];
        std::copy_n(x.data() + s * xs, width, want.data() + r * width);
    }
    if (c.norm) {
        RmsNormParams p;
        p.x = want.data();
        p.y = want.data();
        p.weight = weight.data();
        p.rows = c.rows;
        p.dim = width;
        p.eps = kEps;
        rms_norm_cpu(p);
    }
    if (c.rope) {
        const std::vector<int64_t> pos64(pos.begin(), pos.end());
        rope_3d_cpu({want.data(), want.data(), pos64.data(), c.rows, c.heads, c.head_dim});
    }

    // GPU: y starts with random bf16 values that every unwritten element must keep.
    const std::vector<uint16_t> y_init = to_bf16(random_vec(y_rows * ys, rng, 0.0f, 1.0f));  // [y_rows, ys]
    const DeviceBuffer d_x = c.x_dtype == DType::kBF16 ? upload(to_bf16(x)) : upload(x);
    const DeviceBuffer d_y = upload(y_init);
    const DeviceBuffer d_w = upload(weight);
    const DeviceBuffer d_pos = upload(pos);
    const DeviceBuffer d_src = upload(src_row.empty() ? std::vector<int32_t>{0} : src_row);
    const DeviceBuffer d_dst = upload(dst_row.empty() ? std::vector<int32_t>{0} : dst_row);
    NormRopeParams p;
    p.x = d_x.data();
    p.x_dtype = c.x_dtype;
    p.x_stride = c.x_stride;
    p.src_row = src_row.empty() ? nullptr : static_cast<const int32_t*>(d_src.data());
    p.y = d_y.data();
    p.y_stride = c.y_stride;
    p.dst_row = dst_row.empty() ? nullptr : static_cast<const int32_t*>(d_dst.data());
    p.norm_weight = c.norm ? static_cast<const float*>(d_w.data()) : nullptr;
    p.eps = kEps;
    p.positions = c.rope ? static_cast<const int32_t*>(d_pos.data()) : nullptr;
    p.rows = c.rows;
    p.heads = c.heads;
    p.head_dim = c.head_dim;
    launch_norm_rope(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto y = test::to_host<uint16_t>(d_y, static_cast<size_t>(y_rows * ys));  // [y_rows, ys]

    // A pure store (no norm, no rope) only rounds to bf16, exactly as f32_to_bf16_bits does.
    const bool exact = !c.norm && !c.rope;
    std::vector<bool> written(static_cast<size_t>(y_rows), false);
    int64_t bad = 0;
    for (int64_t r = 0; r < c.rows; ++r) {
        const int64_t d = dst_row.empty() ? r : dst_row[static_cast<size_t>(r)];
        if (d < 0) continue;
        written[static_cast<size_t>(d)] = true;
        bad += count_bf16_mismatches(y.data() + d * ys, want.data() + r * width, width, exact ? 0.0 : kBf16Rel,
                                     exact ? 0.0 : kBf16Abs, str_cat("row ", r, " (y row ", d, ")"));
    }
    EXPECT_EQ(bad, 0);
    // Skipped rows, rows no one writes and the stride padding keep their old contents.
    int64_t clobbered = 0;
    for (int64_t d = 0; d < y_rows; ++d) {
        for (int64_t i = written[static_cast<size_t>(d)] ? width : 0; i < ys; ++i) {
            clobbered += y[static_cast<size_t>(d * ys + i)] != y_init[static_cast<size_t>(d * ys + i)];
        }
    }
    EXPECT_EQ(clobbered, 0) << "elements written outside the destination rows";
}

// ---- Gated residual ---------------------------------------------------------------------------------------

struct GatedCase {
    int64_t rows = 0;
    int64_t dim = 0;
    DType y_dtype = DType::kBF16;
    bool gated = false;
    int64_t rows_per_group = 1;
    int64_t row0 = 0;
};

void check_gated_residual(const GatedCase& c, uint32_t seed) {
    SCOPED_TRACE(str_cat("gated_residual rows ", c.rows, " dim ", c.dim, " y ", dtype_name(c.y_dtype),
                         c.gated ? str_cat(" gated rows_per_group ", c.rows_per_group, " row0 ", c.row0) : ""));
    std::mt19937 rng(seed);
    const int64_t n = c.rows * c.dim;
    const std::vector<float> x = random_vec(n, rng, 0.1f, 1.0f);  // [rows, dim]
    std::vector<float> y = random_vec(n, rng, 0.0f, 1.0f);        // [rows, dim]
    if (c.y_dtype == DType::kBF16) y = round_to_bf16(y);
    // [frames, 6, dim], the gate at slot 2 (gate_sa).
    const int64_t frames = c.gated ? (c.row0 + c.rows - 1) / c.rows_per_group + 1 : 1;
    const int64_t mod_stride = 6 * c.dim;
    const std::vector<float> table = random_vec(frames * mod_stride, rng, 0.2f, 0.5f);

    // The model's add_gated: the product and the sum each rounded to f32.
    std::vector<float> want(x.size()), scale(x.size());  // scale: |x| + |y * g|, the size of the terms
    for (int64_t r = 0; r < c.rows; ++r) {
        const float* g = table.data() + ((c.row0 + r) / c.rows_per_group) * mod_stride + 2 * c.dim;
        for (int64_t i = 0; i < c.dim; ++i) {
            const auto k = static_cast<size_t>(r * c.dim + i);
            const float yg = c.gated ? y[k] * g[i] : y[k];
            want[k] = x[k] + yg;
            scale[k] = std::abs(x[k]) + std::abs(yg);
        }
    }

    DeviceBuffer d_x = upload(x);
    const DeviceBuffer d_y = c.y_dtype == DType::kBF16 ? upload(to_bf16(y)) : upload(y);
    const DeviceBuffer d_table = upload(table);
    GatedResidualParams p;
    p.x = static_cast<float*>(d_x.data());
    p.y = d_y.data();
    p.y_dtype = c.y_dtype;
    p.rows = c.rows;
    p.dim = c.dim;
    if (c.gated) {
        p.gate = static_cast<const float*>(d_table.data()) + 2 * c.dim;
        p.rows_per_group = c.rows_per_group;
        p.mod_stride = mod_stride;
        p.row0 = c.row0;
    }
    launch_gated_residual(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = test::to_host<float>(d_x, static_cast<size_t>(n));

    int64_t bad = 0;
    for (size_t k = 0; k < got.size(); ++k) {
        if (!(std::abs(got[k] - want[k]) <= 1e-6 * scale[k])) {
            if (++bad <= 5) ADD_FAILURE() << "element " << k << ": gpu " << got[k] << ", cpu " << want[k];
        }
    }
    EXPECT_EQ(bad, 0);
}

#endif  // LONGROLL_HAS_CUDA

// ---- Tests -----------------------------------------------------------------------------------------------

TEST(DitNormGpu, LayerNormModMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    uint32_t seed = 1;
    const std::vector<LayerNormCase> cases = {
        // Modulated, a shard starting inside a frame, rows not a multiple of the frame.
        {.rows = 1, .dim = 64, .modulated = true, .rows_per_group = 16, .row0 = 5},
        {.rows = 1000, .dim = 64, .affine = true, .modulated = true, .rows_per_group = 60, .row0 = 37},
        {.rows = 5000, .dim = 1536, .modulated = true, .rows_per_group = 1560, .row0 = 700},
        {.rows = 333, .dim = 5120, .modulated = true, .rows_per_group = 100, .row0 = 250},
        {.rows = 2, .dim = 5120, .affine = true, .modulated = true, .rows_per_group = 1, .row0 = 9},
        // norm3: affine, not modulated.
        {.rows = 777, .dim = 1536, .affine = true},
        {.rows = 41, .dim = 5120, .affine = true},
        // Plain LayerNorm.
        {.rows = 129, .dim = 64},
        // A dim that is not a multiple of 4 (the scalar path), modulated and affine.
        {.rows = 129, .dim = 1001, .affine = true, .modulated = true, .rows_per_group = 50, .row0 = 3},
        // Strided rows: vectorisable strides, and an odd x stride that forces the scalar path.
        {.rows = 100, .dim = 1536, .modulated = true, .rows_per_group = 30, .x_stride = 1544, .y_stride = 2048},
        {.rows = 50, .dim = 64, .affine = true, .x_stride = 67, .y_stride = 70},
    };
    for (const auto& c : cases) check_layer_norm(c, seed++);
#endif
}

TEST(DitNormGpu, NormRopeQueriesMatchCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    uint32_t seed = 100;
    const std::vector<NormRopeCase> cases = {
        // q read out of a fused [rows, 3 * width] qkv projection.
        {.name = "q f32",
         .rows = 300,
         .heads = 12,
         .head_dim = 128,
         .x_dtype = DType::kF32,
         .norm = true,
         .rope = true,
         .x_stride = 3 * 12 * 128},
        {.name = "q bf16",
         .rows = 300,
         .heads = 12,
         .head_dim = 128,
         .x_dtype = DType::kBF16,
         .norm = true,
         .rope = true},
        {.name = "q tiny f32",
         .rows = 37,
         .heads = 2,
         .head_dim = 32,
         .x_dtype = DType::kF32,
         .norm = true,
         .rope = true},
        {.name = "q tiny bf16",
         .rows = 37,
         .heads = 2,
         .head_dim = 32,
         .x_dtype = DType::kBF16,
         .norm = true,
         .rope = true},
        // The 14B model's width (40 x 128): the longest rows the DiT has.
        {.name = "q 14B",
         .rows = 64,
         .heads = 40,
         .head_dim = 128,
         .x_dtype = DType::kBF16,
         .norm = true,
         .rope = true},
        // Cross-attention q: RMSNorm only.
        {.name = "norm only", .rows = 50, .heads = 12, .head_dim = 128, .x_dtype = DType::kF32, .norm = true},
    };
    for (const auto& c : cases) check_norm_rope(c, seed++);
#endif
}

TEST(DitNormGpu, NormRopeCacheStoresMatchCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    uint32_t seed = 200;
    const std::vector<NormRopeCase> cases = {
        // k: norm + rope, scattered into a paged pool with protected (skipped) rows.
        {.name = "k paged",
         .rows = 400,
         .heads = 12,
         .head_dim = 128,
         .x_dtype = DType::kBF16,
         .norm = true,
         .rope = true,
         .y_rows = 512},
        {.name = "k paged tiny",
         .rows = 45,
         .heads = 2,
         .head_dim = 32,
         .x_dtype = DType::kF32,
         .norm = true,
         .rope = true,
         .y_rows = 64,
         .y_stride = 72},
        // v: store only, bit exact.
        {.name = "v bf16", .rows = 400, .heads = 12, .head_dim = 128, .x_dtype = DType::kBF16, .y_rows = 512},
        {.name = "v f32", .rows = 100, .heads = 2, .head_dim = 32, .x_dtype = DType::kF32, .y_rows = 128},
    };
    for (const auto& c : cases) check_norm_rope(c, seed++);
#endif
}

TEST(DitNormGpu, NormRopeReRotationMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    uint32_t seed = 300;
    const std::vector<NormRopeCase> cases = {
        // LongLive's window-relative positions: rope only on un-rotated cached keys read through src_row.
        {.name = "rerotate",
         .rows = 500,
         .heads = 12,
         .head_dim = 128,
         .x_dtype = DType::kBF16,
         .rope = true,
         .x_rows = 640,
         .y_stride = 12 * 128 + 64,
         .max_frame = 20},
        {.name = "rerotate tiny",
         .rows = 70,
         .heads = 2,
         .head_dim = 32,
         .x_dtype = DType::kBF16,
         .rope = true,
         .x_rows = 96,
         .y_rows = 96,
         .max_frame = 20},
        // Absolute positions far past the reference table.
        {.name = "rope far",
         .rows = 200,
         .heads = 2,
         .head_dim = 32,
         .x_dtype = DType::kF32,
         .rope = true,
         .x_rows = 256,
         .max_frame = 100000},
    };
    for (const auto& c : cases) check_norm_rope(c, seed++);
#endif
}

// Retained blocks of the sparse step, window-relative RoPE: head h's slice of slot r rotated at (0, raster row,
// raster col) of its own tile's tokens; everything else of the output pool untouched. The positions are worked out
// here from the tables, and each rotated slice is rope_3d_cpu's on that head alone.
void check_rope_retained(int64_t heads, int64_t head_dim, uint32_t seed) {
    SCOPED_TRACE(str_cat("rope_retained heads ", heads, " head_dim ", head_dim));
    std::mt19937 rng(seed);
    const int64_t B = 64, slots = 4, first = 2, blocks = first + slots + 1, cols = 13, width = heads * head_dim;
    const int64_t tile_len[3] = {64, 40, 17};
    std::vector<int32_t> raster(static_cast<size_t>(3 * B), -1);  // [tiles, B]
    std::uniform_int_distribution<int32_t> cell(0, 10 * cols - 1);
    for (int64_t t = 0; t < 3; ++t)
        for (int64_t j = 0; j < tile_len[t]; ++j) raster[static_cast<size_t>(t * B + j)] = cell(rng);
    // [heads, slots]: each head has every tile and an empty slot, in an order of its own.
    std::vector<int32_t> slot_tile(static_cast<size_t>(heads * slots));
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t r = 0; r < slots; ++r)
            slot_tile[static_cast<size_t>(h * slots + r)] = static_cast<int32_t>((h + r) % 4) - 1;
    const std::vector<uint16_t> x = to_bf16(random_vec(blocks * B * width, rng, 0.0f, 1.0f));
    const std::vector<uint16_t> y0 = to_bf16(random_vec(blocks * B * width, rng, 0.0f, 1.0f));
    DeviceBuffer dx = upload(x), dy = upload(y0), dtile = upload(slot_tile), draster = upload(raster);
    RopeRetainedParams p;
    p.x = dx.data();
    p.y = dy.data();
    p.first_block = first;
    p.slots = slots;
    p.block_size = B;
    p.slot_tile = static_cast<const int32_t*>(dtile.data());
    p.tile_raster = static_cast<const int32_t*>(draster.data());
    p.grid_cols = cols;
    p.heads = heads;
    p.head_dim = head_dim;
    launch_rope_retained(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<uint16_t> got = test::to_host<uint16_t>(dy, y0.size());

    int64_t rotated = 0, bad = 0;
    std::vector<float> in(static_cast<size_t>(head_dim)), want(static_cast<size_t>(head_dim));
    for (int64_t row = 0; row < blocks * B; ++row) {
        const int64_t r = row / B - first, j = row % B;
        for (int64_t h = 0; h < heads; ++h) {
            const size_t at = static_cast<size_t>(row * width + h * head_dim);
            const int32_t tile = r >= 0 && r < slots ? slot_tile[static_cast<size_t>(h * slots + r)] : -1;
            const int32_t cellr = tile >= 0 ? raster[static_cast<size_t>(tile * B + j)] : -1;
            if (cellr < 0) {  // not a retained token of this head: the output keeps what it held
                bad += std::memcmp(got.data() + at, y0.data() + at, static_cast<size_t>(head_dim) * 2) != 0;
                continue;
            }
            ++rotated;
            for (int64_t d = 0; d < head_dim; ++d) in[static_cast<size_t>(d)] = bf16_bits_to_f32(x[at + d]);
            const int64_t pos[3] = {0, cellr / cols, cellr % cols};
            rope_3d_cpu({in.data(), want.data(), pos, 1, 1, head_dim});
            bad += count_bf16_mismatches(got.data() + at, want.data(), head_dim, kBf16Rel, kBf16Abs,
                                         str_cat("row ", row, " head ", h));
        }
    }
    // Every head holds tiles 0, 1 and 2 once.
    EXPECT_EQ(rotated, heads * (tile_len[0] + tile_len[1] + tile_len[2]));
    EXPECT_EQ(bad, 0);
}

TEST(DitNormGpu, RopeRetainedMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    check_rope_retained(3, 128, 400);
    check_rope_retained(2, 32, 401);
#endif
}

TEST(DitNormGpu, GatedResidualMatchesCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    uint32_t seed = 400;
    const std::vector<GatedCase> cases = {
        {.rows = 1000, .dim = 1536, .y_dtype = DType::kBF16, .gated = true, .rows_per_group = 300, .row0 = 100},
        {.rows = 1000, .dim = 1536, .y_dtype = DType::kF32, .gated = true, .rows_per_group = 300, .row0 = 100},
        {.rows = 1000, .dim = 1536, .y_dtype = DType::kBF16},
        {.rows = 1000, .dim = 1536, .y_dtype = DType::kF32},
        {.rows = 1, .dim = 64, .y_dtype = DType::kF32, .gated = true, .rows_per_group = 1, .row0 = 3},
        // dim not a multiple of 4: the scalar path.
        {.rows = 77, .dim = 37, .y_dtype = DType::kF32, .gated = true, .rows_per_group = 10, .row0 = 3},
        {.rows = 77, .dim = 37, .y_dtype = DType::kBF16},
        // More elements than one grid covers (65536 blocks x 256 threads): the grid-stride loop.
        {.rows = 4200, .dim = 4099, .y_dtype = DType::kBF16, .gated = true, .rows_per_group = 1000, .row0 = 500},
    };
    for (const auto& c : cases) check_gated_residual(c, seed++);
#endif
}

// The launchers check the sizes a block can hold before touching the device, so no GPU is needed.
TEST(DitNormGpu, RejectsRowsLongerThanABlock) {
#ifdef LONGROLL_HAS_CUDA
    std::vector<float> host(16);
    LayerNormModParams ln;
    ln.x = host.data();
    ln.y = host.data();
    ln.rows = 1;
    ln.dim = 1 << 20;
    EXPECT_THROW(launch_layer_norm_mod(ln, nullptr), InputError);
    NormRopeParams nr;
    nr.x = host.data();
    nr.y = host.data();
    nr.rows = 1;
    nr.heads = 1 << 12;
    nr.head_dim = 128;
    EXPECT_THROW(launch_norm_rope(nr, nullptr), InputError);
    nr.heads = 1;
    nr.head_dim = 1024;
    EXPECT_THROW(launch_norm_rope(nr, nullptr), InputError);
#else
    GTEST_SKIP() << "CUDA backend not built";
#endif
}

}  // namespace
}  // namespace lr
