#include "dist/process.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string_view>

#include "dist/communicator.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

// First of `names` that is set to an integer, or -1.
int env_int(std::initializer_list<const char*> names) {
    for (const char* n : names) {
        const char* v = std::getenv(n);
        if (v && *v) {
            char* end = nullptr;
            const long x = std::strtol(v, &end, 10);
            if (end && *end == '\0' && x >= 0 && x < (1L << 30)) return static_cast<int>(x);
        }
    }
    return -1;
}

}  // namespace

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
    return buf;
}

ProcessInfo process_info_from_env() {
    ProcessInfo p;
    p.host = host_name();
    const int rank = env_int({"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"});
    const int size = env_int({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"});
    const int local_rank = env_int({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"});
    const int local_size = env_int({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"});
    p.launched_by_mpi = rank >= 0;
    if (rank >= 0) p.rank = rank;
    if (size > 0) p.world_size = size;
    if (local_rank >= 0) p.local_rank = local_rank;
    if (local_size > 0) p.local_size = local_size;
    return p;
}

int pick_cuda_device(const ProcessInfo& info, int device_count) {
    if (device_count <= 0) return -1;
    return info.local_rank % device_count;
}

namespace {

// RankDevice on the wire: fixed size, so one all_gather moves everyone's. Strings are NUL-terminated (cut to fit).
struct RankDeviceRecord {
    int32_t rank = 0;
    int32_t takes_part = 0;
    char host[256] = {};
    char gpu[64] = {};
};

void copy_cut(char* dst, size_t size, const std::string& src) {
    const size_t n = std::min(src.size(), size - 1);
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}

}  // namespace

std::vector<RankDevice> gather_rank_devices(Communicator& world, const RankDevice& mine) {
    RankDeviceRecord rec;
    rec.rank = mine.rank;
    rec.takes_part = mine.takes_part ? 1 : 0;
    copy_cut(rec.host, sizeof rec.host, mine.host);
    copy_cut(rec.gpu, sizeof rec.gpu, mine.gpu);
    std::vector<RankDeviceRecord> all(static_cast<size_t>(world.size()));
    world.all_gather(&rec, all.data(), sizeof rec);
    std::vector<RankDevice> out;
    out.reserve(all.size());
    for (RankDeviceRecord& r : all) {
        r.host[sizeof r.host - 1] = '\0';  // a peer's record is trusted for its content, not its terminator
        r.gpu[sizeof r.gpu - 1] = '\0';
        out.push_back(RankDevice{r.rank, r.host, r.takes_part != 0, r.gpu});
    }
    return out;
}

std::optional<SharedGpus> find_shared_gpus(const std::vector<RankDevice>& ranks) {
    std::vector<std::string> hosts;  // in order of first appearance, so the answer does not depend on sorting
    std::map<std::string, std::pair<int, std::set<std::string>>> per_host;
    for (const RankDevice& r : ranks) {
        if (!r.takes_part || r.gpu.empty()) continue;
        auto [it, added] = per_host.try_emplace(r.host);
        if (added) hosts.push_back(r.host);
        it->second.first += 1;
        it->second.second.insert(r.gpu);
    }
    for (const std::string& h : hosts) {
        const auto& [count, gpus] = per_host.at(h);
        if (static_cast<size_t>(count) > gpus.size()) return SharedGpus{h, count, static_cast<int>(gpus.size())};
    }
    return std::nullopt;
}

MpiSession::MpiSession() : info_(process_info_from_env()) {
    if (!info_.launched_by_mpi) return;
    int provided = 0;
    LR_RUNTIME(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) == MPI_SUCCESS,
               "MPI_Init_thread failed on host ", info_.host);
    active_ = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &info_.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &info_.world_size);
    if (env_int({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) < 0) {
        MPI_Comm local;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info_.rank, MPI_INFO_NULL, &local);
        MPI_Comm_rank(local, &info_.local_rank);
        MPI_Comm_size(local, &info_.local_size);
        MPI_Comm_free(&local);
    }
}

MpiSession::~MpiSession() {
    if (active_) MPI_Finalize();
}

void MpiSession::abort(int code) const {
    if (active_) MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);
}

}  // namespace lr
