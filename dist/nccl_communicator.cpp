#include "dist/nccl_communicator.h"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "dist/process.h"
#include "runtime/core/check.h"

namespace lr {
namespace detail {

void throw_nccl_error(ncclResult_t code, ncclComm_t comm, const char* call, const char* file, int line) {
    int rank = -1;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char* last = comm ? ncclGetLastError(comm) : ncclGetLastError(nullptr);
    throw_runtime_error(str_cat("NCCL error on rank ", rank, " (host ", host_name(), ") at ", file, ":", line, ": ",
                                call, ": ", ncclGetErrorString(code), last && *last ? " (" : "", last ? last : "",
                                last && *last ? ")" : ""));
}

}  // namespace detail

namespace {

void cuda_check(cudaError_t rc, const char* what) {
    LR_RUNTIME(rc == cudaSuccess, what, ": ", cudaGetErrorString(rc), " (host ", host_name(), ")");
}

constexpr auto kWatchdogPeriod = std::chrono::milliseconds(100);

// An NCCL call of this communicator: a failure marks it failed (abort, not destroy) and throws.
#define LR_NCCL_MEMBER_CHECK(call) check((call), #call, __FILE__, __LINE__)

}  // namespace

std::unique_ptr<NcclCommunicator> NcclCommunicator::create(Communicator& bootstrap, int device) {
    cuda_check(cudaSetDevice(device), "cudaSetDevice");
    ncclUniqueId id{};
    if (bootstrap.rank() == 0) LR_NCCL_CHECK(ncclGetUniqueId(&id));
    bootstrap.broadcast(&id, sizeof id, 0);
    ncclComm_t comm = nullptr;
    LR_NCCL_CHECK(ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()));
    return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(comm, device));
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, int device) : comm_(comm), device_(device) {
    // The watchdog thread may end the MPI job itself only where MPI allows calls from any thread; otherwise it
    // exits the process and mpirun ends the job (asked here, on the thread that owns MPI).
    int initialized = 0, provided = MPI_THREAD_SINGLE;
    MPI_Initialized(&initialized);
    if (initialized) MPI_Query_thread(&provided);
    mpi_from_any_thread_ = initialized && provided == MPI_THREAD_MULTIPLE;
    LR_NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
    LR_NCCL_CHECK(ncclCommCount(comm_, &size_));
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    watchdog_ = std::thread([this] { watch(); });
}

NcclCommunicator::~NcclCommunicator() {
    stop_.store(true);
    if (watchdog_.joinable()) watchdog_.join();
    // After an error (a failed call, an asynchronous error) the communicator is aborted, never destroyed:
    // ncclCommDestroy waits for operations that will not complete.
    ncclResult_t async = ncclSuccess;
    if (comm_ && !failed_.load() && ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async == ncclSuccess) {
        if (stream_) cudaStreamSynchronize(stream_);
        ncclCommDestroy(comm_);
    } else if (comm_) {
        ncclCommAbort(comm_);
    }
    if (stream_) cudaStreamDestroy(stream_);
}

void NcclCommunicator::check(ncclResult_t rc, const char* call, const char* file, int line) {
    if (rc == ncclSuccess) [[likely]]
        return;
    failed_.store(true);
    detail::throw_nccl_error(rc, comm_, call, file, line);
}

void NcclCommunicator::watch() {
    while (!stop_.load()) {
        ncclResult_t async = ncclSuccess;
        const ncclResult_t rc = ncclCommGetAsyncError(comm_, &async);
        if (rc != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
            const ncclResult_t err = rc != ncclSuccess ? rc : async;
            std::fprintf(stderr,
                         "longroll: error on rank %d (host %s): NCCL asynchronous error: %s (%s); aborting the job\n",
                         rank_, host_name().c_str(), ncclGetErrorString(err), ncclGetLastError(comm_));
            std::fflush(stderr);
            failed_.store(true);
            ncclCommAbort(comm_);
            // MPI_Abort from this thread only under MPI_THREAD_MULTIPLE; otherwise the process exits and mpirun,
            // seeing a rank end without MPI_Finalize, ends the job.
            if (mpi_from_any_thread_) MPI_Abort(MPI_COMM_WORLD, 1);
            std::_Exit(1);
        }
        std::this_thread::sleep_for(kWatchdogPeriod);
    }
}

