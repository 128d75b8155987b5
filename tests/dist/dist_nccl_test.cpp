// NcclCommunicator under mpirun on GPUs: each operation on device buffers against its definition
// (random host data copied in, results copied out). Exit 77 (skipped) unless every rank has a GPU of its
// own: NCCL refuses two ranks of one communicator on one device.
#include <cuda_runtime_api.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/nccl_communicator.h"
#include "dist_test_harness.h"

namespace lr {
namespace {

using disttest::Errors;

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> v(n);
    for (uint8_t& x : v) x = static_cast<uint8_t>(rng());
    return v;
}
uint64_t seed_of(int test, int a, int b = 0) { return 1000003ull * test + 7919ull * a + b; }

// A device buffer holding a copy of `host`.
struct DeviceBuffer {
    void* ptr = nullptr;
    size_t bytes = 0;
    explicit DeviceBuffer(size_t n) : bytes(n) { cudaMalloc(&ptr, n ? n : 1); }
    explicit DeviceBuffer(const std::vector<uint8_t>& host) : DeviceBuffer(host.size()) {
        cudaMemcpy(ptr, host.data(), host.size(), cudaMemcpyHostToDevice);
    }
    ~DeviceBuffer() { cudaFree(ptr); }
    std::vector<uint8_t> read(NcclCommunicator& c) const {
        c.synchronize();
        std::vector<uint8_t> out(bytes);
        cudaMemcpy(out.data(), ptr, bytes, cudaMemcpyDeviceToHost);
        return out;
    }
};

void test_comm(NcclCommunicator& c, Errors& e, const std::string& where) {
    const int n = c.size();
    const int me = c.rank();
    const size_t b = 4099;
    {  // all_to_all
        std::vector<uint8_t> send;
        for (int p = 0; p < n; ++p) {
            const auto blk = random_bytes(b, seed_of(1, me, p));
            send.insert(send.end(), blk.begin(), blk.end());
        }
        DeviceBuffer s(send), r(n * b);
        c.all_to_all(s.ptr, r.ptr, b);
        const auto got = r.read(c);
        for (int p = 0; p < n; ++p)
            e.expect(std::memcmp(got.data() + p * b, random_bytes(b, seed_of(1, p, me)).data(), b) == 0,
                     where + " all_to_all from " + std::to_string(p));
    }
    {  // all_gather
        DeviceBuffer s(random_bytes(b, seed_of(2, me))), r(n * b);
        c.all_gather(s.ptr, r.ptr, b);
        const auto got = r.read(c);
        for (int p = 0; p < n; ++p)
            e.expect(std::memcmp(got.data() + p * b, random_bytes(b, seed_of(2, p)).data(), b) == 0,
                     where + " all_gather block " + std::to_string(p));
    }
    {  // all_reduce f32 (small integers: exact in any order) and i64
        std::vector<float> f(1000);
        std::vector<int64_t> k(1000);
        for (size_t i = 0; i < f.size(); ++i) {
            f[i] = static_cast<float>((i * 7 + me * 13) % 101) - 50.0f;
            k[i] = (int64_t{1} << 40) * (me + 1) + static_cast<int64_t>(i);
        }
        std::vector<uint8_t> fb(f.size() * 4), kb(k.size() * 8);
        std::memcpy(fb.data(), f.data(), fb.size());
        std::memcpy(kb.data(), k.data(), kb.size());
        DeviceBuffer df(fb), dk(kb);
        c.all_reduce_sum(static_cast<float*>(df.ptr), f.size());
        c.all_reduce_sum(static_cast<int64_t*>(dk.ptr), k.size());
        const auto gf = df.read(c);
        const auto gk = dk.read(c);
        int bad = 0;
        for (size_t i = 0; i < f.size(); ++i) {
            float want = 0;
            for (int p = 0; p < n; ++p) want += static_cast<float>((i * 7 + p * 13) % 101) - 50.0f;
            float got;
            std::memcpy(&got, gf.data() + i * 4, 4);
            bad += got != want;
            int64_t gotk;
            std::memcpy(&gotk, gk.data() + i * 8, 8);
            bad += gotk != (int64_t{1} << 40) * n * (n + 1) / 2 + static_cast<int64_t>(i) * n;
        }
        e.expect(bad == 0, where + " all_reduce_sum: " + std::to_string(bad) + " wrong");
    }
    for (int root = 0; root < n; ++root) {  // broadcast
        const auto want = random_bytes(b, seed_of(4, root));
        DeviceBuffer d(me == root ? want : std::vector<uint8_t>(b, 0));
        c.broadcast(d.ptr, b, root);
        e.expect(d.read(c) == want, where + " broadcast from " + std::to_string(root));
    }
    {  // grouped send/recv, uneven: rank r sends (r + p) * 100 + 1 bytes to p
        std::vector<std::unique_ptr<DeviceBuffer>> out, in;
        std::vector<SendSpec> sends;
        std::vector<RecvSpec> recvs;
        for (int p = 0; p < n; ++p) {
            out.push_back(std::make_unique<DeviceBuffer>(random_bytes((me + p) * 100 + 1 + me, seed_of(5, me, p))));
            sends.push_back({p, out.back()->ptr, out.back()->bytes});
            in.push_back(std::make_unique<DeviceBuffer>((p + me) * 100 + 1 + p));
            recvs.push_back({p, in.back()->ptr, in.back()->bytes});
        }
        c.send_recv(sends, recvs);
        for (int p = 0; p < n; ++p)
            e.expect(in[p]->read(c) == random_bytes((p + me) * 100 + 1 + p, seed_of(5, p, me)),
                     where + " send_recv from " + std::to_string(p));
    }
    c.barrier();
}

int run(const MpiSession& mpi) {
    auto world = MpiCommunicator::world();
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
    int64_t without_gpu = devices >= mpi.info().local_size ? 0 : 1;
    world->all_reduce_sum(&without_gpu, 1);
    if (without_gpu > 0) {
        if (world->rank() == 0)
            std::printf("dist_nccl_test: %" PRId64 " ranks have no GPU of their own: skipping\n", without_gpu);
        return 77;
    }
    const int device = pick_cuda_device(mpi.info(), devices);
    auto nccl = NcclCommunicator::create(*world, device);
    Errors e(world->rank());
    test_comm(*nccl, e, "world");
    auto half = nccl->split(world->rank() % 2, world->rank());
    e.expect(half && half->size() == (world->size() + 1 - world->rank() % 2) / 2, "split size");
    if (half) test_comm(static_cast<NcclCommunicator&>(*half), e, "parity split");
    half.reset();
    const int64_t total = disttest::agree(*world, e);
    if (world->rank() == 0)
        std::printf("dist_nccl_test: %d ranks on %d GPU(s), %" PRId64 " errors: %s\n", world->size(), devices, total,
                    total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi); });
}
