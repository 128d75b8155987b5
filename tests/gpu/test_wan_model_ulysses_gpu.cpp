// Ulysses head parallelism on the CUDA DiT (the sharded attention step of dist/sharded_attention_step_cuda.h behind
// the model's seam) against the unsharded CUDA forward, in one process on one GPU: the U ranks are threads, each
// with its own CudaWanModel and ShardedCudaAttentionStep (its token share, its heads of the paged KV cache),
// joined by an in-process communicator in either mode the step supports:
//   host:   host buffers, operations complete on return (as MpiCommunicator): the step stages through pinned
//           host memory;
//   device: device buffers on the communicator's own stream (as NcclCommunicator): the step hands over device
//           memory and orders the model's stream against the communicator's with events.
// U = 1 runs the exchange path with one rank (every copy, the all-to-alls and the all-gather, each a copy to
// itself) and must give the unsharded flow exactly (the same GEMM shapes and kernels: bounded at 1e-6).
// U = 2 splits the tokens (GEMMs of other row counts) and the heads: bf16 accuracy, relative error < 1e-2.
// Forwards run over a filled cache with a window, a sink and eviction, in both RoPE modes. Every measured error
// is printed ("[ measured ]"). The NCCL communicator itself is checked by tests/dist (dist_ulysses_gpu_test).
#include <gtest/gtest.h>

#include <barrier>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dist/communicator.h"
#include "dist/sharded_attention_step_cuda.h"
#include "gpu_test_util.h"
#include "runtime/core/check.h"
#include "runtime/model/wan_model.h"
#include "runtime/model/wan_model_cuda.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

#ifdef LONGROLL_HAS_CUDA

using test::gaussian;
using test::rel_error;

// What the ranks of a ThreadCommunicator share: each publishes its send buffer, then reads the others'.
struct ThreadGroup {
    explicit ThreadGroup(int n) : size(n), sync(n), sends(static_cast<size_t>(n), nullptr) {}
    int size;
    std::barrier<> sync;
    std::vector<const void*> sends;
};

// A communicator of threads in one process (all_to_all and all_gather only: what the model uses). In device mode
// the buffers are device memory and the copies run on the communicator's stream; the stream is drained before
// the send buffer is published (it waits for the model's pack) and after the copies (no rank's send buffer is
// reused before every reader is done), so that only the event plumbing of the model is exercised.
class ThreadCommunicator final : public Communicator {
  public:
    ThreadCommunicator(ThreadGroup& g, int rank, bool device) : g_(g), rank_(rank), device_(device) {
        if (device_) LR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    }
    ~ThreadCommunicator() override {
        if (stream_) cudaStreamDestroy(stream_);
    }
    int rank() const override { return rank_; }
    int size() const override { return g_.size; }
    bool device_buffers() const override { return device_; }
    cudaStream_t stream() const { return stream_; }

    void all_to_all(const void* send, void* recv, size_t bytes) override {
        exchange(send, [&](int p) {
            copy(static_cast<char*>(recv) + p * bytes, static_cast<const char*>(g_.sends[p]) + rank_ * bytes, bytes);
        });
        count_all_to_all(bytes);
    }
    void all_gather(const void* send, void* recv, size_t bytes) override {
        exchange(send, [&](int p) { copy(static_cast<char*>(recv) + p * bytes, g_.sends[p], bytes); });
        count_all_gather(bytes);
    }
    void all_reduce_sum(float*, size_t) override { unused("all_reduce_sum"); }
    void all_reduce_sum(int64_t*, size_t) override { unused("all_reduce_sum"); }
    void broadcast(void*, size_t, int) override { unused("broadcast"); }
    void send_recv(std::span<const SendSpec>, std::span<const RecvSpec>) override { unused("send_recv"); }
    void barrier() override { g_.sync.arrive_and_wait(); }
    std::unique_ptr<Communicator> split(int, int) override {
        unused("split");
        return nullptr;
    }

  private:
    template <typename Fn>
    void exchange(const void* send, Fn&& from) {
        if (device_) LR_CUDA_CHECK(cudaStreamSynchronize(stream_));
        g_.sends[static_cast<size_t>(rank_)] = send;
        g_.sync.arrive_and_wait();
        for (int p = 0; p < g_.size; ++p) from(p);
        if (device_) LR_CUDA_CHECK(cudaStreamSynchronize(stream_));
        g_.sync.arrive_and_wait();
    }
    void copy(void* dst, const void* src, size_t bytes) {
        if (device_) {
            LR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
        } else {
            std::memcpy(dst, src, bytes);
        }
    }
    [[noreturn]] static void unused(const char* op) {
        LR_ASSERT(false, "ThreadCommunicator::", op, " is not implemented");
        __builtin_unreachable();
    }