void NcclCommunicator::all_to_all(const void* send, void* recv, size_t bytes_per_rank) {
    // NCCL has no all-to-all collective: it is a group of sends and receives, one pair per peer.
    const auto* s = static_cast<const char*>(send);
    auto* r = static_cast<char*>(recv);
    LR_NCCL_MEMBER_CHECK(ncclGroupStart());
    for (int p = 0; p < size_; ++p) {
        LR_NCCL_MEMBER_CHECK(ncclSend(s + p * bytes_per_rank, bytes_per_rank, ncclUint8, p, comm_, stream_));
        LR_NCCL_MEMBER_CHECK(ncclRecv(r + p * bytes_per_rank, bytes_per_rank, ncclUint8, p, comm_, stream_));
    }
    LR_NCCL_MEMBER_CHECK(ncclGroupEnd());
    count_all_to_all(bytes_per_rank);
}

void NcclCommunicator::all_gather(const void* send, void* recv, size_t bytes_per_rank) {
    LR_NCCL_MEMBER_CHECK(ncclAllGather(send, recv, bytes_per_rank, ncclUint8, comm_, stream_));
    count_all_gather(bytes_per_rank);
}

void NcclCommunicator::all_reduce_sum(float* data, size_t count) {
    LR_NCCL_MEMBER_CHECK(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm_, stream_));
    count_all_reduce(count * sizeof(float));
}

void NcclCommunicator::all_reduce_sum(int64_t* data, size_t count) {
    LR_NCCL_MEMBER_CHECK(ncclAllReduce(data, data, count, ncclInt64, ncclSum, comm_, stream_));
    count_all_reduce(count * sizeof(int64_t));
}

void NcclCommunicator::broadcast(void* data, size_t bytes, int root) {
    LR_ASSERT(root >= 0 && root < size_, "broadcast root ", root, " outside [0, ", size_, ")");
    LR_NCCL_MEMBER_CHECK(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_));
    count_broadcast(bytes, root);
}

void NcclCommunicator::send_recv(std::span<const SendSpec> sends, std::span<const RecvSpec> recvs) {
    LR_NCCL_MEMBER_CHECK(ncclGroupStart());
    for (const SendSpec& s : sends) {
        LR_ASSERT(s.peer >= 0 && s.peer < size_, "send peer ", s.peer, " outside [0, ", size_, ")");
        LR_NCCL_MEMBER_CHECK(ncclSend(s.data, s.bytes, ncclUint8, s.peer, comm_, stream_));
    }
    for (const RecvSpec& r : recvs) {
        LR_ASSERT(r.peer >= 0 && r.peer < size_, "recv peer ", r.peer, " outside [0, ", size_, ")");
        LR_NCCL_MEMBER_CHECK(ncclRecv(r.data, r.bytes, ncclUint8, r.peer, comm_, stream_));
    }
    LR_NCCL_MEMBER_CHECK(ncclGroupEnd());
    count_send_recv(sends);
}

void NcclCommunicator::synchronize() { cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

void NcclCommunicator::barrier() {
    // A one-element all-reduce is NCCL's barrier; it is not counted as traffic.
    int64_t* flag = nullptr;
    cuda_check(cudaMallocAsync(reinterpret_cast<void**>(&flag), sizeof(int64_t), stream_), "cudaMallocAsync");
    LR_NCCL_MEMBER_CHECK(ncclAllReduce(flag, flag, 1, ncclInt64, ncclSum, comm_, stream_));
    cuda_check(cudaFreeAsync(flag, stream_), "cudaFreeAsync");
    synchronize();
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
    ncclComm_t child = nullptr;
    LR_NCCL_MEMBER_CHECK(ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child, nullptr));
    if (child == nullptr) return nullptr;
    return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(child, device_));
}

}  // namespace lr
