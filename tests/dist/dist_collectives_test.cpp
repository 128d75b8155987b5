// Every MpiCommunicator operation against its definition on random data, on the world and on split
// sub-communicators. Run under mpirun with any N >= 1; exit 0 when every rank passed, 1 otherwise.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist_test_harness.h"

namespace lr {
namespace {

using disttest::Errors;

// Random data that every rank can regenerate for any other rank: seeded by (test, rank, salt).
std::vector<float> random_floats(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    return v;
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> v(n);
    for (uint8_t& x : v) x = static_cast<uint8_t>(rng());
    return v;
}

uint64_t seed_of(int test, int rank, int salt = 0) { return 1000003ull * test + 7919ull * rank + salt; }

// Bytes from `src` rank to `dst` rank in the all-to-all test.
std::vector<uint8_t> a2a_block(int src, int dst, size_t bytes) { return random_bytes(bytes, seed_of(1, src, dst + 1)); }

void test_all_to_all(Communicator& c, Errors& e, const std::string& where) {
    const int n = c.size();
    for (size_t bytes : {size_t{1}, size_t{13}, size_t{4096}}) {
        std::vector<uint8_t> send(n * bytes), recv(n * bytes, 0);
        for (int p = 0; p < n; ++p) {
            const auto b = a2a_block(c.rank(), p, bytes);
            std::memcpy(send.data() + p * bytes, b.data(), bytes);
        }
        const uint64_t before = c.bytes_sent(CommOp::kAllToAll);
        c.all_to_all(send.data(), recv.data(), bytes);
        for (int p = 0; p < n; ++p) {
            const auto want = a2a_block(p, c.rank(), bytes);
            e.expect(std::memcmp(recv.data() + p * bytes, want.data(), bytes) == 0,
                     where + " all_to_all: block from rank " + std::to_string(p) + " differs");
        }
        e.expect(c.bytes_sent(CommOp::kAllToAll) - before == (n - 1) * bytes, where + " all_to_all byte counter");
    }
}

void test_all_gather(Communicator& c, Errors& e, const std::string& where) {
    const int n = c.size();
    const size_t bytes = 777;
    const auto mine = random_bytes(bytes, seed_of(2, c.rank()));
    std::vector<uint8_t> recv(n * bytes, 0);
    c.all_gather(mine.data(), recv.data(), bytes);
    for (int p = 0; p < n; ++p) {
        const auto want = random_bytes(bytes, seed_of(2, p));
        e.expect(std::memcmp(recv.data() + p * bytes, want.data(), bytes) == 0,
                 where + " all_gather: block of rank " + std::to_string(p) + " differs");
    }
}

void test_all_reduce(Communicator& c, Errors& e, const std::string& where) {
    const int n = c.size();
    const size_t count = 1000;
    std::vector<float> f = random_floats(count, seed_of(3, c.rank()));
    c.all_reduce_sum(f.data(), count);
    std::vector<double> want(count, 0.0);
    for (int p = 0; p < n; ++p) {
        const auto v = random_floats(count, seed_of(3, p));
        for (size_t i = 0; i < count; ++i) want[i] += v[i];
    }
    // Summation order differs by algorithm: n terms of magnitude <= 1 in fp32.
    const double tol = 1e-6 * n * 4;
    int bad = 0;
    for (size_t i = 0; i < count; ++i) bad += std::abs(f[i] - want[i]) > tol;
    e.expect(bad == 0, where + " all_reduce_sum(f32): " + std::to_string(bad) + " elements off");

    std::vector<int64_t> k(count);
    for (size_t i = 0; i < count; ++i) k[i] = (int64_t{1} << 40) * (c.rank() + 1) + static_cast<int64_t>(i) * c.rank();
    c.all_reduce_sum(k.data(), count);
    bad = 0;
    for (size_t i = 0; i < count; ++i) {
        const int64_t want_k = (int64_t{1} << 40) * n * (n + 1) / 2 + static_cast<int64_t>(i) * n * (n - 1) / 2;
        bad += k[i] != want_k;
    }
    e.expect(bad == 0, where + " all_reduce_sum(i64): " + std::to_string(bad) + " elements off");
}

void test_broadcast(Communicator& c, Errors& e, const std::string& where) {
    for (int root = 0; root < c.size(); ++root) {
        const auto want = random_bytes(5000, seed_of(4, root));
        std::vector<uint8_t> buf = c.rank() == root ? want : std::vector<uint8_t>(5000, 0);
        c.broadcast(buf.data(), buf.size(), root);
        e.expect(buf == want, where + " broadcast from root " + std::to_string(root));
    }
}

// Uneven grouped exchange: rank r sends (r*7 + p*3 + 1) % 50 * 11 bytes to every peer p with (r+p) % 3 != 0,
// itself included; some pairs exchange nothing, and a pair gets two messages when (r + p) is even.
size_t exchange_bytes(int src, int dst, int msg) { return ((src * 7 + dst * 3 + msg * 5 + 1) % 50) * 11; }
bool exchanges(int src, int dst) { return (src + dst) % 3 != 0; }
int messages(int src, int dst) { return (src + dst) % 2 == 0 ? 2 : 1; }

void test_send_recv(Communicator& c, Errors& e, const std::string& where) {
    const int n = c.size();
    const int me = c.rank();
    std::vector<std::vector<uint8_t>> out, in;
    std::vector<SendSpec> sends;
    std::vector<RecvSpec> recvs;
    std::vector<std::pair<int, int>> in_from;  // (peer, message index)
    uint64_t remote_bytes = 0;
    for (int p = 0; p < n; ++p) {
        if (exchanges(me, p)) {
            for (int m = 0; m < messages(me, p); ++m) {
                out.push_back(random_bytes(exchange_bytes(me, p, m), seed_of(5, me, p * 8 + m)));
                if (p != me) remote_bytes += out.back().size();
            }
        }
        if (exchanges(p, me)) {
            for (int m = 0; m < messages(p, me); ++m) {
                in.emplace_back(exchange_bytes(p, me, m), 0);
                in_from.emplace_back(p, m);
            }
        }
    }
    size_t oi = 0;
    for (int p = 0; p < n; ++p) {
        if (!exchanges(me, p)) continue;
        for (int m = 0; m < messages(me, p); ++m, ++oi) sends.push_back({p, out[oi].data(), out[oi].size()});
    }
    for (size_t i = 0; i < in.size(); ++i) recvs.push_back({in_from[i].first, in[i].data(), in[i].size()});
    const uint64_t before = c.bytes_sent(CommOp::kSendRecv);
    c.send_recv(sends, recvs);
    for (size_t i = 0; i < in.size(); ++i) {
        const auto [p, m] = in_from[i];
        e.expect(in[i] == random_bytes(exchange_bytes(p, me, m), seed_of(5, p, me * 8 + m)),
                 where + " send_recv: message " + std::to_string(m) + " from rank " + std::to_string(p) + " differs");
    }
    e.expect(c.bytes_sent(CommOp::kSendRecv) - before == remote_bytes, where + " send_recv byte counter");
}

void test_everything(Communicator& c, Errors& e, const std::string& where) {
    test_all_to_all(c, e, where);
    test_all_gather(c, e, where);
    test_all_reduce(c, e, where);
    test_broadcast(c, e, where);
    test_send_recv(c, e, where);
    c.barrier();
}

int run(const MpiSession& mpi) {
    auto world = MpiCommunicator::world();
    Errors e(world->rank());
    e.expect(world->rank() == mpi.info().rank && world->size() == mpi.info().world_size, "world rank/size");
    test_everything(*world, e, "world");

    // Split into evens and odds, keyed in reverse: sub-ranks run backwards; then a split where rank 0
    // stays out (negative color).
    const int n = world->size();
    const int me = world->rank();
    auto parity = world->split(me % 2, -me);
    const int parity_size = (n + 1 - me % 2) / 2;
    e.expect(parity && parity->size() == parity_size, "split(parity): size");
    if (parity) {
        e.expect(parity->rank() == parity_size - 1 - me / 2, "split(parity): reverse key order");
        test_everything(*parity, e, "parity split");
        // The members agree on who they are: all-gather world ranks.
        std::vector<int> members(parity->size());
        parity->all_gather(&me, members.data(), sizeof(int));
        for (int i = 0; i < parity->size(); ++i)
            e.expect(members[i] % 2 == me % 2 && (i == 0 || members[i] < members[i - 1]), "split(parity): members");
    }
    auto without_zero = world->split(me == 0 ? -1 : 0, me);
    e.expect((me == 0) == (without_zero == nullptr), "split(-1): rank 0 gets no communicator");
    if (without_zero) {
        e.expect(without_zero->size() == n - 1 && without_zero->rank() == me - 1, "split(-1): rank/size");
        test_everything(*without_zero, e, "split without rank 0");
    }

    const int64_t total = disttest::agree(*world, e);
    if (me == 0)
        std::printf("dist_collectives_test: %d ranks, %" PRId64 " errors: %s\n", n, total, total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi); });
}
