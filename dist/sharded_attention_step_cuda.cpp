#include "dist/sharded_attention_step_cuda.h"

#include <algorithm>
#include <cstring>

#include "runtime/core/check.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "cache/paged_kv_cache.h"
#include "kernels/block_select.h"
#include "kernels/dit_ops_cuda.h"
#include "runtime/core/cuda_check.h"
#endif

namespace lr {

CudaAttentionStepConfig ShardedCudaAttentionStep::inner_config(const CudaAttentionStepConfig& cfg,
                                                               const SequenceMesh& mesh) {
    LR_CHECK(mesh.ulysses >= 1 && cfg.num_heads % mesh.ulysses == 0, "sharded CUDA attention: ", cfg.num_heads,
             " heads cannot be split over ", mesh.ulysses, " Ulysses ranks");
    CudaAttentionStepConfig c = cfg;
    const int64_t lh = cfg.num_heads / mesh.ulysses, h0 = mesh.ulysses_rank * lh;
    c.num_heads = lh;
    if (!cfg.policy.static_head.empty()) {
        LR_CHECK(static_cast<int64_t>(cfg.policy.static_head.size()) == cfg.num_layers * cfg.num_heads,
                 "sharded CUDA attention: the head profile has ", cfg.policy.static_head.size(), " entries for ",
                 cfg.num_layers, " layers x ", cfg.num_heads, " heads");
        c.policy.static_head.clear();
        for (int64_t l = 0; l < cfg.num_layers; ++l)
            for (int64_t h = 0; h < lh; ++h)
                c.policy.static_head.push_back(cfg.policy.static_head[static_cast<size_t>(l * cfg.num_heads + h0 + h)]);
    }
    return c;
}

CudaAttentionStepConfig ShardedCudaAttentionStep::group_config(const CudaAttentionStepConfig& cfg,
                                                               const SequenceMesh& mesh, int64_t g) {
    const int64_t G = mesh.overlap_groups;
    LR_CHECK(mesh.ulysses >= 1 && G >= 1 && cfg.num_heads % (mesh.ulysses * G) == 0,
             "sharded CUDA attention: ", cfg.num_heads, " heads cannot be split over ", mesh.ulysses,
             " Ulysses ranks x ", G,
             " overlap groups (parallel.overlap_groups must divide the heads of a Ulysses rank)");
    LR_ASSERT(g >= 0 && g < G, "sharded CUDA attention: head group ", g, " of ", G);
    const CudaAttentionStepConfig worker = inner_config(cfg, mesh);
    if (G == 1) return worker;
    const int64_t hg = worker.num_heads / G;
    CudaAttentionStepConfig c = worker;
    c.num_heads = hg;
    if (!worker.policy.static_head.empty()) {
        c.policy.static_head.clear();
        for (int64_t l = 0; l < worker.num_layers; ++l)
            for (int64_t h = 0; h < hg; ++h)
                c.policy.static_head.push_back(
                    worker.policy.static_head[static_cast<size_t>(l * worker.num_heads + g * hg + h)]);
    }
    return c;
}

std::unique_ptr<CudaAttentionStep> make_cuda_attention_step(const CudaAttentionStepConfig& cfg,
                                                            const CudaSequenceMesh& mesh) {
    const SequenceMesh& m = mesh.mesh;
    if (m.ulysses == 1 && m.spatial == 1 && m.ulysses_comm == nullptr && m.spatial_comm == nullptr)
        return std::make_unique<CudaLocalAttentionStep>(cfg);
    return std::make_unique<ShardedCudaAttentionStep>(cfg, mesh);
}

#ifdef LONGROLL_HAS_CUDA

namespace {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

// Device-to-device, -to-host or host-to-device (pinned) on the forward's stream; nothing for an empty copy.
void copy(void* dst, const void* src, size_t bytes, Stream s) {
    if (bytes > 0) LR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
}
void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t rows, Stream s) {
    if (width > 0 && rows > 0)
        LR_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDefault, s));
}
void copy_rows(const void* src, const int32_t* src_row, void* dst, const int32_t* dst_row, int64_t rows,
               int64_t row_bytes, Stream s) {
    if (rows <= 0) return;
    CopyRowsParams p;
    p.src = src;
    p.dst = dst;
    p.src_row = src_row;
    p.dst_row = dst_row;
    p.rows = rows;
    p.row_bytes = row_bytes;
    launch_copy_rows(p, s);
}

}  // namespace

// Group-independent state: the model's q, k, v (all of the worker's rows and heads), the forward's tables, the
// events and the exchange stream, the head's gather.
struct ShardedCudaAttentionStep::Shared {
    int64_t Lmax = 0, Ls_max = 0, Upad = 0, Lp = 0, maxb = 0;  // tokens; Ulysses shard; U shards; tiled; own blocks
    DeviceBuffer dev;
    void* q_in = nullptr;  // bf16 [Lmax, W]: the model's rows, all heads
    void* k_in = nullptr;
    void* v_in = nullptr;
    int32_t* tables = nullptr;
    // Int32 offsets in `tables`: model token of every rank's s-list rows [S, Lmax]; tiled row of the worker's
    // s-list rows [Lmax]; its query blocks' segments [maxb] x 2; where each exchanged mean lands in a group's inner
    // step's query means [S, lhg, maxb]; model token of every gathered head row [S, Lmax].
    int64_t o_token = 0, o_tiled = 0, o_qbegin = 0, o_qlen = 0, o_qm_dst = 0, o_gather = 0, ints = 0;
    PinnedStaging staging;
    cudaEvent_t ready = nullptr, done = nullptr;          // collective() with a device-buffer communicator
    cudaEvent_t qkv_ready = nullptr, out_done = nullptr;  // overlap: the layer's q/k/v written; the last out
    cudaStream_t xs = nullptr;                            // overlap: the exchange stream
    // The head's gather.
    int64_t gather_width = 0;
    DeviceBuffer gdev;
    float* g_u = nullptr;  // [Upad, width]: the s-list's rows
    float* g_s = nullptr;  // [S, Lmax, width]: every spatial rank's
    PinnedStaging hg_send, hg_recv;

