// What the GPU benchmark programs share (dit_bench, vae_bench, e2e_bench, reference_check): the JSON they write,
// the GPU name and commit that go into it, medians, device-memory sampling and CUDA-event timing.
//
// Every program writes one JSON document: {"tool", "gpu", "gpu_memory_bytes", "commit", "started", ...settings,
// "results": {<item>: {"ms": median, "samples_ms": [...], "peak_bytes": ..., ...}}}. Item names match
// bench/reference/sf_reference.py's ("dit.full_window_chunk.480p", "vae.decode_chunk.1088p", ...), so that
// bench/summarize.py pairs each longroll figure with its PyTorch yardstick.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/build_info.h"
#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/model/wan_model.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "runtime/core/cuda_check.h"
#endif

namespace lr::bench {

// ---- JSON ---------------------------------------------------------------------------------------------------

// An ordered JSON object built field by field; values are rendered when added.
class JsonObject {
  public:
    JsonObject& add(const std::string& key, const std::string& v) { return raw(key, json::quote(v)); }
    JsonObject& add(const std::string& key, const char* v) { return raw(key, json::quote(v)); }
    JsonObject& add(const std::string& key, bool v) { return raw(key, v ? "true" : "false"); }
    JsonObject& add(const std::string& key, double v) { return raw(key, number(v)); }
    JsonObject& add(const std::string& key, int64_t v) { return raw(key, std::to_string(v)); }
    JsonObject& add(const std::string& key, int v) { return raw(key, std::to_string(v)); }
    JsonObject& add(const std::string& key, uint64_t v) { return raw(key, std::to_string(v)); }
    JsonObject& add(const std::string& key, const std::vector<double>& v) {
        std::string s = "[";
        for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + number(v[i]);
        return raw(key, s + "]");
    }
    JsonObject& add(const std::string& key, const JsonObject& v) { return raw(key, v.str()); }
    JsonObject& raw(const std::string& key, std::string rendered) {
        fields_.emplace_back(key, std::move(rendered));
        return *this;
    }
    bool empty() const { return fields_.empty(); }

    std::string str(int indent = 0) const {
        if (fields_.empty()) return "{}";
        const std::string pad(static_cast<size_t>(indent + 1), ' ');
        std::string s = "{\n";
        for (size_t i = 0; i < fields_.size(); ++i) {
            s += pad + json::quote(fields_[i].first) + ": " + reindent(fields_[i].second, indent + 1);
            s += i + 1 < fields_.size() ? ",\n" : "\n";
        }
        return s + std::string(static_cast<size_t>(indent), ' ') + "}";
    }

    static std::string number(double v) {
        if (!std::isfinite(v)) return "null";
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.6g", v);
        return buf;
    }

  private:
    // Nested objects were rendered at indent 0 when added; shift their inner lines.
    static std::string reindent(const std::string& s, int indent) {
        std::string out;
        for (char c : s) {
            out += c;
            if (c == '\n') out += std::string(static_cast<size_t>(indent), ' ');
        }
        return out;
    }
    std::vector<std::pair<std::string, std::string>> fields_;
};

// Writes `doc` to `path` (directories created) through a temporary name; false (and a message) on failure.
inline bool write_json(const std::string& path, const JsonObject& doc) {
    std::error_code ec;
    const std::filesystem::path p(path);
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp);
        if (!out) {
            std::fprintf(stderr, "cannot write %s\n", tmp.c_str());
            return false;
        }
        out << doc.str() << "\n";
        if (!out.good()) return false;
    }
    std::filesystem::rename(tmp, p, ec);
    if (ec) {
        std::fprintf(stderr, "cannot rename %s: %s\n", tmp.c_str(), ec.message().c_str());
        return false;
    }
    std::printf("wrote %s\n", path.c_str());
    return true;
}

inline std::string now_iso8601() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// ---- figures --------------------------------------------------------------------------------------------------

inline double median(std::vector<double> v) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline double gib(double bytes) { return bytes / double(1ull << 30); }

