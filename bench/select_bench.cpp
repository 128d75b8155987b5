// Cost of block selection next to the attention it saves, on the shapes: Wan2.1 1.3B self-attention (12
// heads, head_dim 128), a 3-frame chunk of queries over a 21-frame window (current chunk included), KV blocks
// that are 2D tiles of 8 x 16 patches (DESIGN.md section 6), each frame padded to whole tiles:
//   480p:  30 x 52 patches  -> 4 x 4 = 16 tiles/frame (1560 tokens), q 4680 = 37 query blocks, 336 blocks
//   1088p: 68 x 120 patches -> 9 x 8 = 72 tiles/frame (8160 tokens), q 24480 = 192 query blocks, 1512 blocks
// Per shape:
//   segment mean of the keys: the summaries of the chunk's 3 frames' blocks (the window's older blocks keep
//     theirs), from the bf16 K pool; and of the queries: per query block of 128 rows, head-major for
//     block_select; and both in one launch, as the engine runs them (the figure charged to selection);
//   block_select with two candidate sets: "topk", every window block scored, a quarter kept per (head, query
//     block); "hier", LIGHT_FORCING-like: the sink frame scored, the 17 middle frames compete as groups (4
//     kept), the chunk's 3 frames MUST, blocks kept up to a quarter of the window;
//   paged attention on the dense table (one row for every head) and on each selected table (per head).
// Attention FLOP = 4 * head_dim * sum over (head, query block) of query rows x valid keys of the row's blocks
// (only the blocks read); effective TFLOP/s of a sparse table is that over its time. Times are CUDA-event
// medians of --runs launches after --warmup. The selected tables are checked against block_select_cpu.
//
//   select_bench [--json FILE] [--commit SHA] [--runs N] [--warmup N] [--sizes 480p,1088p]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/block_select.h"
#include "kernels/paged_attention.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"
#include "runtime/core/device.h"
#include "runtime/core/dtype.h"
#include "runtime/core/tensor.h"

