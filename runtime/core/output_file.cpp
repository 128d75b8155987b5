#include "runtime/core/output_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <utility>

#include "runtime/core/check.h"
#include "runtime/core/interrupt.h"

namespace lr {
namespace {

namespace fs = std::filesystem;

std::string sibling(const std::string& path, const std::string& name) {
    const fs::path p(path);
    return p.has_parent_path() ? (p.parent_path() / name).string() : name;
}

}  // namespace

std::string unique_temp_path_for(const std::string& path) {
    static std::mt19937 rng{std::random_device{}()};
    char tag[32];
    std::snprintf(tag, sizeof(tag), "%d-%08x", static_cast<int>(::getpid()), static_cast<unsigned>(rng()));
    return sibling(path, str_cat(".", fs::path(path).filename().string(), ".", tag, ".partial"));
}

OutputLock::OutputLock(const std::string& path, const std::string& flag)
    : lock_path_(sibling(path, str_cat(".", fs::path(path).filename().string(), ".lock"))) {
    // Lock, then check that the file locked is still the one at lock_path_: a run that finishes unlinks its lock
    // file, and a run that opened it just before would otherwise hold a lock nobody else sees.
    for (int attempt = 0; attempt < 8; ++attempt) {
        fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        LR_CHECK(fd_ >= 0, flag, " ", path, ": cannot create the lock file '", lock_path_, "': ", std::strerror(errno));
        if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
            char pid[32] = {};
            const ssize_t n = ::pread(fd_, pid, sizeof(pid) - 1, 0);
            ::close(fd_);
            fd_ = -1;
            LR_CHECK(false, flag, " ", path, ": another longroll run is writing it",
                     n > 0 ? str_cat(" (pid ", std::string(pid, static_cast<size_t>(n)), ")") : std::string(),
                     "; wait for it to finish or choose another output");
        }
        struct stat held {
        }, now{};
        if (::fstat(fd_, &held) == 0 && ::stat(lock_path_.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
            held.st_dev == now.st_dev) {
            const std::string pid = std::to_string(::getpid());
            if (::ftruncate(fd_, 0) == 0) {
                const ssize_t ignored = ::pwrite(fd_, pid.data(), pid.size(), 0);
                (void)ignored;
            }
            cleanup_slot_ = register_cleanup_path(lock_path_);
            return;
        }
        ::close(fd_);
        fd_ = -1;
    }
    LR_RUNTIME(false, flag, " ", path, ": the lock file '", lock_path_, "' keeps changing; is another run starting?");
}

OutputLock::~OutputLock() { release(); }

OutputLock::OutputLock(OutputLock&& o) noexcept
    : lock_path_(std::move(o.lock_path_)),
      fd_(std::exchange(o.fd_, -1)),
      cleanup_slot_(std::exchange(o.cleanup_slot_, -1)) {}

OutputLock& OutputLock::operator=(OutputLock&& o) noexcept {
    if (this != &o) {
        release();
        lock_path_ = std::move(o.lock_path_);
        fd_ = std::exchange(o.fd_, -1);
        cleanup_slot_ = std::exchange(o.cleanup_slot_, -1);
    }
    return *this;
}

void OutputLock::release() {
    if (fd_ < 0) return;
    // Unlink while still holding the lock, so no other run can lock this file after it is gone.
    ::unlink(lock_path_.c_str());
    unregister_cleanup_path(cleanup_slot_);
    cleanup_slot_ = -1;
    ::close(fd_);
    fd_ = -1;
}

void remove_stale_temporaries(const std::string& path) {
    const fs::path p(path);
    const std::string prefix = "." + p.filename().string() + ".";
    std::error_code ec;
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.size() > prefix.size() + 8 && name.compare(0, prefix.size(), prefix) == 0 &&
            name.compare(name.size() - 8, 8, ".partial") == 0) {
            std::error_code rm;
            fs::remove(it->path(), rm);
        }
    }
}

}  // namespace lr
