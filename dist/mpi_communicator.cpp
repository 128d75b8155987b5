#include "dist/mpi_communicator.h"

#include <climits>
#include <vector>

#include "dist/mpi_check.h"
#include "dist/process.h"
#include "runtime/core/check.h"

namespace lr {
namespace detail {

void throw_mpi_error(int code, const char* call, const char* file, int line) {
    char text[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    MPI_Error_string(code, text, &len);
    int rank = -1;
    int initialized = 0;
    int finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    throw_runtime_error(
        str_cat("MPI error on rank ", rank, " (host ", host_name(), ") at ", file, ":", line, ": ", call, ": ", text));
}

}  // namespace detail

namespace {

// MPI counts are int: larger host messages would need MPI 4's large-count calls, which Open MPI 4 lacks.
int mpi_count(size_t n, const char* what) {
    LR_RUNTIME(n <= static_cast<size_t>(INT_MAX), what, ": ", n, " bytes exceed the MPI int count limit");
    return static_cast<int>(n);
}

// Tag of the grouped exchange; the communicator is private (a duplicate), so no other traffic shares it.
constexpr int kSendRecvTag = 7301;

}  // namespace

std::unique_ptr<MpiCommunicator> MpiCommunicator::world() {
    MPI_Comm dup = MPI_COMM_NULL;
    LR_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
    return std::make_unique<MpiCommunicator>(dup);
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    LR_ASSERT(comm_ != MPI_COMM_NULL, "MpiCommunicator needs a communicator");
    LR_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    LR_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    LR_MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiCommunicator::~MpiCommunicator() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

bool MpiCommunicator::callable_from_any_thread() const {
    int provided = MPI_THREAD_SINGLE;
    LR_MPI_CHECK(MPI_Query_thread(&provided));
    return provided >= MPI_THREAD_SERIALIZED;
}

void MpiCommunicator::all_to_all(const void* send, void* recv, size_t bytes_per_rank) {
    const BusyTimer busy(*this);
    const int n = mpi_count(bytes_per_rank, "all_to_all");
    LR_MPI_CHECK(MPI_Alltoall(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm_));
    count_all_to_all(bytes_per_rank);
}

void MpiCommunicator::all_gather(const void* send, void* recv, size_t bytes_per_rank) {
    const BusyTimer busy(*this);
    const int n = mpi_count(bytes_per_rank, "all_gather");
    LR_MPI_CHECK(MPI_Allgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm_));
    count_all_gather(bytes_per_rank);
}

void MpiCommunicator::all_reduce_sum(float* data, size_t count) {
    const BusyTimer busy(*this);
    LR_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, mpi_count(count, "all_reduce_sum"), MPI_FLOAT, MPI_SUM, comm_));
    count_all_reduce(count * sizeof(float));
}

void MpiCommunicator::all_reduce_sum(int64_t* data, size_t count) {
    const BusyTimer busy(*this);
    LR_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, mpi_count(count, "all_reduce_sum"), MPI_INT64_T, MPI_SUM, comm_));
    count_all_reduce(count * sizeof(int64_t));
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
    const BusyTimer busy(*this);
    LR_ASSERT(root >= 0 && root < size_, "broadcast root ", root, " outside [0, ", size_, ")");
    LR_MPI_CHECK(MPI_Bcast(data, mpi_count(bytes, "broadcast"), MPI_BYTE, root, comm_));
    count_broadcast(bytes, root);
}

void MpiCommunicator::send_recv(std::span<const SendSpec> sends, std::span<const RecvSpec> recvs) {
    const BusyTimer busy(*this);
    std::vector<MPI_Request> requests;
    requests.reserve(sends.size() + recvs.size());
    // Receives first, so that every matching send finds its buffer posted.
    for (const RecvSpec& r : recvs) {
        LR_ASSERT(r.peer >= 0 && r.peer < size_, "recv peer ", r.peer, " outside [0, ", size_, ")");
        requests.emplace_back();
        LR_MPI_CHECK(
            MPI_Irecv(r.data, mpi_count(r.bytes, "recv"), MPI_BYTE, r.peer, kSendRecvTag, comm_, &requests.back()));
    }
    for (const SendSpec& s : sends) {
        LR_ASSERT(s.peer >= 0 && s.peer < size_, "send peer ", s.peer, " outside [0, ", size_, ")");
        requests.emplace_back();
        LR_MPI_CHECK(
            MPI_Isend(s.data, mpi_count(s.bytes, "send"), MPI_BYTE, s.peer, kSendRecvTag, comm_, &requests.back()));
    }
    LR_MPI_CHECK(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE));
    count_send_recv(sends);
}

void MpiCommunicator::barrier() {
    const BusyTimer busy(*this);
    LR_MPI_CHECK(MPI_Barrier(comm_));
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
    MPI_Comm sub = MPI_COMM_NULL;
    LR_MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub));
    if (sub == MPI_COMM_NULL) return nullptr;
    return std::make_unique<MpiCommunicator>(sub);
}

}  // namespace lr
