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

// Every buffer of the step, planned at construction for the largest forward (Lmax tokens) -- except the head's
// gather, sized by its width at the first gather.
struct ShardedCudaAttentionStep::Buffers {
    int64_t Lmax = 0, Ls_max = 0, Upad = 0, Lp = 0, maxb = 0;  // tokens; Ulysses shard; U shards; tiled; own blocks
    DeviceBuffer dev;
    void* q_in = nullptr;  // bf16 [Lmax, W]: the model's rows, all heads
    void* k_in = nullptr;
    void* v_in = nullptr;
    void* qs = nullptr;  // bf16 [Upad, w]: the s-list's rows of the worker's heads (U > 1; else q_in, ...)
    void* ks = nullptr;
    void* vs = nullptr;
    void* os = nullptr;  // bf16 [Upad, w]: their attention output
    void* kc = nullptr;  // bf16 [Lmax, w]: the whole forward's K and V, model order
    void* vc = nullptr;
    void* qt = nullptr;      // bf16 [Lp, w]: queries in the forward's tiled order (sparse step)
    void* ot = nullptr;      // bf16 [Lp, w]: its output
    void* peer_k = nullptr;  // bf16 [S, Lmax, w]: the spatial peers' K rows (peer p at row p * Lmax)
    void* peer_v = nullptr;
    float* qm = nullptr;    // f32 [S, lh, maxb, hd]: each spatial rank's mean queries, [lh][its blocks][hd]
    void* xsend = nullptr;  // bf16 [U, 3, Ls_max, w]: the Ulysses all-to-all (device-buffer communicator)
    void* xrecv = nullptr;
    int32_t* tables = nullptr;
    // Int32 offsets in `tables`: model token of every rank's s-list rows [S, Lmax]; tiled row of the worker's
    // s-list rows [Lmax]; its query blocks' segments [maxb] x 2; where each exchanged mean lands in the inner
    // step's query means [S, lh, maxb]; model token of every gathered head row [S, Lmax].
    int64_t o_token = 0, o_tiled = 0, o_qbegin = 0, o_qlen = 0, o_qm_dst = 0, o_gather = 0, ints = 0;
    PinnedStaging staging;
    // Host-buffer communicators: pinned mirrors of the exchanges.
    PinnedStaging hx_send, hx_recv;  // Ulysses: [U, 3, Ls_max, w] bf16
    PinnedStaging hs_send, hs_recv;  // spatial: [K | V | means] of this rank; [S][K | V | means]
    size_t hs_slot = 0;              // bytes of one rank's part
    // The head's gather.
    int64_t gather_width = 0;
    DeviceBuffer gdev;
    float* g_u = nullptr;  // [Upad, width]: the s-list's rows
    float* g_s = nullptr;  // [S, Lmax, width]: every spatial rank's
    PinnedStaging hg_send, hg_recv;
    cudaEvent_t ready = nullptr, done = nullptr;

    ~Buffers() {
        if (ready) cudaEventDestroy(ready);
        if (done) cudaEventDestroy(done);
    }
};

