// Progress on stderr for long runs: a redrawn bar on a terminal, one plain line per chunk otherwise (logs,
// CI, mpirun's forwarded stderr). Only rank 0 makes one enabled.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace lr {

struct ProgressSnapshot {
    int64_t chunks_done = 0;
    int64_t chunks_total = 0;
    int64_t frames_done = 0;
    int64_t frames_total = 0;
    double elapsed_s = 0;
    int fps = 16;  // of the video, for the real-time factor
};

// "chunk 3/20  frames 37/237  45.2 fps  ETA 0:04  2.83x real time" (the plain-line form).
std::string format_progress_line(const ProgressSnapshot& s);
// "1:02:03" / "2:03"; "--:--" for a negative or non-finite duration.
std::string format_duration(double seconds);

class ProgressReporter {
  public:
    // `out` is stderr by default; `terminal` picks the bar style (default: whether `out` is a TTY).
    ProgressReporter(int64_t chunks_total, int64_t frames_total, int fps, bool enabled, std::FILE* out = stderr,
                     int terminal = -1);
    void update(int64_t chunks_done, int64_t frames_done);
    // Final line with totals; idempotent.
    void finish();
    ProgressSnapshot snapshot() const;

  private:
    using Clock = std::chrono::steady_clock;
    std::FILE* out_;
    bool enabled_;
    bool terminal_;
    bool finished_ = false;
    Clock::time_point start_;
    ProgressSnapshot s_;
};

}  // namespace lr
