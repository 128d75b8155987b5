// The sparse attention step on the GPU (CudaWanModel with a block policy) against the CPU step
// (CpuAttentionStep) on the same rollout: every policy, the fast kernel (head_dim 128) and the generic one,
// windows that evict (retention), bf16 bounds; and the stats (sparsity, K/V held) the metrics report.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include <cmath>

#include "kernels/sparse_step.h"
#include "runtime/core/device.h"
#include "runtime/model/wan_model.h"
#include "runtime/model/wan_model_cuda.h"
#include "runtime/model/wan_weights.h"
#include "runtime/rollout/rollout.h"
#include "runtime/rollout/rollout_cuda.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

#ifdef LONGROLL_HAS_CUDA
// Measured 1.69e-3 .. 1.70e-3 on an H100 (2026-12-07), every policy and head size, absolute RoPE; the window-relative
// cases (rotated bf16 keys on the GPU, fp32 on the CPU) have not run on a GPU yet.
constexpr double kBound = 5e-3;

WanModelConfig config(int64_t dim, int64_t text_dim, int64_t text_len) {
    WanModelConfig c;
    c.dims.dim = dim;
    c.dims.ffn_dim = 2 * dim;
    c.dims.num_heads = 2;
    c.dims.num_layers = 2;
    c.dims.text_dim = text_dim;
    c.dims.freq_dim = 256;
    c.text_len = text_len;
    return c;
}

struct Case {
    const char* name;
    BlockPolicyConfig policy;
    int64_t window;
    int64_t sink;
};

std::vector<Case> cases() {
    BlockPolicyConfig sf;
    sf.kind = BlockPolicyKind::kSparseForcing;
    sf.sf_topk_blocks = 6;
    sf.persistent_blocks = 4;
    BlockPolicyConfig lf;
    lf.kind = BlockPolicyKind::kLightForcing;
    lf.near_frames = 1;
    lf.topk_frames = 2;
    lf.lf_topk_blocks = 5;
    BlockPolicyConfig lvsa;
    lvsa.kind = BlockPolicyKind::kLvsa;
    lvsa.lvsa_window_frames = 1;
    lvsa.anchor_interval = 3;
    BlockPolicyConfig fkv;
    fkv.kind = BlockPolicyKind::kForcingKv;
    fkv.recent_frames = 1;
    fkv.dynamic_keep_ratio = 0.5;
    fkv.static_head = {1, 0, 0, 1};
    return {
        {"SPARSE_FORCING", sf, 12, 1}, {"LIGHT_FORCING", lf, 12, 1}, {"LVSA", lvsa, 12, 1}, {"FORCING_KV", fkv, -1, 1}};
}

// The rollout of a case: chunks of 3 frames, blocks of 64 (8 x 8 tiles).
RolloutOptions options(const Case& c) {
    RolloutOptions o;
    o.frames_per_chunk = 3;
    o.local_attn_size = c.window;
    o.sink_size = c.sink;
    o.policy = c.policy;
    o.block_size = 64;
    return o;
}

std::vector<float> run_cpu(const WanModel& m, const RolloutOptions& o, const RolloutShape& shape,
                           const std::vector<PromptSegment>& prompts, const NoiseSource& noise, AttentionStats* stats) {
    Rollout r(m, o, shape);
    HostTensor latents(DType::kF32, Shape{shape.frames, 16, shape.height, shape.width});
    r.run(prompts, noise, collect_latents(latents));
    if (stats) *stats = r.step()->stats();
    return {latents.as<float>(), latents.as<float>() + latents.view.numel()};
}
#endif