ShardedCudaAttentionStep::ShardedCudaAttentionStep(const CudaAttentionStepConfig& cfg, const CudaSequenceMesh& mesh)
    : cfg_(cfg),
      mesh_(mesh),
      tiles_(cfg.grid_rows, cfg.grid_cols, tile_shape_for_block(cfg.block_size)),
      buf_(std::make_unique<Buffers>()) {
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
    inner_ = std::make_unique<CudaLocalAttentionStep>(inner_config(cfg, m));

    Buffers& b = *buf_;
    const int64_t U = m.ulysses, S = m.spatial, W = cfg.num_heads * cfg.head_dim, w = W / U, lh = cfg.num_heads / U;
    const int64_t hd = cfg.head_dim;
    b.Lmax = cfg.max_write_frames * cfg.grid_rows * cfg.grid_cols;
    b.Ls_max = ceil_div(b.Lmax, U);
    b.Upad = U * b.Ls_max;
    b.Lp = ceil_div(b.Lmax, kCudaQBlock) * kCudaQBlock;
    b.maxb = ceil_div(ceil_div(b.Lmax, kCudaQBlock), S);
    const bool sparse = inner_->sparse();
    const size_t row = static_cast<size_t>(w) * 2, full = static_cast<size_t>(W) * 2;
    size_t sizes[] = {
        static_cast<size_t>(b.Lmax) * full * 3,                       // q_in, k_in, v_in
        U > 1 ? static_cast<size_t>(b.Upad) * row * 3 : 0,            // qs, ks, vs
        static_cast<size_t>(b.Upad) * row,                            // os
        static_cast<size_t>(b.Lmax) * row * 2,                        // kc, vc
        sparse ? static_cast<size_t>(b.Lp) * row * 2 : 0,             // qt, ot
        S > 1 ? static_cast<size_t>(S * b.Lmax) * row * 2 : 0,        // peer_k, peer_v
        static_cast<size_t>(S * lh * b.maxb * hd) * 4,                // qm
        U > 1 ? static_cast<size_t>(U * 3 * b.Ls_max) * row * 2 : 0,  // xsend, xrecv
    };
    b.o_token = 0;
    b.o_tiled = b.o_token + S * b.Lmax;
    b.o_qbegin = b.o_tiled + b.Lmax;
    b.o_qlen = b.o_qbegin + b.maxb;
    b.o_qm_dst = b.o_qlen + b.maxb;
    b.o_gather = b.o_qm_dst + S * lh * b.maxb;
    b.ints = b.o_gather + S * b.Lmax;
    size_t total = static_cast<size_t>(b.ints) * 4;
    for (size_t& s : sizes) total += align_up(s);
    b.dev = DeviceBuffer(total);
    // Zeroed: the tiled queries of other ranks' blocks are attended and dropped; they must be finite.
    LR_CUDA_CHECK(cudaMemset(b.dev.data(), 0, total));
    char* p = static_cast<char*>(b.dev.data());
    const auto take = [&](size_t bytes) {
        char* at = bytes ? p : nullptr;
        p += align_up(bytes);
        return at;
    };
    const size_t in = static_cast<size_t>(b.Lmax) * full;
    char* in3 = take(sizes[0]);
    b.q_in = in3;
    b.k_in = in3 + in;
    b.v_in = in3 + 2 * in;
    if (U > 1) {
        char* s3 = take(sizes[1]);
        const size_t sl = static_cast<size_t>(b.Upad) * row;
        b.qs = s3;
        b.ks = s3 + sl;
        b.vs = s3 + 2 * sl;
    } else {
        b.qs = b.q_in;
        b.ks = b.k_in;
        b.vs = b.v_in;
    }
    b.os = take(sizes[2]);
    char* kv = take(sizes[3]);
    b.kc = kv;
    b.vc = kv + static_cast<size_t>(b.Lmax) * row;
    if (sparse) {
        char* t = take(sizes[4]);
        b.qt = t;
        b.ot = t + static_cast<size_t>(b.Lp) * row;
    }
    if (S > 1) {
        char* pk = take(sizes[5]);
        b.peer_k = pk;
        b.peer_v = pk + static_cast<size_t>(S * b.Lmax) * row;
    }
    b.qm = reinterpret_cast<float*>(take(sizes[6]));
    if (U > 1) {
        char* x = take(sizes[7]);
        b.xsend = x;
        b.xrecv = x + static_cast<size_t>(U * 3 * b.Ls_max) * row;
    }
    b.tables = reinterpret_cast<int32_t*>(p);
    b.staging = PinnedStaging(static_cast<size_t>(b.ints) * 4, true);
    if (U > 1 && !m.ulysses_comm->device_buffers()) {
        // Zeroed: the padding rows of a short last shard go over the wire unread.
        b.hx_send = PinnedStaging(sizes[7] / 2, true);
        b.hx_recv = PinnedStaging(sizes[7] / 2, true);
        std::memset(b.hx_send.data(), 0, sizes[7] / 2);
        std::memset(b.hx_recv.data(), 0, sizes[7] / 2);
    }
    if (S > 1 && !m.spatial_comm->device_buffers()) {
        b.hs_slot = align_up(static_cast<size_t>(b.Lmax) * row * 2 + static_cast<size_t>(lh * b.maxb * hd) * 4);
        b.hs_send = PinnedStaging(b.hs_slot, true);
        b.hs_recv = PinnedStaging(static_cast<size_t>(S) * b.hs_slot, true);
    }
    if ((m.ulysses_comm && m.ulysses_comm->device_buffers()) || (m.spatial_comm && m.spatial_comm->device_buffers())) {
        LR_CUDA_CHECK(cudaEventCreateWithFlags(&b.ready, cudaEventDisableTiming));
        LR_CUDA_CHECK(cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming));
    }
    // The zeroing ran on the legacy default stream, which the model's non-blocking stream does not wait for.
    LR_CUDA_CHECK(cudaDeviceSynchronize());
}

