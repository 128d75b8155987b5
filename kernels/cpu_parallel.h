// Work splitting for the CPU reference backend: a parallel-for over index ranges.
//
// Threads are started per call and joined before it returns, so there is no pool to size, pin or shut
// down; a call costs a few tens of microseconds, which only matters for work that small enough to run
// serially anyway (see `grain`). The number of threads is the hardware's, or LONGROLL_CPU_THREADS.
#pragma once

#include <cstdint>
#include <functional>

namespace lr {

// Threads the CPU ops may use: LONGROLL_CPU_THREADS when set (>= 1), else std::thread::hardware_concurrency().
int cpu_threads();
// Overrides cpu_threads() for this process (tests, benchmarks); n <= 0 restores the default.
void set_cpu_threads(int n);

// Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` items long (except when n
// is smaller), on up to cpu_threads() threads including the caller. Serial when n < 2 * grain. An exception
// thrown by fn on any thread is rethrown on the caller after every thread has finished.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace lr
