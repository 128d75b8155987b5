#include "monitoring/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <thread>
#include <vector>

#include "monitoring/file_sd.h"
#include "runtime/core/build_info.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

constexpr double kMaxLingerSeconds = 3600;

double unix_seconds() {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

// LONGROLL_METRICS_LINGER_SECONDS, checked up front so that a typo fails the run before any work.
double linger_seconds_from_env() {
    const char* v = std::getenv("LONGROLL_METRICS_LINGER_SECONDS");
    if (v == nullptr || *v == '\0') return 0;
    char* end = nullptr;
    const double s = std::strtod(v, &end);
    LR_CHECK(end != v && *end == '\0' && std::isfinite(s) && s >= 0 && s <= kMaxLingerSeconds,
             "LONGROLL_METRICS_LINGER_SECONDS='", v, "': expected seconds in [0, ", kMaxLingerSeconds, "]");
    return s;
}

// civetweb's listening_ports syntax: "addr:port", IPv6 in brackets.
std::string listen_address(const std::string& bind, int port) {
    const bool ipv6 = bind.find(':') != std::string::npos && bind.front() != '[';
    return str_cat(ipv6 ? "[" : "", bind, ipv6 ? "]" : "", ":", port);
}

bool is_wildcard(const std::string& bind) { return bind == "0.0.0.0" || bind == "::" || bind == "[::]"; }

// A numeric IPv4 or IPv6 address ("[::1]" too) and a port as a socket address; false for a host name.
bool socket_address(const std::string& ip, int port, sockaddr_storage* addr, socklen_t* len) {
    const std::string host = ip.size() > 2 && ip.front() == '[' && ip.back() == ']' ? ip.substr(1, ip.size() - 2) : ip;
    *addr = {};
    auto* v4 = reinterpret_cast<sockaddr_in*>(addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(addr);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<uint16_t>(port));
        *len = sizeof *v4;
        return true;
    }
    if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<uint16_t>(port));
        *len = sizeof *v6;
        return true;
    }
    return false;
}

// Opens and closes one TCP connection to the exporter, ignoring failures.
void poke(const std::string& bind, int port) {
    sockaddr_storage addr;
    socklen_t len = 0;
    const std::string target = !is_wildcard(bind) ? bind : bind == "0.0.0.0" ? "127.0.0.1" : "::1";
    if (!socket_address(target, port, &addr, &len)) return;  // a host name: civetweb's 2 s wait is the fallback
    const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    (void)::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len);
    ::close(fd);
}

// Why civetweb could not listen ("Address already in use"), found by binding the same address ourselves:
// civetweb only says "null context when constructing CivetServer".
std::string bind_failure_reason(const std::string& bind, int port) {
    sockaddr_storage addr;
    socklen_t len = 0;
    if (!socket_address(bind, port, &addr, &len)) return "";
    const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return "";
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as civetweb does
    const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len);
    const int err = errno;
    ::close(fd);
    return rc == 0 ? "" : std::strerror(err);
}

// Stops the exposer without civetweb's up-to-2 s wait: its master thread polls the listening socket with a
// 2 s timeout (SOCKET_TIMEOUT_QUANTUM) and reads the stop flag only between polls, so a connection made while
// mg_stop() waits wakes it at once. Every short run, and every test, would otherwise end 2 s late.
void stop_exposer(std::unique_ptr<prometheus::Exposer>& exposer, const std::string& bind, int port) {
    std::atomic<bool> stopped{false};
    std::thread waker([&] {
        while (!stopped.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            if (!stopped.load()) poke(bind, port);
        }
    });
    exposer.reset();
    stopped.store(true);
    waker.join();
}

template <typename T>
prometheus::Family<T>& family(prometheus::detail::Builder<T> builder, const std::string& name, const std::string& help,
                              const prometheus::Labels& constant, prometheus::Registry& registry) {
    return builder.Name(name).Help(help).Labels(constant).Register(registry);
}

template <size_t N>
prometheus::Histogram::BucketBoundaries buckets(const std::array<double, N>& b) {
    return {b.begin(), b.end()};
}

}  // namespace

std::string_view stage_label(Stage stage) {
    switch (stage) {
        case Stage::kDit:
            return "dit";
        case Stage::kVae:
            return "vae";
        case Stage::kComm:
            return "comm";
        case Stage::kEncode:
            return "encode";
        case Stage::kIo:
            return "io";
    }
    LR_ASSERT(false, "stage ", static_cast<int>(stage));
}

