// Fault handling across ranks (DESIGN.md section 9): a failing rank makes every rank exit promptly with a
// message naming the rank and the host; nothing hangs in a collective.
//
// Three ways a rank can fail, and what ends the job:
//   - it throws: run_rank_guarded prints the error with rank and host and calls MPI_Abort, which kills the
//     ranks waiting in collectives (mpirun exits with the error's code).
//   - it calls exit() without MPI_Finalize: the guard installed by install_exit_guard prints rank and host
//     and calls MPI_Abort (Open MPI alone would also end the job, but without naming the host).
//   - every rank raises the same CollectiveInputError (a check on data all ranks share, e.g. the mesh
//     layout): nobody waits for anybody, so each rank prints the message and exits 2 normally.
// A GPU-side failure (NCCL async error) is caught by NcclCommunicator's watchdog, which does the same.
#pragma once

#include <functional>
#include <string_view>

#include "dist/process.h"
#include "runtime/core/check.h"

namespace lr {

// An input error that every rank detects identically (validated only from values all ranks share), so
// the job can end with exit code 2 on every rank without MPI_Abort.
class CollectiveInputError : public InputError {
  public:
    using InputError::InputError;
};

// "longroll: error on rank R (host H): what" on stderr ("longroll: error: what" in a one-rank run).
void print_rank_error(const ProcessInfo& who, std::string_view what);

// Prints the message and ends the whole MPI job (MPI_Abort with `code`); without an initialised MPI,
// std::exit(code).
[[noreturn]] void abort_job(const ProcessInfo& who, int code, std::string_view what);

// Runs `body` and returns its exit code. On a longroll Error: a CollectiveInputError is printed and
// returns 2 on every rank; any other Error (or std::exception) in a multi-rank job aborts the job with the
// error's exit code; in a one-rank run it is printed and its exit code returned.
int run_rank_guarded(const MpiSession& mpi, const std::function<int()>& body);

// Registers an atexit handler: a process that exits while MPI is initialised and not finalised (a stray
// exit() in a library, a rank returning early) prints rank and host and aborts the job. Once per process.
void install_exit_guard(const ProcessInfo& who);

}  // namespace lr
