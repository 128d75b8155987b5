// Who this process is in an mpirun (or srun) job: world rank and size, local rank on the node, host name,
// and the GPU it should use. The MPI session itself is RAII so that every exit path finalizes or aborts.
#pragma once

#include <string>

namespace lr {

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

// MPI_Init_thread on construction when the process was started by an MPI launcher, MPI_Finalize on
// destruction. rank/size then come from MPI_COMM_WORLD, the local rank from an MPI_COMM_TYPE_SHARED split
// when the launcher did not say.
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
