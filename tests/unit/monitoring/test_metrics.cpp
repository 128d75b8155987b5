// The exporter as Prometheus sees it: a real exposer on a loopback ephemeral port, read back over HTTP with a
// plain socket client, the values checked after each event; disabled mode, a port in use, file_sd, and
// `promtool check metrics` on a scrape when promtool is installed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <string_view>

#include "monitoring/file_sd.h"
#include "monitoring/metrics.h"
#include "runtime/core/build_info.h"
#include "runtime/core/check.h"
#include "runtime/io/json.h"

namespace lr {
namespace {

// GET http://127.0.0.1:<port><path>, HTTP/1.0 so the server closes the connection after the body.
std::string http_get(int port, const std::string& path = "/metrics") {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return "";
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    std::string response;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
        const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if (::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
            char buf[4096];
            ssize_t n = 0;
            while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) response.append(buf, static_cast<size_t>(n));
        }
    }
    ::close(fd);
    return response;
}

// The body of a 200 response, or "" (and a test failure) for anything else.
std::string scrape(int port) {
    const std::string r = http_get(port);
    const size_t head_end = r.find("\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.", 0), 0u) << r.substr(0, 200);
    EXPECT_NE(r.find(" 200 "), std::string::npos) << r.substr(0, 200);
    return head_end == std::string::npos ? "" : r.substr(head_end + 4);
}

// The value of the first sample named `name` whose label set contains every one of `labels` ("stage=\"vae\"").
// NaN when there is none.
double sample(const std::string& text, std::string_view name, std::initializer_list<std::string_view> labels = {}) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        if (line.compare(0, name.size(), name) != 0) continue;
        if (line.size() > name.size() && line[name.size()] != '{' && line[name.size()] != ' ') continue;
        bool all = true;
        for (std::string_view l : labels) all = all && line.find(l) != std::string::npos;
        if (!all) continue;
        return std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
    }
    return std::nan("");
}

ProcessInfo one_rank() {
    ProcessInfo p;
    p.host = "testhost";
    return p;
}

RunInfo tiny_run() {
    RunInfo r;
    r.model = "tiny";
    r.width = 128;
    r.height = 64;
    r.fps = 16;
    return r;
}

MetricsOptions loopback(int port = 0) {
    MetricsOptions o;
    o.enabled = true;
    o.base_port = port;
    o.bind = "127.0.0.1";
    return o;
}

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "lr_metrics_XXXXXX").string();
        path = ::mkdtemp(tmpl.data());
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

TEST(Metrics, ServesConstantLabelsAndRunInfo) {
    ProcessInfo who = one_rank();
    auto m = Metrics::start(loopback(), who, "GPU-1234", tiny_run());
    ASSERT_TRUE(m->enabled());
    ASSERT_GT(m->port(), 0);
    const std::string text = scrape(m->port());
    EXPECT_EQ(sample(text, "longroll_run_info",
                     {"model=\"tiny\"", "resolution=\"128x64\"", str_cat("version=\"", kVersion, "\""),
                      str_cat("git_sha=\"", kGitSha, "\""), "world_size=\"1\""}),
              1)
        << text;
    // Every longroll series carries the constant labels (prometheus-cpp adds its own exposer_* series).
    std::istringstream in(text);
    std::string line;
    int series = 0;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#' || line.rfind("exposer_", 0) == 0) continue;
        ++series;
        EXPECT_EQ(line.rfind("longroll_", 0), 0u) << line;
        for (const char* l : {"rank=\"0\"", "local_rank=\"0\"", "world_size=\"1\"", "gpu_uuid=\"GPU-1234\""}) {
            EXPECT_NE(line.find(l), std::string::npos) << l << " missing in: " << line;
        }
    }
    EXPECT_GT(series, 20);
    EXPECT_EQ(sample(text, "longroll_video_fps"), 16);
    EXPECT_GT(sample(text, "longroll_start_time_seconds"), 1.7e9);
    EXPECT_TRUE(std::isnan(sample(text, "longroll_time_to_first_frame_seconds"))) << "NaN before the first frame";
    // Counters with every label value are there from the start (at 0), so rate() and alerts see them.
    EXPECT_EQ(sample(text, "longroll_videos_completed_total", {"status=\"failed\""}), 0);
    EXPECT_EQ(sample(text, "longroll_stage_seconds_total", {"stage=\"comm\""}), 0);
    for (const char* op : {"kv_blocks", "all_to_all", "all_gather", "vae_latents", "vae_halo"}) {
        EXPECT_EQ(sample(text, "longroll_exchanged_bytes_total", {std::string("op=\"") + op + "\""}), 0) << op;
    }
}