std::string_view exchange_op_label(ExchangeOp op) {
    switch (op) {
        case ExchangeOp::kKvBlocks:
            return "kv_blocks";
        case ExchangeOp::kAllToAll:
            return "all_to_all";
        case ExchangeOp::kAllGather:
            return "all_gather";
        case ExchangeOp::kVaeLatents:
            return "vae_latents";
        case ExchangeOp::kVaeHalo:
            return "vae_halo";
    }
    LR_ASSERT(false, "exchange op ", static_cast<int>(op));
}

std::string_view video_status_label(VideoStatus status) {
    switch (status) {
        case VideoStatus::kOk:
            return "ok";
        case VideoStatus::kFailed:
            return "failed";
    }
    LR_ASSERT(false, "video status ", static_cast<int>(status));
}

// Everything an enabled exporter owns. The destructor stops the exposer (which serves the registry from its own
// threads) before the registry goes.
struct Metrics::Impl {
    std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
    std::unique_ptr<prometheus::Exposer> exposer;
    std::string bind;
    int port = 0;
    std::string file_sd_path;
    double linger_seconds = 0;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::atomic<bool> first_frame_seen{false};

    // Kept from start(): the hot path dereferences these and nothing else.
    prometheus::Counter* frames = nullptr;
    prometheus::Counter* latent_frames = nullptr;
    prometheus::Counter* chunks = nullptr;
    std::array<prometheus::Counter*, kVideoStatusCount> videos{};
    std::array<prometheus::Counter*, kStageCount> stage_seconds{};
    std::array<prometheus::Counter*, kExchangeOpCount> exchanged_bytes{};
    prometheus::Counter* exchange_hidden_seconds = nullptr;
    prometheus::Histogram* chunk_duration = nullptr;
    prometheus::Histogram* denoise_step_duration = nullptr;
    prometheus::Histogram* vae_decode_duration = nullptr;
    prometheus::Histogram* encode_duration = nullptr;
    prometheus::Gauge* time_to_first_frame = nullptr;
    prometheus::Gauge* last_chunk_timestamp = nullptr;
    prometheus::Gauge* weights_load = nullptr;
    prometheus::Gauge* kv_used = nullptr;
    prometheus::Gauge* kv_capacity = nullptr;
    prometheus::Gauge* sparsity = nullptr;
    prometheus::Gauge* gpu_reserved = nullptr;

    void register_metrics(const prometheus::Labels& constant, const RunInfo& run);
    // Also on a failed start(), so the file_sd file and the exposer never outlive the attempt.
    ~Impl();
};

Metrics::Impl::~Impl() {
    if (exposer) stop_exposer(exposer, bind, port);
    if (!file_sd_path.empty()) {
        std::error_code ec;  // a file someone else removed is not an error at exit
        std::filesystem::remove(file_sd_path, ec);
    }
}

