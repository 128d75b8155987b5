// LR_MPI_CHECK(call): an MPI call that does not return MPI_SUCCESS throws a RuntimeError naming the call,
// the MPI error string, the world rank, the host, file and line. Communicators set MPI_ERRORS_RETURN so
// that errors come back here instead of MPI's default abort without context.
#pragma once

#include <mpi.h>

namespace lr::detail {
[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line);
}  // namespace lr::detail

#define LR_MPI_CHECK(call)                                                        \
    do {                                                                          \
        const int lr_mpi_rc_ = (call);                                            \
        if (lr_mpi_rc_ != MPI_SUCCESS) [[unlikely]] {                             \
            ::lr::detail::throw_mpi_error(lr_mpi_rc_, #call, __FILE__, __LINE__); \
        }                                                                         \
    } while (0)
