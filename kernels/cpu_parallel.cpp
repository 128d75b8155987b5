#include "kernels/cpu_parallel.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lr {
namespace {

std::atomic<int> g_thread_override{0};

int default_threads() {
    if (const char* env = std::getenv("LONGROLL_CPU_THREADS")) {
        const int n = std::atoi(env);
        if (n >= 1) return n;
    }
    return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

int cpu_threads() {
    const int o = g_thread_override.load(std::memory_order_relaxed);
    if (o > 0) return o;
    static const int n = default_threads();
    return n;
}

void set_cpu_threads(int n) { g_thread_override.store(n > 0 ? n : 0, std::memory_order_relaxed); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int64_t tasks = std::min<int64_t>(cpu_threads(), n / grain);
    if (tasks <= 1) {
        fn(0, n);
        return;
    }
    std::exception_ptr error;
    std::mutex error_mutex;
    auto run = [&](int64_t t) {
        // Contiguous, balanced ranges: the first n % tasks ranges get one item more.
        const int64_t base = n / tasks, extra = n % tasks;
        const int64_t begin = t * base + std::min(t, extra);
        const int64_t end = begin + base + (t < extra ? 1 : 0);
        try {
            fn(begin, end);
        } catch (...) {
            const std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
        }
    };
    std::vector<std::thread> threads;
    threads.reserve(static_cast<size_t>(tasks - 1));
    for (int64_t t = 1; t < tasks; ++t) threads.emplace_back(run, t);
    run(0);
    for (std::thread& th : threads) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace lr