    ThreadGroup& g_;
    int rank_;
    bool device_;
    cudaStream_t stream_ = nullptr;
};

WanModelConfig small_config(int64_t dim, int64_t heads, int64_t text_dim, int64_t text_len) {
    WanModelConfig c;
    c.dims.dim = dim;
    c.dims.ffn_dim = 2 * dim;
    c.dims.num_heads = heads;
    c.dims.num_layers = 2;
    c.dims.text_dim = text_dim;
    c.dims.freq_dim = 256;
    c.text_len = text_len;
    return c;
}

struct Case {
    std::string name;
    WanModelConfig cfg;
    int64_t h, w;  // latent
    RopePositions rope;
};

// tiny: the embedded default's shape (2 heads of 32: the simple attention kernel; 40 tokens per frame, so a chunk
// of 3 frames splits into shards of 60 tokens); hd128: 2 heads of 128 (the fast kernel), 130 tokens per frame
// (two KV blocks, the second short; 195-token shards).
std::vector<Case> cases() {
    return {{"tiny 8x20 absolute", small_config(64, 2, 64, 16), 8, 20, RopePositions::kAbsolute},
            {"tiny 8x20 relative", small_config(64, 2, 64, 16), 8, 20, RopePositions::kWindowRelative},
            {"hd128 26x20 relative", small_config(256, 2, 128, 200), 26, 20, RopePositions::kWindowRelative}};
}

constexpr int64_t kFrames = 3;  // per forward
constexpr int64_t kWindow = 7;  // with a sink of 1: the forwards at frames 6 and 9 evict
constexpr int64_t kSink = 1;
const int64_t kStarts[] = {0, 3, 3, 6, 9};  // the second forward at 3 rewrites the chunk in place

CudaModelOptions options(const Case& c) {
    CudaModelOptions o;
    o.height = c.h;
    o.width = c.w;
    o.max_forward_frames = kFrames;
    o.window_frames = kWindow;
    o.sink_frames = kSink;
    o.max_frames = kWindow;
    o.rope = c.rope;
    return o;
}

// The flows of the forwards of kStarts (x and t per forward), on `g` with its own prompt.
std::vector<std::vector<float>> run_forwards(CudaWanModel& g, const HostTensor& ctx,
                                             const std::vector<std::vector<float>>& xs) {
    const WanDims& d = g.config().dims;
    const CudaPrompt prompt = g.encode_prompt(ctx.view);
    const size_t numel = xs[0].size();
    const size_t out_n = static_cast<size_t>(kFrames * d.out_dim * g.options().height * g.options().width);
    DeviceBuffer dx(numel * sizeof(float)), dout(out_n * sizeof(float));
    std::vector<std::vector<float>> flows;
    for (size_t i = 0; i < std::size(kStarts); ++i) {
        const std::vector<float> t(kFrames, 1000.0f - 150.0f * static_cast<float>(i));
        LR_CUDA_CHECK(
            cudaMemcpyAsync(dx.data(), xs[i].data(), numel * sizeof(float), cudaMemcpyHostToDevice, g.stream()));
        CudaForwardArgs a;
        a.x = static_cast<const float*>(dx.data());
        a.t = t.data();
        a.frames = kFrames;
        a.start_frame = kStarts[i];
        a.prompt = &prompt;
        a.out = static_cast<float*>(dout.data());
        g.forward(a);
        LR_CUDA_CHECK(cudaStreamSynchronize(g.stream()));
        flows.push_back(test::to_host<float>(dout, out_n));
    }
    return flows;
}