    ~Shared() {
        for (cudaEvent_t e : {ready, done, qkv_ready, out_done})
            if (e) cudaEventDestroy(e);
        if (xs) cudaStreamDestroy(xs);
    }
};

// A head group's buffers, planned at construction for the largest forward; `w` below is the group's width
// (heads / (U G) * head_dim).
struct ShardedCudaAttentionStep::Buffers {
    DeviceBuffer dev;
    void* qs = nullptr;  // bf16 [Upad, w]: the s-list's rows of the group's heads (U = G = 1: the model's q_in...)
    void* ks = nullptr;
    void* vs = nullptr;
    void* os = nullptr;  // bf16 [Upad, w]: their attention output
    void* kc = nullptr;  // bf16 [Lmax, w]: the whole forward's K and V, model order
    void* vc = nullptr;
    void* qt = nullptr;      // bf16 [Lp, w]: queries in the forward's tiled order (sparse step)
    void* ot = nullptr;      // bf16 [Lp, w]: its output
    void* peer_k = nullptr;  // bf16 [S, Lmax, w]: the spatial peers' K rows (peer p at row p * Lmax)
    void* peer_v = nullptr;
    float* qm = nullptr;    // f32 [S, lhg, maxb, hd]: each spatial rank's mean queries, [lhg][its blocks][hd]
    void* xsend = nullptr;  // bf16 [U, 3, Ls_max, w]: the Ulysses all-to-all (device-buffer communicator)
    void* xrecv = nullptr;
    // Host-buffer communicators: pinned mirrors of the exchanges.
    PinnedStaging hx_send, hx_recv;  // Ulysses: [U, 3, Ls_max, w] bf16
    PinnedStaging hs_send, hs_recv;  // spatial: [K | V | means] of this rank; [S][K | V | means]
    size_t hs_slot = 0;              // bytes of one rank's part
};

struct ShardedCudaAttentionStep::Group {
    int64_t index = 0;
    std::unique_ptr<CudaLocalAttentionStep> step;
    Buffers b;
    cudaEvent_t in_done = nullptr, att_done = nullptr;  // overlap only
    ~Group() {
        for (cudaEvent_t e : {in_done, att_done})
            if (e) cudaEventDestroy(e);
    }
};