void Metrics::Impl::register_metrics(const prometheus::Labels& constant, const RunInfo& run) {
    using prometheus::BuildCounter;
    using prometheus::BuildGauge;
    using prometheus::BuildHistogram;
    prometheus::Registry& r = *registry;

    family(BuildGauge(), "longroll_run_info", "Constant 1; the labels describe the run", constant, r)
        .Add({{"model", run.model},
              {"resolution", str_cat(run.width, "x", run.height)},
              {"version", kVersion},
              {"git_sha", kGitSha}})
        .Set(1);
    family(BuildGauge(), "longroll_video_fps", "Frame rate of the video (real-time factor = frames/s / fps)", constant,
           r)
        .Add({})
        .Set(run.fps);
    family(BuildGauge(), "longroll_start_time_seconds", "Unix time the exporter started (the run's start)", constant, r)
        .Add({})
        .Set(unix_seconds());

    frames = &family(BuildCounter(), "longroll_frames_generated_total",
                     "Video frames this rank delivered to a video writer", constant, r)
                  .Add({});
    latent_frames = &family(BuildCounter(), "longroll_latent_frames_generated_total",
                            "Latent frames of the chunks this rank took part in", constant, r)
                         .Add({});
    chunks =
        &family(BuildCounter(), "longroll_chunks_completed_total", "Chunks this rank completed", constant, r).Add({});
    auto& videos_family =
        family(BuildCounter(), "longroll_videos_completed_total", "Videos finished, by status", constant, r);
    for (int i = 0; i < kVideoStatusCount; ++i) {
        videos[i] = &videos_family.Add({{"status", std::string(video_status_label(static_cast<VideoStatus>(i)))}});
    }
    auto& stage_family = family(BuildCounter(), "longroll_stage_seconds_total",
                                "Seconds spent per stage of the pipeline (dit, vae, comm, encode, io)", constant, r);
    for (int i = 0; i < kStageCount; ++i) {
        stage_seconds[i] = &stage_family.Add({{"stage", std::string(stage_label(static_cast<Stage>(i)))}});
    }
    exchange_hidden_seconds = &family(BuildCounter(), "longroll_exchange_hidden_seconds_total",
                                      "DiT communicator seconds hidden under compute (overlapped head groups; a "
                                      "lower bound); the exposed part is stage comm",
                                      constant, r)
                                   .Add({});
    auto& exchange_family = family(BuildCounter(), "longroll_exchanged_bytes_total",
                                   "Bytes this rank sent to other ranks, by operation", constant, r);
    for (int i = 0; i < kExchangeOpCount; ++i) {
        exchanged_bytes[i] = &exchange_family.Add({{"op", std::string(exchange_op_label(static_cast<ExchangeOp>(i)))}});
    }

    chunk_duration = &family(BuildHistogram(), "longroll_chunk_duration_seconds",
                             "Wall time of one chunk (denoising, KV pass, decode)", constant, r)
                          .Add({}, buckets(kChunkDurationBuckets));
    denoise_step_duration = &family(BuildHistogram(), "longroll_denoise_step_duration_seconds",
                                    "Wall time of one DiT forward of the denoising loop", constant, r)
                                 .Add({}, buckets(kDenoiseStepBuckets));
    vae_decode_duration = &family(BuildHistogram(), "longroll_vae_decode_duration_seconds",
                                  "Wall time of one chunk's VAE decode", constant, r)
                               .Add({}, buckets(kVaeDecodeBuckets));
    encode_duration = &family(BuildHistogram(), "longroll_encode_duration_seconds",
                              "Wall time of encoding one chunk's frames", constant, r)
                           .Add({}, buckets(kEncodeBuckets));

    // NaN until the first frame: 0 would read as "instant", and a missing series would hide a run that never
    // produced one.
    time_to_first_frame =
        &family(BuildGauge(), "longroll_time_to_first_frame_seconds",
                "Seconds from the start of the run to its first video frame (NaN before)", constant, r)
             .Add({});
    time_to_first_frame->Set(std::numeric_limits<double>::quiet_NaN());
    // The start time until the first chunk, so that a run stuck before its first chunk also trips stall alerts.
    last_chunk_timestamp =
        &family(BuildGauge(), "longroll_last_chunk_timestamp_seconds",
                "Unix time of the last completed chunk (the start time before the first)", constant, r)
             .Add({});
    last_chunk_timestamp->Set(unix_seconds());
    weights_load = &family(BuildGauge(), "longroll_weights_load_duration_seconds",
                           "Seconds spent reading and checking the weights", constant, r)
                        .Add({});
    kv_used = &family(BuildGauge(), "longroll_kv_cache_used_bytes", "KV cache bytes in use on this rank", constant, r)
                   .Add({});
    kv_capacity =
        &family(BuildGauge(), "longroll_kv_cache_capacity_bytes", "KV cache bytes allocated on this rank", constant, r)
             .Add({});
    sparsity = &family(BuildGauge(), "longroll_attention_sparsity_ratio",
                       "Fraction of the cached KV blocks the attention skipped in the last chunk", constant, r)
                    .Add({});
    gpu_reserved = &family(BuildGauge(), "longroll_gpu_memory_reserved_bytes",
                           "GPU memory reserved by this rank (arena, KV cache, workspaces)", constant, r)
                        .Add({});
}

Metrics::Metrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Metrics> Metrics::disabled() { return std::unique_ptr<Metrics>(new Metrics(nullptr)); }

