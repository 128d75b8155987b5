// Communicators (DESIGN.md section 7): one interface, two transports. MpiCommunicator moves host buffers
// (and runs N ranks on CPUs only, which is how CI checks N-rank == 1-rank); NcclCommunicator moves device
// buffers on its own CUDA stream. Callers (the sharding plans) never know which one they hold.
//
// Every operation is collective over the communicator: every rank calls it, in the same order, with the
// same sizes. Errors name the rank and the host.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace lr {

// Operation kinds for the byte counters.
enum class CommOp { kAllToAll, kAllGather, kAllReduce, kBroadcast, kSendRecv, kCount };
const char* comm_op_name(CommOp op);

// One point-to-point transfer of a grouped exchange (the KV-block exchange of the spatial plan).
struct SendSpec {
    int peer = 0;
    const void* data = nullptr;
    size_t bytes = 0;
};
struct RecvSpec {
    int peer = 0;
    void* data = nullptr;
    size_t bytes = 0;
};

class Communicator {
  public:
    virtual ~Communicator() = default;
    Communicator() = default;
    Communicator(const Communicator&) = delete;
    Communicator& operator=(const Communicator&) = delete;

    virtual int rank() const = 0;
    virtual int size() const = 0;
    // True when the operations take device buffers and are enqueued on the communicator's own stream (NCCL);
    // false when they take host buffers and return complete (MPI). GPU callers stage through pinned host memory
    // for the latter.
    virtual bool device_buffers() const { return false; }
    // True when the operations may be called from a thread other than the one that initialised the transport (one
    // thread at a time): the exchange thread of an overlapped step (dist/exchange_worker.h) needs it.
    virtual bool callable_from_any_thread() const { return true; }

    // Block r of `send` goes to rank r; block r of `recv` comes from rank r.
    // send, recv: [size(), bytes_per_rank]
    virtual void all_to_all(const void* send, void* recv, size_t bytes_per_rank) = 0;
    // send: [bytes_per_rank]; recv: [size(), bytes_per_rank], block r from rank r.
    virtual void all_gather(const void* send, void* recv, size_t bytes_per_rank) = 0;
    // In place: data[i] = sum over ranks of data[i].
    virtual void all_reduce_sum(float* data, size_t count) = 0;
    virtual void all_reduce_sum(int64_t* data, size_t count) = 0;
    // `root`'s bytes to every rank, in place.
    virtual void broadcast(void* data, size_t bytes, int root) = 0;
    // Every send and receive posted together, completed together. A receive from `peer` matches the sends
    // to this rank from `peer` in list order; sizes must agree pairwise. A rank may list itself as a peer.
    virtual void send_recv(std::span<const SendSpec> sends, std::span<const RecvSpec> recvs) = 0;
    virtual void barrier() = 0;
    // Ranks with the same color form a sub-communicator, ordered by (key, rank). A negative color takes no
    // part and gets nullptr. Collective over this communicator.
    virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

    // Bytes this rank has put on the wire for each kind of operation, counted by the direct algorithm
    // (what leaves this rank for other ranks; its own block is not counted):
    //   all_to_all: (size-1) * bytes_per_rank        all_gather: (size-1) * bytes_per_rank
    //   all_reduce: 2 * (size-1)/size * bytes (ring)  broadcast: (size-1) * bytes on the root, 0 elsewhere
    //   send_recv: the bytes of every send to another rank
    uint64_t bytes_sent(CommOp op) const { return bytes_[static_cast<size_t>(op)].load(std::memory_order_relaxed); }
    uint64_t bytes_sent_total() const;
    void reset_byte_counters();
    // Wall seconds this rank spent inside the operations, waiting included (the time-to-solution the exchange
    // costs on this rank: the "comm" stage). Host-buffer communicators (MPI) return complete, so this is their
    // whole time; device-buffer ones (NCCL) only enqueue, and their time is on the stream, not counted here.
    double busy_seconds() const { return static_cast<double>(busy_ns_.load(std::memory_order_relaxed)) * 1e-9; }

  protected:
    void count_bytes(CommOp op, uint64_t bytes) {
        bytes_[static_cast<size_t>(op)].fetch_add(bytes, std::memory_order_relaxed);
    }
    void count_all_to_all(size_t bytes_per_rank) { count_bytes(CommOp::kAllToAll, (size() - 1) * bytes_per_rank); }
    void count_all_gather(size_t bytes_per_rank) { count_bytes(CommOp::kAllGather, (size() - 1) * bytes_per_rank); }
    void count_all_reduce(size_t bytes) {
        count_bytes(CommOp::kAllReduce, size() > 1 ? 2 * (size() - 1) * static_cast<uint64_t>(bytes) / size() : 0);
    }
    void count_broadcast(size_t bytes, int root) {
        if (rank() == root) count_bytes(CommOp::kBroadcast, (size() - 1) * static_cast<uint64_t>(bytes));
    }
    void count_send_recv(std::span<const SendSpec> sends);
    // Adds its lifetime to busy_seconds(): one per operation of an implementation.
    class BusyTimer {
      public:
        explicit BusyTimer(Communicator& c) : c_(c), start_(std::chrono::steady_clock::now()) {}
        ~BusyTimer() {
            const auto ns =
                std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_);
            c_.busy_ns_.fetch_add(static_cast<uint64_t>(ns.count()), std::memory_order_relaxed);
        }
        BusyTimer(const BusyTimer&) = delete;
        BusyTimer& operator=(const BusyTimer&) = delete;

      private:
        Communicator& c_;
        std::chrono::steady_clock::time_point start_;
    };

  private:
    std::atomic<uint64_t> busy_ns_{0};
    std::array<std::atomic<uint64_t>, static_cast<size_t>(CommOp::kCount)> bytes_{};
};

}  // namespace lr