ShardedCudaAttentionStep::ShardedCudaAttentionStep(const CudaAttentionStepConfig& cfg, const CudaSequenceMesh& mesh)
    : cfg_(cfg),
      mesh_(mesh),
      tiles_(cfg.grid_rows, cfg.grid_cols, tile_shape_for_block(cfg.block_size)),
      shared_(std::make_unique<Shared>()) {
    const SequenceMesh& m = mesh.mesh;
    LR_CHECK(m.ulysses == 1 ||
                 (m.ulysses_comm && m.ulysses_comm->size() == m.ulysses && m.ulysses_comm->rank() == m.ulysses_rank),
             "sharded CUDA attention: ", m.ulysses, " Ulysses ranks need a communicator of that size with this rank");
    LR_CHECK(m.spatial == 1 ||
                 (m.spatial_comm && m.spatial_comm->size() == m.spatial && m.spatial_comm->rank() == m.spatial_rank),
             "sharded CUDA attention: ", m.spatial, " spatial ranks need a communicator of that size with this rank");
    LR_CHECK(!m.ulysses_comm || !m.ulysses_comm->device_buffers() || mesh.ulysses_stream,
             "sharded CUDA attention: a Ulysses communicator on device buffers needs its stream (ulysses_stream)");
    LR_CHECK(!m.spatial_comm || !m.spatial_comm->device_buffers() || mesh.spatial_stream,
             "sharded CUDA attention: a spatial communicator on device buffers needs its stream (spatial_stream)");
    const int64_t G = m.overlap_groups;
    LR_CHECK(G == 1 || m.ulysses * m.spatial > 1, "sharded CUDA attention: overlap_groups ", G,
             " overlaps exchanges, and a single rank has none");
    for (Communicator* c : {m.ulysses_comm, m.spatial_comm})
        LR_CHECK(G == 1 || !c || c->callable_from_any_thread(), "sharded CUDA attention: parallel.overlap_groups ", G,
                 " runs the exchanges on a thread of their own, and this communicator cannot be called from one (MPI "
                 "was initialised below MPI_THREAD_SERIALIZED)");
    for (int64_t g = 0; g < G; ++g) {
        auto grp = std::make_unique<Group>();
        grp->index = g;
        grp->step = std::make_unique<CudaLocalAttentionStep>(group_config(cfg, m, g));
        groups_.push_back(std::move(grp));
    }
    worker_ = std::make_unique<ExchangeWorker>(G > 1);

    Shared& sh = *shared_;
    const int64_t U = m.ulysses, S = m.spatial, W = cfg.num_heads * cfg.head_dim, w = W / (U * G);
    const int64_t lhg = cfg.num_heads / (U * G), hd = cfg.head_dim;
    sh.Lmax = cfg.max_write_frames * cfg.grid_rows * cfg.grid_cols;
    sh.Ls_max = ceil_div(sh.Lmax, U);
    sh.Upad = U * sh.Ls_max;
    sh.Lp = ceil_div(sh.Lmax, kCudaQBlock) * kCudaQBlock;
    sh.maxb = ceil_div(ceil_div(sh.Lmax, kCudaQBlock), S);
    sh.o_token = 0;
    sh.o_tiled = sh.o_token + S * sh.Lmax;
    sh.o_qbegin = sh.o_tiled + sh.Lmax;
    sh.o_qlen = sh.o_qbegin + sh.maxb;
    sh.o_qm_dst = sh.o_qlen + sh.maxb;
    sh.o_gather = sh.o_qm_dst + S * lhg * sh.maxb;
    sh.ints = sh.o_gather + S * sh.Lmax;
    const size_t in = static_cast<size_t>(sh.Lmax) * static_cast<size_t>(W) * 2;
    sh.dev = DeviceBuffer(3 * align_up(in) + static_cast<size_t>(sh.ints) * 4);
    LR_CUDA_CHECK(cudaMemset(sh.dev.data(), 0, sh.dev.size()));
    char* base = static_cast<char*>(sh.dev.data());
    sh.q_in = base;
    sh.k_in = base + align_up(in);
    sh.v_in = base + 2 * align_up(in);
    sh.tables = reinterpret_cast<int32_t*>(base + 3 * align_up(in));
    sh.staging = PinnedStaging(static_cast<size_t>(sh.ints) * 4, true);

    const bool sparse = groups_.front()->step->sparse();
    const size_t row = static_cast<size_t>(w) * 2;
    for (auto& grp : groups_) {
        Buffers& b = grp->b;
        const bool own_slist = U > 1 || G > 1;  // else the s-list's rows are the model's q_in, k_in, v_in
        size_t sizes[] = {
            own_slist ? static_cast<size_t>(sh.Upad) * row * 3 : 0,        // qs, ks, vs
            static_cast<size_t>(sh.Upad) * row,                            // os
            static_cast<size_t>(sh.Lmax) * row * 2,                        // kc, vc
            sparse ? static_cast<size_t>(sh.Lp) * row * 2 : 0,             // qt, ot
            S > 1 ? static_cast<size_t>(S * sh.Lmax) * row * 2 : 0,        // peer_k, peer_v
            static_cast<size_t>(S * lhg * sh.maxb * hd) * 4,               // qm
            U > 1 ? static_cast<size_t>(U * 3 * sh.Ls_max) * row * 2 : 0,  // xsend, xrecv
        };
        size_t total = 0;
        for (size_t& sz : sizes) total += align_up(sz);
        b.dev = DeviceBuffer(total);
        // Zeroed: the tiled queries of other ranks' blocks are attended and dropped; they must be finite.
        LR_CUDA_CHECK(cudaMemset(b.dev.data(), 0, total));
        char* p = static_cast<char*>(b.dev.data());
        const auto take = [&](size_t bytes) {
            char* at = bytes ? p : nullptr;
            p += align_up(bytes);
            return at;
        };
        if (own_slist) {
            char* s3 = take(sizes[0]);
            const size_t sl = static_cast<size_t>(sh.Upad) * row;
            b.qs = s3;
            b.ks = s3 + sl;
            b.vs = s3 + 2 * sl;
        } else {
            b.qs = sh.q_in;
            b.ks = sh.k_in;
            b.vs = sh.v_in;
        }
        b.os = take(sizes[1]);
        char* kv = take(sizes[2]);
        b.kc = kv;
        b.vc = kv + static_cast<size_t>(sh.Lmax) * row;
        if (sparse) {
            char* t = take(sizes[3]);
            b.qt = t;
            b.ot = t + static_cast<size_t>(sh.Lp) * row;
        }
        if (S > 1) {
            char* pk = take(sizes[4]);
            b.peer_k = pk;
            b.peer_v = pk + static_cast<size_t>(S * sh.Lmax) * row;
        }
        b.qm = reinterpret_cast<float*>(take(sizes[5]));
        if (U > 1) {
            char* x = take(sizes[6]);
            b.xsend = x;
            b.xrecv = x + static_cast<size_t>(U * 3 * sh.Ls_max) * row;
        }
        if (U > 1 && !m.ulysses_comm->device_buffers()) {
            // Zeroed: the padding rows of a short last shard go over the wire unread.
            b.hx_send = PinnedStaging(sizes[6] / 2, true);
            b.hx_recv = PinnedStaging(sizes[6] / 2, true);
            std::memset(b.hx_send.data(), 0, sizes[6] / 2);
            std::memset(b.hx_recv.data(), 0, sizes[6] / 2);
        }
        if (S > 1 && !m.spatial_comm->device_buffers()) {
            b.hs_slot = align_up(static_cast<size_t>(sh.Lmax) * row * 2 + static_cast<size_t>(lhg * sh.maxb * hd) * 4);
            b.hs_send = PinnedStaging(b.hs_slot, true);
            b.hs_recv = PinnedStaging(static_cast<size_t>(S) * b.hs_slot, true);
        }
        if (G > 1) {
            LR_CUDA_CHECK(cudaEventCreateWithFlags(&grp->in_done, cudaEventDisableTiming));
            LR_CUDA_CHECK(cudaEventCreateWithFlags(&grp->att_done, cudaEventDisableTiming));
        }
    }
    if ((m.ulysses_comm && m.ulysses_comm->device_buffers()) || (m.spatial_comm && m.spatial_comm->device_buffers())) {
        LR_CUDA_CHECK(cudaEventCreateWithFlags(&sh.ready, cudaEventDisableTiming));
        LR_CUDA_CHECK(cudaEventCreateWithFlags(&sh.done, cudaEventDisableTiming));
    }
    if (G > 1) {
        LR_CUDA_CHECK(cudaEventCreateWithFlags(&sh.qkv_ready, cudaEventDisableTiming));
        LR_CUDA_CHECK(cudaEventCreateWithFlags(&sh.out_done, cudaEventDisableTiming));
        LR_CUDA_CHECK(cudaStreamCreateWithFlags(&sh.xs, cudaStreamNonBlocking));
    }
    // The zeroing ran on the legacy default stream, which the model's non-blocking stream does not wait for.
    LR_CUDA_CHECK(cudaDeviceSynchronize());
}

