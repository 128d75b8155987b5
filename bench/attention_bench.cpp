// Benchmark of launch_paged_attention on the shapes: Wan2.1 1.3B self-attention (12 heads, head_dim 128),
// one chunk of 3 latent frames of queries over a 21-frame KV window (current chunk included), KV in blocks of
// 128 tokens with every frame padded to whole blocks:
//   480p:  1560 tokens/frame = 12 x 128 + 24  -> q 4680,  kv 32760  (273 blocks)
//   1088p: 8160 tokens/frame = 63 x 128 + 96  -> q 24480, kv 171360 (1344 blocks)
// Tables: dense (every block, one table for all heads) and a per-head sparse one keeping 27% of the blocks of
// each (head, query block) in cache order, the density of DESIGN.md's FlexAttention yardstick.
//
// FLOP = 4 * q_len * attended valid keys * head_dim * heads (two matmuls; softmax not counted). Times are
// cudaEvent medians of --runs launches after warm-up. The K/V window of 480p (2 x 10.7 MB) fits in the 50 MB
// L2 of an H100, so repeated launches there run from L2, as torch SDPA's do in bench/attention_sdpa.py.
// Before timing, two query rows of every case are checked against paged_attention_cpu.
//
//   attention_bench [--json FILE] [--sdpa-json FILE] [--runs N] [--warmup N] [--quick]
// --sdpa-json reads bench/attention_sdpa.py's output and prints the ratio to torch SDPA per shape.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/paged_attention.h"
#include "runtime/core/build_info.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"
#include "runtime/core/device.h"
#include "runtime/core/dtype.h"
#include "runtime/core/tensor.h"
#include "runtime/io/json.h"