// Standard normal host data (the inputs' values do not change the timings; they keep the arithmetic finite).
inline std::vector<float> gaussian(size_t n, uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

// ---- command line ---------------------------------------------------------------------------------------------

// A resolution by name: "480p" = 480x832, "1088p" = 1088x1920, or "WxH" in pixels (multiples of 16).
struct Resolution {
    std::string name;
    int64_t height = 0;  // pixels
    int64_t width = 0;
    int64_t latent_h() const { return height / 8; }
    int64_t latent_w() const { return width / 8; }
};

inline Resolution parse_resolution(const std::string& s) {
    if (s == "480p") return {"480p", 480, 832};
    if (s == "1088p") return {"1088p", 1088, 1920};
    const size_t x = s.find('x');
    LR_CHECK(x != std::string::npos, "resolution '", s, "': expected 480p, 1088p or WxH");
    const int64_t w = std::stoll(s.substr(0, x)), h = std::stoll(s.substr(x + 1));
    LR_CHECK(w > 0 && h > 0 && w % 16 == 0 && h % 16 == 0, "resolution '", s, "': W and H must be multiples of 16");
    return {s, h, w};
}

inline std::vector<Resolution> parse_resolutions(const std::string& list) {
    std::vector<Resolution> out;
    std::stringstream ss(list);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(parse_resolution(item));
    return out;
}

// ---- flags ----------------------------------------------------------------------------------------------------

// What every bench writes with its figures: --json FILE, --commit SHA, --seed N.
struct OutputFlags {
    std::string json;
    std::string commit;
    uint64_t seed = 0;
};

// The timing flags of the per-item benches: --sizes LIST, --iters N, --iters-1088 N, --warmup N.
struct TimingFlags {
    std::vector<Resolution> sizes = parse_resolutions("480p,1088p");
    int iters = 5;
    int iters_1088 = 2;
    int warmup = 1;

    bool take(const std::string& flag, const std::function<std::string()>& value) {
        if (flag == "--sizes")
            sizes = parse_resolutions(value());
        else if (flag == "--iters")
            iters = std::stoi(value());
        else if (flag == "--iters-1088")
            iters_1088 = std::stoi(value());
        else if (flag == "--warmup")
            warmup = std::stoi(value());
        else
            return false;
        return true;
    }
    void check() const {
        LR_CHECK(iters > 0 && iters_1088 > 0 && warmup >= 0, "--iters/--iters-1088 must be > 0, --warmup >= 0");
    }
};

// Walks argv: `take(flag, value)` claims the bench's own flags (value() reads the next argument); --json,
// --commit and --seed land in `out`; anything else prints `usage` and exits (0 for --help / -h, else 2).
inline void parse_flags(int argc, char** argv, const char* usage, OutputFlags& out,
                        const std::function<bool(const std::string&, const std::function<std::string()>&)>& take) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const std::function<std::string()> value = [&]() -> std::string {
            LR_CHECK(i + 1 < argc, a, " needs a value");
            return argv[++i];
        };
        if (take(a, value)) continue;
        if (a == "--json") {
            out.json = value();
        } else if (a == "--commit") {
            out.commit = value();
        } else if (a == "--seed") {
            out.seed = std::stoull(value());
        } else {
            std::fputs(usage, stderr);
            std::exit(a == "--help" || a == "-h" ? 0 : 2);
        }
    }
}

// The Wan2.1 T2V DiT shapes: "1.3b" (dim 1536, 12 heads, 30 layers) or "14b" (dim 5120, 40 heads, 40 layers).
inline WanModelConfig wan_config(const std::string& name) {
    WanModelConfig c;
    c.dims.in_dim = c.dims.out_dim = 16;
    c.dims.text_dim = 4096;
    c.dims.freq_dim = 256;
    c.text_len = 512;
    c.eps = 1e-6;
    if (name == "14b") {
        c.dims.dim = 5120, c.dims.ffn_dim = 13824, c.dims.num_heads = 40, c.dims.num_layers = 40;
    } else {
        c.dims.dim = 1536, c.dims.ffn_dim = 8960, c.dims.num_heads = 12, c.dims.num_layers = 30;
    }
    return c;
}

// The commit the figures belong to: --commit, else $LONGROLL_COMMIT, else the sha baked in at configure time
// ("unknown" when the build tree had no git checkout, as on the GPU machine's copy of the working tree).
inline std::string commit_of(const std::string& flag) {
    if (!flag.empty()) return flag;
    if (const char* e = std::getenv("LONGROLL_COMMIT"); e && *e) return e;
    return kGitSha;
}

// ---- the device -----------------------------------------------------------------------------------------------

struct GpuInfo {
    std::string name = "none";
    uint64_t total_bytes = 0;
};

inline GpuInfo gpu_info() {
    GpuInfo g;
#ifdef LONGROLL_HAS_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess && n > 0) {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) {
            g.name = p.name;
            g.total_bytes = p.totalGlobalMem;
        }
    }
    cudaGetLastError();  // a failed query leaves no sticky error behind for the program
#endif
    return g;
}

// The common head of every document.
inline JsonObject header(const std::string& tool, const std::string& commit_flag) {
    const GpuInfo g = gpu_info();
    JsonObject j;
    j.add("tool", tool)
        .add("implementation", "longroll")
        .add("gpu", g.name)
        .add("gpu_memory_bytes", g.total_bytes)
        .add("commit", commit_of(commit_flag))
        .add("version", kVersion)
        .add("cuda_architectures", kCudaArchitectures)
        .add("started", now_iso8601());
    return j;
}

#ifdef LONGROLL_HAS_CUDA
// Bytes in use on the current device (total - free): every process's allocations and the contexts. Differences
// of two readings in one process measure what it allocated in between (the benchmarks allocate their plans up
// front, so the reading after a run is the peak).
inline size_t device_used_bytes() {
    size_t free_b = 0, total_b = 0;
    LR_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return total_b - free_b;
}

// A start/stop pair of CUDA events on one stream; ms() waits for the stop event.
class EventTimer {
  public:
    EventTimer() {
        LR_CUDA_CHECK(cudaEventCreate(&start_));
        LR_CUDA_CHECK(cudaEventCreate(&stop_));
    }
    ~EventTimer() {
        cudaEventDestroy(start_);
        cudaEventDestroy(stop_);
    }
    EventTimer(const EventTimer&) = delete;
    EventTimer& operator=(const EventTimer&) = delete;
    void start(cudaStream_t s) { LR_CUDA_CHECK(cudaEventRecord(start_, s)); }
    void stop(cudaStream_t s) { LR_CUDA_CHECK(cudaEventRecord(stop_, s)); }
    double ms() {
        LR_CUDA_CHECK(cudaEventSynchronize(stop_));
        float v = 0;
        LR_CUDA_CHECK(cudaEventElapsedTime(&v, start_, stop_));
        return v;
    }

  private:
    cudaEvent_t start_ = nullptr, stop_ = nullptr;
};
#endif

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace lr::bench
