// Communicator over NCCL for device buffers (built with LONGROLL_HAS_NCCL only). Operations are enqueued
// on the communicator's own stream and return at once; synchronize() waits for them (barrier() does).
// Callers order their compute stream against stream() with events.
//
// A peer that dies leaves NCCL kernels spinning: a watchdog thread polls ncclCommGetAsyncError and, on
// an error, prints rank and host, calls ncclCommAbort (which unblocks this rank's kernels) and then
// MPI_Abort, so every rank of the job exits promptly.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "dist/communicator.h"

namespace lr {

namespace detail {
[[noreturn]] void throw_nccl_error(ncclResult_t code, ncclComm_t comm, const char* call, const char* file, int line);
}  // namespace detail

#define LR_NCCL_CHECK(call)                                                                  \
    do {                                                                                     \
        const ncclResult_t lr_nccl_rc_ = (call);                                             \
        if (lr_nccl_rc_ != ncclSuccess) [[unlikely]] {                                       \
            ::lr::detail::throw_nccl_error(lr_nccl_rc_, nullptr, #call, __FILE__, __LINE__); \
        }                                                                                    \
    } while (0)

class NcclCommunicator final : public Communicator {
  public:
    // Collective over `bootstrap` (an MPI communicator of the same ranks): rank 0 makes the ncclUniqueId
    // and broadcasts it. `device` is this rank's CUDA device (pick_cuda_device).
    static std::unique_ptr<NcclCommunicator> create(Communicator& bootstrap, int device);
    ~NcclCommunicator() override;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    bool device_buffers() const override { return true; }
    void all_to_all(const void* send, void* recv, size_t bytes_per_rank) override;
    void all_gather(const void* send, void* recv, size_t bytes_per_rank) override;
    void all_reduce_sum(float* data, size_t count) override;
    void all_reduce_sum(int64_t* data, size_t count) override;
    void broadcast(void* data, size_t bytes, int root) override;
    void send_recv(std::span<const SendSpec> sends, std::span<const RecvSpec> recvs) override;
    void barrier() override;
    // ncclCommSplit: the child shares the parent's device; a negative color gets nullptr.
    std::unique_ptr<Communicator> split(int color, int key) override;

    cudaStream_t stream() const { return stream_; }
    void synchronize();

  private:
    NcclCommunicator(ncclComm_t comm, int device);
    void watch();
    void check(ncclResult_t rc, const char* call, const char* file, int line);

    ncclComm_t comm_ = nullptr;
    int device_ = 0;
    int rank_ = 0;
    int size_ = 1;
    cudaStream_t stream_ = nullptr;
    std::atomic<bool> stop_{false};
    std::atomic<bool> failed_{false};   // an NCCL call or the watchdog saw an error: abort, never destroy
    bool mpi_from_any_thread_ = false;  // MPI_THREAD_MULTIPLE: the watchdog may call MPI_Abort
    std::thread watchdog_;
};

}  // namespace lr
