// The forward sequence the sharded-CUDA-model tests run (dist_ulysses_gpu_test, dist_spatial_gpu_test): a window of
// 7 frames with a sink of 1, forwards of 3 frames at frames 0, 3 (again: the clean pass's rewrite), 6 and 9 (both
// evict), on seeded Gaussian latents and falling timesteps, every flow copied back; plus the relative L2 error
// they compare. A model may be handed an attention step (a rank's sharded one: CudaModelOptions::step).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/process.h"
#include "dist_test_harness.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"
#include "runtime/model/wan_model.h"
#include "runtime/model/wan_model_cuda.h"

namespace lr::disttest {

constexpr int64_t kFrames = 3;
inline constexpr int64_t kStarts[] = {0, 3, 3, 6, 9};

// Window, sink and forward size of the sequence; the caller sets the latent, RoPE, block size and sharding.
inline CudaModelOptions forward_options(int64_t height, int64_t width, RopePositions rope) {
    CudaModelOptions o;
    o.height = height;
    o.width = width;
    o.max_forward_frames = kFrames;
    o.window_frames = 7;
    o.sink_frames = 1;
    o.max_frames = 7;
    o.rope = rope;
    return o;
}

// The policies the sharded tests run (a window of 7 frames, sink 1, chunks of 3: the budgets fit it), each with
// the RoPE mode it runs in on the GPU and whether it scores blocks (then the mean queries are exchanged).
struct PolicyCase {
    const char* name;
    BlockPolicyConfig policy;
    RopePositions rope;
    bool scores;
    bool dense_table() const {
        return policy.kind == BlockPolicyKind::kDense || policy.kind == BlockPolicyKind::kSinkWindow;
    }
};

inline std::vector<PolicyCase> policy_cases(int64_t layers, int64_t heads) {
    BlockPolicyConfig dense, sink;
    sink.kind = BlockPolicyKind::kSinkWindow;
    BlockPolicyConfig sf;
    sf.kind = BlockPolicyKind::kSparseForcing;
    sf.sf_topk_blocks = 3;
    sf.persistent_blocks = 2;
    BlockPolicyConfig lf;
    lf.kind = BlockPolicyKind::kLightForcing;
    lf.near_frames = 1;
    lf.topk_frames = 1;
    lf.lf_topk_blocks = 3;
    BlockPolicyConfig fkv;
    fkv.kind = BlockPolicyKind::kForcingKv;
    fkv.recent_frames = 1;
    fkv.dynamic_keep_ratio = 0.5;
    for (int64_t i = 0; i < layers * heads; ++i) fkv.static_head.push_back(i % 3 == 0 ? 1 : 0);
    BlockPolicyConfig lvsa;
    lvsa.kind = BlockPolicyKind::kLvsa;
    lvsa.lvsa_window_frames = 1;
    lvsa.anchor_interval = 3;
    return {{"DENSE absolute", dense, RopePositions::kAbsolute, false},
            {"DENSE relative", dense, RopePositions::kWindowRelative, false},
            {"SINK_WINDOW", sink, RopePositions::kAbsolute, false},
            {"SPARSE_FORCING", sf, RopePositions::kAbsolute, true},
            {"SPARSE_FORCING relative", sf, RopePositions::kWindowRelative, true},
            {"LIGHT_FORCING", lf, RopePositions::kAbsolute, true},
            {"FORCING_KV", fkv, RopePositions::kAbsolute, true},
            {"LVSA", lvsa, RopePositions::kAbsolute, false}};
}

// The run is 12 frames (the forwards reach frame 12); Forcing-KV sets its window itself (no local_attn_size).
constexpr int64_t kRunFrames = 12;
inline void set_policy(CudaModelOptions& o, const PolicyCase& pc) {
    o.policy = pc.policy;
    o.rope = pc.rope;
    o.run_frames = kRunFrames;
    if (pc.policy.kind == BlockPolicyKind::kForcingKv) {
        o.window_frames = -1;
        o.max_frames = kRunFrames;
    }
}

inline std::vector<float> gaussian(int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
}

inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        den += static_cast<double>(b[i]) * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

struct ForwardRun {
    std::vector<std::vector<float>> flows;  // each forward's whole-chunk flow
    std::vector<int64_t> slot_end;          // key slots of each forward
    double ms = 0;                          // mean wall time of a forward after the first (uploads and sync included)
};

inline ForwardRun run_forwards(const WanModel& m, const CudaModelOptions& o, const HostTensor& ctx) {
    CudaWanModel g(m, o);
    const CudaPrompt prompt = g.encode_prompt(ctx.view);
    const WanDims& d = m.config().dims;
    const size_t numel = static_cast<size_t>(kFrames * d.in_dim * o.height * o.width);
    const size_t out_n = static_cast<size_t>(kFrames * d.out_dim * o.height * o.width);
    DeviceBuffer dx(numel * sizeof(float)), dout(out_n * sizeof(float));
    ForwardRun run;
    auto t_first = std::chrono::steady_clock::now();
    for (size_t i = 0; i < std::size(kStarts); ++i) {
        if (i == 1) t_first = std::chrono::steady_clock::now();
        const auto x = gaussian(static_cast<int64_t>(numel), static_cast<uint32_t>(10 + i));
        const std::vector<float> t(kFrames, 1000.0f - 150.0f * static_cast<float>(i));
        LR_CUDA_CHECK(cudaMemcpyAsync(dx.data(), x.data(), numel * sizeof(float), cudaMemcpyHostToDevice, g.stream()));
        CudaForwardArgs a;
        a.x = static_cast<const float*>(dx.data());
        a.t = t.data();
        a.frames = kFrames;
        a.start_frame = kStarts[i];
        a.prompt = &prompt;
        a.out = static_cast<float*>(dout.data());
        a.chunk = kStarts[i] / kFrames;
        a.step = i == 2 ? a.num_steps : 0;  // the rewrite is a chunk's clean pass
        g.forward(a);
        std::vector<float> out(out_n);
        LR_CUDA_CHECK(cudaStreamSynchronize(g.stream()));
        LR_CUDA_CHECK(cudaMemcpy(out.data(), dout.data(), out_n * sizeof(float), cudaMemcpyDeviceToHost));
        run.flows.push_back(std::move(out));
        run.slot_end.push_back(g.attention_step().cached_frames());  // the write's slot_end
    }
    run.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_first).count() /
             static_cast<double>(std::size(kStarts) - 1);
    return run;
}

