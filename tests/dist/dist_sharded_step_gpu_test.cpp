// The sharded CUDA attention step (dist/sharded_attention_step_cuda.h) against the single-GPU step, under
// `mpirun -np U*S dist_sharded_step_gpu_test U`, all ranks on the GPUs they find (one GPU may hold every rank):
// for every policy (DENSE in both RoPE modes, SINK_WINDOW, SPARSE_FORCING, LIGHT_FORCING, FORCING_KV, LVSA) and
// both attention kernels (head_dim 32: the generic one; 128: the TMA/wgmma one, whose split of a table row over
// two CTAs depends on the launch's size), a sequence of forwards with a rewrite and evictions (retention), every
// layer fed the same seeded q, k, v on every rank:
//   - each rank's attention rows (its tokens, all heads) must equal the single-GPU step's rows of those tokens bit
//     for bit: the same kernels on the same operands (the step's claim: tables, retention and rows are the single
//     rank's for its heads and query blocks);
//   - gather() must put every rank's rows back in model order, exactly;
//   - the bytes the spatial communicator sends per forward must be what the scheme needs, computed here from the
//     geometry alone: per layer, to each of the S - 1 others, K and V (bf16, heads / U wide) of the rank's rows of
//     the chunk (query blocks of 128 tiled rows, block b on rank b % S) and, for the policies that score blocks
//     (SPARSE_FORCING, LIGHT_FORCING, FORCING_KV), one f32 mean query per (head of the rank, query block of it).
// The world is U x S ranks (rank = s * U + u, the mesh's order); a second argument G splits each rank's heads into G
// overlap groups (exchanges on the exchange thread's stream): the same rows and bytes bit for bit. Exit 77
// (skipped) when a rank sees no GPU.
#include <cuda_runtime_api.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
#include "dist/sharded_attention_step_cuda.h"
#include "dist_test_harness.h"
#include "gpu_forwards.h"
#include "kernels/cast.h"
#include "kernels/dit_ops_cuda.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"
#include "runtime/model/attention_step_cuda.h"