// The forward's stream is the model's, gone by now: the model drains it when it is destroyed (it must not outlive
// the step it was handed). The exchange thread has no task left: attend() drains it before returning.
ShardedCudaAttentionStep::~ShardedCudaAttentionStep() {
    if (shared_ && shared_->xs) cudaStreamSynchronize(shared_->xs);
}

template <class Op>
void ShardedCudaAttentionStep::collective(Communicator* comm, Stream comm_stream, Stream s, const Op& op) {
    // A device-buffer communicator runs on its own stream: the two streams wait for each other through events,
    // and the host never blocks. Any other reads host memory and returns complete: the stream is drained first
    // (the staged bytes have landed, and the previous exchange's copies out of the receive buffers are done
    // before the communicator overwrites them).
    if (comm->device_buffers()) {
        LR_CUDA_CHECK(cudaEventRecord(shared_->ready, s));
        LR_CUDA_CHECK(cudaStreamWaitEvent(comm_stream, shared_->ready, 0));
        op();
        LR_CUDA_CHECK(cudaEventRecord(shared_->done, comm_stream));
        LR_CUDA_CHECK(cudaStreamWaitEvent(s, shared_->done, 0));
    } else {
        LR_CUDA_CHECK(cudaStreamSynchronize(s));
        op();
    }
}

// The tables of a forward of `frames_` frames (SequencePlan), uploaded once per forward size; every head group
// reads them.
void ShardedCudaAttentionStep::upload_tables() {
    Shared& b = *shared_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t S = m.spatial, lhg = cfg_.num_heads / (m.ulysses * head_groups()), T = tiles_.tokens_per_frame();
    b.staging.wait();
    auto* h = static_cast<int32_t*>(b.staging.data());
    std::fill(h, h + b.ints, -1);
    const auto token_of = [&](int64_t r) { return (r / T) * T + tiles_.to_raster(r % T); };
    int64_t max_ns = 0;
    for (const auto& list : plan_.slist) max_ns = std::max<int64_t>(max_ns, static_cast<int64_t>(list.size()));
    for (int64_t p = 0; p < S; ++p) {
        const auto& list = plan_.slist[static_cast<size_t>(p)];
        for (size_t i = 0; i < list.size(); ++i) {
            h[b.o_token + p * b.Lmax + static_cast<int64_t>(i)] = static_cast<int32_t>(token_of(list[i]));
            h[b.o_gather + p * max_ns + static_cast<int64_t>(i)] = static_cast<int32_t>(token_of(list[i]));
        }
    }
    const auto& mine = plan_.slist[static_cast<size_t>(m.spatial_rank)];
    for (size_t i = 0; i < mine.size(); ++i) h[b.o_tiled + static_cast<int64_t>(i)] = static_cast<int32_t>(mine[i]);
    // The query blocks of spatial rank p are p, p + S, ...; its means arrive as [lhg][its blocks][hd] at row
    // p * lhg * maxb of a group's qm, and its i-th block's mean of head hh lands in row hh * nqb + p + i * S of the
    // group's inner step's [heads][query blocks][head_dim] means.
    const int64_t nqb = plan_.q_blocks;
    for (int64_t p = 0; p < S; ++p) {
        const int64_t own = p < nqb ? ceil_div(nqb - p, S) : 0;
        for (int64_t hh = 0; hh < lhg; ++hh)
            for (int64_t i = 0; i < own; ++i)
                h[b.o_qm_dst + p * lhg * b.maxb + hh * own + i] = static_cast<int32_t>(hh * nqb + p + i * S);
    }
    int64_t k = 0;
    for (int64_t q = m.spatial_rank; q < nqb; q += S, ++k) {
        h[b.o_qbegin + k] = static_cast<int32_t>(q * kCudaQBlock);
        h[b.o_qlen + k] = static_cast<int32_t>(std::min(kCudaQBlock, plan_.rows - q * kCudaQBlock));
    }
    b.staging.to_device(b.tables, 0, static_cast<size_t>(b.ints) * 4, stream_);
    b.staging.record(stream_);
}

KvWrite ShardedCudaAttentionStep::begin(const AttentionForward& f, Stream stream) {
    stream_ = stream;
    KvWrite w;
    for (auto& g : groups_) w = g->step->begin(f, stream);  // the same plan in every group: only the heads differ
    if (f.num_frames != frames_) {
        plan_ = plan_sequence(tiles_, f.num_frames, kCudaQBlock, mesh_.mesh);
        frames_ = f.num_frames;
        upload_tables();
    }
    LR_ASSERT(plan_.q_blocks == groups_.front()->step->query_blocks(), "sharded CUDA attention: ", plan_.q_blocks,
              " query blocks planned, ", groups_.front()->step->query_blocks(), " in the step");
    return w;
}

CudaQkvTarget ShardedCudaAttentionStep::qkv(int64_t) {
    CudaQkvTarget t;
    t.q = shared_->q_in;
    t.k = shared_->k_in;
    t.v = shared_->v_in;
    return t;
}