TEST(Metrics, EventsMoveTheValues) {
    auto m = Metrics::start(loopback(), one_rank(), "", tiny_run());
    const std::string before = scrape(m->port());
    EXPECT_NE(before.find("gpu_uuid=\"none\""), std::string::npos);
    EXPECT_EQ(sample(before, "longroll_frames_generated_total"), 0);
    const double start_ts = sample(before, "longroll_last_chunk_timestamp_seconds");
    EXPECT_GT(start_ts, 1.7e9) << "the start time until the first chunk";

    m->weights_loaded(1.5);
    m->chunk_done(3, 9, 0.4);
    m->chunk_done(3, 12, 0.8);
    for (int i = 0; i < 8; ++i) m->denoise_step(0.04);
    m->vae_decode(0.15);
    m->encode(0.003);
    m->stage_time(Stage::kDit, 0.9);
    m->stage_time(Stage::kDit, 0.3);
    m->stage_time(Stage::kVae, 0.15);
    m->kv_cache(1 << 20, 4 << 20);
    m->attention_sparsity(0.75);
    m->bytes_exchanged(ExchangeOp::kAllToAll, 1000);
    m->bytes_exchanged(ExchangeOp::kAllToAll, 24);
    m->bytes_exchanged(ExchangeOp::kAllGather, 7);
    m->gpu_memory_reserved(int64_t{3} << 30);
    m->video_done(VideoStatus::kOk);

    const std::string t = scrape(m->port());
    EXPECT_EQ(sample(t, "longroll_frames_generated_total"), 21);
    EXPECT_EQ(sample(t, "longroll_latent_frames_generated_total"), 6);
    EXPECT_EQ(sample(t, "longroll_chunks_completed_total"), 2);
    EXPECT_EQ(sample(t, "longroll_weights_load_duration_seconds"), 1.5);
    EXPECT_EQ(sample(t, "longroll_chunk_duration_seconds_count"), 2);
    EXPECT_NEAR(sample(t, "longroll_chunk_duration_seconds_sum"), 1.2, 1e-9);
    EXPECT_EQ(sample(t, "longroll_chunk_duration_seconds_bucket", {"le=\"0.3\""}), 0);
    EXPECT_EQ(sample(t, "longroll_chunk_duration_seconds_bucket", {"le=\"0.5\""}), 1);
    EXPECT_EQ(sample(t, "longroll_chunk_duration_seconds_bucket", {"le=\"1\""}), 2);
    EXPECT_EQ(sample(t, "longroll_chunk_duration_seconds_bucket", {"le=\"+Inf\""}), 2);
    EXPECT_EQ(sample(t, "longroll_denoise_step_duration_seconds_count"), 8);
    EXPECT_EQ(sample(t, "longroll_denoise_step_duration_seconds_bucket", {"le=\"0.05\""}), 8);
    EXPECT_EQ(sample(t, "longroll_vae_decode_duration_seconds_count"), 1);
    EXPECT_EQ(sample(t, "longroll_encode_duration_seconds_count"), 1);
    EXPECT_NEAR(sample(t, "longroll_stage_seconds_total", {"stage=\"dit\""}), 1.2, 1e-9);
    EXPECT_NEAR(sample(t, "longroll_stage_seconds_total", {"stage=\"vae\""}), 0.15, 1e-9);
    EXPECT_EQ(sample(t, "longroll_stage_seconds_total", {"stage=\"encode\""}), 0);
    EXPECT_EQ(sample(t, "longroll_kv_cache_used_bytes"), 1 << 20);
    EXPECT_EQ(sample(t, "longroll_kv_cache_capacity_bytes"), 4 << 20);
    EXPECT_EQ(sample(t, "longroll_attention_sparsity_ratio"), 0.75);
    EXPECT_EQ(sample(t, "longroll_exchanged_bytes_total", {"op=\"all_to_all\""}), 1024);
    EXPECT_EQ(sample(t, "longroll_exchanged_bytes_total", {"op=\"kv_blocks\""}), 0);
    EXPECT_EQ(sample(t, "longroll_exchanged_bytes_total", {"op=\"all_gather\""}), 7);
    EXPECT_EQ(sample(t, "longroll_gpu_memory_reserved_bytes"), double(int64_t{3} << 30));
    EXPECT_EQ(sample(t, "longroll_videos_completed_total", {"status=\"ok\""}), 1);
    EXPECT_EQ(sample(t, "longroll_videos_completed_total", {"status=\"failed\""}), 0);
    const double ttff = sample(t, "longroll_time_to_first_frame_seconds");
    EXPECT_GE(ttff, 0);
    EXPECT_LT(ttff, 60);
    EXPECT_GE(sample(t, "longroll_last_chunk_timestamp_seconds"), start_ts);
}

