// Prometheus metrics for a longroll run (DESIGN.md section 8): one exporter per rank, serving /metrics.
//
// Every rank starts one prometheus-cpp exposer on base_port + local_rank (base_port 0: an ephemeral port,
// read back and, with file_sd_path set, announced in a Prometheus file_sd JSON). All families and every
// labelled child are created in start(); the event methods below only bump a counter, set a gauge or
// observe a histogram through pointers kept from then, so nothing is looked up, allocated or registered
// on the hot path. prometheus-cpp metrics are thread-safe, so any thread (the encoder's included) may
// report. With metrics disabled every event method is one branch and a return.
//
// Naming: prefix `longroll_`, base units (seconds, bytes), `_total` on counters, fixed histogram buckets
// (below), constant labels rank / local_rank / world_size / gpu_uuid on every series, no per-frame or
// per-prompt labels. monitoring/README.md lists every metric.
//
// file_sd: a run with one rank writes exactly file_sd_path; with several ranks every rank writes its own
// file, the rank inserted before ".json" (sd.json -> sd.rank3.json), so no rank waits on another and a rank
// that cannot bind does not hang the job. Prometheus reads them all with one glob (files: [".../sd*.json"]).
// Each file is written atomically (temporary file + rename) and removed when the Metrics object is
// destroyed: a run that ends cleanly leaves Prometheus' targets, one that crashed stays as a down target.
//
// LONGROLL_METRICS_LINGER_SECONDS=N (read by start(), 0..3600): the destructor keeps serving /metrics for N
// more seconds before it stops the exposer, so that a scrape sees the final values of a short run.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "dist/process.h"

namespace lr {

// Where the time of a chunk goes: longroll_stage_seconds_total{stage=...}.
enum class Stage { kDit, kVae, kComm, kEncode, kIo };
inline constexpr int kStageCount = 5;
// Inter-rank traffic: longroll_exchanged_bytes_total{op=...}. kv_blocks: the spatial ranks' KV-block exchange;
// all_to_all: Ulysses' q/k/v and attention-output all-to-alls; all_gather: the DiT output gathered by every rank of
// a sequence-parallel group and the VAE middle attention's q/k/v; vae_latents: latents from the DiT to dedicated
// VAE ranks; vae_halo: the row-split VAE's halo rows and its rows gathered to the writing rank.
enum class ExchangeOp { kKvBlocks, kAllToAll, kAllGather, kVaeLatents, kVaeHalo };
inline constexpr int kExchangeOpCount = 5;
// longroll_videos_completed_total{status=...}.
enum class VideoStatus { kOk, kFailed };
inline constexpr int kVideoStatusCount = 2;

// The label values: "dit", "vae", "comm", "encode", "io"; "kv_blocks", "all_to_all", "all_gather", "vae_latents",
// "vae_halo"; "ok", "failed".
std::string_view stage_label(Stage stage);
std::string_view exchange_op_label(ExchangeOp op);
std::string_view video_status_label(VideoStatus status);

// Fixed histogram buckets (upper bounds, seconds), chosen around what each duration is on the targets:
// a chunk of 3 latent frames is 12 video frames = 0.75 s of video at 16 fps, so 0.75 s is the real-time line;
// the 1.3B model on one H100 takes ~0.3-1 s per chunk, the 14B model or the CPU reference seconds to minutes.
// A chunk is 4 denoising steps plus a KV-writing pass, so a step is ~1/5 of a chunk; the VAE decodes one chunk
// at a time; the encoder (x264 or Y4M) handles one chunk's 12 frames.
inline constexpr std::array<double, 14> kChunkDurationBuckets = {0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1,
                                                                 1.5,  2,   3,   5,   10,  30,   60};
inline constexpr std::array<double, 14> kDenoiseStepBuckets = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15,
                                                               0.2,   0.3,  0.5,   1,    2.5,   5,   10};