// Token shards -> head shards, as the CPU step: q, k, v of the worker's rows (all heads) are cut by head groups
// into send block p (rank p's heads of this group), and block p received (rank p's rows of this group's heads)
// lands at rows [p Ls, p Ls + Ls) of the s-list's qs, ks, vs. One Ulysses rank with several groups: the group's
// columns of the worker's rows.
void ShardedCudaAttentionStep::to_heads(Group& g, Stream s) {
    Buffers& b = g.b;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t U = m.ulysses, G = head_groups(), W = cfg_.num_heads * cfg_.head_dim, wu = W / U, w = wu / G;
    const int64_t n = plan_.count, Ls = plan_.shard;
    const auto ns = static_cast<int64_t>(plan_.slist[static_cast<size_t>(m.spatial_rank)].size());
    const size_t row = static_cast<size_t>(w) * 2, full = static_cast<size_t>(W) * 2;
    const size_t col = static_cast<size_t>(g.index * w) * 2;  // the group's columns inside a Ulysses rank's block
    const void* src[3] = {shared_->q_in, shared_->k_in, shared_->v_in};
    void* dst[3] = {b.qs, b.ks, b.vs};
    if (U == 1) {
        if (G == 1) return;  // qs, ks, vs are the model's buffers
        for (int64_t j = 0; j < 3; ++j)
            copy_2d(dst[j], row, static_cast<const char*>(src[j]) + col, full, row, static_cast<size_t>(n), s);
        return;
    }
    const bool on_device = m.ulysses_comm->device_buffers();
    auto* send = static_cast<char*>(on_device ? b.xsend : b.hx_send.data());
    auto* recv = static_cast<char*>(on_device ? b.xrecv : b.hx_recv.data());
    for (int64_t p = 0; p < U; ++p)
        for (int64_t j = 0; j < 3; ++j)
            copy_2d(send + static_cast<size_t>((p * 3 + j) * Ls) * row, row,
                    static_cast<const char*>(src[j]) + static_cast<size_t>(p * wu) * 2 + col, full, row,
                    static_cast<size_t>(n), s);
    collective(m.ulysses_comm, mesh_.ulysses_stream, s,
               [&] { m.ulysses_comm->all_to_all(send, recv, static_cast<size_t>(3 * Ls) * row); });
    for (int64_t p = 0; p < U; ++p) {
        const int64_t rows = std::max<int64_t>(0, std::min(Ls, ns - p * Ls));  // rank p's rows
        for (int64_t j = 0; j < 3; ++j)
            copy(static_cast<char*>(dst[j]) + static_cast<size_t>(p * Ls) * row,
                 recv + static_cast<size_t>((p * 3 + j) * Ls) * row, static_cast<size_t>(rows) * row, s);
    }
}

// Head shards -> token shards: os (the s-list's rows of this group's heads, padded to U shards of Ls) is the send
// layout as it stands; block p received (this worker's rows of p's heads of the group) lands in the group's
// columns of rank p's block.
void ShardedCudaAttentionStep::to_tokens(Group& g, void* out, Stream s) {
    Buffers& b = g.b;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t U = m.ulysses, G = head_groups(), W = cfg_.num_heads * cfg_.head_dim, wu = W / U, w = wu / G;
    const int64_t n = plan_.count, Ls = plan_.shard;
    const auto ns = static_cast<int64_t>(plan_.slist[static_cast<size_t>(m.spatial_rank)].size());
    const size_t row = static_cast<size_t>(w) * 2, full = static_cast<size_t>(W) * 2;
    const size_t col = static_cast<size_t>(g.index * w) * 2;
    if (U == 1) {
        if (G == 1)
            copy(out, b.os, static_cast<size_t>(ns) * row, s);
        else
            copy_2d(static_cast<char*>(out) + col, full, b.os, row, row, static_cast<size_t>(ns), s);
        return;
    }
    const bool on_device = m.ulysses_comm->device_buffers();
    const void* send = b.os;
    auto* recv = static_cast<char*>(on_device ? b.xrecv : b.hx_recv.data());
    if (!on_device) {
        copy(b.hx_send.data(), b.os, static_cast<size_t>(U * Ls) * row, s);
        send = b.hx_send.data();
    }
    collective(m.ulysses_comm, mesh_.ulysses_stream, s,
               [&] { m.ulysses_comm->all_to_all(send, recv, static_cast<size_t>(Ls) * row); });
    for (int64_t p = 0; p < U; ++p)
        copy_2d(static_cast<char*>(out) + static_cast<size_t>(p * wu) * 2 + col, full,
                recv + static_cast<size_t>(p * Ls) * row, row, row, static_cast<size_t>(n), s);
}

