// Byte counters of the Communicator base, through a loopback communicator of a given size that moves no
// data (the counting rules are the base class's; the MPI transport is tested under mpirun in tests/dist).
#include <gtest/gtest.h>

#include <vector>

#include "dist/communicator.h"

namespace lr {
namespace {

class CountingOnly final : public Communicator {
  public:
    CountingOnly(int rank, int size) : rank_(rank), size_(size) {}
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void all_to_all(const void*, void*, size_t b) override { count_all_to_all(b); }
    void all_gather(const void*, void*, size_t b) override { count_all_gather(b); }
    void all_reduce_sum(float*, size_t n) override { count_all_reduce(n * sizeof(float)); }
    void all_reduce_sum(int64_t*, size_t n) override { count_all_reduce(n * sizeof(int64_t)); }
    void broadcast(void*, size_t b, int root) override { count_broadcast(b, root); }
    void send_recv(std::span<const SendSpec> s, std::span<const RecvSpec>) override { count_send_recv(s); }
    void barrier() override {}
    std::unique_ptr<Communicator> split(int, int) override { return nullptr; }

  private:
    int rank_, size_;
};

TEST(CommCounters, CountWhatLeavesTheRank) {
    CountingOnly c(1, 4);
    c.all_to_all(nullptr, nullptr, 100);
    EXPECT_EQ(c.bytes_sent(CommOp::kAllToAll), 300u);
    c.all_gather(nullptr, nullptr, 10);
    EXPECT_EQ(c.bytes_sent(CommOp::kAllGather), 30u);
    c.all_reduce_sum(static_cast<float*>(nullptr), 100);  // ring: 2 * 3/4 * 400 bytes
    EXPECT_EQ(c.bytes_sent(CommOp::kAllReduce), 600u);
    c.broadcast(nullptr, 50, 0);
    EXPECT_EQ(c.bytes_sent(CommOp::kBroadcast), 0u) << "not the root";
    c.broadcast(nullptr, 50, 1);
    EXPECT_EQ(c.bytes_sent(CommOp::kBroadcast), 150u);
    const std::vector<SendSpec> sends = {{0, nullptr, 7}, {1, nullptr, 1000}, {3, nullptr, 9}};
    c.send_recv(sends, {});
    EXPECT_EQ(c.bytes_sent(CommOp::kSendRecv), 16u) << "a send to itself is not traffic";
    EXPECT_EQ(c.bytes_sent_total(), 300u + 30 + 600 + 150 + 16);
    c.reset_byte_counters();
    EXPECT_EQ(c.bytes_sent_total(), 0u);
    EXPECT_STREQ(comm_op_name(CommOp::kSendRecv), "send_recv");
}

}  // namespace
}  // namespace lr