// The forward's stream is the model's, gone by now: the model drains it when it is destroyed (it must not outlive
// the step it was handed).
ShardedCudaAttentionStep::~ShardedCudaAttentionStep() = default;

template <class Op>
void ShardedCudaAttentionStep::collective(Communicator* comm, Stream comm_stream, const Op& op) {
    // A device-buffer communicator runs on its own stream: the two streams wait for each other through events,
    // and the host never blocks. Any other reads host memory and returns complete: the stream is drained first
    // (the staged bytes have landed, and the previous exchange's copies out of the receive buffers are done
    // before the communicator overwrites them).
    if (comm->device_buffers()) {
        LR_CUDA_CHECK(cudaEventRecord(buf_->ready, stream_));
        LR_CUDA_CHECK(cudaStreamWaitEvent(comm_stream, buf_->ready, 0));
        op();
        LR_CUDA_CHECK(cudaEventRecord(buf_->done, comm_stream));
        LR_CUDA_CHECK(cudaStreamWaitEvent(stream_, buf_->done, 0));
    } else {
        LR_CUDA_CHECK(cudaStreamSynchronize(stream_));
        op();
    }
}

// The tables of a forward of `frames_` frames (SequencePlan), uploaded once per forward size.
void ShardedCudaAttentionStep::upload_tables() {
    Buffers& b = *buf_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t S = m.spatial, lh = cfg_.num_heads / m.ulysses, T = tiles_.tokens_per_frame();
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
    // The query blocks of spatial rank p are p, p + S, ...; its means arrive as [lh][its blocks][hd] at row
    // p * lh * maxb of qm, and its i-th block's mean of head hh lands in row hh * nqb + p + i * S of the inner
    // step's [heads][query blocks][head_dim] means.
    const int64_t nqb = plan_.q_blocks;
    for (int64_t p = 0; p < S; ++p) {
        const int64_t own = p < nqb ? ceil_div(nqb - p, S) : 0;
        for (int64_t hh = 0; hh < lh; ++hh)
            for (int64_t i = 0; i < own; ++i)
                h[b.o_qm_dst + p * lh * b.maxb + hh * own + i] = static_cast<int32_t>(hh * nqb + p + i * S);
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
    const KvWrite w = inner_->begin(f, stream);
    if (f.num_frames != frames_) {
        plan_ = plan_sequence(tiles_, f.num_frames, kCudaQBlock, mesh_.mesh);
        frames_ = f.num_frames;
        upload_tables();
    }
    LR_ASSERT(plan_.q_blocks == inner_->query_blocks(), "sharded CUDA attention: ", plan_.q_blocks,
              " query blocks planned, ", inner_->query_blocks(), " in the step");
    return w;
}

CudaQkvTarget ShardedCudaAttentionStep::qkv(int64_t) {
    CudaQkvTarget t;
    t.q = buf_->q_in;
    t.k = buf_->k_in;
    t.v = buf_->v_in;
    return t;
}

// Token shards -> head shards, as the CPU step: q, k, v of the worker's rows (all heads) are cut by head groups
// into send block p (rank p's heads), and block p received (rank p's rows of this worker's heads) lands at rows
// [p Ls, p Ls + Ls) of the s-list's qs, ks, vs.
void ShardedCudaAttentionStep::to_heads() {
    Buffers& b = *buf_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t U = m.ulysses, W = cfg_.num_heads * cfg_.head_dim, w = W / U;
    const int64_t n = plan_.count, Ls = plan_.shard;
    const auto ns = static_cast<int64_t>(plan_.slist[static_cast<size_t>(m.spatial_rank)].size());
    const size_t row = static_cast<size_t>(w) * 2, full = static_cast<size_t>(W) * 2;
    const bool on_device = m.ulysses_comm->device_buffers();
    auto* send = static_cast<char*>(on_device ? b.xsend : b.hx_send.data());
    auto* recv = static_cast<char*>(on_device ? b.xrecv : b.hx_recv.data());
    const void* src[3] = {b.q_in, b.k_in, b.v_in};
    void* dst[3] = {b.qs, b.ks, b.vs};
    for (int64_t p = 0; p < U; ++p)
        for (int64_t j = 0; j < 3; ++j)
            copy_2d(send + static_cast<size_t>((p * 3 + j) * Ls) * row, row,
                    static_cast<const char*>(src[j]) + static_cast<size_t>(p) * row, full, row, static_cast<size_t>(n),
                    stream_);
    collective(m.ulysses_comm, mesh_.ulysses_stream,
               [&] { m.ulysses_comm->all_to_all(send, recv, static_cast<size_t>(3 * Ls) * row); });
    for (int64_t p = 0; p < U; ++p) {
        const int64_t rows = std::max<int64_t>(0, std::min(Ls, ns - p * Ls));  // rank p's rows
        for (int64_t j = 0; j < 3; ++j)
            copy(static_cast<char*>(dst[j]) + static_cast<size_t>(p * Ls) * row,
                 recv + static_cast<size_t>((p * 3 + j) * Ls) * row, static_cast<size_t>(rows) * row, stream_);
    }
}

// Head shards -> token shards: os (the s-list's rows of this worker's heads, padded to U shards of Ls) is the
// send layout as it stands; block p received (this worker's rows of p's heads) lands in columns [p w, p w + w).
void ShardedCudaAttentionStep::to_tokens(void* out) {
    Buffers& b = *buf_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t U = m.ulysses, W = cfg_.num_heads * cfg_.head_dim, w = W / U;
    const int64_t n = plan_.count, Ls = plan_.shard;
    const size_t row = static_cast<size_t>(w) * 2, full = static_cast<size_t>(W) * 2;
    const bool on_device = m.ulysses_comm->device_buffers();
    const void* send = b.os;
    auto* recv = static_cast<char*>(on_device ? b.xrecv : b.hx_recv.data());
    if (!on_device) {
        copy(b.hx_send.data(), b.os, static_cast<size_t>(U * Ls) * row, stream_);
        send = b.hx_send.data();
    }
    collective(m.ulysses_comm, mesh_.ulysses_stream,
               [&] { m.ulysses_comm->all_to_all(send, recv, static_cast<size_t>(Ls) * row); });
    for (int64_t p = 0; p < U; ++p)
        copy_2d(static_cast<char*>(out) + static_cast<size_t>(p) * row, full, recv + static_cast<size_t>(p * Ls) * row,
                row, row, static_cast<size_t>(n), stream_);
}

// The chunk's K/V rows of this rank (and, when the policy scores blocks, its query blocks' mean queries) to every
// spatial peer, theirs back; then every rank's rows into the whole forward's kc, vc (model order).
void ShardedCudaAttentionStep::exchange_spatial(int64_t) {
    Buffers& b = *buf_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t S = m.spatial, s = m.spatial_rank, U = m.ulysses, w = cfg_.num_heads * cfg_.head_dim / U;
    const int64_t lh = cfg_.num_heads / U, hd = cfg_.head_dim, nqb = plan_.q_blocks;
    const size_t row = static_cast<size_t>(w) * 2;
    const bool means = inner_->uses_summaries();
    const auto rows_of = [&](int64_t p) { return static_cast<int64_t>(plan_.slist[static_cast<size_t>(p)].size()); };
    const auto blocks_of = [&](int64_t p) { return p < nqb ? ceil_div(nqb - p, S) : int64_t{0}; };
    const auto mean_bytes = [&](int64_t p) { return means ? static_cast<size_t>(lh * blocks_of(p) * hd) * 4 : 0; };
    float* my_qm = b.qm + s * lh * b.maxb * hd;
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
            copy(hs, b.ks, kv_bytes, stream_);
            copy(hs + kv_bytes, b.vs, kv_bytes, stream_);
            copy(hs + 2 * kv_bytes, my_qm, mean_bytes(s), stream_);
            send_k = hs;
            send_v = hs + kv_bytes;
            send_m = hs + 2 * kv_bytes;
        }
        const auto peer_k = [&](int64_t p) {
            return on_device ? static_cast<void*>(static_cast<char*>(b.peer_k) + static_cast<size_t>(p * b.Lmax) * row)
                             : static_cast<void*>(hr + static_cast<size_t>(p) * b.hs_slot);
        };
        const auto peer_v = [&](int64_t p) {
            return on_device ? static_cast<void*>(static_cast<char*>(b.peer_v) + static_cast<size_t>(p * b.Lmax) * row)
                             : static_cast<void*>(hr + static_cast<size_t>(p) * b.hs_slot +
                                                  static_cast<size_t>(rows_of(p)) * row);
        };
        const auto peer_m = [&](int64_t p) {
            return on_device ? static_cast<void*>(b.qm + p * lh * b.maxb * hd)
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
        collective(comm, mesh_.spatial_stream, [&] { comm->send_recv(sends, recvs); });
        if (!on_device) {
            for (int64_t p = 0; p < S; ++p) {
                if (p == s) continue;
                const size_t pb = static_cast<size_t>(rows_of(p)) * row;
                auto* dk = static_cast<char*>(b.peer_k) + static_cast<size_t>(p * b.Lmax) * row;
                auto* dv = static_cast<char*>(b.peer_v) + static_cast<size_t>(p * b.Lmax) * row;
                copy(dk, peer_k(p), pb, stream_);
                copy(dv, peer_v(p), pb, stream_);
                copy(b.qm + p * lh * b.maxb * hd, peer_m(p), mean_bytes(p), stream_);
            }
        }
    }
    // Every rank's rows into model order.
    const int32_t* token = b.tables + b.o_token;
    copy_rows(b.ks, nullptr, b.kc, token + s * b.Lmax, rows_of(s), static_cast<int64_t>(row), stream_);
    copy_rows(b.vs, nullptr, b.vc, token + s * b.Lmax, rows_of(s), static_cast<int64_t>(row), stream_);
    for (int64_t p = 0; p < S; ++p) {
        if (p == s) continue;
        const size_t at = static_cast<size_t>(p * b.Lmax) * row;
        copy_rows(static_cast<char*>(b.peer_k) + at, nullptr, b.kc, token + p * b.Lmax, rows_of(p),
                  static_cast<int64_t>(row), stream_);
        copy_rows(static_cast<char*>(b.peer_v) + at, nullptr, b.vc, token + p * b.Lmax, rows_of(p),
                  static_cast<int64_t>(row), stream_);
    }
}