// U ranks on threads, each returning its flows; every rank must return the whole chunk.
std::vector<std::vector<std::vector<float>>> run_sharded(const WanModel& m, const Case& c, int U, bool device,
                                                         const HostTensor& ctx,
                                                         const std::vector<std::vector<float>>& xs) {
    ThreadGroup group(U);
    std::vector<std::unique_ptr<ThreadCommunicator>> comms;
    for (int r = 0; r < U; ++r) comms.push_back(std::make_unique<ThreadCommunicator>(group, r, device));
    std::vector<std::vector<std::vector<float>>> flows(static_cast<size_t>(U));
    std::vector<std::string> errors(static_cast<size_t>(U));
    std::vector<std::thread> threads;
    for (int r = 0; r < U; ++r) {
        threads.emplace_back([&, r] {
            try {
                LR_CUDA_CHECK(cudaSetDevice(0));
                CudaModelOptions o = options(c);
                CudaSequenceMesh mesh;
                mesh.mesh = SequenceMesh{r, U, comms[static_cast<size_t>(r)].get(), 0, 1, nullptr};
                mesh.ulysses_stream = comms[static_cast<size_t>(r)]->stream();
                ShardedCudaAttentionStep step(attention_step_config(m.config(), o), mesh);
                o.step = &step;
                CudaWanModel g(m, o);
                // The rank's KV cache holds its heads only.
                EXPECT_EQ(step.inner().cache().config().width, m.dim() / U) << c.name;
                flows[static_cast<size_t>(r)] = run_forwards(g, ctx, xs);
            } catch (const std::exception& e) {
                errors[static_cast<size_t>(r)] = e.what();
            }
        });
    }
    for (std::thread& t : threads) t.join();
    for (int r = 0; r < U; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << c.name << " rank " << r;
    return flows;
}

#endif  // LONGROLL_HAS_CUDA

TEST(WanModelUlyssesGpu, ShardedForwardsMatchTheUnshardedModel) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    for (const Case& c : cases()) {
        const WanModel m = WanModel::from_weights(make_default_wan_weights(c.cfg.dims, 5), c.cfg);
        HostTensor ctx(DType::kF32, Shape{c.cfg.text_len - 3, c.cfg.dims.text_dim});
        const auto cv = gaussian(ctx.view.numel(), 1);
        std::copy(cv.begin(), cv.end(), ctx.as<float>());
        std::vector<std::vector<float>> xs;
        for (size_t i = 0; i < std::size(kStarts); ++i)
            xs.push_back(gaussian(kFrames * c.cfg.dims.in_dim * c.h * c.w, static_cast<uint32_t>(10 + i)));

        CudaWanModel plain(m, options(c));
        const auto want = run_forwards(plain, ctx, xs);
        for (const int U : {1, 2}) {
            for (const bool device : {false, true}) {
                const std::string name = str_cat(c.name, ", U = ", U, device ? ", device buffers" : ", host-staged");
                const auto got = run_sharded(m, c, U, device, ctx, xs);
                const double bound = U == 1 ? 1e-6 : 1e-2;
                double worst = 0.0;
                for (int r = 0; r < U; ++r) {
                    ASSERT_EQ(got[static_cast<size_t>(r)].size(), want.size()) << name << " rank " << r;
                    for (size_t i = 0; i < want.size(); ++i) {
                        const auto& g = got[static_cast<size_t>(r)][i];
                        ASSERT_EQ(g.size(), want[i].size());
                        const double e = rel_error(g, want[i], want[i].size());
                        worst = std::max(worst, e);
                        EXPECT_LT(e, bound) << name << " rank " << r << " forward " << i;
                    }
                }
                // Every rank returns the same flow (the all-gathered head).
                for (int r = 1; r < U; ++r)
                    for (size_t i = 0; i < want.size(); ++i)
                        EXPECT_EQ(got[static_cast<size_t>(r)][i], got[0][i]) << name << " rank " << r;
                std::printf("[ measured ] %s: worst relative error vs unsharded %.3e (bound %.0e)\n", name.c_str(),
                            worst, bound);
                std::fflush(stdout);
            }
        }
    }
#endif
}

TEST(WanModelUlyssesGpu, RefusesBadShards) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const WanModelConfig cfg = small_config(64, 2, 64, 16);
    const WanModel m = WanModel::from_weights(make_default_wan_weights(cfg.dims, 5), cfg);
    const Case c{"tiny", cfg, 8, 20, RopePositions::kAbsolute};
    ThreadGroup g2(2), g3(3);
    ThreadCommunicator two(g2, 0, false), three(g3, 0, false), dev(g2, 0, true);
    const CudaAttentionStepConfig sc = attention_step_config(cfg, options(c));
    const auto make = [&](int rank, int size, Communicator* comm, cudaStream_t stream) {
        CudaSequenceMesh mesh;
        mesh.mesh = SequenceMesh{rank, size, comm, 0, 1, nullptr};
        mesh.ulysses_stream = stream;
        return ShardedCudaAttentionStep(sc, mesh);
    };
    EXPECT_THROW((void)make(0, 3, &three, nullptr), InputError);   // 3 does not divide 2 heads
    EXPECT_THROW((void)make(0, 2, nullptr, nullptr), InputError);  // no communicator
    EXPECT_THROW((void)make(1, 2, &two, nullptr), InputError);     // the communicator says rank 0
    EXPECT_THROW((void)make(0, 2, &dev, nullptr), InputError);     // device buffers without their stream
#endif
}

}  // namespace
}  // namespace lr