TEST(SparseStepGpu, EveryPolicyMatchesTheCpuStep) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const WanModelConfig models[] = {config(64, 64, 16), config(256, 128, 64)};  // generic kernel, TMA kernel
    for (const WanModelConfig& mc : models) {
        const WanModel m = WanModel::from_weights(make_default_wan_weights(mc.dims, 5), mc);
        HostTensor ctx(DType::kF32, Shape{9, mc.dims.text_dim});
        const auto v = test::gaussian(ctx.view.numel(), 4);
        std::copy(v.begin(), v.end(), ctx.as<float>());
        const RolloutShape shape{15, 26, 20};  // 13 x 10 patches: 4 tiles of 8 x 8 (two of them short)
        const SeededNoise noise(7, 16, shape.height, shape.width);
        for (const Case& c : cases())
            for (const RopePositions rope : {RopePositions::kAbsolute, RopePositions::kWindowRelative}) {
                const bool relative = rope == RopePositions::kWindowRelative;
                const std::string name = std::string(c.name) + ", head_dim " + std::to_string(mc.dims.dim / 2) +
                                         (relative ? ", window-relative RoPE" : "");
                RolloutOptions o = options(c);
                o.rope = rope;
                AttentionStats cpu_stats;
                const auto want = run_cpu(m, o, shape, {{0, ctx.view}}, noise, &cpu_stats);
                CudaWanModel g(m, CudaRollout::model_options(o, shape, false));
                CudaRollout r(g, o, shape);
                HostTensor latents(DType::kF32, Shape{shape.frames, 16, shape.height, shape.width});
                r.run({{0, ctx.view}}, noise, collect_latents(latents));
                const double err = test::rel_error(latents.as<float>(), want, want.size());
                std::printf(
                    "[ measured ] %s: GPU vs CPU sparse rollout relative error %.3e (bound %.0e); density GPU %.3f "
                    "CPU %.3f; K/V held GPU %lld bytes\n",
                    name.c_str(), err, kBound, g.attention_stats().density(), cpu_stats.density(),
                    static_cast<long long>(g.attention_stats().kv_bytes_held));
                EXPECT_LT(err, kBound) << name;
                // (The GPU's density counts blocks, the CPU's tokens: the tiles differ in length, so they only agree
                // roughly.)
                // FORCING_KV reads all of its pruned cache (its saving is memory: ForcingKvHoldsLessThanDense); the
                // others skip blocks.
                if (name.rfind("FORCING_KV", 0) == 0) {
                    EXPECT_EQ(g.attention_stats().density(), 1.0) << name;
                } else {
                    EXPECT_LT(g.attention_stats().density(), 1.0) << name;
                }
            }
    }
#endif
}

// One CudaWanModel serves every video of a --prompt-file run: CudaRollout::run resets its step, after which no
// persistent (SPARSE_FORCING) or retained (FORCING_KV) block of the previous video may be selected, attended or
// counted. The second video equals a fresh model's, bit for bit, and holds as many K/V bytes.
TEST(SparseStepGpu, ASecondRunForgetsTheFirstRunsRetainedBlocks) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const WanModelConfig mc = config(64, 64, 16);
    const WanModel m = WanModel::from_weights(make_default_wan_weights(mc.dims, 5), mc);
    HostTensor ctx_a(DType::kF32, Shape{9, mc.dims.text_dim}), ctx_b(DType::kF32, Shape{9, mc.dims.text_dim});
    const auto va = test::gaussian(ctx_a.view.numel(), 4), vb = test::gaussian(ctx_b.view.numel(), 8);
    std::copy(va.begin(), va.end(), ctx_a.as<float>());
    std::copy(vb.begin(), vb.end(), ctx_b.as<float>());
    const RolloutShape shape{15, 26, 20};
    const SeededNoise noise_a(7, 16, shape.height, shape.width), noise_b(9, 16, shape.height, shape.width);
    HostTensor latents(DType::kF32, Shape{shape.frames, 16, shape.height, shape.width});
    const auto video = [&]() {
        return std::vector<float>(latents.as<float>(), latents.as<float>() + latents.view.numel());
    };
    for (const Case& c : cases()) {
        if (c.policy.kind != BlockPolicyKind::kSparseForcing && c.policy.kind != BlockPolicyKind::kForcingKv) continue;
        const RolloutOptions o = options(c);
        CudaWanModel fresh(m, CudaRollout::model_options(o, shape, false));
        CudaRollout(fresh, o, shape).run({{0, ctx_b.view}}, noise_b, collect_latents(latents));
        const auto want = video();
        const int64_t want_held = fresh.attention_stats().kv_bytes_held;

        CudaWanModel reused(m, CudaRollout::model_options(o, shape, false));
        CudaRollout(reused, o, shape).run({{0, ctx_a.view}}, noise_a, collect_latents(latents));
        EXPECT_NE(video(), want) << c.name;
        CudaRollout(reused, o, shape).run({{0, ctx_b.view}}, noise_b, collect_latents(latents));
        EXPECT_EQ(video(), want) << c.name;
        EXPECT_EQ(reused.attention_stats().kv_bytes_held, want_held) << c.name;
        EXPECT_EQ(reused.kv_bytes(), fresh.kv_bytes()) << c.name;
    }
#endif
}

TEST(SparseStepGpu, ForcingKvHoldsLessThanDense) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const WanModelConfig mc = config(256, 128, 64);
    const WanModel m = WanModel::from_weights(make_default_wan_weights(mc.dims, 5), mc);
    const RolloutShape shape{15, 26, 20};
    RolloutOptions dense;
    dense.frames_per_chunk = 3;
    dense.sink_size = 1;
    RolloutOptions fkv = dense;
    fkv.policy = cases()[3].policy;
    fkv.block_size = 64;
    CudaWanModel gd(m, CudaRollout::model_options(dense, shape, false));
    CudaWanModel gf(m, CudaRollout::model_options(fkv, shape, false));
    std::printf("[ measured ] K/V pools: dense %zu bytes, FORCING_KV %zu bytes\n", gd.kv_bytes(), gf.kv_bytes());
    EXPECT_LT(gf.kv_bytes(), gd.kv_bytes() / 2);
