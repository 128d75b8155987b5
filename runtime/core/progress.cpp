#include "runtime/core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace lr {

std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "--:--";
    const auto total = static_cast<int64_t>(std::llround(seconds));
    const int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
    char buf[48];
    if (h > 0) {
        std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(h), static_cast<long long>(m),
                      static_cast<long long>(s));
    } else {
        std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(m), static_cast<long long>(s));
    }
    return buf;
}

std::string format_progress_line(const ProgressSnapshot& s) {
    const double fps = s.elapsed_s > 0 ? static_cast<double>(s.frames_done) / s.elapsed_s : 0.0;
    const double eta = fps > 0 ? static_cast<double>(s.frames_total - s.frames_done) / fps : -1.0;
    // Real-time factor: seconds of video produced per second of wall time (>1 is faster than playback).
    const double rtf = s.fps > 0 ? fps / s.fps : 0.0;
    char buf[256];
    std::snprintf(buf, sizeof buf, "chunk %lld/%lld  frames %lld/%lld  %.1f fps  ETA %s  %.2fx real time",
                  static_cast<long long>(s.chunks_done), static_cast<long long>(s.chunks_total),
                  static_cast<long long>(s.frames_done), static_cast<long long>(s.frames_total), fps,
                  s.frames_done > 0 ? format_duration(eta).c_str() : "--:--", rtf);
    return buf;
}

ProgressReporter::ProgressReporter(int64_t chunks_total, int64_t frames_total, int fps, bool enabled, std::FILE* out,
                                   int terminal)
    : out_(out),
      enabled_(enabled && out != nullptr),
      terminal_(terminal < 0 ? (out != nullptr && isatty(fileno(out)) != 0) : terminal != 0),
      start_(Clock::now()) {
    s_.chunks_total = chunks_total;
    s_.frames_total = frames_total;
    s_.fps = fps;
}

ProgressSnapshot ProgressReporter::snapshot() const { return s_; }

void ProgressReporter::update(int64_t chunks_done, int64_t frames_done) {
    s_.chunks_done = chunks_done;
    s_.frames_done = frames_done;
    s_.elapsed_s = std::chrono::duration<double>(Clock::now() - start_).count();
    if (!enabled_) return;
    const std::string line = format_progress_line(s_);
    if (terminal_) {
        constexpr int kWidth = 30;
        const double frac = s_.frames_total > 0 ? static_cast<double>(frames_done) / s_.frames_total : 0.0;
        const int filled = static_cast<int>(frac * kWidth);
        std::string bar(static_cast<size_t>(filled), '#');
        bar.append(static_cast<size_t>(kWidth - filled), '.');
        std::fprintf(out_, "\r\033[K[%s] %3d%%  %s", bar.c_str(), static_cast<int>(frac * 100), line.c_str());
    } else {
        std::fprintf(out_, "%s\n", line.c_str());
    }
    std::fflush(out_);
}

void ProgressReporter::finish() {
    if (finished_) return;
    finished_ = true;
    if (!enabled_) return;
    if (terminal_) std::fprintf(out_, "\n");
    std::fflush(out_);
}

}  // namespace lr
