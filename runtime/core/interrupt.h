// Stopping a long run cleanly (DESIGN.md section 9). The first SIGINT, SIGTERM or SIGHUP only records the signal:
// the run polls interrupt_signal() at chunk boundaries, finishes the chunk in flight, finalises what exists (a
// playable video, the latents so far, a resume checkpoint) and exits with 128 + the signal's number. A second
// signal stops at once: the handler removes every registered temporary file (unlink is async-signal-safe) and
// calls _exit(128 + signal).
#pragma once

#include <string>

namespace lr {

// Installs the handlers for SIGINT, SIGTERM and SIGHUP (idempotent). SA_RESTART, so library calls in flight are
// not cut short by the first signal. `announce`: the first signal prints that the run is stopping (one rank of an
// mpirun job says it, not every one).
void install_interrupt_handlers(bool announce = true);

// The first signal received (SIGINT, SIGTERM or SIGHUP), or 0.
int interrupt_signal();

// Sets the recorded signal as if it had arrived (a run whose peer rank was interrupted stops the same way).
void raise_interrupt_flag(int signal);

// "SIGINT", "SIGTERM", "SIGHUP", or "signal N".
std::string signal_name(int signal);

// Paths the second signal removes (temporary outputs and lock files). Up to 64 at a time; register returns a
// slot to unregister once the file is committed or removed (-1, harmlessly, when the table is full).
int register_cleanup_path(const std::string& path);
void unregister_cleanup_path(int slot);

}  // namespace lr