TEST(Metrics, FirstFrameIsTheFirstChunkWithVideoFrames) {
    auto m = Metrics::start(loopback(), one_rank(), "", tiny_run());
    m->chunk_done(3, 0, 0.1);  // a rank that writes no video (or a chunk still in the VAE pipeline)
    EXPECT_TRUE(std::isnan(sample(scrape(m->port()), "longroll_time_to_first_frame_seconds")));
    m->chunk_done(3, 9, 0.1);
    const double first = sample(scrape(m->port()), "longroll_time_to_first_frame_seconds");
    EXPECT_GE(first, 0);
    m->chunk_done(3, 12, 0.1);
    EXPECT_EQ(sample(scrape(m->port()), "longroll_time_to_first_frame_seconds"), first) << "set once";
}

TEST(Metrics, HistogramsHaveTheDocumentedBuckets) {
    auto m = Metrics::start(loopback(), one_rank(), "", tiny_run());
    const std::string t = scrape(m->port());
    auto expect_buckets = [&](std::string_view name, const auto& bounds) {
        const std::string bucket = str_cat(name, "_bucket");
        std::istringstream in(t);
        std::string line;
        std::vector<std::string> les;
        while (std::getline(in, line)) {
            if (line.rfind(bucket + "{", 0) != 0) continue;
            const size_t le = line.find("le=\"");
            ASSERT_NE(le, std::string::npos) << line;
            les.push_back(line.substr(le + 4, line.find('"', le + 4) - le - 4));
        }
        ASSERT_EQ(les.size(), bounds.size() + 1) << name;
        for (size_t i = 0; i < bounds.size(); ++i) EXPECT_DOUBLE_EQ(std::strtod(les[i].c_str(), nullptr), bounds[i]);
        EXPECT_EQ(les.back(), "+Inf");
    };
    expect_buckets("longroll_chunk_duration_seconds", kChunkDurationBuckets);
    expect_buckets("longroll_denoise_step_duration_seconds", kDenoiseStepBuckets);
    expect_buckets("longroll_vae_decode_duration_seconds", kVaeDecodeBuckets);
    expect_buckets("longroll_encode_duration_seconds", kEncodeBuckets);
    EXPECT_NE(t.find("# TYPE longroll_chunk_duration_seconds histogram"), std::string::npos);
    EXPECT_NE(t.find("# TYPE longroll_frames_generated_total counter"), std::string::npos);
}

