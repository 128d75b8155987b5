// Who this process is in an mpirun (or srun) job: world rank and size, local rank on the node, host name,
// and the GPU it should use. The MPI session itself is RAII so that every exit path finalizes or aborts.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace lr {

class Communicator;

struct ProcessInfo {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;
    int local_size = 1;
    std::string host;
    bool launched_by_mpi = false;  // an MPI launcher's environment was found
};

// This machine's host name (gethostname), "unknown-host" if it has none; errors name it next to the rank.
std::string host_name();

// Reads the launcher's environment (Open MPI's OMPI_COMM_WORLD_*, PMI_*/PMIX_*, SLURM_*) without starting
// MPI, so a plain `longroll ...` never pays for MPI_Init.
ProcessInfo process_info_from_env();

// GPU index for this process: local rank mod device count (DESIGN.md section 7); -1 without a GPU.
int pick_cuda_device(const ProcessInfo& info, int device_count);

// Where one rank computes, as the other ranks learn it (gather_rank_devices): what decides whether its
// exchanges can go over NCCL.
struct RankDevice {
    int rank = 0;
    std::string host;
    bool takes_part = true;  // the rank exchanges device data (a DiT rank); a dedicated VAE rank does not
    std::string gpu;         // its GPU's UUID (cuda_device_uuid), or its index where that is unknown; "" = CPU
};

// Every rank's RankDevice, in rank order. Collective over `world` (every rank calls it); host names and GPU
// ids longer than the record's fields are cut (host names up to 255 bytes, ids up to 63 survive whole).
std::vector<RankDevice> gather_rank_devices(Communicator& world, const RankDevice& mine);

// A host whose ranks outnumber their GPUs.
struct SharedGpus {
    std::string host;
    int ranks = 0;  // ranks taking part on that host
    int gpus = 0;   // distinct GPUs they use
};

// The first host (in rank order) where the ranks taking part and computing on a GPU use fewer distinct GPUs
// than they are, i.e. some of them share one; nullopt when each has a GPU of its own. Ranks on the CPU or not
// taking part are left out. Pure: every rank computes the same answer from the same gathered list.
std::optional<SharedGpus> find_shared_gpus(const std::vector<RankDevice>& ranks);

// MPI_Init_thread on construction when the process was started by an MPI launcher, MPI_Finalize on
// destruction. It asks for MPI_THREAD_SERIALIZED: an overlapped sharded step makes its exchanges from a thread of
// its own, never at the same time as another thread (dist/exchange_worker.h). rank/size then come from MPI_COMM_WORLD,
// the local rank from an MPI_COMM_TYPE_SHARED split when the launcher did not say.
class MpiSession {
  public:
    MpiSession();
    ~MpiSession();
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;

    const ProcessInfo& info() const { return info_; }
    bool active() const { return active_; }
    // Ends the whole job now (MPI_Abort with `code`); without MPI, std::exit(code).
    [[noreturn]] void abort(int code) const;

  private:
    ProcessInfo info_;
    bool active_ = false;
};

}  // namespace lr