// The chunk's K/V rows of this rank of the group's heads (and, when the policy scores blocks, its query blocks'
// mean queries) to every spatial peer, theirs back; then every rank's rows into the whole forward's kc, vc (model
// order).
void ShardedCudaAttentionStep::exchange_spatial(Group& g, Stream st) {
    Buffers& b = g.b;
    const Shared& sh = *shared_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t S = m.spatial, s = m.spatial_rank, UG = m.ulysses * head_groups();
    const int64_t w = cfg_.num_heads * cfg_.head_dim / UG, lhg = cfg_.num_heads / UG, hd = cfg_.head_dim;
    const int64_t nqb = plan_.q_blocks;
    const size_t row = static_cast<size_t>(w) * 2;
    const bool means = g.step->uses_summaries();
    const auto rows_of = [&](int64_t p) { return static_cast<int64_t>(plan_.slist[static_cast<size_t>(p)].size()); };
    const auto blocks_of = [&](int64_t p) { return p < nqb ? ceil_div(nqb - p, S) : int64_t{0}; };
    const auto mean_bytes = [&](int64_t p) { return means ? static_cast<size_t>(lhg * blocks_of(p) * hd) * 4 : 0; };
    float* my_qm = b.qm + s * lhg * sh.maxb * hd;
    if (S > 1) {
        Communicator* comm = m.spatial_comm;
        const bool on_device = comm->device_buffers();
        const size_t kv_bytes = static_cast<size_t>(rows_of(s)) * row;
        // What goes on the wire: the device buffers, or their pinned copies.
        const void* send_k = b.ks;
        const void* send_v = b.vs;
        const void* send_m = my_qm;
        auto* hs = static_cast<char*>(b.hs_send.data());
        auto* hr = static_cast<char*>(b.hs_recv.data());
        if (!on_device) {
            copy(hs, b.ks, kv_bytes, st);
            copy(hs + kv_bytes, b.vs, kv_bytes, st);
            copy(hs + 2 * kv_bytes, my_qm, mean_bytes(s), st);
            send_k = hs;
            send_v = hs + kv_bytes;
            send_m = hs + 2 * kv_bytes;
        }
        const auto peer_k = [&](int64_t p) {
            return on_device ? static_cast<void*>(static_cast<char*>(b.peer_k) + static_cast<size_t>(p * sh.Lmax) * row)
                             : static_cast<void*>(hr + static_cast<size_t>(p) * b.hs_slot);
        };
        const auto peer_v = [&](int64_t p) {
            return on_device ? static_cast<void*>(static_cast<char*>(b.peer_v) + static_cast<size_t>(p * sh.Lmax) * row)
                             : static_cast<void*>(hr + static_cast<size_t>(p) * b.hs_slot +
                                                  static_cast<size_t>(rows_of(p)) * row);
        };
        const auto peer_m = [&](int64_t p) {
            return on_device ? static_cast<void*>(b.qm + p * lhg * sh.maxb * hd)
                             : static_cast<void*>(hr + static_cast<size_t>(p) * b.hs_slot +
                                                  2 * static_cast<size_t>(rows_of(p)) * row);
        };
        std::vector<SendSpec> sends;
        std::vector<RecvSpec> recvs;
        for (int64_t p = 0; p < S; ++p) {
            if (p == s) continue;
            const int peer = static_cast<int>(p);
            sends.push_back({peer, send_k, kv_bytes});
            sends.push_back({peer, send_v, kv_bytes});
            if (means) sends.push_back({peer, send_m, mean_bytes(s)});
            const size_t pb = static_cast<size_t>(rows_of(p)) * row;
            recvs.push_back({peer, peer_k(p), pb});
            recvs.push_back({peer, peer_v(p), pb});
            if (means) recvs.push_back({peer, peer_m(p), mean_bytes(p)});
        }
        collective(comm, mesh_.spatial_stream, st, [&] { comm->send_recv(sends, recvs); });
        if (!on_device) {
            for (int64_t p = 0; p < S; ++p) {
                if (p == s) continue;
                const size_t pb = static_cast<size_t>(rows_of(p)) * row;
                auto* dk = static_cast<char*>(b.peer_k) + static_cast<size_t>(p * sh.Lmax) * row;
                auto* dv = static_cast<char*>(b.peer_v) + static_cast<size_t>(p * sh.Lmax) * row;
                copy(dk, peer_k(p), pb, st);
                copy(dv, peer_v(p), pb, st);
                copy(b.qm + p * lhg * sh.maxb * hd, peer_m(p), mean_bytes(p), st);
            }
        }
    }
    // Every rank's rows into model order.
    const int32_t* token = sh.tables + sh.o_token;
    copy_rows(b.ks, nullptr, b.kc, token + s * sh.Lmax, rows_of(s), static_cast<int64_t>(row), st);
    copy_rows(b.vs, nullptr, b.vc, token + s * sh.Lmax, rows_of(s), static_cast<int64_t>(row), st);
    for (int64_t p = 0; p < S; ++p) {
        if (p == s) continue;
        const size_t at = static_cast<size_t>(p * sh.Lmax) * row;
        copy_rows(static_cast<char*>(b.peer_k) + at, nullptr, b.kc, token + p * sh.Lmax, rows_of(p),
                  static_cast<int64_t>(row), st);
        copy_rows(static_cast<char*>(b.peer_v) + at, nullptr, b.vc, token + p * sh.Lmax, rows_of(p),
                  static_cast<int64_t>(row), st);
    }
}

// Group g's inputs on stream s: its s-list rows (Ulysses), its tiled queries and their means (sparse step), the
// spatial peers' K/V rows and means.
void ShardedCudaAttentionStep::exchange_in(Group& g, int64_t, Stream s) {
    Buffers& b = g.b;
    const Shared& sh = *shared_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t S = m.spatial, sr = m.spatial_rank, UG = m.ulysses * head_groups();
    const int64_t w = cfg_.num_heads * cfg_.head_dim / UG, lhg = cfg_.num_heads / UG, hd = cfg_.head_dim;
    const auto ns = static_cast<int64_t>(plan_.slist[static_cast<size_t>(sr)].size());
    to_heads(g, s);
    if (g.step->sparse()) {
        // The s-list's queries at their tiled rows; this rank's query blocks' means, to be exchanged.
        copy_rows(b.qs, nullptr, b.qt, sh.tables + sh.o_tiled, ns, w * 2, s);
        if (g.step->uses_summaries() && S > 1) {
            SegmentMeanBf16Params q;
            q.x = b.qt;
            q.out = b.qm + sr * lhg * sh.maxb * hd;
            q.seg_begin = sh.tables + sh.o_qbegin;
            q.seg_len = sh.tables + sh.o_qlen;
            q.segments = plan_.q_blocks > sr ? ceil_div(plan_.q_blocks - sr, S) : 0;
            q.heads = lhg;
            q.head_dim = hd;
            q.out_stride = hd;
            q.out_head_stride = q.segments * hd;
            if (q.segments > 0) launch_segment_mean_bf16(q, s);
        }
    }
    exchange_spatial(g, s);
}

