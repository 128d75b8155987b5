// The CUDA model's spatial-sharding plan (runtime/model/wan_model_cuda_plan.h) is plain arithmetic: checked here on
// the CPU, so that CI catches a wrong block ownership, scratch layout or memory plan without a GPU.
#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <set>
#include <string>

#include "dist/communicator.h"
#include "runtime/core/check.h"
#include "runtime/model/wan_model_cuda.h"
#include "runtime/model/wan_model_cuda_plan.h"

namespace lr {
namespace {

using wan_cuda::paged_config;
using wan_cuda::plan_bytes;
using wan_cuda::spatial_layout;
using wan_cuda::SpatialLayout;

// A communicator that only knows its rank and size (the plan never calls an operation).
class ShapeOnlyComm final : public Communicator {
  public:
    ShapeOnlyComm(int rank, int size) : rank_(rank), size_(size) {}
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void all_to_all(const void*, void*, size_t) override { unused(); }
    void all_gather(const void*, void*, size_t) override { unused(); }
    void all_reduce_sum(float*, size_t) override { unused(); }
    void all_reduce_sum(int64_t*, size_t) override { unused(); }
    void broadcast(void*, size_t, int) override { unused(); }
    void send_recv(std::span<const SendSpec>, std::span<const RecvSpec>) override { unused(); }
    void barrier() override { unused(); }
    std::unique_ptr<Communicator> split(int, int) override {
        unused();
        return nullptr;
    }

  private:
    [[noreturn]] static void unused() {
        LR_ASSERT(false, "ShapeOnlyComm: the plan called a communicator operation");
        __builtin_unreachable();
    }
    int rank_, size_;
};

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

CudaModelOptions options(int64_t height, int64_t width, Communicator* comm, int rank, int size) {
    CudaModelOptions o;
    o.height = height;
    o.width = width;
    o.max_forward_frames = 3;
    o.window_frames = 21;
    o.max_frames = 21;
    o.kv_block_size = 128;
    if (comm) o.spatial = SpatialShard{rank, size, comm, 128};
    return o;
}

std::string input_error(const std::function<void()>& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "(no InputError)";
}

// 480p: 1560 tokens per frame = 12 blocks of 128 and one of 24. With 2 ranks, rank 0 owns the 7 even blocks (the
// short one last), rank 1 the 6 odd ones; with 3 ranks 5 + 4 + 4.
TEST(CudaPlanSpatial, BlockOwnershipAt480p) {
    const WanModelConfig cfg = wan_1p3b();
    ShapeOnlyComm c0(0, 2);
    SpatialLayout l = spatial_layout(cfg, options(60, 104, &c0, 0, 2), 21);
    EXPECT_TRUE(l.on);
    EXPECT_EQ(l.tpf, 1560);
    EXPECT_EQ(l.nb, 13);
    EXPECT_EQ(l.nbl, (std::vector<int64_t>{7, 6}));
    EXPECT_EQ(l.rpf, (std::vector<int64_t>{6 * 128 + 24, 6 * 128}));
    EXPECT_EQ(l.max_rpf, 792);
    EXPECT_EQ(l.nbmax, 7);
    ShapeOnlyComm c2(2, 3);
    l = spatial_layout(cfg, options(60, 104, &c2, 2, 3), 21);
    EXPECT_EQ(l.nbl, (std::vector<int64_t>{5, 4, 4}));
    EXPECT_EQ(std::accumulate(l.rpf.begin(), l.rpf.end(), int64_t{0}), 1560);
    EXPECT_EQ(l.my_rpf(), 4 * 128);
}

// Every (slot, block) of the window lands on its own scratch block, in its owner's segment, slot j of owner r at
// j * nbl[r] + b / S: a rank's pages of slots [0, k) are one contiguous range of its segment (what it sends).
TEST(CudaPlanSpatial, ScratchBlocksAreDistinctAndContiguousPerOwner) {
    const WanModelConfig cfg = wan_1p3b();
    for (const int S : {2, 3, 5}) {
        ShapeOnlyComm c(0, S);
        const SpatialLayout l = spatial_layout(cfg, options(136, 240, &c, 0, S), 21);  // 1088p: 8160 tokens
        std::set<int64_t> seen;
        for (int64_t j = 0; j < l.slots; ++j) {
            for (int64_t b = 0; b < l.nb; ++b) {
                const int64_t blk = l.scratch_block(j, b), r = b % S;
                EXPECT_TRUE(seen.insert(blk).second) << "S " << S << ": slot " << j << " block " << b << " reused";
                EXPECT_GE(blk, l.seg_base(r));
                EXPECT_LT(blk, l.seg_base(r) + l.slots * l.nbl[static_cast<size_t>(r)]);
                EXPECT_EQ(blk - l.seg_base(r), j * l.nbl[static_cast<size_t>(r)] + b / S);
            }
        }
        EXPECT_LE(static_cast<int64_t>(seen.size()), l.scratch_blocks());
        EXPECT_EQ(static_cast<int64_t>(seen.size()), l.slots * l.nb);
    }
}

// The rank's paged cache holds its tokens of each frame (so its KV memory is about 1/S of the whole), and re-rotates
// keys in the scratch pool, not in a pool of its own.
TEST(CudaPlanSpatial, CacheAndMemoryPlanOfASpatialRank) {
    const WanModelConfig cfg = wan_1p3b();
    CudaModelOptions whole = options(60, 104, nullptr, 0, 1);
    whole.rope = RopePositions::kWindowRelative;
    ShapeOnlyComm c1(1, 2);
    CudaModelOptions half = options(60, 104, &c1, 1, 2);
    half.rope = RopePositions::kWindowRelative;
    EXPECT_EQ(paged_config(cfg, whole).tokens_per_frame, 1560);
    EXPECT_TRUE(paged_config(cfg, whole).rotated_keys);
    EXPECT_EQ(paged_config(cfg, half).tokens_per_frame, 768);
    EXPECT_FALSE(paged_config(cfg, half).rotated_keys);
    const auto pw = plan_bytes(cfg, whole), ph = plan_bytes(cfg, half);
    EXPECT_LT(ph.kv_pools, pw.kv_pools * 6 / 10);
    EXPECT_GT(ph.kv_pools, pw.kv_pools * 4 / 10);
    // The scratch pools (one layer's window, K, V and the rotated K) are in the activations.
    EXPECT_GT(ph.activations, pw.activations);
}

TEST(CudaPlanSpatial, BadLayoutsAreInputErrors) {
    const WanModelConfig cfg = wan_1p3b();
    ShapeOnlyComm c(0, 2);
    CudaModelOptions o = options(60, 104, &c, 0, 2);
    o.spatial.block_size = 64;
    EXPECT_NE(input_error([&] { plan_bytes(cfg, o); }).find("must be the KV cache's blocks"), std::string::npos);
    ShapeOnlyComm c14(0, 14);
    o = options(60, 104, &c14, 0, 14);
    EXPECT_NE(input_error([&] { plan_bytes(cfg, o); }).find("14 spatial ranks but a frame of 1560 tokens has only 13"),
              std::string::npos);
    o = options(60, 104, &c, 1, 2);  // the communicator says rank 0
    EXPECT_NE(input_error([&] { plan_bytes(cfg, o); }).find("needs a communicator of that size with this rank"),
              std::string::npos);
    o = options(60, 104, nullptr, 0, 1);
    o.spatial = SpatialShard{0, 2, nullptr, 128};
    EXPECT_NE(input_error([&] { plan_bytes(cfg, o); }).find("needs a communicator"), std::string::npos);
}

}  // namespace
}  // namespace lr