inline constexpr std::array<double, 12> kVaeDecodeBuckets = {0.01, 0.025, 0.05, 0.1, 0.2, 0.3,
                                                             0.5,  0.75,  1,    2.5, 5,   10};
inline constexpr std::array<double, 12> kEncodeBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                          0.1,   0.25,   0.5,   1,    2.5,   5};

// From the config's MonitoringConfig: {enabled, port, bind, file_sd_path}.
struct MetricsOptions {
    bool enabled = false;
    int base_port = 9400;  // rank r listens on base_port + local_rank; 0 = ephemeral
    std::string bind = "0.0.0.0";
    std::string file_sd_path;  // "" = write none; otherwise must end in ".json"
};

// What longroll_run_info{model,resolution,version,git_sha} says about the run (version and git sha come from
// the build; world_size is a constant label of every series, taken from ProcessInfo).
struct RunInfo {
    std::string model;  // short name, e.g. "wan2.1-t2v-1.3b" or "tiny"
    int width = 0;      // pixels written
    int height = 0;
    int fps = 16;  // also exported as longroll_video_fps, the denominator of the real-time factor
};

class Metrics {
  public:
    // Starts this rank's exporter (see the file comment). Disabled -> an object whose methods do nothing and
    // that binds nothing. Throws InputError when the address cannot be bound (port in use, address not on this
    // host), naming the address and port and suggesting --metrics-port; when base_port + local_rank > 65535;
    // when file_sd_path does not end in ".json" or its directory is missing or not writable; on a bad
    // LONGROLL_METRICS_LINGER_SECONDS. gpu_uuid "" (CPU runs) is exported as "none". The clock of
    // longroll_time_to_first_frame_seconds starts here, so call it as soon as the config is known.
    static std::unique_ptr<Metrics> start(const MetricsOptions& options, const ProcessInfo& who,
                                          const std::string& gpu_uuid, const RunInfo& run);
    // A disabled instance, for code paths that take a Metrics& but run without an exporter (tests, tools).
    static std::unique_ptr<Metrics> disabled();

    ~Metrics();  // lingers (LONGROLL_METRICS_LINGER_SECONDS), stops the exposer, removes the file_sd file
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    bool enabled() const { return impl_ != nullptr; }
    int port() const;                         // the bound port; 0 when disabled
    const std::string& file_sd_path() const;  // the file this rank wrote; "" when none

    // ---- Events (base SI units). Cheap, thread-safe, no-ops when disabled.
    // Weights read and checked: longroll_weights_load_duration_seconds.
    void weights_loaded(double seconds);
    // One chunk finished on this rank; every rank that took part in it calls this. latent_frames: the chunk's latent
    // frames; video_frames: the video frames it became on the rank that delivers the run's output, 0 on the other
    // ranks (so that a sum over ranks counts each video frame once). Updates the frames, latent frames and chunks
    // counters, the chunk duration histogram, longroll_last_chunk_timestamp_seconds and, on the first call with
    // video frames, longroll_time_to_first_frame_seconds.
    void chunk_done(int64_t latent_frames, int64_t video_frames, double chunk_seconds);
    void denoise_step(double seconds);             // one DiT forward of the denoising loop
    void vae_decode(double seconds);               // one chunk's VAE decode
    void encode(double seconds);                   // one chunk's frames through the video encoder
    void stage_time(Stage stage, double seconds);  // this rank's time in a stage, added up
    void kv_cache(int64_t bytes_used, int64_t bytes_capacity);
    void attention_sparsity(double fraction_skipped);  // of the KV blocks the dense attention would read
    void bytes_exchanged(ExchangeOp op, int64_t bytes);
    // DiT exchange seconds that ran under compute (parallel.overlap_groups > 1), not in stage "comm".
    void exchange_hidden(double seconds);
    void gpu_memory_reserved(int64_t bytes);
    void video_done(VideoStatus status);  // once per video, by the rank that delivers it

  private:
    struct Impl;
    explicit Metrics(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace lr
