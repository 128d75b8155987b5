#include "runtime/core/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace lr {
namespace {

constexpr int kSlots = 64;
constexpr size_t kPathMax = 4096;

std::atomic<int> g_signal{0};
std::atomic<bool> g_announce{true};
// A slot is readable by the handler while g_used[i] is 1; the path is written before the flag is set and the
// flag cleared before the slot is reused, so the handler never sees a half-written path.
char g_paths[kSlots][kPathMax];
std::atomic<int> g_used[kSlots];
std::mutex g_register_mu;

void write_stderr(const char* s) {
    const ssize_t ignored = ::write(STDERR_FILENO, s, std::strlen(s));
    (void)ignored;
}

void on_signal(int sig) {
    int expected = 0;
    if (g_signal.compare_exchange_strong(expected, sig)) {
        if (!g_announce.load()) return;
        write_stderr(
            "\nlongroll: stopping after the chunk in flight: the video and latents so far are finalised and a resume "
            "checkpoint written (signal again to stop at once)\n");
        return;
    }
    for (int i = 0; i < kSlots; ++i) {
        if (g_used[i].load() == 1) ::unlink(g_paths[i]);
    }
    write_stderr("\nlongroll: stopped at once; temporary files removed\n");
    _exit(128 + g_signal.load());
}

}  // namespace

void install_interrupt_handlers(bool announce) {
    g_announce.store(announce);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

int interrupt_signal() { return g_signal.load(); }

void raise_interrupt_flag(int signal) {
    int expected = 0;
    g_signal.compare_exchange_strong(expected, signal);
}

std::string signal_name(int signal) {
    switch (signal) {
        case SIGINT:
            return "SIGINT";
        case SIGTERM:
            return "SIGTERM";
        case SIGHUP:
            return "SIGHUP";
        default:
            return "signal " + std::to_string(signal);
    }
}

int register_cleanup_path(const std::string& path) {
    if (path.size() >= kPathMax) return -1;
    std::lock_guard<std::mutex> lock(g_register_mu);
    for (int i = 0; i < kSlots; ++i) {
        if (g_used[i].load() != 0) continue;
        std::memcpy(g_paths[i], path.c_str(), path.size() + 1);
        g_used[i].store(1);
        return i;
    }
    return -1;
}

void unregister_cleanup_path(int slot) {
    if (slot < 0 || slot >= kSlots) return;
    std::lock_guard<std::mutex> lock(g_register_mu);
    g_used[slot].store(0);
}

}  // namespace lr