#endif
}

}  // namespace
}  // namespace lr

namespace lr {
namespace {

// The small ops of the step on the device against their CPU twins (kernels/sparse_step.h).
TEST(SparseStepGpu, OpsMatchTheCpu) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const int64_t L = 3, P = 9, B = 64, H = 4, D = 128, W = H * D, Q = 7;
    const size_t pool = static_cast<size_t>(P * B * W);
    std::vector<uint16_t> pools(2 * L * pool);
    for (size_t i = 0; i < pools.size(); ++i) pools[i] = static_cast<uint16_t>((i * 2654435761u) >> 16);
    std::vector<float> kmean = test::gaussian(L * P * W, 3), qmean = test::gaussian(L * H * Q * D, 4);
    const std::vector<int32_t> copy = {2, 1, 3, 8, 0, 3, 0, 7, 1, 0, 5, 8};
    const std::vector<int32_t> change = {0, 4, 3, 2, 8, -1, 1, 1, 0};
    const std::vector<int32_t> sal = {0, 4, 2, 8, 1, 0};
    DeviceBuffer dp = test::to_device(pools.data(), pools.size() * 2),
                 dk = test::to_device(kmean.data(), kmean.size() * 4),
                 dq = test::to_device(qmean.data(), qmean.size() * 4),
                 dc = test::to_device(copy.data(), copy.size() * 4),
                 de = test::to_device(change.data(), change.size() * 4),
                 ds = test::to_device(sal.data(), sal.size() * 4);
    DeviceBuffer dch(static_cast<size_t>(L * P * H) * 4), dout(static_cast<size_t>(3 * H) * 4);
    CopyHeadBlocksParams cp;
    cp.layer_stride = 2 * pool * 2;
    cp.v_offset = pool * 2;
    cp.pool_blocks = P;
    cp.block_size = B;
    cp.heads = H;
    cp.head_dim = D;
    cp.n = 3;
    CopyHeadBlocksParams gp = cp;
    gp.pools = dp.data();
    gp.kmean = static_cast<float*>(dk.data());
    gp.entries = static_cast<const int32_t*>(dc.data());
    launch_copy_head_blocks(gp, nullptr);
    cp.pools = pools.data();
    cp.kmean = kmean.data();
    cp.entries = copy.data();
    copy_head_blocks_cpu(cp);
    std::vector<uint16_t> got_pools(pools.size());
    std::vector<float> got_kmean(kmean.size());
    LR_CUDA_CHECK(cudaMemcpy(got_pools.data(), dp.data(), got_pools.size() * 2, cudaMemcpyDeviceToHost));
    LR_CUDA_CHECK(cudaMemcpy(got_kmean.data(), dk.data(), got_kmean.size() * 4, cudaMemcpyDeviceToHost));
    EXPECT_EQ(got_pools, pools);
    EXPECT_EQ(got_kmean, kmean);

    std::vector<float> want_change(static_cast<size_t>(L * P * H), 0.0f), got_change(want_change.size());
    LR_CUDA_CHECK(cudaMemset(dch.data(), 0, dch.size()));
    launch_block_change({static_cast<const float*>(dk.data()), static_cast<float*>(dch.data()), P, H, D,
                         static_cast<const int32_t*>(de.data()), 3},
                        nullptr);
    block_change_cpu({kmean.data(), want_change.data(), P, H, D, change.data(), 3});
    LR_CUDA_CHECK(cudaMemcpy(got_change.data(), dch.data(), got_change.size() * 4, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < got_change.size(); ++i) EXPECT_NEAR(got_change[i], want_change[i], 1e-5) << i;

    BlockSalienceParams sp;
    sp.max_q_blocks = Q;
    sp.num_q_blocks = Q;
    sp.pool_blocks = P;
    sp.heads = H;
    sp.head_dim = D;
    sp.n = 3;
    BlockSalienceParams gs = sp;
    gs.qmean = static_cast<const float*>(dq.data());
    gs.kmean = static_cast<const float*>(dk.data());
    gs.entries = static_cast<const int32_t*>(ds.data());
    gs.out = static_cast<float*>(dout.data());
    launch_block_salience(gs, nullptr);
    std::vector<float> want_sal(static_cast<size_t>(3 * H)), got_sal(want_sal.size());
    sp.qmean = qmean.data();
    sp.kmean = kmean.data();
    sp.entries = sal.data();
    sp.out = want_sal.data();
    block_salience_cpu(sp);
    LR_CUDA_CHECK(cudaMemcpy(got_sal.data(), dout.data(), got_sal.size() * 4, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < got_sal.size(); ++i)
        EXPECT_NEAR(got_sal[i], want_sal[i], 1e-3 * (1 + std::fabs(want_sal[i]))) << i;
#endif
}

}  // namespace
}  // namespace lr