// The worst relative error of `got`'s flows against `want`'s.
inline double worst_error(const ForwardRun& got, const ForwardRun& want) {
    double worst = 0;
    for (size_t i = 0; i < want.flows.size(); ++i) worst = std::max(worst, rel_error(got.flows[i], want.flows[i]));
    return worst;
}

// This rank's GPU (made current), or -1 on every rank when any rank sees none (the test then exits 77).
inline int gpu_or_skip(const ProcessInfo& info, Communicator& world, const char* test) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
    int64_t without_gpu = devices > 0 ? 0 : 1;
    world.all_reduce_sum(&without_gpu, 1);
    if (without_gpu > 0) {
        if (world.rank() == 0) std::printf("%s: %" PRId64 " ranks see no GPU: skipping\n", test, without_gpu);
        return -1;
    }
    const int device = pick_cuda_device(info, devices);
    LR_CUDA_CHECK(cudaSetDevice(device));
    return device;
}

// A prompt embedding [text_len - 3, text_dim] (shorter than text_len: the padding path runs).
inline HostTensor test_context(const WanModelConfig& cfg) {
    HostTensor ctx(DType::kF32, Shape{cfg.text_len - 3, cfg.dims.text_dim});
    const auto v = gaussian(ctx.view.numel(), 1);
    std::copy(v.begin(), v.end(), ctx.as<float>());
    return ctx;
}

// Every rank holds the whole chunk: each forward's flow has rank 0's bytes.
inline void expect_same_on_every_rank(Communicator& world, const ForwardRun& run, const std::string& what, Errors& e) {
    for (size_t i = 0; i < run.flows.size(); ++i) {
        std::vector<float> first = run.flows[i];
        world.broadcast(first.data(), first.size() * sizeof(float), 0);
        e.expect(first == run.flows[i],
                 str_cat(what, ", forward ", i, ": rank ", world.rank(), " differs from rank 0"));
    }
}

}  // namespace lr::disttest