void ShardedCudaAttentionStep::attend(int64_t layer, void* out) {
    Buffers& b = *buf_;
    const SequenceMesh& m = mesh_.mesh;
    const int64_t S = m.spatial, s = m.spatial_rank, U = m.ulysses, w = cfg_.num_heads * cfg_.head_dim / U;
    const int64_t lh = cfg_.num_heads / U, hd = cfg_.head_dim;
    const auto ns = static_cast<int64_t>(plan_.slist[static_cast<size_t>(s)].size());
    const int64_t row = w * 2;
    // The single-GPU launch's CTAs (its query blocks x all heads): every rank splits table rows as it would.
    const int64_t split_ctas = plan_.q_blocks * cfg_.num_heads;

    if (U > 1) to_heads();
    const int32_t* tiled = b.tables + b.o_tiled;
    const bool sparse = inner_->sparse();
    const bool means = sparse && inner_->uses_summaries() && S > 1;
    if (sparse) {
        // The s-list's queries at their tiled rows; this rank's query blocks' means, to be exchanged.
        copy_rows(b.qs, nullptr, b.qt, tiled, ns, row, stream_);
        if (means) {
            SegmentMeanBf16Params q;
            q.x = b.qt;
            q.out = b.qm + s * lh * b.maxb * hd;
            q.seg_begin = b.tables + b.o_qbegin;
            q.seg_len = b.tables + b.o_qlen;
            q.segments = plan_.q_blocks > s ? ceil_div(plan_.q_blocks - s, S) : 0;
            q.heads = lh;
            q.head_dim = hd;
            q.out_stride = hd;
            q.out_head_stride = q.segments * hd;
            if (q.segments > 0) launch_segment_mean_bf16(q, stream_);
        }
    }
    exchange_spatial(layer);
    inner_->store_kv(layer, b.kc, b.vc);
    if (!sparse) {
        // The dense table: every row reads the same blocks in the same order, so the s-list's rows attend compactly.
        inner_->attend_rows(layer, b.qs, ns, b.os, split_ctas);
    } else {
        if (means)
            copy_rows(b.qm, nullptr, inner_->query_means(layer), b.tables + b.o_qm_dst, S * lh * b.maxb, hd * 4,
                      stream_);
        inner_->attend_tiled(layer, b.qt, b.ot, means, split_ctas);
        copy_rows(b.ot, tiled, b.os, nullptr, ns, row, stream_);
    }
    if (U > 1) {
        to_tokens(out);
    } else {
        copy(out, b.os, static_cast<size_t>(ns * row), stream_);
    }
}

