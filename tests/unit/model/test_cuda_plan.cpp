// The CUDA model's memory plan around its attention seam (runtime/model/wan_model_cuda_plan.h) is plain arithmetic:
// checked here on the CPU. The model plans the single-GPU step it builds (its pools, tables and scratch); a step
// handed over (a rank's sharded one) owns its memory, and must attend the model's heads in its RoPE mode.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "runtime/core/check.h"
#include "runtime/model/attention_step_cuda.h"
#include "runtime/model/attention_step_cuda_impl.h"
#include "runtime/model/wan_model_cuda.h"
#include "runtime/model/wan_model_cuda_plan.h"

namespace lr {
namespace {

WanModelConfig wan_1p3b() {
    WanModelConfig c;
    c.dims.dim = 1536;
    c.dims.ffn_dim = 8960;
    c.dims.num_heads = 12;
    c.dims.num_layers = 30;
    c.dims.text_dim = 4096;
    c.dims.freq_dim = 256;
    c.text_len = 512;
    return c;
}

CudaModelOptions options_480p() {
    CudaModelOptions o;
    o.height = 60;
    o.width = 104;
    o.max_forward_frames = 3;
    o.window_frames = 21;
    o.max_frames = 21;
    return o;
}

// A step that only answers what the plan asks (the plan never runs it).
class ShapeOnlyStep final : public CudaAttentionStep {
  public:
    ShapeOnlyStep(int64_t heads, RopePositions rope) : heads_(heads), rope_(rope) {}
    KvWrite begin(const AttentionForward&, Stream) override { return unused<KvWrite>(); }
    CudaQkvTarget qkv(int64_t) override { return unused<CudaQkvTarget>(); }
    void attend(int64_t, void*) override { unused<int>(); }
    AttentionStats stats() const override { return {}; }
    int64_t num_heads() const override { return heads_; }
    RopePositions rope() const override { return rope_; }
    int64_t cached_frames() const override { return 0; }
    int64_t max_cached_frames() const override { return 0; }
    size_t kv_bytes() const override { return 0; }
    void reset(int64_t) override {}

  private:
    template <class T>
    [[noreturn]] static T unused() {
        LR_ASSERT(false, "ShapeOnlyStep: the plan ran the step");
        __builtin_unreachable();
    }
    int64_t heads_;
    RopePositions rope_;
};

std::string input_error(const std::function<void()>& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "(no InputError)";
}

TEST(CudaPlan, TheModelPlansTheStepItBuilds) {
    const WanModelConfig cfg = wan_1p3b();
    const CudaModelOptions o = options_480p();
    const wan_cuda::PlanBytes own = wan_cuda::plan_bytes(cfg, o);
    const CudaAttentionStepConfig sc = attention_step_config(cfg, o);
    EXPECT_EQ(sc.num_heads, 12);
    EXPECT_EQ(sc.head_dim, 128);
    EXPECT_EQ(sc.grid_rows * sc.grid_cols, 1560);
    EXPECT_EQ(own.kv, CudaLocalAttentionStep::device_bytes(sc));
    // K and V of 30 layers, 21 frames of 1560 tokens (13 blocks of 128 per frame: 1664 rows), 1536 wide, bf16.
    EXPECT_EQ(own.kv_pools, static_cast<size_t>(2) * 30 * 21 * 1664 * 1536 * 2);
    EXPECT_GT(own.kv, own.kv_pools);  // + tables and the q scratch
    EXPECT_EQ(CudaWanModel::device_bytes(cfg, o), own.total());
}

TEST(CudaPlan, AStepHandedOverOwnsItsMemory) {
    const WanModelConfig cfg = wan_1p3b();
    CudaModelOptions o = options_480p();
    const wan_cuda::PlanBytes own = wan_cuda::plan_bytes(cfg, o);
    ShapeOnlyStep step(12, RopePositions::kAbsolute);
    o.step = &step;
    const wan_cuda::PlanBytes handed = wan_cuda::plan_bytes(cfg, o);
    EXPECT_EQ(handed.kv, 0u);
    EXPECT_EQ(handed.kv_pools, 0u);
    // The gathered head rows of every worker: [rows, 64] f32, rows = 3 frames rounded to 128-row blocks.
    EXPECT_EQ(handed.activations, own.activations + wan_cuda::align_up(static_cast<size_t>(4736) * 64 * 4));
}

TEST(CudaPlan, RefusesAStepThatDoesNotFitTheModel) {
    const WanModelConfig cfg = wan_1p3b();
    CudaModelOptions o = options_480p();
    ShapeOnlyStep six(6, RopePositions::kAbsolute), relative(12, RopePositions::kWindowRelative);
    o.step = &six;
    EXPECT_NE(input_error([&] { wan_cuda::plan_bytes(cfg, o); }).find("attends 6 heads"), std::string::npos);
    o.step = &relative;
    EXPECT_NE(input_error([&] { wan_cuda::plan_bytes(cfg, o); }).find("window-relative RoPE; the model has 12 heads"),
              std::string::npos);
}

TEST(CudaPlan, RefusesWhatTheStepCannotRun) {
    const WanModelConfig cfg = wan_1p3b();
    CudaModelOptions o = options_480p();
    o.kv_block_size = 96;  // head_dim 128 needs multiples of 64
    EXPECT_NE(input_error([&] { wan_cuda::plan_bytes(cfg, o); }).find("block_size 96"), std::string::npos);
}

// A sparse policy with window-relative RoPE (LongLive's mode) plans the rotation's tables on top of the absolute
// plan: per forward the tile of every (layer, head, retained slot), once the raster index of every tile's tokens.
TEST(CudaPlan, SparsePolicyWithWindowRelativeRopePlansItsRotationTables) {
    const WanModelConfig cfg = wan_1p3b();
    CudaModelOptions o = options_480p();
    o.kv_block_size = 128;
    o.policy.kind = BlockPolicyKind::kSparseForcing;
    o.policy.sf_topk_blocks = 6;
    o.policy.persistent_blocks = 4;
    const CudaAttentionStepConfig absolute = attention_step_config(cfg, o);
    o.rope = RopePositions::kWindowRelative;
    const CudaAttentionStepConfig relative = attention_step_config(cfg, o);
    EXPECT_EQ(input_error([&] { wan_cuda::plan_bytes(cfg, o); }), "(no InputError)");
    EXPECT_EQ(wan_cuda::plan_bytes(cfg, o).kv, CudaLocalAttentionStep::device_bytes(relative));
    const cuda_step::SparseSizes za = cuda_step::sparse_sizes(absolute), zr = cuda_step::sparse_sizes(relative);
    // 4 persistent blocks per (layer, head); 480p's 30 x 52 patches in tiles of 8 x 16: 4 x 4 tiles of 128 rows.
    EXPECT_EQ(zr.retained, 4);
    EXPECT_EQ(zr.tiles, 16);
    EXPECT_EQ(zr.staging_ints - za.staging_ints, 30 * 12 * 4 + 16 * 128);
    EXPECT_GT(CudaLocalAttentionStep::device_bytes(relative), CudaLocalAttentionStep::device_bytes(absolute));
}

}  // namespace
}  // namespace lr
