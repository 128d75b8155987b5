#include "dist/fault.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace lr {
namespace {

bool mpi_running() {
    int initialized = 0;
    int finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

// The atexit handler cannot take arguments.
ProcessInfo g_exit_guard_who;

void exit_guard() {
    if (!mpi_running()) return;
    abort_job(g_exit_guard_who, 1, "exited without finishing MPI (exit() called before MPI_Finalize); ending the job");
}

}  // namespace

void print_rank_error(const ProcessInfo& who, std::string_view what) {
    if (who.world_size <= 1) {
        std::fprintf(stderr, "longroll: error: %.*s\n", static_cast<int>(what.size()), what.data());
    } else {
        std::fprintf(stderr, "longroll: error on rank %d (host %s): %.*s\n", who.rank, who.host.c_str(),
                     static_cast<int>(what.size()), what.data());
    }
    std::fflush(stderr);
}

void abort_job(const ProcessInfo& who, int code, std::string_view what) {
    print_rank_error(who, what);
    if (mpi_running()) MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
}

int run_rank_guarded(const MpiSession& mpi, const std::function<int()>& body) {
    const ProcessInfo& who = mpi.info();
    const bool many = mpi.active() && who.world_size > 1;
    try {
        return body();
    } catch (const CollectiveInputError& e) {
        print_rank_error(who, e.what());
        return e.exit_code();
    } catch (const Error& e) {
        if (many) abort_job(who, e.exit_code(), e.what());
        print_rank_error(who, e.what());
        return e.exit_code();
    } catch (const std::exception& e) {
        if (many) abort_job(who, 1, e.what());
        print_rank_error(who, e.what());
        return 1;
    }
}

void install_exit_guard(const ProcessInfo& who) {
    static bool installed = false;
    g_exit_guard_who = who;
    if (installed) return;
    installed = true;
    std::atexit(exit_guard);
}

}  // namespace lr