namespace lr {
namespace {

using disttest::Errors;
using disttest::PolicyCase;

struct HeadCase {
    const char* name;
    int64_t heads, head_dim;
};

constexpr int64_t kLayers = 2;
constexpr int64_t kGridRows = 10, kGridCols = 16;  // 160 tokens per frame: a chunk of 3 is 480 rows, 4 query blocks
constexpr int64_t kBlock = 64;                     // tiles of 8 x 8: 4 per frame, two of them short
constexpr int64_t kStarts[] = {0, 3, 3, 6, 9, 12, 15};
constexpr int64_t kRunFrames = 18;

CudaAttentionStepConfig step_config(const HeadCase& hc, const PolicyCase& pc) {
    CudaAttentionStepConfig c;
    c.num_layers = kLayers;
    c.num_heads = hc.heads;
    c.head_dim = hc.head_dim;
    c.grid_rows = kGridRows;
    c.grid_cols = kGridCols;
    c.block_size = kBlock;
    c.window_frames = 7;
    c.sink_frames = 1;
    c.max_frames = 7;
    c.max_write_frames = 3;
    c.rope = pc.rope;
    c.policy = pc.policy;
    if (pc.policy.kind == BlockPolicyKind::kForcingKv) {
        c.policy.static_head.clear();
        for (int64_t i = 0; i < kLayers * hc.heads; ++i) c.policy.static_head.push_back(i % 3 == 0 ? 1 : 0);
        c.window_frames = -1;  // Forcing-KV sets its window itself
        c.max_frames = kRunFrames;
    }
    c.frames_per_chunk = 3;
    c.run_frames = kRunFrames;
    return c;
}

// Seeded bf16 rows [rows, width] (the same on every rank).
std::vector<uint16_t> bf16_rows(int64_t rows, int64_t width, uint32_t seed) {
    const std::vector<float> f = disttest::gaussian(rows * width, seed);
    std::vector<uint16_t> b(f.size());
    cast_cpu({f.data(), b.data(), DType::kF32, DType::kBF16, rows * width});
    return b;
}

// Rows of `src` (device, [rows, width] bf16) to the step's target rows (a row copy: no norm, no RoPE).
void to_target(const void* src, void* dst, const int32_t* dst_row, int64_t rows, int64_t heads, int64_t head_dim,
               cudaStream_t s) {
    NormRopeParams p;
    p.x = src;
    p.x_dtype = DType::kBF16;
    p.y = dst;
    p.dst_row = dst_row;
    p.rows = rows;
    p.heads = heads;
    p.head_dim = head_dim;
    launch_norm_rope(p, s);
}

// Bytes spatial rank s sends per forward (see the header), from the geometry alone.
uint64_t expected_bytes(const HeadCase& hc, const PolicyCase& pc, int U, int S, int s) {
    const int64_t L = 3 * kGridRows * kGridCols;
    int64_t rows = 0, blocks = 0;
    for (int64_t b = 0; b * 128 < L; ++b)
        if (b % S == s) {
            rows += std::min<int64_t>(128, L - b * 128);
            ++blocks;
        }
    const int64_t width = hc.heads / U * hc.head_dim;
    const int64_t per_peer = 2 * rows * width * 2 + (pc.scores ? (hc.heads / U) * blocks * hc.head_dim * 4 : 0);
    return static_cast<uint64_t>(kLayers * (S - 1) * per_peer);
}

int run(const MpiSession& mpi, int U, int G) {
    auto world = MpiCommunicator::world();
    const int device = disttest::gpu_or_skip(mpi.info(), *world, "dist_sharded_step_gpu_test");
    if (device < 0) return 77;
    const int N = world->size();
    LR_CHECK(U >= 1 && N % U == 0, "dist_sharded_step_gpu_test: U = ", U, " does not divide ", N, " ranks");
    const int S = N / U, u = world->rank() % U, s = world->rank() / U;
    const std::unique_ptr<Communicator> heads = world->split(s, u), tiles = world->split(u, s);
    Errors e(world->rank());
    cudaStream_t stream = nullptr;
    LR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

    for (const HeadCase& hc : {HeadCase{"head_dim 32", 6, 32}, HeadCase{"head_dim 128", 6, 128}}) {
        for (const PolicyCase& pc : disttest::policy_cases(kLayers, hc.heads)) {
            const std::string name = str_cat(pc.name, ", ", hc.name, ", U = ", U, " S = ", S, " G = ", G);
            const CudaAttentionStepConfig cfg = step_config(hc, pc);
            CudaLocalAttentionStep one(cfg);
            CudaSequenceMesh mesh;
            mesh.mesh = SequenceMesh{u, U, U > 1 ? heads.get() : nullptr, s, S, S > 1 ? tiles.get() : nullptr, G};
            ShardedCudaAttentionStep mine(cfg, mesh);
            const int64_t W = hc.heads * hc.head_dim, L = 3 * kGridRows * kGridCols;
            DeviceBuffer in(static_cast<size_t>(3 * L * W) * 2), out_one(static_cast<size_t>(L * W) * 2),
                out_mine(static_cast<size_t>(L * W) * 2), head_mine(static_cast<size_t>(L * 8) * 4),
                head_all(static_cast<size_t>(L * 8) * 4);
            auto* q = static_cast<char*>(in.data());
            char* k = q + static_cast<size_t>(L * W) * 2;
            char* v = k + static_cast<size_t>(L * W) * 2;
            DeviceBuffer rows_in(static_cast<size_t>(3 * L * W) * 2);
            auto* mq = static_cast<char*>(rows_in.data());
            char* mk = mq + static_cast<size_t>(L * W) * 2;
            char* mv = mk + static_cast<size_t>(L * W) * 2;
            int64_t differing = 0, gather_wrong = 0;
            bool bytes_ok = true;
            for (size_t i = 0; i < std::size(kStarts); ++i) {
                AttentionForward f;
                f.start_frame = kStarts[i];
                f.num_frames = 3;
                f.chunk = kStarts[i] / 3;
                f.step = i == 2 ? f.num_steps : static_cast<int64_t>(i % 4);
                const KvWrite w1 = one.begin(f, stream);
                const KvWrite wm = mine.begin(f, stream);
                e.expect(w1.slot_begin == wm.slot_begin && w1.slot_end == wm.slot_end,
                         str_cat(name, ", forward ", i, ": the sharded step writes other slots"));
                const std::vector<int64_t> tokens = mine.tokens();
                const auto n = static_cast<int64_t>(tokens.size());
                const uint64_t sent_before = S > 1 ? tiles->bytes_sent(CommOp::kSendRecv) : 0;
                for (int64_t l = 0; l < kLayers; ++l) {
                    const uint32_t seed = static_cast<uint32_t>(1000 * i + 10 * l);
                    const auto hq = bf16_rows(L, W, seed), hk = bf16_rows(L, W, seed + 1),
                               hv = bf16_rows(L, W, seed + 2);
                    const size_t bytes = static_cast<size_t>(L * W) * 2, row = static_cast<size_t>(W) * 2;
                    LR_CUDA_CHECK(cudaMemcpyAsync(q, hq.data(), bytes, cudaMemcpyHostToDevice, stream));
                    LR_CUDA_CHECK(cudaMemcpyAsync(k, hk.data(), bytes, cudaMemcpyHostToDevice, stream));
                    LR_CUDA_CHECK(cudaMemcpyAsync(v, hv.data(), bytes, cudaMemcpyHostToDevice, stream));
                    // The single-GPU step: every row, as the model hands them over.
                    const CudaQkvTarget t1 = one.qkv(l);
                    to_target(q, t1.q, t1.q_row, L, hc.heads, hc.head_dim, stream);
                    to_target(k, t1.k, t1.kv_row, L, hc.heads, hc.head_dim, stream);
                    to_target(v, t1.v, t1.kv_row, L, hc.heads, hc.head_dim, stream);
                    one.attend(l, out_one.data());
                    // This rank: its tokens' rows only.
                    for (int64_t r = 0; r < n; ++r) {
                        const size_t src = static_cast<size_t>(tokens[static_cast<size_t>(r)]) * row;
                        const size_t dst = static_cast<size_t>(r) * row;
                        LR_CUDA_CHECK(cudaMemcpyAsync(mq + dst, q + src, row, cudaMemcpyDeviceToDevice, stream));
                        LR_CUDA_CHECK(cudaMemcpyAsync(mk + dst, k + src, row, cudaMemcpyDeviceToDevice, stream));
                        LR_CUDA_CHECK(cudaMemcpyAsync(mv + dst, v + src, row, cudaMemcpyDeviceToDevice, stream));
                    }
                    const CudaQkvTarget tm = mine.qkv(l);
                    to_target(mq, tm.q, tm.q_row, n, hc.heads, hc.head_dim, stream);
                    to_target(mk, tm.k, tm.kv_row, n, hc.heads, hc.head_dim, stream);
                    to_target(mv, tm.v, tm.kv_row, n, hc.heads, hc.head_dim, stream);
                    mine.attend(l, out_mine.data());
                    std::vector<uint16_t> want(static_cast<size_t>(L * W)), got(static_cast<size_t>(n * W));
                    LR_CUDA_CHECK(cudaMemcpyAsync(want.data(), out_one.data(), bytes, cudaMemcpyDeviceToHost, stream));
                    LR_CUDA_CHECK(
                        cudaMemcpyAsync(got.data(), out_mine.data(), got.size() * 2, cudaMemcpyDeviceToHost, stream));
                    LR_CUDA_CHECK(cudaStreamSynchronize(stream));
                    for (int64_t r = 0; r < n; ++r)
                        if (std::memcmp(got.data() + r * W, want.data() + tokens[static_cast<size_t>(r)] * W, row) != 0)
                            ++differing;
                }
                one.end();
                mine.end();
                if (S > 1) {
                    const uint64_t sent = tiles->bytes_sent(CommOp::kSendRecv) - sent_before;
                    const uint64_t expected = expected_bytes(hc, pc, U, S, s);
                    if (sent != expected) {
                        bytes_ok = false;
                        std::printf("rank %d, %s, forward %zu: sent %" PRIu64 " bytes, the scheme needs %" PRIu64 "\n",
                                    world->rank(), name.c_str(), i, sent, expected);
                    }
                }
                // gather(): row r of this rank carries its token's number; every rank gets every token back.
                std::vector<float> rows(static_cast<size_t>(n * 8));
                for (int64_t r = 0; r < n; ++r)
                    for (int64_t c = 0; c < 8; ++c)
                        rows[static_cast<size_t>(r * 8 + c)] =
                            static_cast<float>(tokens[static_cast<size_t>(r)] * 8 + c);
                LR_CUDA_CHECK(
                    cudaMemcpyAsync(head_mine.data(), rows.data(), rows.size() * 4, cudaMemcpyHostToDevice, stream));
                mine.gather(static_cast<const float*>(head_mine.data()), 8, static_cast<float*>(head_all.data()));
                std::vector<float> all(static_cast<size_t>(L * 8));
                LR_CUDA_CHECK(
                    cudaMemcpyAsync(all.data(), head_all.data(), all.size() * 4, cudaMemcpyDeviceToHost, stream));
                LR_CUDA_CHECK(cudaStreamSynchronize(stream));
                for (int64_t t = 0; t < L * 8; ++t)
                    if (all[static_cast<size_t>(t)] != static_cast<float>(t)) ++gather_wrong;
            }
            std::printf("[ measured ] rank %d, %s: %" PRId64
                        " attention rows differ from the single GPU's (expect 0); "
                        "gather %s; bytes %s\n",
                        world->rank(), name.c_str(), differing, gather_wrong ? "WRONG" : "exact",
                        bytes_ok ? "as the scheme needs" : "WRONG");
            std::fflush(stdout);
            e.expect(differing == 0, str_cat(name, ": ", differing, " attention rows differ from the single GPU's"));
            e.expect(gather_wrong == 0, str_cat(name, ": gather misplaced ", gather_wrong, " values"));
            e.expect(bytes_ok, str_cat(name, ": the spatial exchange sent other bytes than the scheme needs"));
        }
    }
    LR_CUDA_CHECK(cudaStreamDestroy(stream));
    const int64_t total = disttest::agree(*world, e);
    if (world->rank() == 0)
        std::printf("dist_sharded_step_gpu_test: U = %d x S = %d, G = %d, %" PRId64 " errors: %s\n", U, S, G, total,
                    total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    lr::MpiSession mpi;
    const int U = argc > 1 ? std::atoi(argv[1]) : 1;
    const int G = argc > 2 ? std::atoi(argv[2]) : 1;  // parallel.overlap_groups (6 heads: G divides 6 / U)
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi, U, G); });
}