// Group g's attention on the model's stream: its K/V into its cache, its rows attended into os.
void ShardedCudaAttentionStep::attend_group(Group& g, int64_t layer) {
    Buffers& b = g.b;
    const Shared& sh = *shared_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t S = m.spatial, UG = m.ulysses * head_groups();
    const int64_t w = cfg_.num_heads * cfg_.head_dim / UG, lhg = cfg_.num_heads / UG, hd = cfg_.head_dim;
    const auto ns = static_cast<int64_t>(plan_.slist[static_cast<size_t>(m.spatial_rank)].size());
    // The single-GPU launch's CTAs (its query blocks x all heads): every rank and group splits table rows as it
    // would.
    const int64_t split_ctas = plan_.q_blocks * cfg_.num_heads;
    CudaLocalAttentionStep& inner = *g.step;
    inner.store_kv(layer, b.kc, b.vc);
    if (!inner.sparse()) {
        // The dense table: every row reads the same blocks in the same order, so the s-list's rows attend compactly.
        inner.attend_rows(layer, b.qs, ns, b.os, split_ctas);
    } else {
        const bool means = inner.uses_summaries() && S > 1;
        if (means)
            copy_rows(b.qm, nullptr, inner.query_means(layer), sh.tables + sh.o_qm_dst, S * lhg * sh.maxb, hd * 4,
                      stream_);
        inner.attend_tiled(layer, b.qt, b.ot, means, split_ctas);
        copy_rows(b.ot, sh.tables + sh.o_tiled, b.os, nullptr, ns, w * 2, stream_);
    }
}

void ShardedCudaAttentionStep::exchange_out(Group& g, void* out, Stream s) { to_tokens(g, out, s); }

double ShardedCudaAttentionStep::comm_busy_seconds() const {
    const SequenceMesh& m = mesh_.mesh;
    double s = m.ulysses_comm ? m.ulysses_comm->busy_seconds() : 0.0;
    if (m.spatial_comm && m.spatial_comm != m.ulysses_comm) s += m.spatial_comm->busy_seconds();
    return s;
}

// One group: in, attend, out in turn on the model's stream. Several: the pipeline of the header, the exchanges on
// the exchange thread's stream.
void ShardedCudaAttentionStep::attend(int64_t layer, void* out) {
    const auto G = static_cast<int64_t>(groups_.size());
    if (G == 1) {
        Group& g = *groups_.front();
        exchange_in(g, layer, stream_);
        attend_group(g, layer);
        exchange_out(g, out, stream_);
        return;
    }
    Shared& sh = *shared_;
    const Stream xs = sh.xs;
    // The layer's q, k, v (and the forward's tables) are on the model's stream: every in waits for them.
    LR_CUDA_CHECK(cudaEventRecord(sh.qkv_ready, stream_));
    const auto timed = [this](auto&& body) {
        const double before = comm_busy_seconds();
        body();
        task_comm_ns_ += static_cast<int64_t>((comm_busy_seconds() - before) * 1e9);
    };
    std::vector<int64_t> in_ticket(static_cast<size_t>(G), 0);
    const auto post_in = [&](int64_t g) {
        Group* grp = groups_[static_cast<size_t>(g)].get();
        in_ticket[static_cast<size_t>(g)] = worker_->post([this, grp, layer, xs, timed, first = g == 0] {
            timed([&] {
                if (first) LR_CUDA_CHECK(cudaStreamWaitEvent(xs, shared_->qkv_ready, 0));
                exchange_in(*grp, layer, xs);
                LR_CUDA_CHECK(cudaEventRecord(grp->in_done, xs));
            });
        });
    };
    try {
        post_in(0);
        post_in(1);
        for (int64_t g = 0; g < G; ++g) {
            Group* grp = groups_[static_cast<size_t>(g)].get();
            worker_->wait(in_ticket[static_cast<size_t>(g)]);  // in_done is recorded
            LR_CUDA_CHECK(cudaStreamWaitEvent(stream_, grp->in_done, 0));
            attend_group(*grp, layer);
            LR_CUDA_CHECK(cudaEventRecord(grp->att_done, stream_));
            worker_->post([this, grp, out, xs, timed, last = g + 1 == G] {
                timed([&] {
                    LR_CUDA_CHECK(cudaStreamWaitEvent(xs, grp->att_done, 0));
                    exchange_out(*grp, out, xs);
                    if (last) LR_CUDA_CHECK(cudaEventRecord(shared_->out_done, xs));
                });
            });
            if (g + 2 < G) post_in(g + 2);
        }
        worker_->drain();
    } catch (...) {
        // The posted tasks use this step's buffers: let them finish (their peers posted the same ones) before the
        // error leaves; a task's own error is already the one being thrown or a consequence of it.
        try {
            worker_->drain();
        } catch (...) {
        }
        throw;
    }
    // The model's next launch reads `out`: after the last out (the exchange stream is in order).
    LR_CUDA_CHECK(cudaStreamWaitEvent(stream_, sh.out_done, 0));
}

