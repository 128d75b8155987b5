// Communicator over MPI for host buffers. Owns a duplicate of the MPI communicator it was built from, so
// its traffic never matches anyone else's messages, and sets MPI_ERRORS_RETURN on it (errors become
// RuntimeErrors naming rank and host through LR_MPI_CHECK).
#pragma once

#include <mpi.h>

#include <memory>

#include "dist/communicator.h"

namespace lr {

class MpiCommunicator final : public Communicator {
  public:
    // A duplicate of MPI_COMM_WORLD. MPI must be initialised (an active MpiSession).
    static std::unique_ptr<MpiCommunicator> world();
    // Takes ownership of `comm` (freed on destruction).
    explicit MpiCommunicator(MPI_Comm comm);
    ~MpiCommunicator() override;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    // MPI initialised with MPI_THREAD_SERIALIZED or more.
    bool callable_from_any_thread() const override;
    void all_to_all(const void* send, void* recv, size_t bytes_per_rank) override;
    void all_gather(const void* send, void* recv, size_t bytes_per_rank) override;
    void all_reduce_sum(float* data, size_t count) override;
    void all_reduce_sum(int64_t* data, size_t count) override;
    void broadcast(void* data, size_t bytes, int root) override;
    void send_recv(std::span<const SendSpec> sends, std::span<const RecvSpec> recvs) override;
    void barrier() override;
    std::unique_ptr<Communicator> split(int color, int key) override;

    MPI_Comm handle() const { return comm_; }

  private:
    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0;
    int size_ = 1;
};

}  // namespace lr