TEST(Metrics, DisabledBindsNothingAndIgnoresEvents) {
    MetricsOptions off = loopback();
    off.enabled = false;
    TempDir dir;
    off.file_sd_path = (dir.path / "sd.json").string();
    auto m = Metrics::start(off, one_rank(), "", tiny_run());
    EXPECT_FALSE(m->enabled());
    EXPECT_EQ(m->port(), 0);
    EXPECT_EQ(m->file_sd_path(), "");
    m->chunk_done(3, 9, 0.1);
    m->stage_time(Stage::kIo, 1);
    m->bytes_exchanged(ExchangeOp::kKvBlocks, 5);
    m->video_done(VideoStatus::kFailed);
    EXPECT_TRUE(std::filesystem::is_empty(dir.path));
    EXPECT_FALSE(Metrics::disabled()->enabled());
}

TEST(Metrics, BasePortPlusLocalRank) {
    // Find a free pair of ports by binding an ephemeral one and trying the next.
    auto probe = Metrics::start(loopback(), one_rank(), "", tiny_run());
    const int base = probe->port();
    probe.reset();
    ProcessInfo who = one_rank();
    who.rank = 1;
    who.world_size = 2;
    who.local_rank = 1;
    who.local_size = 2;
    std::unique_ptr<Metrics> m;
    try {
        m = Metrics::start(loopback(base - 1), who, "", tiny_run());
    } catch (const InputError& e) {
        GTEST_SKIP() << "port " << base << " was taken again in between: " << e.what();
    }
    EXPECT_EQ(m->port(), base);
    const std::string t = scrape(m->port());
    EXPECT_EQ(sample(t, "longroll_run_info", {"rank=\"1\"", "local_rank=\"1\"", "world_size=\"2\""}), 1);
}

TEST(Metrics, PortInUseIsAnInputErrorNamingAddressAndPort) {
    auto first = Metrics::start(loopback(), one_rank(), "", tiny_run());
    const int port = first->port();
    try {
        Metrics::start(loopback(port), one_rank(), "", tiny_run());
        FAIL() << "a second exporter on port " << port << " started";
    } catch (const InputError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(str_cat("127.0.0.1:", port)), std::string::npos) << msg;
        EXPECT_NE(msg.find("--metrics-port"), std::string::npos) << msg;
        EXPECT_EQ(e.exit_code(), 2);
        EXPECT_NE(msg.find("in use"), std::string::npos) << msg;
    }
    // The first one still serves.
    EXPECT_EQ(sample(scrape(port), "longroll_chunks_completed_total"), 0);
}

TEST(Metrics, BadOptionsAreInputErrors) {
    ProcessInfo who = one_rank();
    who.local_rank = 3;
    EXPECT_THROW(Metrics::start(loopback(65534), who, "", tiny_run()), InputError);
    MetricsOptions o = loopback();
    o.file_sd_path = "/tmp/targets.yaml";
    EXPECT_THROW(Metrics::start(o, one_rank(), "", tiny_run()), InputError);
    o.file_sd_path = "/nonexistent-dir/sd.json";
    EXPECT_THROW(Metrics::start(o, one_rank(), "", tiny_run()), InputError);
    ::setenv("LONGROLL_METRICS_LINGER_SECONDS", "soon", 1);
    EXPECT_THROW(Metrics::start(loopback(), one_rank(), "", tiny_run()), InputError);
    ::unsetenv("LONGROLL_METRICS_LINGER_SECONDS");
}