void ShardedCudaAttentionStep::gather(const float* mine, int64_t width, float* all) {
    Shared& b = *shared_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t U = m.ulysses, S = m.spatial, s = m.spatial_rank, n = plan_.count, Ls = plan_.shard;
    const auto ns = static_cast<int64_t>(plan_.slist[static_cast<size_t>(s)].size());
    int64_t max_ns = 0;
    for (const auto& list : plan_.slist) max_ns = std::max<int64_t>(max_ns, static_cast<int64_t>(list.size()));
    const size_t row = static_cast<size_t>(width) * 4;
    if (width != b.gather_width) {
        // The head's width is the model's: known at the first gather, planned once (a second model width would
        // re-plan; the rollout has one).
        LR_CUDA_CHECK(cudaStreamSynchronize(stream_));
        b.gather_width = width;
        const size_t gu = align_up(static_cast<size_t>(b.Upad) * row), gs = static_cast<size_t>(S * b.Lmax) * row;
        b.gdev = DeviceBuffer(gu + gs);
        b.g_u = static_cast<float*>(b.gdev.data());
        b.g_s = reinterpret_cast<float*>(static_cast<char*>(b.gdev.data()) + gu);
        const size_t most = static_cast<size_t>(std::max(U * b.Ls_max, S * b.Lmax)) * row;
        if ((U > 1 && !m.ulysses_comm->device_buffers()) || (S > 1 && !m.spatial_comm->device_buffers())) {
            b.hg_send = PinnedStaging(static_cast<size_t>(b.Lmax) * row, true);
            b.hg_recv = PinnedStaging(most, true);
        }
    }
    // Over U: the s-list's rows (shard p at row p Ls).
    if (U == 1) {
        copy(b.g_u, mine, static_cast<size_t>(ns) * row, stream_);
    } else {
        Communicator* comm = m.ulysses_comm;
        const size_t bytes = static_cast<size_t>(Ls) * row;
        if (comm->device_buffers()) {
            copy(b.g_s, mine, static_cast<size_t>(n) * row, stream_);  // g_s: free until the spatial gather
            collective(comm, mesh_.ulysses_stream, stream_, [&] { comm->all_gather(b.g_s, b.g_u, bytes); });
        } else {
            copy(b.hg_send.data(), mine, static_cast<size_t>(n) * row, stream_);
            collective(comm, nullptr, stream_, [&] { comm->all_gather(b.hg_send.data(), b.hg_recv.data(), bytes); });
            copy(b.g_u, b.hg_recv.data(), static_cast<size_t>(U) * bytes, stream_);
        }
    }
    // Over S: every spatial rank's s-list (padded to the longest), then every row to its token.
    const float* rows = b.g_u;
    if (S > 1) {
        Communicator* comm = m.spatial_comm;
        const size_t bytes = static_cast<size_t>(max_ns) * row;
        if (comm->device_buffers()) {
            collective(comm, mesh_.spatial_stream, stream_, [&] { comm->all_gather(b.g_u, b.g_s, bytes); });
        } else {
            copy(b.hg_send.data(), b.g_u, bytes, stream_);
            collective(comm, nullptr, stream_, [&] { comm->all_gather(b.hg_send.data(), b.hg_recv.data(), bytes); });
            copy(b.g_s, b.hg_recv.data(), static_cast<size_t>(S) * bytes, stream_);
        }
        rows = b.g_s;
    }
    copy_rows(rows, nullptr, all, b.tables + b.o_gather, S > 1 ? S * max_ns : ns, static_cast<int64_t>(row), stream_);
}

void ShardedCudaAttentionStep::end() {
    for (auto& g : groups_) g->step->end();
}

AttentionStats ShardedCudaAttentionStep::stats() const {
    AttentionStats s;
    for (const auto& g : groups_) {
        const AttentionStats t = g->step->stats();
        s.read_tokens += t.read_tokens;
        s.dense_tokens += t.dense_tokens;
        s.kv_bytes_held += t.kv_bytes_held;
    }
    return s;
}

int64_t ShardedCudaAttentionStep::cached_frames() const { return groups_.front()->step->cached_frames(); }
int64_t ShardedCudaAttentionStep::max_cached_frames() const { return groups_.front()->step->max_cached_frames(); }

size_t ShardedCudaAttentionStep::kv_bytes() const {
    size_t bytes = 0;
    for (const auto& g : groups_) bytes += g->step->kv_bytes();
    return bytes;
}

void ShardedCudaAttentionStep::reset(int64_t first_frame) {
    for (auto& g : groups_) g->step->reset(first_frame);
}

const CudaLocalAttentionStep& ShardedCudaAttentionStep::inner() const { return *groups_.front()->step; }

ExchangeTime ShardedCudaAttentionStep::exchange_time() const {
    return {worker_->busy_seconds(), worker_->exposed_seconds(), static_cast<double>(task_comm_ns_.load()) * 1e-9};
}

#else  // CPU-only build

struct ShardedCudaAttentionStep::Group {};
struct ShardedCudaAttentionStep::Shared {};

ShardedCudaAttentionStep::ShardedCudaAttentionStep(const CudaAttentionStepConfig& cfg, const CudaSequenceMesh& mesh)
    : cfg_(cfg), mesh_(mesh), tiles_(cfg.grid_rows, cfg.grid_cols, tile_shape_for_block(cfg.block_size)) {
    LR_RUNTIME(false, "sharded CUDA attention: this longroll was built without CUDA");
}
ShardedCudaAttentionStep::~ShardedCudaAttentionStep() = default;

namespace {
[[noreturn]] void no_cuda() {
    LR_ASSERT(false, "sharded CUDA attention used in a build without CUDA");
    __builtin_unreachable();
}
}  // namespace

KvWrite ShardedCudaAttentionStep::begin(const AttentionForward&, Stream) { no_cuda(); }
CudaQkvTarget ShardedCudaAttentionStep::qkv(int64_t) { no_cuda(); }
void ShardedCudaAttentionStep::attend(int64_t, void*) { no_cuda(); }
void ShardedCudaAttentionStep::gather(const float*, int64_t, float*) { no_cuda(); }
void ShardedCudaAttentionStep::end() { no_cuda(); }
AttentionStats ShardedCudaAttentionStep::stats() const { no_cuda(); }
int64_t ShardedCudaAttentionStep::cached_frames() const { no_cuda(); }
int64_t ShardedCudaAttentionStep::max_cached_frames() const { no_cuda(); }
size_t ShardedCudaAttentionStep::kv_bytes() const { no_cuda(); }
void ShardedCudaAttentionStep::reset(int64_t) { no_cuda(); }
const CudaLocalAttentionStep& ShardedCudaAttentionStep::inner() const { no_cuda(); }
ExchangeTime ShardedCudaAttentionStep::exchange_time() const { no_cuda(); }

#endif

}  // namespace lr