void ShardedCudaAttentionStep::gather(const float* mine, int64_t width, float* all) {
    Buffers& b = *buf_;
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
            collective(comm, mesh_.ulysses_stream, [&] { comm->all_gather(b.g_s, b.g_u, bytes); });
        } else {
            copy(b.hg_send.data(), mine, static_cast<size_t>(n) * row, stream_);
            collective(comm, nullptr, [&] { comm->all_gather(b.hg_send.data(), b.hg_recv.data(), bytes); });
            copy(b.g_u, b.hg_recv.data(), static_cast<size_t>(U) * bytes, stream_);
        }
    }
    // Over S: every spatial rank's s-list (padded to the longest), then every row to its token.
    const float* rows = b.g_u;
    if (S > 1) {
        Communicator* comm = m.spatial_comm;
        const size_t bytes = static_cast<size_t>(max_ns) * row;
        if (comm->device_buffers()) {
            collective(comm, mesh_.spatial_stream, [&] { comm->all_gather(b.g_u, b.g_s, bytes); });
        } else {
            copy(b.hg_send.data(), b.g_u, bytes, stream_);
            collective(comm, nullptr, [&] { comm->all_gather(b.hg_send.data(), b.hg_recv.data(), bytes); });
            copy(b.g_s, b.hg_recv.data(), static_cast<size_t>(S) * bytes, stream_);
        }
        rows = b.g_s;
    }
    copy_rows(rows, nullptr, all, b.tables + b.o_gather, S > 1 ? S * max_ns : ns, static_cast<int64_t>(row), stream_);
}

#else  // CPU-only build

struct ShardedCudaAttentionStep::Buffers {};

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

#endif

}  // namespace lr
