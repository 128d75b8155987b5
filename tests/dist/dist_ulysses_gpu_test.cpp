// Ulysses head parallelism of the CUDA DiT under mpirun, all ranks on the GPUs they find (one GPU may hold every
// rank): the forwards of a window with a sink and eviction (window-relative RoPE) through
//   - the MPI communicator of the world (U = world size; host buffers: the model stages through pinned memory),
//   - with one rank and NCCL built in: an NcclCommunicator of that one rank (device buffers on its stream),
// against the unsharded CUDA model on the same rank. U = 1 must match exactly (bound 1e-6: the same GEMMs and
// kernels, every exchange a copy to itself); U > 1 to bf16 accuracy (1e-2). Every rank must return the whole
// chunk. Exit 77 (skipped) when a rank sees no GPU. Prints each measured error ("[ measured ]").
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
#include "dist_test_harness.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"
#include "runtime/model/wan_model.h"
#include "runtime/model/wan_model_cuda.h"
#ifdef LONGROLL_HAS_NCCL
#include "dist/nccl_communicator.h"
#endif

namespace lr {
namespace {

using disttest::Errors;

constexpr int64_t kFrames = 3;
const int64_t kStarts[] = {0, 3, 3, 6, 9};  // window 7, sink 1: the forwards at 6 and 9 evict

WanModelConfig config() {  // 4 heads of 32: U = 1, 2, 4 split them; 40 tokens per frame of an 8x20 latent
    WanModelConfig c;
    c.dims.dim = 128;
    c.dims.ffn_dim = 256;
    c.dims.num_heads = 4;
    c.dims.num_layers = 2;
    c.dims.text_dim = 64;
    c.dims.freq_dim = 256;
    c.text_len = 16;
    return c;
}

std::vector<float> gaussian(int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
}

double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        den += static_cast<double>(b[i]) * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

CudaModelOptions options() {
    CudaModelOptions o;
    o.height = 8;
    o.width = 20;
    o.max_forward_frames = kFrames;
    o.window_frames = 7;
    o.sink_frames = 1;
    o.max_frames = 7;
    o.rope = RopePositions::kWindowRelative;
    return o;
}

// Mean wall time of the forwards after the first (uploads and sync included), for the notes.
double g_forward_ms = 0;

std::vector<std::vector<float>> run_forwards(const WanModel& m, const CudaModelOptions& o, const HostTensor& ctx) {
    CudaWanModel g(m, o);
    const CudaPrompt prompt = g.encode_prompt(ctx.view);
    const WanDims& d = m.config().dims;
    const size_t numel = static_cast<size_t>(kFrames * d.in_dim * o.height * o.width);
    const size_t out_n = static_cast<size_t>(kFrames * d.out_dim * o.height * o.width);
    DeviceBuffer dx(numel * sizeof(float)), dout(out_n * sizeof(float));
    std::vector<std::vector<float>> flows;
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
        g.forward(a);
        std::vector<float> out(out_n);
        LR_CUDA_CHECK(cudaStreamSynchronize(g.stream()));
        LR_CUDA_CHECK(cudaMemcpy(out.data(), dout.data(), out_n * sizeof(float), cudaMemcpyDeviceToHost));
        flows.push_back(std::move(out));
    }
    g_forward_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_first).count() /
                   static_cast<double>(std::size(kStarts) - 1);
    return flows;
}

void compare(const std::string& what, const std::vector<std::vector<float>>& got,
             const std::vector<std::vector<float>>& want, double bound, int rank, Errors& e) {
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, rel_error(got[i], want[i]));
    std::printf("[ measured ] rank %d, %s: worst relative error vs unsharded %.3e (bound %.0e); %.2f ms per forward\n",
                rank, what.c_str(), worst, bound, g_forward_ms);
    std::fflush(stdout);
    e.expect(worst < bound, what + ": relative error " + std::to_string(worst));
}

int run(const MpiSession& mpi) {
    auto world = MpiCommunicator::world();
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
    int64_t without_gpu = devices > 0 ? 0 : 1;
    world->all_reduce_sum(&without_gpu, 1);
    if (without_gpu > 0) {
        if (world->rank() == 0)
            std::printf("dist_ulysses_gpu_test: %" PRId64 " ranks see no GPU: skipping\n", without_gpu);
        return 77;
    }
    const int device = pick_cuda_device(mpi.info(), devices);
    LR_CUDA_CHECK(cudaSetDevice(device));
    const WanModelConfig cfg = config();
    const WanModel m = WanModel::from_weights(make_default_wan_weights(cfg.dims, 5), cfg);
    HostTensor ctx(DType::kF32, Shape{cfg.text_len - 3, cfg.dims.text_dim});
    const auto cv = gaussian(ctx.view.numel(), 1);
    std::copy(cv.begin(), cv.end(), ctx.as<float>());
    Errors e(world->rank());
    const auto want = run_forwards(m, options(), ctx);
    if (world->rank() == 0) std::printf("[ measured ] unsharded: %.2f ms per forward\n", g_forward_ms);

    const int U = world->size();
    CudaModelOptions o = options();
    o.shard = AttentionShard{world->rank(), U, world.get()};
    const auto got = run_forwards(m, o, ctx);
    compare(str_cat("MPI, U = ", U, " (host-staged)"), got, want, U == 1 ? 1e-6 : 1e-2, world->rank(), e);
    // Every rank holds the whole chunk: the same bytes as rank 0's.
    for (size_t i = 0; i < got.size(); ++i) {
        std::vector<float> first = got[i];
        world->broadcast(first.data(), first.size() * sizeof(float), 0);
        e.expect(first == got[i], str_cat("forward ", i, ": rank ", world->rank(), " differs from rank 0"));
    }

#ifdef LONGROLL_HAS_NCCL
    if (U == 1) {
        auto nccl = NcclCommunicator::create(*world, device);
        CudaModelOptions no = options();
        no.shard = AttentionShard{0, 1, nccl.get()};
        no.comm_stream = nccl->stream();
        const auto via_nccl = run_forwards(m, no, ctx);
        compare("NCCL, U = 1 (device buffers)", via_nccl, want, 1e-6, world->rank(), e);
        e.expect(nccl->bytes_sent(CommOp::kAllToAll) == 0, "NCCL of one rank sends nothing to other ranks");
    }
#endif
    const int64_t total = disttest::agree(*world, e);
    if (world->rank() == 0)
        std::printf("dist_ulysses_gpu_test: %d ranks on %d GPU(s), %" PRId64 " errors: %s\n", world->size(), devices,
                    total, total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi); });
}