TEST(Metrics, FileSdWrittenAtomicallyAndRemovedAtExit) {
    TempDir dir;
    MetricsOptions o = loopback();
    o.file_sd_path = (dir.path / "myrun.json").string();
    int port = 0;
    {
        auto m = Metrics::start(o, one_rank(), "", tiny_run());
        port = m->port();
        EXPECT_EQ(m->file_sd_path(), o.file_sd_path);
        const json::Value v = json::parse(read_file(o.file_sd_path), o.file_sd_path);
        ASSERT_TRUE(v.is_array());
        ASSERT_EQ(v.as_array().size(), 1u);
        const json::Value& group = v.as_array()[0];
        const json::Value* targets = group.find("targets");
        ASSERT_TRUE(targets && targets->is_array() && targets->as_array().size() == 1);
        EXPECT_EQ(targets->as_array()[0].as_string(), str_cat("127.0.0.1:", port));
        const json::Value* labels = group.find("labels");
        ASSERT_TRUE(labels && labels->is_object());
        EXPECT_EQ(labels->find("run")->as_string(), "myrun");
        EXPECT_EQ(labels->find("host")->as_string(), "testhost");
        EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path), {}), 1) << "no temporary left";
    }
    EXPECT_FALSE(std::filesystem::exists(o.file_sd_path)) << "a clean exit leaves Prometheus' targets";
}

TEST(FileSd, PathsTargetsAndJson) {
    ProcessInfo one = one_rank();
    ProcessInfo four = one_rank();
    four.world_size = 4;
    four.rank = 3;
    EXPECT_EQ(file_sd_path_for_rank("/x/sd.json", one), "/x/sd.json");
    EXPECT_EQ(file_sd_path_for_rank("/x/sd.json", four), "/x/sd.rank3.json");
    EXPECT_THROW(file_sd_path_for_rank("/x/sd.yml", one), InputError);
    EXPECT_THROW(file_sd_path_for_rank(".json", one), InputError);
    EXPECT_EQ(file_sd_run_name("/x/run-7.json"), "run-7");
    EXPECT_EQ(scrape_target("0.0.0.0", "node7", 9400), "node7:9400");
    EXPECT_EQ(scrape_target("::", "node7", 9401), "node7:9401");
    EXPECT_EQ(scrape_target("10.1.2.3", "node7", 9400), "10.1.2.3:9400");
    EXPECT_EQ(scrape_target("::1", "node7", 9400), "[::1]:9400");
    const std::string j = file_sd_json("h:1", {{"run", "a\"b"}, {"host", "h"}});
    EXPECT_EQ(j, "[{\"targets\": [\"h:1\"], \"labels\": {\"run\": \"a\\\"b\", \"host\": \"h\"}}]\n");
    EXPECT_NO_THROW(json::parse(j, "file_sd"));
}

TEST(Metrics, LingerKeepsServingAfterTheRunEnds) {
    ::setenv("LONGROLL_METRICS_LINGER_SECONDS", "0.3", 1);
    auto m = Metrics::start(loopback(), one_rank(), "", tiny_run());
    ::unsetenv("LONGROLL_METRICS_LINGER_SECONDS");
    const auto t0 = std::chrono::steady_clock::now();
    m.reset();
    EXPECT_GE(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.3);
}

TEST(Metrics, PromtoolAcceptsTheScrape) {
    if (std::system("command -v promtool >/dev/null 2>&1") != 0) GTEST_SKIP() << "promtool not installed";
    auto m = Metrics::start(loopback(), one_rank(), "GPU-1", tiny_run());
    m->chunk_done(3, 9, 0.4);
    m->denoise_step(0.05);
    TempDir dir;
    const std::filesystem::path file = dir.path / "scrape.txt";
    std::ofstream(file) << scrape(m->port());
    const std::filesystem::path log = dir.path / "promtool.log";
    const int rc =
        std::system(str_cat("promtool check metrics < '", file.string(), "' > '", log.string(), "' 2>&1").c_str());
    EXPECT_EQ(rc, 0) << "promtool check metrics:\n" << read_file(log);
}

}  // namespace
}  // namespace lr
