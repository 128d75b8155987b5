// Napkin model of the bytes each rank moves per chunk under sequence parallelism (DESIGN.md section 7),
// for the Wan2.1 1.3B and 14B models at 480p and 1088p, Ulysses degree U and spatial degree S in
// {1, 2, 4, 8} (U must divide the head count). Prints a table with the time those bytes take at NVLink
// (400 GB/s per GPU) and inter-node (25 GB/s per GPU, 200 Gb/s) bandwidth, and writes JSON.
//
// Shapes: a chunk is F = 3 latent frames of T tokens (1560 at 480p, 8160 at 1088p), every activation in
// bf16 (2 bytes), model width D, L layers, 5 forwards per chunk (4 denoising steps + the clean pass that
// writes the KV cache), a W = 21 frame KV window (current chunk included).
//
// A sequence-parallel group of P = U*S ranks splits the chunk's tokens P ways, so each rank holds
// F*T/P tokens of width D.
//
// Ulysses (per rank, per chunk):
//   4 all-to-alls per attention layer (q, k, v to head shards; the output back to token shards), each
//   sending the (U-1)/U of the rank's activation slice that other ranks own:
//     ulysses = 5 * L * 4 * (F*T/P) * D * 2 * (U-1)/U
//
// Spatial exchange (per rank, per chunk), three schemes:
//   resend (the scheme before dist/sharded_attention_step.h): every layer of every forward, each rank sent its
//   1/S share of every window frame's K and V (of its heads) to every other spatial rank:
//     dense       = 5 * L * 2 (K, V) * W * T * (D/U) * 2 * (S-1)/S   (W = 21)
//     sink+window = the same with 12 frames (LongLive: 3 sink + 9 recent, the chunk included)
//   table-driven replicas (dist/sharded_attention_step.h, what runs now): every policy reads each of the chunk's
//   own blocks from every query block (the chunk's slots are MUST candidates), so each rank needs the chunk's K/V
//   at every forward; kept after the clean pass, they are the frozen window's replicas, and no cached block moves
//   again. Per layer and forward a rank sends its query blocks' K and V rows and, for the policies that score blocks
//   (SPARSE_FORCING, LIGHT_FORCING, FORCING_KV), one mean query per block (counted here for all: an upper bound):
//     table = 5 * L * (2 * F * T + ceil(F * T / 128)) * (D/U) * 2 * (S-1)/S
//   The same for every policy (DENSE, SINK_WINDOW, SPARSE_FORCING, LIGHT_FORCING, FORCING_KV, LVSA): the tables'
//   sparsity is over cached blocks, which no longer move. Query routing (queries to the owners of the selected
//   blocks, partial outputs and log-sum-exps back) moves q out and o back for the same chunk rows, since every
//   owner of a chunk block is selected: the same bytes (+ the lse), one more hop, and no bit-identical merge;
//   replicas were kept. Memory per rank: the window of its heads, W * T * (D/U) * 2 * 2 * L bytes (resend held
//   1/S of it).
//   The ratio table / resend is 3/12 = 25% against the 12-frame window (3/21 against 21 frames): any exact
//   scheme must bring every chunk block to every query block of the chunk at every forward.
// The head's gather (every scheme): after the last block, each forward gathers the output head's rows to every rank,
// in f32, out_dim * patch = 16 * 1 * 2 * 2 = 64 floats a row: first over the Ulysses ranks (each sends its F*T/P
// rows to U - 1 ranks), then over the spatial ranks (each sends its s-list, F*T/S rows, to S - 1 ranks; the MPI and
// NCCL gathers pad every s-list to the longest, which a measurement sees and this even split does not):
//     head = 5 * 64 * 4 * ((U-1) * F*T/P + (S-1) * F*T/S)
// It is small (3.0 MB a chunk at 480p, 1x2) and is counted in every scheme's total.
// Hidden or exposed: a layer's exchange (bytes / bandwidth) against the layer's compute on the rank at an assumed
// 400 TFLOP/s bf16 (GEMMs 2 * tokens * (4 D^2 + 2 D ffn) + attention 4 * tokens * keys * D, keys = the window).
//
// Time = bytes / bandwidth per rank: each rank drives its own link, so the group's time is a rank's time.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/core/build_info.h"

