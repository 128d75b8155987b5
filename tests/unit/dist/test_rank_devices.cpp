// Which ranks share a GPU (find_shared_gpus), the check behind parallel.transport=NCCL, and the record that
// carries a rank's device to the others (gather_rank_devices, here through a one-rank loopback communicator; the
// many-rank gather runs under mpirun in tests/dist).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/process.h"

namespace lr {
namespace {

RankDevice dit(int rank, const std::string& host, const std::string& gpu) { return RankDevice{rank, host, true, gpu}; }

TEST(SharedGpus, EachRankItsOwnGpu) {
    EXPECT_FALSE(find_shared_gpus({}).has_value());
    EXPECT_FALSE(find_shared_gpus({dit(0, "a", "GPU-0")}).has_value());
    EXPECT_FALSE(find_shared_gpus({dit(0, "a", "GPU-0"), dit(1, "a", "GPU-1")}).has_value());
    // The same id on two hosts is two GPUs (indices repeat across hosts when UUIDs are unknown).
    EXPECT_FALSE(find_shared_gpus({dit(0, "a", "0"), dit(1, "b", "0")}).has_value());
}

TEST(SharedGpus, TwoRanksOnOneGpu) {
    const auto s = find_shared_gpus({dit(0, "a", "GPU-0"), dit(1, "a", "GPU-0")});
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->host, "a");
    EXPECT_EQ(s->ranks, 2);
    EXPECT_EQ(s->gpus, 1);
}

TEST(SharedGpus, FirstHostInRankOrder) {
    // Host b is fine, host c has 3 ranks on 2 GPUs, host a 2 ranks on 1: c comes first in rank order.
    const std::vector<RankDevice> ranks = {dit(0, "b", "x"), dit(1, "c", "x"), dit(2, "c", "y"), dit(3, "c", "x"),
                                           dit(4, "a", "z"), dit(5, "a", "z"), dit(6, "b", "y")};
    const auto s = find_shared_gpus(ranks);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->host, "c");
    EXPECT_EQ(s->ranks, 3);
    EXPECT_EQ(s->gpus, 2);
}

TEST(SharedGpus, RanksNotTakingPartOrOnTheCpuAreLeftOut) {
    // A dedicated VAE rank on the DiT rank's GPU, and a rank on the CPU, share nothing that NCCL would use.
    RankDevice vae = dit(1, "a", "GPU-0");
    vae.takes_part = false;
    EXPECT_FALSE(find_shared_gpus({dit(0, "a", "GPU-0"), vae}).has_value());
    EXPECT_FALSE(find_shared_gpus({dit(0, "a", "GPU-0"), dit(1, "a", "")}).has_value());
}

// all_gather of one rank: the record comes back as it was sent.
class Loopback final : public Communicator {
  public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void all_to_all(const void* s, void* r, size_t b) override { std::memcpy(r, s, b); }
    void all_gather(const void* s, void* r, size_t b) override { std::memcpy(r, s, b); }
    void all_reduce_sum(float*, size_t) override {}
    void all_reduce_sum(int64_t*, size_t) override {}
    void broadcast(void*, size_t, int) override {}
    void send_recv(std::span<const SendSpec>, std::span<const RecvSpec>) override {}
    void barrier() override {}
    std::unique_ptr<Communicator> split(int, int) override { return nullptr; }
};

TEST(GatherRankDevices, RecordRoundTrip) {
    Loopback world;
    const RankDevice mine{0, "node-17.cluster", false, "GPU-0a1b2c3d-0000-1111-2222-333344445555"};
    const std::vector<RankDevice> all = gather_rank_devices(world, mine);
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].rank, 0);
    EXPECT_EQ(all[0].host, mine.host);
    EXPECT_FALSE(all[0].takes_part);
    EXPECT_EQ(all[0].gpu, mine.gpu);
    // Too long for the record: cut, never overrun.
    const std::string long_host(400, 'h');
    const std::vector<RankDevice> cut = gather_rank_devices(world, RankDevice{0, long_host, true, ""});
    EXPECT_EQ(cut[0].host, long_host.substr(0, 255));
    EXPECT_TRUE(cut[0].takes_part);
    EXPECT_EQ(cut[0].gpu, "");
}

}  // namespace
}  // namespace lr