namespace lr {
namespace {

constexpr int kHeads = 12;
constexpr int kHeadDim = 128;
constexpr int kBlockSize = 128;
constexpr int kQFrames = 3;
constexpr int kKvFrames = 21;
constexpr double kSparseKeep = 0.27;

struct Shape {
    const char* name;
    int tokens_per_frame;
};

struct Result {
    std::string name, resolution, table;
    int64_t q_len = 0, kv_len = 0, blocks = 0;
    double attended_keys = 0;  // mean valid keys per query row (equal to kv_len for dense)
    double flop = 0, ms = 0, tflops = 0, max_rel_err = 0;
};

// bf16 random values in [-2, 2): cheap, enough for timing (the kernel has no data-dependent branch).
std::vector<uint16_t> random_bf16(size_t n, uint64_t seed) {
    std::vector<uint16_t> h(n);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (auto& v : h) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v = f32_to_bf16_bits(static_cast<float>(x >> 40) / static_cast<float>(1 << 24) * 4.0f - 2.0f);
    }
    return h;
}

template <typename T>
DeviceBuffer upload(const std::vector<T>& h) {
    DeviceBuffer d(h.size() * sizeof(T));
    LR_CUDA_CHECK(cudaMemcpy(d.data(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

// Largest |gpu - cpu| / (|cpu| + 1e-2) over rows `rows` of every head: the CPU reference runs each row as a
// one-row problem over the same table row.
double check_rows(const PagedAttentionParams& dev, const std::vector<uint16_t>& q, const std::vector<uint16_t>& k,
                  const std::vector<uint16_t>& v, const std::vector<int32_t>& block_len,
                  const std::vector<int32_t>& indptr, const std::vector<int32_t>& indices,
                  const std::vector<uint16_t>& gpu_out, const std::vector<int64_t>& rows) {
    const int64_t q_blocks = paged_attention_q_blocks(dev);
    const int64_t width = static_cast<int64_t>(kHeads) * kHeadDim;
    double worst = 0;
    for (int64_t r : rows) {
        std::vector<int32_t> sub_ptr = {0}, sub_idx;
        for (int g = 0; g < dev.table_heads; ++g) {
            const int64_t row = g * q_blocks + r / dev.q_block;
            sub_idx.insert(sub_idx.end(), indices.begin() + indptr[row], indices.begin() + indptr[row + 1]);
            sub_ptr.push_back(static_cast<int32_t>(sub_idx.size()));
        }
        std::vector<uint16_t> out(static_cast<size_t>(width));
        PagedAttentionParams p = dev;
        p.q = q.data() + r * width;
        p.k = k.data();
        p.v = v.data();
        p.out = out.data();
        p.block_len = block_len.data();
        p.indptr = sub_ptr.data();
        p.indices = sub_idx.data();
        p.q_len = 1;
        paged_attention_cpu(p);
        for (int64_t e = 0; e < width; ++e) {
            const double want = bf16_bits_to_f32(out[static_cast<size_t>(e)]);
            const double got = bf16_bits_to_f32(gpu_out[static_cast<size_t>(r * width + e)]);
            const double err = std::fabs(got - want) / (std::fabs(want) + 1e-2);
            worst = std::max(worst, std::isnan(err) ? INFINITY : err);
        }
    }
    return worst;
}

std::vector<Result> run_shape(const Shape& shape, int runs, int warmup) {
    const int blocks_per_frame = (shape.tokens_per_frame + kBlockSize - 1) / kBlockSize;
    const int blocks = blocks_per_frame * kKvFrames;
    const int64_t q_len = static_cast<int64_t>(kQFrames) * shape.tokens_per_frame;
    const int64_t kv_len = static_cast<int64_t>(kKvFrames) * shape.tokens_per_frame;
    const int64_t width = static_cast<int64_t>(kHeads) * kHeadDim;
    std::vector<int32_t> block_len(static_cast<size_t>(blocks));
    for (int b = 0; b < blocks; ++b) {
        const int t0 = (b % blocks_per_frame) * kBlockSize;
        block_len[static_cast<size_t>(b)] = std::min(kBlockSize, shape.tokens_per_frame - t0);
    }

    const std::vector<uint16_t> q = random_bf16(static_cast<size_t>(q_len * width), 1);
    const std::vector<uint16_t> k = random_bf16(static_cast<size_t>(blocks) * kBlockSize * width, 2);
    const std::vector<uint16_t> v = random_bf16(k.size(), 3);
    const DeviceBuffer dq = upload(q), dk = upload(k), dv = upload(v), dlen = upload(block_len);
    DeviceBuffer dout(static_cast<size_t>(q_len * width) * 2);

    PagedAttentionParams p;
    p.q = dq.data();
    p.k = dk.data();
    p.v = dv.data();
    p.out = dout.data();
    p.block_len = static_cast<const int32_t*>(dlen.data());
    p.q_len = static_cast<int>(q_len);
    p.heads = kHeads;
    p.head_dim = kHeadDim;
    p.block_size = kBlockSize;
    const int64_t q_blocks = paged_attention_q_blocks(p);

    std::vector<Result> results;
    for (const char* table : {"dense", "sparse27"}) {
        const bool dense = std::string(table) == "dense";
        std::vector<int32_t> indptr = {0}, indices;
        double keys_total = 0;  // valid keys summed over table rows
        std::mt19937 rng(5);
        std::bernoulli_distribution keep(kSparseKeep);
        const int table_heads = dense ? 1 : kHeads;
        for (int64_t row = 0; row < table_heads * q_blocks; ++row) {
            for (int b = 0; b < blocks; ++b) {
                if (dense || keep(rng)) {
                    indices.push_back(b);
                    keys_total += block_len[static_cast<size_t>(b)];
                }
            }
            indptr.push_back(static_cast<int32_t>(indices.size()));
        }
        const DeviceBuffer dptr = upload(indptr), didx = upload(indices);
        p.table_heads = table_heads;
        p.indptr = static_cast<const int32_t*>(dptr.data());
        p.indices = static_cast<const int32_t*>(didx.data());

        Result r;
        r.name = std::string(shape.name) + " " + table;
        r.resolution = shape.name;
        r.table = table;
        r.q_len = q_len;
        r.kv_len = kv_len;
        r.blocks = blocks;
        r.attended_keys = keys_total / static_cast<double>(table_heads * q_blocks);
        r.flop = 4.0 * static_cast<double>(q_len) * r.attended_keys * kHeadDim * kHeads;

        launch_paged_attention(p, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        std::vector<uint16_t> out(static_cast<size_t>(q_len * width));
        LR_CUDA_CHECK(cudaMemcpy(out.data(), dout.data(), out.size() * 2, cudaMemcpyDeviceToHost));
        r.max_rel_err = check_rows(p, q, k, v, block_len, indptr, indices, out, {0, 200, q_len - 1});

        for (int i = 0; i < warmup; ++i) launch_paged_attention(p, nullptr);
        cudaEvent_t start, stop;
        LR_CUDA_CHECK(cudaEventCreate(&start));
        LR_CUDA_CHECK(cudaEventCreate(&stop));
        std::vector<float> ms(static_cast<size_t>(runs));
        for (auto& t : ms) {
            LR_CUDA_CHECK(cudaEventRecord(start));
            launch_paged_attention(p, nullptr);
            LR_CUDA_CHECK(cudaEventRecord(stop));
            LR_CUDA_CHECK(cudaEventSynchronize(stop));
            LR_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
        }
        LR_CUDA_CHECK(cudaEventDestroy(start));
        LR_CUDA_CHECK(cudaEventDestroy(stop));
        std::sort(ms.begin(), ms.end());
        r.ms = ms[ms.size() / 2];
        r.tflops = r.flop / (r.ms * 1e-3) / 1e12;
        results.push_back(r);
    }
    return results;
}

// torch SDPA's result for a resolution from attention_sdpa.py's JSON, if present.
struct SdpaEntry {
    double ms = 0, tflops = 0;
    std::string backend;
};

std::vector<std::pair<std::string, SdpaEntry>> read_sdpa(const std::string& path, double* gemm_tflops) {
    std::ifstream in(path);
    LR_CHECK(in.good(), "attention_bench: cannot read ", path);
    std::stringstream ss;
    ss << in.rdbuf();
    const json::Value doc = json::parse(ss.str(), path);
    std::vector<std::pair<std::string, SdpaEntry>> out;
    if (const json::Value* cases = doc.find("cases")) {
        for (const json::Value& c : cases->as_array()) {
            SdpaEntry e;
            e.ms = c.find("ms")->as_number();
            e.tflops = c.find("tflops")->as_number();
            if (const json::Value* b = c.find("backend")) e.backend = b->as_string();
            out.emplace_back(c.find("name")->as_string(), e);
        }
    }
    if (const json::Value* g = doc.find("gemm")) *gemm_tflops = g->find("tflops")->as_number();
    return out;
}

int run(int argc, char** argv) {
    std::string json_path, sdpa_path;
    int runs = 30, warmup = 5;
    bool quick = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--json" && i + 1 < argc) {
            json_path = argv[++i];
        } else if (a == "--sdpa-json" && i + 1 < argc) {
            sdpa_path = argv[++i];
        } else if (a == "--runs" && i + 1 < argc) {
            runs = std::max(1, std::atoi(argv[++i]));
        } else if (a == "--warmup" && i + 1 < argc) {
            warmup = std::max(0, std::atoi(argv[++i]));
        } else if (a == "--quick") {
            quick = true;  // 480p only
        } else {
            std::fprintf(stderr,
                         "usage: attention_bench [--json FILE] [--sdpa-json FILE] [--runs N] [--warmup N] [--quick]\n");
            return 2;
        }
    }
    LR_RUNTIME(cuda_device_count() > 0, "attention_bench: no CUDA device");
    const std::string gpu = cuda_device_description(0);
    std::printf("paged attention, %d heads x %d, blocks of %d, %d query frames over a %d-frame window; %s\n", kHeads,
                kHeadDim, kBlockSize, kQFrames, kKvFrames, gpu.c_str());

    std::vector<Result> results;
    for (const Shape& s : {Shape{"480p", 1560}, Shape{"1088p", 8160}}) {
        if (quick && std::string(s.name) != "480p") continue;
        for (Result& r : run_shape(s, runs, warmup)) results.push_back(r);
    }

    std::printf("%-16s %7s %7s %7s %10s %9s %9s %10s\n", "case", "q", "kv", "blocks", "keys/row", "ms", "TFLOP/s",
                "max relerr");
    for (const Result& r : results) {
        std::printf("%-16s %7lld %7lld %7lld %10.0f %9.3f %9.1f %10.2e\n", r.name.c_str(),
                    static_cast<long long>(r.q_len), static_cast<long long>(r.kv_len), static_cast<long long>(r.blocks),
                    r.attended_keys, r.ms, r.tflops, r.max_rel_err);
    }

    if (!json_path.empty()) {
        std::error_code ec;
        const auto parent = std::filesystem::path(json_path).parent_path();
        if (!parent.empty()) std::filesystem::create_directories(parent, ec);
        std::ofstream out(json_path);
        LR_RUNTIME(out.good(), "attention_bench: cannot write ", json_path);
        // $LONGROLL_COMMIT first, as the other benches: a copied tree's baked-in sha can be stale.
        const char* env_commit = std::getenv("LONGROLL_COMMIT");
        const std::string commit = env_commit && *env_commit ? env_commit : kGitSha;
        out << "{\n  \"bench\": \"attention_bench\",\n  \"gpu\": " << json::quote(gpu) << ",\n  \"commit\": \""
            << commit << "\",\n  \"heads\": " << kHeads << ",\n  \"head_dim\": " << kHeadDim
            << ",\n  \"block_size\": " << kBlockSize << ",\n  \"runs\": " << runs << ",\n  \"cases\": [\n";
        for (size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            char buf[512];
            std::snprintf(buf, sizeof buf,
                          "    {\"name\": \"%s\", \"resolution\": \"%s\", \"table\": \"%s\", \"q_len\": %lld, "
                          "\"kv_len\": %lld, \"blocks\": %lld, \"keys_per_row\": %.1f, \"gflop\": %.3f, \"ms\": %.4f, "
                          "\"tflops\": %.2f, \"max_rel_err\": %.3e}%s\n",
                          r.name.c_str(), r.resolution.c_str(), r.table.c_str(), static_cast<long long>(r.q_len),
                          static_cast<long long>(r.kv_len), static_cast<long long>(r.blocks), r.attended_keys,
                          r.flop / 1e9, r.ms, r.tflops, r.max_rel_err, i + 1 < results.size() ? "," : "");
            out << buf;
        }
        out << "  ]\n}\n";
        std::printf("wrote %s\n", json_path.c_str());
    }
    if (!sdpa_path.empty() && std::filesystem::exists(sdpa_path)) {
        double gemm = 0;
        const auto sdpa = read_sdpa(sdpa_path, &gemm);
        std::printf("\nvs torch SDPA (dense, same shapes; %s)%s\n", sdpa_path.c_str(),
                    gemm > 0
                        ? (" ; cuBLAS bf16 GEMM ceiling " + std::to_string(static_cast<int>(gemm)) + " TFLOP/s").c_str()
                        : "");
        std::printf("%-8s %10s %10s %12s %12s %8s %s\n", "shape", "ours ms", "sdpa ms", "ours TFLOP/s", "sdpa TFLOP/s",
                    "speedup", "sdpa backend");
        for (const Result& r : results) {
            if (r.table != "dense") continue;
            for (const auto& [name, e] : sdpa) {
                if (name != r.resolution) continue;
                std::printf("%-8s %10.3f %10.3f %12.1f %12.1f %8.2f %s\n", name.c_str(), r.ms, e.ms, r.tflops, e.tflops,
                            e.ms / r.ms, e.backend.c_str());
            }
        }
    }

    return 0;
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    try {
        return lr::run(argc, argv);
    } catch (const lr::Error& e) {
        std::fprintf(stderr, "attention_bench: %s\n", e.what());
        return e.exit_code();
    }
}