namespace {

struct Model {
    const char* name;
    int dim, heads, layers, ffn;
};
struct Resolution {
    const char* name;
    int tokens_per_frame;
};

constexpr int kChunkFrames = 3;
constexpr int kForwardsPerChunk = 5;
constexpr int kWindowFrames = 21;
constexpr int kSinkWindowFrames = 12;     // 3 sink + 9 recent (LongLive's local_attn_size 12)
constexpr double kBytesPerElement = 2.0;  // bf16
constexpr double kNvlinkBytesPerSec = 400e9;
constexpr double kInterNodeBytesPerSec = 25e9;
constexpr int kBlockSize = 128;

constexpr int kQBlock = 128;
constexpr double kHeadRowBytes = 64 * 4.0;  // the output head's rows: 16 channels x 1 x 2 x 2 patch, f32
constexpr double kFlopsPerSec = 400e12;

struct Row {
    std::string model, resolution;
    int u, s;
    double ulysses, spatial_dense, spatial_sink_window, spatial_replica, head_gather;
    double replica_memory, compute_s_per_layer_forward;
    double total_dense() const { return ulysses + spatial_dense + head_gather; }
    double total_sink_window() const { return ulysses + spatial_sink_window + head_gather; }
    double total_replica() const { return ulysses + spatial_replica + head_gather; }
};

Row model_row(const Model& m, const Resolution& r, int u, int s) {
    const double p = static_cast<double>(u) * s;
    const double tokens_per_rank = kChunkFrames * static_cast<double>(r.tokens_per_frame) / p;
    const double per_layer_forwards = static_cast<double>(kForwardsPerChunk) * m.layers;
    Row row{m.name, r.name, u, s, 0, 0, 0, 0, 0, 0, 0};
    row.ulysses = per_layer_forwards * 4 * tokens_per_rank * m.dim * kBytesPerElement * (u - 1) / u;
    const double kv_frame = 2.0 * r.tokens_per_frame * (static_cast<double>(m.dim) / u) * kBytesPerElement;
    row.spatial_dense = per_layer_forwards * kWindowFrames * kv_frame * (s - 1) / s;
    row.spatial_sink_window = per_layer_forwards * kSinkWindowFrames * kv_frame * (s - 1) / s;
    const double chunk_rows = kChunkFrames * static_cast<double>(r.tokens_per_frame);
    const double q_blocks = static_cast<double>((kChunkFrames * r.tokens_per_frame + kQBlock - 1) / kQBlock);
    row.spatial_replica = per_layer_forwards * (2.0 * chunk_rows + q_blocks) * (static_cast<double>(m.dim) / u) *
                          kBytesPerElement * (s - 1) / s;
    row.head_gather = kForwardsPerChunk * kHeadRowBytes * ((u - 1) * tokens_per_rank + (s - 1) * chunk_rows / s);
    row.replica_memory = kWindowFrames * kv_frame * m.layers;
    const double keys = kWindowFrames * static_cast<double>(r.tokens_per_frame);
    row.compute_s_per_layer_forward =
        (2.0 * tokens_per_rank * (4.0 * m.dim * m.dim + 2.0 * m.dim * m.ffn) + 4.0 * tokens_per_rank * keys * m.dim) /
        kFlopsPerSec;
    return row;
}

std::string human(double bytes) {
    char buf[32];
    if (bytes == 0) return "0";
    if (bytes >= 1e9)
        std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
    else
        std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
    return buf;
}

std::string ms(double bytes, double rate) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", bytes / rate * 1e3);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    std::string json_path = std::string(LONGROLL_SOURCE_DIR) + "/bench/results/comm_volume.json";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--json" && i + 1 < argc)
            json_path = argv[++i];
        else {
            std::fprintf(stderr, "usage: comm_volume [--json FILE]\n");
            return 2;
        }
    }
    const std::vector<Model> models = {{"wan2.1-1.3b", 1536, 12, 30, 8960}, {"wan2.1-14b", 5120, 40, 40, 13824}};
    const std::vector<Resolution> resolutions = {{"480p", 1560}, {"1088p", 8160}};
    const int degrees[] = {1, 2, 4, 8};

    std::vector<Row> rows;
    for (const Model& m : models)
        for (const Resolution& r : resolutions)
            for (int u : degrees)
                for (int s : degrees) {
                    const int blocks = (r.tokens_per_frame + kBlockSize - 1) / kBlockSize;
                    if (m.heads % u != 0 || s > blocks) continue;
                    rows.push_back(model_row(m, r, u, s));
                }

    std::printf("Communication per rank per chunk (%d frames, %d forwards, %d-frame window, bf16)\n", kChunkFrames,
                kForwardsPerChunk, kWindowFrames);
    // Times are for all the rank's bytes (Ulysses + KV exchange) under each KV policy.
    std::printf("%-12s %-6s %2s %2s %10s %10s %10s %10s | %-17s | %-17s | %-17s | %6s %-8s\n", "model", "res", "U", "S",
                "ulysses", "kv dense", "kv sink+w", "kv table", "dense ms", "sink+window ms", "table ms", "t/sw",
                "hidden@400");
    std::printf("%-12s %-6s %2s %2s %10s %10s %10s %10s | %8s %8s | %8s %8s | %8s %8s\n", "", "", "", "", "", "", "",
                "", "400GB/s", "25GB/s", "400GB/s", "25GB/s", "400GB/s", "25GB/s");
    // hidden@400: a layer's exchange at 400 GB/s fits under the layer's compute (assumed 400 TFLOP/s).
    for (const Row& r : rows) {
        const double per_layer = r.total_replica() / (kForwardsPerChunk * 1.0) / kNvlinkBytesPerSec;
        const double layers = r.model == "wan2.1-14b" ? 40.0 : 30.0;
        const bool hidden = per_layer / layers <= r.compute_s_per_layer_forward;
        const double ratio = r.spatial_sink_window > 0 ? r.spatial_replica / r.spatial_sink_window : 0.0;
        std::printf(
            "%-12s %-6s %2d %2d %10s %10s %10s %10s | %8s %8s | %8s %8s | %8s %8s | %5.0f%% %-8s\n", r.model.c_str(),
            r.resolution.c_str(), r.u, r.s, human(r.ulysses).c_str(), human(r.spatial_dense).c_str(),
            human(r.spatial_sink_window).c_str(), human(r.spatial_replica).c_str(),
            ms(r.total_dense(), kNvlinkBytesPerSec).c_str(), ms(r.total_dense(), kInterNodeBytesPerSec).c_str(),
            ms(r.total_sink_window(), kNvlinkBytesPerSec).c_str(),
            ms(r.total_sink_window(), kInterNodeBytesPerSec).c_str(), ms(r.total_replica(), kNvlinkBytesPerSec).c_str(),
            ms(r.total_replica(), kInterNodeBytesPerSec).c_str(), 100.0 * ratio, hidden ? "yes" : "no");
    }

    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(json_path).parent_path(), ec);
    std::ofstream out(json_path);
    if (!out) {
        std::fprintf(stderr, "comm_volume: cannot write %s\n", json_path.c_str());
        return 1;
    }
    out << "{\n  \"benchmark\": \"comm_volume\",\n  \"kind\": \"model (no measurement)\",\n  \"commit\": \""
        << lr::kGitSha << "\",\n  \"gpu\": \"none (a model of bytes; times at nominal bandwidth)\",\n"
        << "  \"chunk_frames\": " << kChunkFrames << ",\n  \"forwards_per_chunk\": " << kForwardsPerChunk
        << ",\n  \"window_frames\": " << kWindowFrames << ",\n  \"sink_window_frames\": " << kSinkWindowFrames
        << ",\n  \"bytes_per_element\": 2,\n  \"nvlink_bytes_per_s\": " << kNvlinkBytesPerSec
        << ",\n  \"inter_node_bytes_per_s\": " << kInterNodeBytesPerSec << ",\n  \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        char buf[768];
        std::snprintf(buf, sizeof buf,
                      "    {\"model\": \"%s\", \"resolution\": \"%s\", \"ulysses\": %d, \"spatial\": %d, "
                      "\"ulysses_bytes\": %.0f, \"kv_dense_bytes\": %.0f, \"kv_sink_window_bytes\": %.0f, "
                      "\"kv_table_bytes\": %.0f, \"head_gather_bytes\": %.0f, \"table_vs_sink_window\": %.4f, "
                      "\"replica_memory_bytes\": %.0f, "
                      "\"layer_compute_ms_at_400tflops\": %.4f, "
                      "\"dense_ms_nvlink\": %.3f, \"dense_ms_inter_node\": %.3f, "
                      "\"sink_window_ms_nvlink\": %.3f, \"sink_window_ms_inter_node\": %.3f, "
                      "\"table_ms_nvlink\": %.3f, \"table_ms_inter_node\": %.3f}%s\n",
                      r.model.c_str(), r.resolution.c_str(), r.u, r.s, r.ulysses, r.spatial_dense,
                      r.spatial_sink_window, r.spatial_replica, r.head_gather,
                      r.spatial_sink_window > 0 ? r.spatial_replica / r.spatial_sink_window : 0.0, r.replica_memory,
                      r.compute_s_per_layer_forward * 1e3, r.total_dense() / kNvlinkBytesPerSec * 1e3,
                      r.total_dense() / kInterNodeBytesPerSec * 1e3, r.total_sink_window() / kNvlinkBytesPerSec * 1e3,
                      r.total_sink_window() / kInterNodeBytesPerSec * 1e3, r.total_replica() / kNvlinkBytesPerSec * 1e3,
                      r.total_replica() / kInterNodeBytesPerSec * 1e3, i + 1 < rows.size() ? "," : "");
        out << buf;
    }
    out << "  ]\n}\n";
    std::printf("wrote %s\n", json_path.c_str());
    return 0;
}