namespace lr {
namespace {

constexpr int kHeads = 12;
constexpr int kHeadDim = 128;
constexpr int kWidth = kHeads * kHeadDim;
constexpr int kTileH = 8, kTileW = 16;
constexpr int kBlockSize = kTileH * kTileW;
constexpr int kQFrames = 3;
constexpr int kKvFrames = 21;
constexpr double kKeep = 0.25;

struct Shape {
    std::string name;
    int patches_h = 0, patches_w = 0;
};

template <typename T>
DeviceBuffer upload(const std::vector<T>& h) {
    DeviceBuffer d(std::max<size_t>(h.size(), 1) * sizeof(T));
    if (!h.empty()) LR_CUDA_CHECK(cudaMemcpy(d.data(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

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

// Median ms of `runs` timed calls of f after `warmup` untimed ones.
template <typename F>
double time_ms(F&& f, int runs, int warmup) {
    for (int i = 0; i < warmup; ++i) f();
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    bench::EventTimer timer;
    std::vector<double> ms;
    for (int i = 0; i < runs; ++i) {
        timer.start(nullptr);
        f();
        timer.stop(nullptr);
        ms.push_back(timer.ms());
    }
    return bench::median(ms);
}

struct Row {
    std::string shape, item;
    double ms = 0;
    double work = 0;  // FLOP (attention) or bytes (segment mean), 0 for selection
    double rate = 0;  // TFLOP/s or GB/s
    std::string unit;
    double keep = 0;  // sparse tables: keys read / dense keys
    std::string note;
};

// A candidate set for block_select over the window's blocks (block id = frame * tiles + tile).
struct Candidates {
    std::vector<int32_t> block, group;
    std::vector<uint8_t> kind, competes;
    int64_t topk_groups = 0, topk_blocks = 0;
};

Candidates plain_topk(int tiles) {
    Candidates c;
    const int n = kKvFrames * tiles;
    for (int b = 0; b < n; ++b) {
        c.block.push_back(b);
        c.group.push_back(-1);
        c.kind.push_back(static_cast<uint8_t>(CandidateKind::kScored));
    }
    c.topk_blocks = static_cast<int64_t>(std::lround(kKeep * n));
    return c;
}

Candidates hierarchical(int tiles) {
    Candidates c;
    for (int f = 0; f < kKvFrames; ++f) {
        const bool must = f >= kKvFrames - kQFrames;
        for (int t = 0; t < tiles; ++t) {
            c.block.push_back(f * tiles + t);
            c.group.push_back(f);
            c.kind.push_back(static_cast<uint8_t>(must ? CandidateKind::kMust : CandidateKind::kScored));
        }
        c.competes.push_back(f > 0 && !must ? 1 : 0);
    }
    c.topk_groups = 4;
    c.topk_blocks = static_cast<int64_t>(std::lround(kKeep * kKvFrames * tiles)) - kQFrames * tiles;
    return c;
}

std::vector<Row> run_shape(const Shape& s, int runs, int warmup, std::vector<std::string>& checks) {
    const int tiles_y = (s.patches_h + kTileH - 1) / kTileH, tiles_x = (s.patches_w + kTileW - 1) / kTileW;
    const int tiles = tiles_y * tiles_x;
    const int tokens = s.patches_h * s.patches_w;
    const int blocks = kKvFrames * tiles;
    std::vector<int32_t> block_len(static_cast<size_t>(blocks));
    for (int b = 0; b < blocks; ++b) {
        const int ty = (b % tiles) / tiles_x, tx = (b % tiles) % tiles_x;
        block_len[static_cast<size_t>(b)] =
            std::min(kTileH, s.patches_h - ty * kTileH) * std::min(kTileW, s.patches_w - tx * kTileW);
    }
    const int q_len = kQFrames * tokens;
    const int q_blocks = (q_len + 127) / 128;
    std::printf("%s: %d x %d patches, %d tiles/frame, %d blocks, q %d (%d query blocks)\n", s.name.c_str(), s.patches_h,
                s.patches_w, tiles, blocks, q_len, q_blocks);

    // K/V pool [blocks, 128 tokens, heads * head_dim] bf16 (the padding of short tiles holds random values; the
    // kernels never read it), queries [q_len, heads * head_dim].
    const size_t pool = static_cast<size_t>(blocks) * kBlockSize * kWidth;
    const DeviceBuffer dk = upload(random_bf16(pool, 2)), dv = upload(random_bf16(pool, 3));
    const DeviceBuffer dq = upload(random_bf16(static_cast<size_t>(q_len) * kWidth, 1));
    DeviceBuffer dout(static_cast<size_t>(q_len) * kWidth * 2);
    const DeviceBuffer dlen = upload(block_len);
    DeviceBuffer dk_mean(static_cast<size_t>(blocks) * kWidth * 4);
    DeviceBuffer dq_mean(static_cast<size_t>(q_blocks) * kWidth * 4);

    std::vector<Row> rows;
    auto add = [&](Row r) {
        r.shape = s.name;
        rows.push_back(r);
    };

    // ---- summaries ----
    std::vector<int32_t> kseg_begin, kseg_len;
    for (int b = blocks - kQFrames * tiles; b < blocks; ++b) {
        kseg_begin.push_back(b * kBlockSize);
        kseg_len.push_back(block_len[static_cast<size_t>(b)]);
    }
    const DeviceBuffer dkb = upload(kseg_begin), dkl = upload(kseg_len);
    SegmentMeanBf16Params km;
    km.x = dk.data();
    km.out = static_cast<float*>(dk_mean.data()) + static_cast<int64_t>(blocks - kQFrames * tiles) * kWidth;
    km.seg_begin = static_cast<const int32_t*>(dkb.data());
    km.seg_len = static_cast<const int32_t*>(dkl.data());
    km.segments = static_cast<int64_t>(kseg_begin.size());
    km.heads = kHeads;
    km.head_dim = kHeadDim;
    // The window's older blocks were summarised when written: fill every block's summary once.
    {
        std::vector<int32_t> all_begin, all_len;
        for (int b = 0; b < blocks; ++b) {
            all_begin.push_back(b * kBlockSize);
            all_len.push_back(block_len[static_cast<size_t>(b)]);
        }
        const DeviceBuffer ab = upload(all_begin), al = upload(all_len);
        SegmentMeanBf16Params all = km;
        all.out = static_cast<float*>(dk_mean.data());
        all.seg_begin = static_cast<const int32_t*>(ab.data());
        all.seg_len = static_cast<const int32_t*>(al.data());
        all.segments = blocks;
        launch_segment_mean_bf16(all, nullptr);
        LR_CUDA_CHECK(cudaDeviceSynchronize());
    }
    Row r;
    r.item = "segment_mean keys";
    r.ms = time_ms([&] { launch_segment_mean_bf16(km, nullptr); }, runs, warmup);
    r.work = static_cast<double>(kQFrames) * tokens * kWidth * 2;
    r.rate = r.work / (r.ms * 1e-3) / 1e9;
    r.unit = "GB/s";
    r.note = std::to_string(km.segments) + " blocks";
    add(r);

    std::vector<int32_t> qseg_begin, qseg_len;
    for (int qb = 0; qb < q_blocks; ++qb) {
        qseg_begin.push_back(qb * 128);
        qseg_len.push_back(std::min(128, q_len - qb * 128));
    }
    const DeviceBuffer dqb = upload(qseg_begin), dql = upload(qseg_len);
    SegmentMeanBf16Params qm;
    qm.x = dq.data();
    qm.out = static_cast<float*>(dq_mean.data());
    qm.seg_begin = static_cast<const int32_t*>(dqb.data());
    qm.seg_len = static_cast<const int32_t*>(dql.data());
    qm.segments = q_blocks;
    qm.heads = kHeads;
    qm.head_dim = kHeadDim;
    qm.out_stride = kHeadDim;  // head-major: [heads, query blocks, head_dim]
    qm.out_head_stride = static_cast<int64_t>(q_blocks) * kHeadDim;
    launch_segment_mean_bf16(qm, nullptr);
    r = Row{};
    r.item = "segment_mean queries";
    r.ms = time_ms([&] { launch_segment_mean_bf16(qm, nullptr); }, runs, warmup);
    r.work = static_cast<double>(q_len) * kWidth * 2;
    r.rate = r.work / (r.ms * 1e-3) / 1e9;
    r.unit = "GB/s";
    r.note = std::to_string(q_blocks) + " query blocks";
    add(r);
    // The engine computes a layer's summaries (the written frames' key means and the query means) in one launch
    // (launch_segment_means_bf16, CudaLocalAttentionStep's sparse_select): that is the cost charged to selection.
    const SegmentMeanBf16Params both[2] = {km, qm};
    r = Row{};
    r.item = "summaries keys+queries";
    r.ms = time_ms([&] { launch_segment_means_bf16(both, 2, nullptr); }, runs, warmup);
    r.work = static_cast<double>(kQFrames) * tokens * kWidth * 2 + static_cast<double>(q_len) * kWidth * 2;
    r.rate = r.work / (r.ms * 1e-3) / 1e9;
    r.unit = "GB/s";
    r.note = "one launch, as the engine runs them";
    add(r);
    const double summaries_ms = rows.back().ms;

    std::vector<float> k_mean(static_cast<size_t>(blocks) * kWidth), q_mean(static_cast<size_t>(q_blocks) * kWidth);
    LR_CUDA_CHECK(cudaMemcpy(k_mean.data(), dk_mean.data(), k_mean.size() * 4, cudaMemcpyDeviceToHost));
    LR_CUDA_CHECK(cudaMemcpy(q_mean.data(), dq_mean.data(), q_mean.size() * 4, cudaMemcpyDeviceToHost));

    // ---- attention: dense ----
    const int64_t valid_keys = static_cast<int64_t>(kKvFrames) * tokens;
    PagedAttentionParams ap;
    ap.q = dq.data();
    ap.k = dk.data();
    ap.v = dv.data();
    ap.out = dout.data();
    ap.block_len = static_cast<const int32_t*>(dlen.data());
    ap.q_len = q_len;
    ap.heads = kHeads;
    ap.head_dim = kHeadDim;
    ap.block_size = kBlockSize;
    auto flop_of = [&](const std::vector<int32_t>& indptr, const std::vector<int32_t>& indices, int table_heads) {
        double f = 0;
        for (int h = 0; h < kHeads; ++h) {
            const int g = table_heads == 1 ? 0 : h;
            for (int qb = 0; qb < q_blocks; ++qb) {
                const int64_t row = static_cast<int64_t>(g) * q_blocks + qb;
                double keys = 0;
                for (int32_t e = indptr[static_cast<size_t>(row)]; e < indptr[static_cast<size_t>(row + 1)]; ++e)
                    keys += block_len[static_cast<size_t>(indices[static_cast<size_t>(e)])];
                f += 4.0 * kHeadDim * keys * std::min(128, q_len - qb * 128);
            }
        }
        return f;
    };
    std::vector<int32_t> dense_ptr = {0}, dense_idx;
    for (int qb = 0; qb < q_blocks; ++qb) {
        for (int b = 0; b < blocks; ++b) dense_idx.push_back(b);
        dense_ptr.push_back(static_cast<int32_t>(dense_idx.size()));
    }
    const DeviceBuffer ddp = upload(dense_ptr), ddi = upload(dense_idx);
    ap.table_heads = 1;
    ap.indptr = static_cast<const int32_t*>(ddp.data());
    ap.indices = static_cast<const int32_t*>(ddi.data());
    r = Row{};
    r.item = "attention dense";
    r.ms = time_ms([&] { launch_paged_attention(ap, nullptr); }, runs, warmup);
    r.work = flop_of(dense_ptr, dense_idx, 1);
    r.rate = r.work / (r.ms * 1e-3) / 1e12;
    r.unit = "TFLOP/s";
    r.keep = 1.0;
    r.note = std::to_string(valid_keys) + " keys";
    add(r);
    const double dense_rate = r.rate, dense_flop = r.work;

    // ---- selection and the selected tables ----
    for (const auto& [label, cand] : {std::pair<std::string, Candidates>{"topk", plain_topk(tiles)},
                                      std::pair<std::string, Candidates>{"hier", hierarchical(tiles)}}) {
        BlockSelectParams sp;
        sp.heads = kHeads;
        sp.head_dim = kHeadDim;
        sp.num_q_blocks = q_blocks;
        sp.num_blocks = blocks;
        sp.cand_block = cand.block.data();
        sp.cand_group = cand.group.data();
        sp.cand_kind = cand.kind.data();
        sp.num_cand = static_cast<int64_t>(cand.block.size());
        sp.group_competes = cand.competes.data();
        sp.num_groups = static_cast<int64_t>(cand.competes.size());
        sp.topk_groups = cand.topk_groups;
        sp.topk_blocks = cand.topk_blocks;
        std::vector<int32_t> indptr(static_cast<size_t>(kHeads * q_blocks + 1));
        block_select_indptr(sp, indptr.data());
        std::vector<int32_t> cpu_idx(static_cast<size_t>(indptr.back()));
        {
            BlockSelectParams hp = sp;
            hp.q_mean = q_mean.data();
            hp.k_mean = k_mean.data();
            hp.indptr = indptr.data();
            hp.indices = cpu_idx.data();
            block_select_cpu(hp);
        }
        const DeviceBuffer cb = upload(cand.block), cg = upload(cand.group), ck = upload(cand.kind),
                           gc = upload(cand.competes), ip = upload(indptr);
        DeviceBuffer idx(static_cast<size_t>(indptr.back()) * 4);
        BlockSelectParams dp = sp;
        dp.q_mean = static_cast<const float*>(dq_mean.data());
        dp.k_mean = static_cast<const float*>(dk_mean.data());
        dp.cand_block = static_cast<const int32_t*>(cb.data());
        dp.cand_group = static_cast<const int32_t*>(cg.data());
        dp.cand_kind = static_cast<const uint8_t*>(ck.data());
        dp.group_competes = static_cast<const uint8_t*>(gc.data());
        dp.indptr = static_cast<const int32_t*>(ip.data());
        dp.indices = static_cast<int32_t*>(idx.data());
        r = Row{};
        r.item = "block_select " + label;
        r.ms = time_ms([&] { launch_block_select(dp, nullptr); }, runs, warmup);
        r.note = std::to_string(sp.num_cand) + " cand, keep " + std::to_string(indptr[1]) + "/row";
        add(r);
        const double select_ms = r.ms;
        std::vector<int32_t> gpu_idx(cpu_idx.size());
        LR_CUDA_CHECK(cudaMemcpy(gpu_idx.data(), idx.data(), gpu_idx.size() * 4, cudaMemcpyDeviceToHost));
        int64_t differ = 0;
        for (size_t i = 0; i < gpu_idx.size(); ++i) differ += gpu_idx[i] != cpu_idx[i];
        checks.push_back(s.name + " " + label + ": " + std::to_string(differ) + " of " +
                         std::to_string(gpu_idx.size()) + " table entries differ from block_select_cpu");

        ap.table_heads = kHeads;
        ap.indptr = static_cast<const int32_t*>(ip.data());
        ap.indices = static_cast<const int32_t*>(idx.data());
        r = Row{};
        r.item = "attention " + label;
        r.ms = time_ms([&] { launch_paged_attention(ap, nullptr); }, runs, warmup);
        r.work = flop_of(indptr, gpu_idx, kHeads);
        r.rate = r.work / (r.ms * 1e-3) / 1e12;
        r.unit = "TFLOP/s";
        r.keep = r.work / dense_flop;
        char buf[160];
        std::snprintf(buf, sizeof buf, "%.2fx dense rate; select+summaries %.1f%% of it", r.rate / dense_rate,
                      100.0 * (select_ms + summaries_ms) / r.ms);
        r.note = buf;
        add(r);
    }
    return rows;
}

int run(int argc, char** argv) {
    bench::OutputFlags out;
    int runs = 20, warmup = 3;
    std::vector<Shape> shapes = {{"480p", 30, 52}, {"1088p", 68, 120}};
    bench::parse_flags(
        argc, argv, "usage: select_bench [--json FILE] [--commit SHA] [--runs N] [--warmup N] [--sizes 480p,1088p]\n",
        out, [&](const std::string& flag, const std::function<std::string()>& value) {
            if (flag == "--runs") {
                runs = std::max(1, std::stoi(value()));
            } else if (flag == "--warmup") {
                warmup = std::max(0, std::stoi(value()));
            } else if (flag == "--sizes") {
                std::vector<Shape> keep;
                for (const auto& res : bench::parse_resolutions(value()))
                    keep.push_back(
                        {res.name, static_cast<int>(res.latent_h() / 2), static_cast<int>(res.latent_w() / 2)});
                shapes = keep;
            } else {
                return false;
            }
            return true;
        });
    LR_RUNTIME(cuda_device_count() > 0, "select_bench: no CUDA device");
    const bench::GpuInfo gpu = bench::gpu_info();
    std::printf(
        "block selection vs paged attention: %d heads x %d, tiles of %dx%d patches, %d query frames over a "
        "%d-frame window, keep %.0f%%; %s\n",
        kHeads, kHeadDim, kTileH, kTileW, kQFrames, kKvFrames, kKeep * 100, gpu.name.c_str());

    std::vector<Row> rows;
    std::vector<std::string> checks;
    for (const Shape& s : shapes) {
        for (Row& r : run_shape(s, runs, warmup, checks)) rows.push_back(r);
    }

    std::printf("\n%-6s %-22s %9s %12s %10s %-8s %6s  %s\n", "shape", "item", "ms", "work", "rate", "", "keep", "note");
    for (const Row& r : rows) {
        std::printf("%-6s %-22s %9.4f %12.4g %10.1f %-8s %6.3f  %s\n", r.shape.c_str(), r.item.c_str(), r.ms, r.work,
                    r.rate, r.unit.c_str(), r.keep, r.note.c_str());
    }
    for (const std::string& c : checks) std::printf("check: %s\n", c.c_str());

    if (!out.json.empty()) {
        bench::JsonObject doc = bench::header("select_bench", out.commit);
        doc.add("heads", kHeads)
            .add("head_dim", kHeadDim)
            .add("tile", std::to_string(kTileH) + "x" + std::to_string(kTileW))
            .add("q_frames", kQFrames)
            .add("kv_frames", kKvFrames)
            .add("keep", kKeep)
            .add("runs", runs)
            .add("warmup", warmup);
        bench::JsonObject results;
        for (const Row& r : rows) {
            bench::JsonObject j;
            j.add("ms", r.ms).add("work", r.work).add("rate", r.rate).add("unit", r.unit).add("keep", r.keep);
            j.add("note", r.note);
            results.add(r.shape + "." + r.item, j);
        }
        doc.add("results", results);
        std::string c = "[";
        for (size_t i = 0; i < checks.size(); ++i) c += (i ? ", " : "") + json::quote(checks[i]);
        doc.raw("checks", c + "]");
        if (!bench::write_json(out.json, doc)) return 1;
    }
    return 0;
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    try {
        return lr::run(argc, argv);
    } catch (const lr::Error& e) {
        std::fprintf(stderr, "select_bench: %s\n", e.what());
        return e.exit_code();
    }
}