std::unique_ptr<Metrics> Metrics::start(const MetricsOptions& options, const ProcessInfo& who,
                                        const std::string& gpu_uuid, const RunInfo& run) {
    if (!options.enabled) return disabled();
    LR_CHECK(options.base_port >= 0 && options.base_port <= 65535, "metrics port ", options.base_port,
             ": expected a port in [0, 65535] (0 = ephemeral)");
    const int port = options.base_port == 0 ? 0 : options.base_port + who.local_rank;
    LR_CHECK(port <= 65535, "metrics port ", options.base_port, " + local rank ", who.local_rank, " = ", port,
             " is above 65535; pick a lower --metrics-port");
    LR_CHECK(!options.bind.empty(), "metrics: empty bind address (monitoring.bind / --metrics-bind)");
    std::string sd_path;
    if (!options.file_sd_path.empty()) sd_path = file_sd_path_for_rank(options.file_sd_path, who);

    auto impl = std::make_unique<Impl>();
    impl->linger_seconds = linger_seconds_from_env();
    impl->register_metrics({{"rank", std::to_string(who.rank)},
                            {"local_rank", std::to_string(who.local_rank)},
                            {"world_size", std::to_string(who.world_size)},
                            {"gpu_uuid", gpu_uuid.empty() ? "none" : gpu_uuid}},
                           run);

    const std::string address = listen_address(options.bind, port);
    impl->bind = options.bind;
    try {
        // Two civetweb threads: Prometheus scrapes one rank at a time, a person with curl is the second.
        impl->exposer = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/2);
    } catch (const std::exception& e) {
        std::string reason = bind_failure_reason(options.bind, port);
        if (reason.empty())
            reason = str_cat("the port is in use or the address is not one of this host's (", e.what(), ")");
        LR_FAIL("metrics: rank ", who.rank, " on ", who.host, " cannot listen on ", address, ": ", reason,
                "; choose another base port with "
                "--metrics-port P (rank r listens on P + local rank), --metrics-port 0 for ephemeral ports, "
                "--metrics-bind ADDR, or --metrics-port off");
    }
    const std::vector<int> ports = impl->exposer->GetListeningPorts();
    LR_RUNTIME(ports.size() == 1 && ports[0] > 0, "metrics: the exporter on ", address,
               " did not report the port it listens on");
    impl->port = ports[0];
    impl->exposer->RegisterCollectable(impl->registry);

    if (!sd_path.empty()) {
        write_file_atomically(sd_path,
                              file_sd_json(scrape_target(options.bind, who.host, impl->port),
                                           {{"run", file_sd_run_name(options.file_sd_path)}, {"host", who.host}}));
        impl->file_sd_path = sd_path;
    }
    return std::unique_ptr<Metrics>(new Metrics(std::move(impl)));
}

Metrics::~Metrics() {
    if (!impl_) return;
    if (impl_->linger_seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(impl_->linger_seconds));
}

int Metrics::port() const { return impl_ ? impl_->port : 0; }

const std::string& Metrics::file_sd_path() const {
    static const std::string kNone;
    return impl_ ? impl_->file_sd_path : kNone;
}

void Metrics::weights_loaded(double seconds) {
    if (!impl_) return;
    impl_->weights_load->Set(seconds);
}

void Metrics::chunk_done(int64_t latent_frames, int64_t video_frames, double chunk_seconds) {
    if (!impl_) return;
    Impl& m = *impl_;
    m.latent_frames->Increment(static_cast<double>(latent_frames));
    m.frames->Increment(static_cast<double>(video_frames));
    m.chunks->Increment();
    m.chunk_duration->Observe(chunk_seconds);
    m.last_chunk_timestamp->Set(unix_seconds());
    if (video_frames > 0 && !m.first_frame_seen.exchange(true, std::memory_order_relaxed)) {
        m.time_to_first_frame->Set(std::chrono::duration<double>(std::chrono::steady_clock::now() - m.started).count());
    }
}

void Metrics::denoise_step(double seconds) {
    if (impl_) impl_->denoise_step_duration->Observe(seconds);
}

void Metrics::vae_decode(double seconds) {
    if (impl_) impl_->vae_decode_duration->Observe(seconds);
}

void Metrics::encode(double seconds) {
    if (impl_) impl_->encode_duration->Observe(seconds);
}

void Metrics::stage_time(Stage stage, double seconds) {
    if (impl_) impl_->stage_seconds[static_cast<size_t>(stage)]->Increment(seconds);
}

void Metrics::exchange_hidden(double seconds) {
    if (impl_ && seconds > 0) impl_->exchange_hidden_seconds->Increment(seconds);
}

void Metrics::kv_cache(int64_t bytes_used, int64_t bytes_capacity) {
    if (!impl_) return;
    impl_->kv_used->Set(static_cast<double>(bytes_used));
    impl_->kv_capacity->Set(static_cast<double>(bytes_capacity));
}

void Metrics::attention_sparsity(double fraction_skipped) {
    if (impl_) impl_->sparsity->Set(fraction_skipped);
}

void Metrics::bytes_exchanged(ExchangeOp op, int64_t bytes) {
    if (impl_) impl_->exchanged_bytes[static_cast<size_t>(op)]->Increment(static_cast<double>(bytes));
}

void Metrics::gpu_memory_reserved(int64_t bytes) {
    if (impl_) impl_->gpu_reserved->Set(static_cast<double>(bytes));
}

void Metrics::video_done(VideoStatus status) {
    if (impl_) impl_->videos[static_cast<size_t>(status)]->Increment();
}

}  // namespace lr
