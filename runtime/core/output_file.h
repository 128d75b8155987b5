// What keeps two runs (or a run and its own inputs) from writing one file: every output is written under a
// temporary name unique to the writer and renamed when complete, and a run holds a lock on each of its outputs
// for its whole length.
#pragma once

#include <string>

namespace lr {

// "<dir>/.<name>.<pid>-<random>.partial" for "<dir>/<name>": unique per writer, hidden, in the same directory (so
// the final rename is atomic).
std::string unique_temp_path_for(const std::string& path);

// An exclusive lock (flock) on "<dir>/.<name>.lock", taken before any work and held until destroyed; the lock
// file is removed then (and by a second signal). A lock left by a killed run is free again (the kernel drops it).
class OutputLock {
  public:
    OutputLock() = default;
    // InputError naming `flag` and the path when another process holds the lock.
    OutputLock(const std::string& path, const std::string& flag);
    ~OutputLock();
    OutputLock(OutputLock&& o) noexcept;
    OutputLock& operator=(OutputLock&& o) noexcept;
    OutputLock(const OutputLock&) = delete;
    OutputLock& operator=(const OutputLock&) = delete;

  private:
    void release();
    std::string lock_path_;
    int fd_ = -1;
    int cleanup_slot_ = -1;
};

// Removes the temporary files "<dir>/.<name>.*.partial" that killed runs left next to `path`. Only safe while
// holding the OutputLock of `path`.
void remove_stale_temporaries(const std::string& path);

}  // namespace lr
