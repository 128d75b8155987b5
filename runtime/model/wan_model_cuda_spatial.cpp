// Spatial sharding of CudaWanModel (CudaModelOptions.spatial; the scheme of WanModel's CPU path, DESIGN.md
// section 7): the s-list's tables, the per-layer assembly of the window's K/V from every spatial rank, and the
// head's all-gather back into the chunk's token order. See SpatialLayout (wan_model_cuda_plan.h) for who owns
// which block and where it lands in the scratch pools.
//
// Why the scratch pool: the attention kernel reads K/V through one base pointer and a block table. Assembling
// every rank's blocks of the key slots in one pool (each rank's pages of slots [0, k) contiguous in its segment)
// turns the exchange into one contiguous send per peer and one receive per peer, for K and for V, and lets the
// table list the blocks in the 1-rank order (slot by slot, block 0 to nb-1), so the online softmax sees the keys
// in the same order as the unsharded forward. The rank's own pages are copied into its segment (device to
// device, 1/S of the window) -- the cost of one base pointer.
#include "runtime/model/wan_model_cuda_impl.h"

#ifdef LONGROLL_HAS_CUDA

#include <algorithm>
#include <vector>

namespace lr {

using wan_cuda::ceil_div;
using wan_cuda::spatial_table_ints;

namespace {

// Int32 offsets inside Activations::s_tables: s_rows | indptr | indices, fixed for the largest forward.
struct TableOffsets {
    int64_t indptr = 0, indices = 0;
};

TableOffsets table_offsets(const SpatialLayout& l, const Activations& act, int64_t max_forward_frames) {
    TableOffsets t;
    t.indptr = l.S * max_forward_frames * l.max_rpf;
    t.indices = t.indptr + act.s_table_rows + 1;
    return t;
}

}  // namespace

void CudaWanModel::Impl::init_spatial() {
    const WanDims& d = cfg.dims;
    sl = wan_cuda::spatial_layout(cfg, opts, cache->config().max_frames);
    const int64_t patch = d.in_dim * d.patch[0] * d.patch[1] * d.patch[2];
    LR_ASSERT(patch <= d.ffn_dim, "spatial: the patch gather uses the FFN buffer: patch ", patch, " > ffn_dim ",
              d.ffn_dim);
    LR_ASSERT(cache->blocks_per_frame() == sl.my_nbl(), "spatial: the cache has ", cache->blocks_per_frame(),
              " blocks per frame, the layout ", sl.my_nbl());
    const int64_t width = d.dim / opts.shard.size, B = sl.block, rows = sl.scratch_blocks() * B;
    const int64_t head_out = w.head.out;
    spatial_staging = PinnedStaging(static_cast<size_t>(spatial_table_ints(cfg, opts, sl.slots)) * 4, true);
    if (!opts.spatial.comm->device_buffers()) {
        skv_host = PinnedStaging(static_cast<size_t>(2 * rows * width) * 2, true);
        // [S + 1 (this rank's send), F * max_rpf, head_out]
        sgather_host =
            PinnedStaging(static_cast<size_t>((sl.S + 1) * opts.max_forward_frames * sl.max_rpf * head_out) * 4, true);
    }

    // Static: every scratch block's valid length and, for window-relative RoPE, every scratch row's position
    // (slot, row, col) -- a segment's layout never changes, only how many slots of it a forward uses.
    std::vector<int32_t> len(static_cast<size_t>(sl.scratch_blocks()), 0);
    std::vector<int32_t> pos(act.s_positions ? static_cast<size_t>(3 * rows) : 0, 0);
    for (int64_t r = 0; r < sl.S; ++r) {
        const int64_t nbl = sl.nbl[static_cast<size_t>(r)];
        for (int64_t j = 0; j < sl.slots; ++j) {
            for (int64_t i = 0; i < nbl; ++i) {
                const int64_t b = i * sl.S + r, blk = sl.seg_base(r) + j * nbl + i;
                len[static_cast<size_t>(blk)] = static_cast<int32_t>(std::min(B, sl.tpf - b * B));
                if (pos.empty()) continue;
                for (int64_t k = 0; k < B; ++k) {
                    const int64_t token = std::min(b * B + k, sl.tpf - 1);  // padding rows: any valid position
                    int32_t* p = pos.data() + 3 * (blk * B + k);
                    p[0] = static_cast<int32_t>(j);
                    p[1] = static_cast<int32_t>(token / gw);
                    p[2] = static_cast<int32_t>(token % gw);
                }
            }
        }
    }
    LR_CUDA_CHECK(cudaMemcpy(act.s_block_len, len.data(), len.size() * 4, cudaMemcpyHostToDevice));
    if (!pos.empty()) LR_CUDA_CHECK(cudaMemcpy(act.s_positions, pos.data(), pos.size() * 4, cudaMemcpyHostToDevice));
}

// Per forward: the gathered order's chunk tokens (rank r's s-list at rows [r F max_rpf, ...), -1 past its
// tokens) and the dense table over the scratch pools: every query block of the s-list reads every block of
// slots [0, slot_end) in the 1-rank order.
void CudaWanModel::Impl::prepare_spatial(Geometry& g, int64_t F) {
    const TableOffsets off = table_offsets(sl, act, opts.max_forward_frames);
    const int64_t per = F * sl.max_rpf, slot_end = g.plan->write.slot_end;
    const int64_t cols = slot_end * sl.nb, qb = ceil_div(g.ns, kQBlock);
    LR_ASSERT(qb <= act.s_table_rows && slot_end <= sl.slots, "spatial tables: ", qb, " query blocks, ", slot_end,
              " slots; planned ", act.s_table_rows, ", ", sl.slots);
    spatial_staging.wait();
    auto* host = static_cast<int32_t*>(spatial_staging.data());
    for (int64_t r = 0; r < sl.S; ++r) {
        int32_t* rows = host + r * per;
        int64_t k = 0;
        for (int64_t f = 0; f < F; ++f)
            for (int64_t b = r; b < sl.nb; b += sl.S)
                for (int64_t i = b * sl.block; i < std::min(sl.tpf, (b + 1) * sl.block); ++i)
                    rows[k++] = static_cast<int32_t>(f * sl.tpf + i);
        LR_ASSERT(k == F * sl.rpf[static_cast<size_t>(r)], "spatial: rank ", r, " has ", k, " tokens");
        std::fill(rows + k, rows + per, -1);
    }
    int32_t* indptr = host + off.indptr;
    int32_t* indices = host + off.indices;
    for (int64_t q = 0; q <= qb; ++q) indptr[q] = static_cast<int32_t>(q * cols);
    for (int64_t j = 0, c = 0; j < slot_end; ++j)
        for (int64_t b = 0; b < sl.nb; ++b) indices[c++] = static_cast<int32_t>(sl.scratch_block(j, b));
    for (int64_t q = 1; q < qb; ++q) std::copy_n(indices, cols, indices + q * cols);
    spatial_staging.to_device(act.s_tables, 0, static_cast<size_t>(off.indices + qb * cols) * 4, stream.s);
    spatial_staging.record(stream.s);
    g.slot_end = slot_end;
    g.s_rows = act.s_tables;
    g.s_indptr = act.s_tables + off.indptr;
    g.s_indices = act.s_tables + off.indices;
}

const void* CudaWanModel::Impl::assemble_kv(int64_t l, const Geometry& g) {
    const int64_t width = cfg.dims.dim / opts.shard.size, B = sl.block, nbl = sl.my_nbl();
    const size_t block_bytes = static_cast<size_t>(B * width) * 2;
    const size_t pool_bytes = static_cast<size_t>(sl.scratch_blocks()) * block_bytes;  // one scratch pool
    auto* sk = static_cast<char*>(act.sk);
    auto* sv = static_cast<char*>(act.sv);
    const auto* pk = static_cast<const char*>(cache->keys(l));
    const auto* pv = static_cast<const char*>(cache->values(l));
    const auto segment = [&](int64_t r) { return static_cast<size_t>(sl.seg_base(r)) * block_bytes; };
    const auto seg_bytes = [&](int64_t r) {
        return static_cast<size_t>(g.slot_end * sl.nbl[static_cast<size_t>(r)]) * block_bytes;
    };

    // This rank's pages of slots [0, slot_end), in slot order, into its segment (runs of consecutive pages in one
    // copy: after a reset the pages are consecutive until eviction wraps).
    const std::vector<int64_t>& pages = cache->slot_pages();
    LR_ASSERT(static_cast<int64_t>(pages.size()) >= g.slot_end, "spatial: ", pages.size(), " slots in use, ",
              g.slot_end, " read");
    for (int64_t j = 0; j < g.slot_end;) {
        int64_t run = 1;
        while (j + run < g.slot_end && pages[static_cast<size_t>(j + run)] == pages[static_cast<size_t>(j)] + run)
            ++run;
        const size_t dst = segment(sl.s) + static_cast<size_t>(j * nbl) * block_bytes;
        const size_t src = static_cast<size_t>(pages[static_cast<size_t>(j)] * nbl) * block_bytes;
        const size_t bytes = static_cast<size_t>(run * nbl) * block_bytes;
        copy(sk + dst, pk + src, bytes);
        copy(sv + dst, pv + src, bytes);
        j += run;
    }

    // The other ranks' segments: one send per peer of this rank's segment and one receive per peer, for K and V.
    Communicator* comm = opts.spatial.comm;
    if (sl.S > 1) {
        const bool on_device = comm->device_buffers();
        auto* hk = static_cast<char*>(skv_host.data());
        char* bk = on_device ? sk : hk;  // the buffers the communicator reads and writes
        char* bv = on_device ? sv : hk + pool_bytes;
        if (!on_device) {
            copy(bk + segment(sl.s), sk + segment(sl.s), seg_bytes(sl.s));
            copy(bv + segment(sl.s), sv + segment(sl.s), seg_bytes(sl.s));
        }
        std::vector<SendSpec> sends;
        std::vector<RecvSpec> recvs;
        for (int64_t p = 0; p < sl.S; ++p) {
            if (p == sl.s) continue;
            const int peer = static_cast<int>(p);
            sends.push_back({peer, bk + segment(sl.s), seg_bytes(sl.s)});
            sends.push_back({peer, bv + segment(sl.s), seg_bytes(sl.s)});
            recvs.push_back({peer, bk + segment(p), seg_bytes(p)});
            recvs.push_back({peer, bv + segment(p), seg_bytes(p)});
        }
        collective(comm, opts.spatial_comm_stream, [&] { comm->send_recv(sends, recvs); });
        if (!on_device) {
            for (int64_t p = 0; p < sl.S; ++p) {
                if (p == sl.s) continue;
                copy(sk + segment(p), bk + segment(p), seg_bytes(p));
                copy(sv + segment(p), bv + segment(p), seg_bytes(p));
            }
        }
    }
    if (!g.relative) return act.sk;
    // Window-relative RoPE: the assembled keys rotated by their slot, segment by segment (the used slots only).
    for (int64_t r = 0; r < sl.S; ++r) {
        const int64_t first = sl.seg_base(r) * B, rows = g.slot_end * sl.nbl[static_cast<size_t>(r)] * B;
        norm_rope(sk + static_cast<size_t>(first * width) * 2, DType::kBF16, 0, nullptr,
                  static_cast<char*>(act.sk_rot) + static_cast<size_t>(first * width) * 2, nullptr, nullptr,
                  act.s_positions + 3 * first, rows, g.lh);
    }
    return act.sk_rot;
}

void CudaWanModel::Impl::gather_head_spatial(const Geometry& g, int64_t head_out) {
    const int64_t per = g.F * sl.max_rpf;
    const size_t row = static_cast<size_t>(head_out) * 4, bytes = static_cast<size_t>(per) * row;
    Communicator* comm = opts.spatial.comm;
    if (comm->device_buffers()) {
        collective(comm, opts.spatial_comm_stream, [&] { comm->all_gather(act.tmp, act.s_gather, bytes); });
    } else {
        auto* recv = static_cast<char*>(sgather_host.data());
        char* send = recv + static_cast<size_t>(sl.S) * bytes;
        copy(send, act.tmp, bytes);
        collective(comm, nullptr, [&] { comm->all_gather(send, recv, bytes); });
        copy(act.s_gather, recv, static_cast<size_t>(sl.S) * bytes);
    }
    CopyRowsParams p;
    p.src = act.s_gather;
    p.dst = act.tmp;
    p.dst_row = g.s_rows;
    p.rows = sl.S * per;
    p.row_bytes = static_cast<int64_t>(row);
    launch_copy_rows(p, stream.s);
}

}  // namespace lr

#endif  // LONGROLL_HAS_CUDA
