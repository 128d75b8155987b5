// The sparse attention step of CudaLocalAttentionStep (CudaAttentionStepConfig::policy; DESIGN.md section 6): the
// GPU twin of CpuAttentionStep (attention_step_cpu.h), on the paged cache in tile mode.
//
//   prepare (host): when frames leave the window, per (layer, head) the policy's retention over the retained
//     blocks and the departing ones, scored on the device (salience or change), the kept ones copied into
//     retained blocks (a head's slice each); then the policy's candidates over the window's physical blocks,
//     each (layer, head)'s retained blocks, the tables' row lengths (block_select_indptr), uploaded at once.
//   per layer (device): mean key of every written block, mean query of every query block (or the caller's: a
//     sharded step exchanges them), the device selection (launch_block_select), paged attention with per-head
//     tables (block lengths per head when blocks are retained) in the forward's tiled order.
//   after the layers: the written blocks' change since the frame before (Forcing-KV).
#include <algorithm>
#include <cstring>

#include "kernels/sparse_step.h"
#include "runtime/core/check.h"
#include "runtime/model/attention_step_cuda.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "kernels/dit_ops_cuda.h"
#include "kernels/paged_attention.h"
#include "runtime/core/cuda_check.h"
#include "runtime/model/attention_step_cuda_impl.h"

namespace lr {

void CudaLocalAttentionStep::Impl::init_sparse() {
    Sparse& s = sp;
    s.on = true;
    s.policy = make_cuda_policy(cfg);
    s.z = cuda_step::sparse_sizes(cfg);
    const cuda_step::SparseSizes& z = s.z;
    LR_ASSERT(cache->tiled() && cache->pool_blocks() == z.pool_blocks, "sparse step: the cache has ",
              cache->pool_blocks(), " blocks, planned ", z.pool_blocks);
    s.summaries = s.policy->retention_score() != RetentionScore::kNone ||
                  s.policy->kind() == BlockPolicyKind::kSparseForcing ||
                  s.policy->kind() == BlockPolicyKind::kLightForcing;
    s.buf = DeviceBuffer(z.bytes());
    char* p = static_cast<char*>(s.buf.data());
    const auto take = [&](int64_t n) {
        char* at = p;
        p += cuda_step::align_up(static_cast<size_t>(n) * 4);
        return at;
    };
    s.kmean = reinterpret_cast<float*>(take(z.kmean));
    s.change = reinterpret_cast<float*>(take(z.change));
    s.qmean = reinterpret_cast<float*>(take(z.qmean));
    s.indices = reinterpret_cast<int32_t*>(take(z.indices));
    s.scores = reinterpret_cast<float*>(take(z.scores));
    s.dev = reinterpret_cast<int32_t*>(take(z.staging_ints));
    LR_CUDA_CHECK(cudaMemset(s.buf.data(), 0, z.bytes()));
    // Staging offsets (int32), in the order of SparseSizes::staging_ints.
    const int64_t F = cfg.max_write_frames, L = z.layers, H = z.heads;
    int64_t at = 0;
    const auto region = [&](int64_t n) {
        const int64_t o = at;
        at += n;
        return o;
    };
    s.o_qperm = region(F * tpf);
    s.o_cand_block = region(z.window_blocks);
    s.o_cand_group = region(z.window_blocks);
    s.o_cand_kind = region(z.window_blocks);  // uint8 in int32 room
    s.o_competes = region(z.window_blocks);
    s.o_extra_indptr = region(L * (H + 1));
    s.o_extra = region(L * H * z.retained);
    s.o_indptr = region(L * (H * z.max_q_blocks + 1));
    s.o_seg_begin = region(F * z.tiles);
    s.o_seg_len = region(F * z.tiles);
    s.o_qseg_begin = region(z.max_q_blocks);
    s.o_qseg_len = region(z.max_q_blocks);
    s.o_copy = region(L * H * z.window_blocks * 4);
    s.o_change = region(L * F * z.tiles * 3);
    s.o_sal = region(L * z.pool_blocks * 2);
    const bool relative = cfg.rope == RopePositions::kWindowRelative;
    if (relative) {
        s.o_ret_tile = region(L * H * z.retained);
        s.o_tile_raster = region(z.tiles * cfg.block_size);
    }
    LR_ASSERT(at == z.staging_ints, "sparse step: staging ", at, " of ", z.staging_ints);
    s.staging = PinnedStaging(static_cast<size_t>(z.staging_ints) * 4, true);
    // q of raster token r of frame f goes to tiled row f * tpf + to_tiled(r): fixed, uploaded once.
    const TileLayout& t = cache->tiles();
    int32_t* qperm = s.host(s.o_qperm);
    for (int64_t f = 0; f < F; ++f)
        for (int64_t r = 0; r < tpf; ++r) qperm[f * tpf + r] = static_cast<int32_t>(f * tpf + t.to_tiled(r));
    LR_CUDA_CHECK(cudaMemcpy(s.dev + s.o_qperm, qperm, static_cast<size_t>(F * tpf) * 4, cudaMemcpyHostToDevice));
    if (relative) {
        // Token j of tile t at raster index to_raster(tile_start(t) + j) of its frame; -1 past the tile.
        int32_t* raster = s.host(s.o_tile_raster);
        const int64_t B = cfg.block_size;
        for (int64_t tile = 0; tile < z.tiles; ++tile)
            for (int64_t j = 0; j < B; ++j)
                raster[tile * B + j] =
                    j < t.tile_len(tile) ? static_cast<int32_t>(t.to_raster(t.tile_start(tile) + j)) : -1;
        LR_CUDA_CHECK(
            cudaMemcpy(s.dev + s.o_tile_raster, raster, static_cast<size_t>(z.tiles * B) * 4, cudaMemcpyHostToDevice));
    }
    s.ret_frame.assign(static_cast<size_t>(L * H * z.retained), -1);
    s.ret_tile.assign(s.ret_frame.size(), -1);
}

// The cache has emptied its retained blocks (PagedKvCache::reset); the step forgets which (layer, head) kept what.
// The device summaries need no clearing: every block's are rewritten when it is written, before anything reads
// them, and the salience of the first eviction reads the mean queries of a forward of the new run.
void CudaLocalAttentionStep::Impl::sparse_reset() {
    Sparse& s = sp;
    std::fill(s.ret_frame.begin(), s.ret_frame.end(), -1);
    std::fill(s.ret_tile.begin(), s.ret_tile.end(), -1);
    s.last_nqb = 0;
    s.stats = AttentionStats{};
}

// Frames [sink, sink + evicted) leave the window with this forward: retention per (layer, head).
void CudaLocalAttentionStep::Impl::sparse_retain(const KvWrite& w) {
    Sparse& s = sp;
    const cuda_step::SparseSizes& z = s.z;
    s.staging.wait();  // the previous forward's uploads have left the staging
    if (w.evict_frames == 0 || z.retained == 0) return;
    const int64_t L = z.layers, H = z.heads, R = z.retained, T = z.tiles, P = z.pool_blocks;
    const int64_t sink = cache->config().sink_frames, bpf = cache->blocks_per_frame();
    const TileLayout& tiles = cache->tiles();
    // The departing blocks (physical) and their frames.
    std::vector<int64_t> ev_block, ev_frame, ev_tile;
    for (int64_t sl = sink; sl < sink + w.evict_frames; ++sl)
        for (int64_t t = 0; t < T; ++t) {
            ev_block.push_back(cache->slot_pages()[static_cast<size_t>(sl)] * bpf + t);
            ev_frame.push_back(cache->slot_frames()[static_cast<size_t>(sl)]);
            ev_tile.push_back(t);
        }
    const int64_t E = static_cast<int64_t>(ev_block.size());
    // Scores of every candidate, per layer: evicted blocks then retained blocks r, for every head.
    std::vector<float> score(static_cast<size_t>(L * (E + R) * H), 0.0f);
    const RetentionScore kind = s.policy->retention_score();
    if (kind == RetentionScore::kSalience) {
        int32_t* en = s.host(s.o_sal);
        int64_t n = 0;
        for (int64_t l = 0; l < L; ++l) {
            for (int64_t e = 0; e < E; ++e, ++n) {
                en[2 * n] = static_cast<int32_t>(l);
                en[2 * n + 1] = static_cast<int32_t>(ev_block[static_cast<size_t>(e)]);
            }
            for (int64_t r = 0; r < R; ++r, ++n) {
                en[2 * n] = static_cast<int32_t>(l);
                en[2 * n + 1] = static_cast<int32_t>(cache->retained_block(r));
            }
        }
        s.staging.to_device(s.dev + s.o_sal, static_cast<size_t>(s.o_sal) * 4, static_cast<size_t>(2 * n) * 4, stream);
        BlockSalienceParams bp;
        bp.qmean = s.qmean;
        bp.max_q_blocks = s.last_nqb;
        bp.num_q_blocks = s.last_nqb;
        bp.kmean = s.kmean;
        bp.pool_blocks = P;
        bp.heads = H;
        bp.head_dim = z.head_dim;
        bp.entries = s.dev + s.o_sal;
        bp.n = n;
        bp.out = s.scores;
        launch_block_salience(bp, stream);
        LR_CUDA_CHECK(cudaMemcpyAsync(score.data(), s.scores, score.size() * 4, cudaMemcpyDeviceToHost, stream));
        LR_CUDA_CHECK(cudaStreamSynchronize(stream));
    } else if (kind == RetentionScore::kChange) {
        std::vector<float> change(static_cast<size_t>(z.change));
        LR_CUDA_CHECK(cudaMemcpyAsync(change.data(), s.change, change.size() * 4, cudaMemcpyDeviceToHost, stream));
        LR_CUDA_CHECK(cudaStreamSynchronize(stream));
        for (int64_t l = 0; l < L; ++l)
            for (int64_t e = 0; e < E; ++e)
                for (int64_t h = 0; h < H; ++h)
                    score[static_cast<size_t>((l * (E + R) + e) * H + h)] =
                        change[static_cast<size_t>((l * P + ev_block[static_cast<size_t>(e)]) * H + h)];
    }
    // The policy's choice per (layer, head); new blocks into free retained slots.
    int32_t* copy = s.host(s.o_copy);
    int64_t copies = 0;
    std::vector<RetentionCandidate> cands;
    std::vector<int64_t> where;  // r >= 0: retained slot; -1 - e: evicted block e
    for (int64_t l = 0; l < L; ++l)
        for (int64_t h = 0; h < H; ++h) {
            int64_t* rf = s.ret_frame.data() + (l * H + h) * R;
            int64_t* rt = s.ret_tile.data() + (l * H + h) * R;
            cands.clear();
            where.clear();
            for (int64_t r = 0; r < R; ++r) {
                if (rf[r] < 0) continue;
                cands.push_back({rf[r], rt[r], score[static_cast<size_t>((l * (E + R) + E + r) * H + h)], true});
                where.push_back(r);
            }
            for (int64_t e = 0; e < E; ++e) {
                cands.push_back({ev_frame[static_cast<size_t>(e)], ev_tile[static_cast<size_t>(e)],
                                 score[static_cast<size_t>((l * (E + R) + e) * H + h)], false});
                where.push_back(-1 - e);
            }
            const std::vector<int64_t> keep = s.policy->retain(l, h, cands);
            std::vector<uint8_t> kept(static_cast<size_t>(R), 0);
            for (int64_t i : keep)
                if (where[static_cast<size_t>(i)] >= 0) kept[static_cast<size_t>(where[static_cast<size_t>(i)])] = 1;
            for (int64_t r = 0; r < R; ++r)
                if (!kept[static_cast<size_t>(r)] && rf[r] >= 0) {
                    rf[r] = rt[r] = -1;
                    cache->set_retained_len(r, h, 0);
                }
            int64_t free_r = 0;
            for (int64_t i : keep) {
                const int64_t code = where[static_cast<size_t>(i)];
                if (code >= 0) continue;
                const int64_t e = -1 - code;
                while (rf[free_r] >= 0) ++free_r;
                rf[free_r] = ev_frame[static_cast<size_t>(e)];
                rt[free_r] = ev_tile[static_cast<size_t>(e)];
                cache->set_retained_len(free_r, h, static_cast<int32_t>(tiles.tile_len(rt[free_r])));
                int32_t* c = copy + 4 * copies++;
                c[0] = static_cast<int32_t>(l);
                c[1] = static_cast<int32_t>(h);
                c[2] = static_cast<int32_t>(ev_block[static_cast<size_t>(e)]);
                c[3] = static_cast<int32_t>(cache->retained_block(free_r));
            }
        }
    if (copies > 0) {
        s.staging.to_device(s.dev + s.o_copy, static_cast<size_t>(s.o_copy) * 4, static_cast<size_t>(4 * copies) * 4,
                            stream);
        CopyHeadBlocksParams cp;
        cp.pools = cache->keys(0);
        cp.layer_stride =
            L > 1 ? static_cast<size_t>(static_cast<char*>(cache->keys(1)) - static_cast<char*>(cache->keys(0))) : 0;
        cp.v_offset = static_cast<size_t>(static_cast<char*>(cache->values(0)) - static_cast<char*>(cache->keys(0)));
        cp.kmean = s.kmean;
        cp.pool_blocks = P;
        cp.block_size = cfg.block_size;
        cp.heads = H;
        cp.head_dim = z.head_dim;
        cp.entries = s.dev + s.o_copy;
        cp.n = copies;
        launch_copy_head_blocks(cp, stream);
    }
    s.staging.record(stream);
    cache->upload_block_len(stream);
}

// After the cache's write: the policy's candidates, each (layer, head)'s retained blocks, the tables' row
// lengths, the written blocks' and the query blocks' segments; one upload.
// The host staging is free: begin() ran sparse_retain first, which waits for the previous forward's uploads.
void CudaLocalAttentionStep::Impl::sparse_tables(const PagedKvPlan& plan, const AttentionForward& a) {
    Sparse& s = sp;
    const cuda_step::SparseSizes& z = s.z;
    const int64_t L = z.layers, H = z.heads, R = z.retained, T = z.tiles, bpf = cache->blocks_per_frame();
    const KvWrite& w = plan.write;
    const std::vector<int64_t>& frames = cache->slot_frames();
    const std::vector<int64_t>& pages = cache->slot_pages();
    PolicyForward pf;
    pf.chunk = a.chunk;
    pf.step = a.step;
    pf.num_steps = a.num_steps;
    pf.start_frame = a.start_frame;
    pf.num_frames = a.num_frames;
    pf.recompute = w.recompute;
    PolicyWindow win;
    win.slot_frames = frames.data();
    win.slot_end = w.slot_end;
    win.chunk_begin = w.slot_begin;
    s.policy->select(pf, win, &s.sel);
    // Window block ids (slot * tiles + tile) -> physical blocks.
    s.num_cand = static_cast<int64_t>(s.sel.cand_block.size());
    int32_t* cb = s.host(s.o_cand_block);
    int32_t* cg = s.host(s.o_cand_group);
    auto* ck = reinterpret_cast<uint8_t*>(s.host(s.o_cand_kind));
    auto* gc = reinterpret_cast<uint8_t*>(s.host(s.o_competes));
    for (int64_t i = 0; i < s.num_cand; ++i) {
        const int64_t b = s.sel.cand_block[static_cast<size_t>(i)];
        cb[i] = static_cast<int32_t>(pages[static_cast<size_t>(b / T)] * bpf + b % T);
        cg[i] = s.sel.cand_group[static_cast<size_t>(i)];
        ck[i] = s.sel.cand_kind[static_cast<size_t>(i)];
    }
    const int64_t groups = static_cast<int64_t>(s.sel.group_competes.size());
    std::copy(s.sel.group_competes.begin(), s.sel.group_competes.end(), gc);
    // Retained blocks per (layer, head), in (frame, tile) order; the row lengths per layer.
    const int64_t Lq = a.num_frames * tpf;
    s.nqb = cuda_step::ceil_div(Lq, kCudaQBlock);
    int32_t* xi = s.host(s.o_extra_indptr);
    int32_t* xb = s.host(s.o_extra);
    int32_t* ip = s.host(s.o_indptr);
    double read = 0, dense = 0;
    int64_t retained_rows = 0;
    const TileLayout& tiles = cache->tiles();
    std::vector<std::pair<std::pair<int64_t, int64_t>, int64_t>> order;
    for (int64_t l = 0; l < L; ++l) {
        int32_t* lxi = xi + l * (H + 1);
        int32_t* lxb = xb + l * H * R;
        lxi[0] = 0;
        for (int64_t h = 0; h < H; ++h) {
            const int64_t* rf = s.ret_frame.data() + (l * H + h) * R;
            const int64_t* rt = s.ret_tile.data() + (l * H + h) * R;
            order.clear();
            for (int64_t r = 0; r < R; ++r)
                if (rf[r] >= 0) {
                    order.push_back({{rf[r], rt[r]}, r});
                    retained_rows += tiles.tile_len(rt[r]);
                }
            std::sort(order.begin(), order.end());
            int64_t n = lxi[h];
            for (const auto& o : order) lxb[n++] = static_cast<int32_t>(cache->retained_block(o.second));
            lxi[h + 1] = static_cast<int32_t>(n);
        }
        BlockSelectParams bp;
        bp.heads = H;
        bp.head_dim = z.head_dim;
        bp.num_q_blocks = s.nqb;
        bp.num_blocks = z.pool_blocks;
        bp.cand_block = cb;
        bp.cand_group = cg;
        bp.cand_kind = ck;
        bp.num_cand = s.num_cand;
        bp.group_competes = gc;
        bp.num_groups = groups;
        bp.topk_groups = s.sel.topk_groups;
        bp.topk_blocks = s.sel.topk_blocks;
        bp.extra_indptr = lxi;
        bp.extra_block = lxb;
        block_select_indptr(bp, ip + l * (H * z.max_q_blocks + 1));
        s.counts = block_select_counts(bp);
        for (int64_t h = 0; h < H; ++h) {
            const double extra = lxi[h + 1] - lxi[h];
            read += static_cast<double>(s.nqb) * (extra + static_cast<double>(s.counts.must + s.counts.scored_kept));
            dense += static_cast<double>(s.nqb) * (extra + static_cast<double>(w.slot_end * T));
        }
    }
    // Segments: the written frames' blocks (physical rows) and the query blocks (tiled rows).
    int32_t* sb = s.host(s.o_seg_begin);
    int32_t* sl = s.host(s.o_seg_len);
    s.written = 0;
    int32_t* ce = s.host(s.o_change);
    s.n_change = 0;
    for (int64_t slot = w.write_begin; slot < w.slot_end; ++slot, ++s.written) {
        const int64_t page = pages[static_cast<size_t>(slot)];
        const bool prev = slot > 0 && frames[static_cast<size_t>(slot - 1)] == frames[static_cast<size_t>(slot)] - 1;
        for (int64_t t = 0; t < T; ++t) {
            sb[s.written * T + t] = static_cast<int32_t>((page * bpf + t) * cfg.block_size);
            sl[s.written * T + t] = static_cast<int32_t>(tiles.tile_len(t));
            for (int64_t l = 0; l < L; ++l) {
                int32_t* c = ce + 3 * s.n_change++;
                c[0] = static_cast<int32_t>(l);
                c[1] = static_cast<int32_t>(page * bpf + t);
                c[2] = prev ? static_cast<int32_t>(pages[static_cast<size_t>(slot - 1)] * bpf + t) : -1;
            }
        }
    }
    int32_t* qb = s.host(s.o_qseg_begin);
    int32_t* ql = s.host(s.o_qseg_len);
    for (int64_t b = 0; b < s.nqb; ++b) {
        qb[b] = static_cast<int32_t>(b * kCudaQBlock);
        ql[b] = static_cast<int32_t>(std::min<int64_t>(kCudaQBlock, Lq - b * kCudaQBlock));
    }
    const auto up = [&](int64_t offset, int64_t n) {
        if (n > 0)
            s.staging.to_device(s.dev + offset, static_cast<size_t>(offset) * 4, static_cast<size_t>(n) * 4, stream);
    };
    up(s.o_cand_block, s.num_cand);
    up(s.o_cand_group, s.num_cand);
    up(s.o_cand_kind, (s.num_cand + 3) / 4);
    up(s.o_competes, (groups + 3) / 4);
    up(s.o_extra_indptr, L * (H + 1));
    up(s.o_extra, L * H * R);
    up(s.o_indptr, L * (H * z.max_q_blocks + 1));
    up(s.o_seg_begin, s.written * T);
    up(s.o_seg_len, s.written * T);
    up(s.o_qseg_begin, s.nqb);
    up(s.o_qseg_len, s.nqb);
    up(s.o_change, 3 * s.n_change);
    if (cfg.rope == RopePositions::kWindowRelative && R > 0) {
        // Every forward: retention changes them, and so does a reset.
        int32_t* rt = s.host(s.o_ret_tile);
        for (int64_t i = 0; i < L * H * R; ++i) rt[i] = static_cast<int32_t>(s.ret_tile[static_cast<size_t>(i)]);
        up(s.o_ret_tile, L * H * R);
    }
    s.staging.record(stream);
    s.stats.read_tokens = read;
    s.stats.dense_tokens = dense;
    s.stats.kv_bytes_held =
        static_cast<int64_t>(2 * 2) * (L * cache->frames() * tpf * width + retained_rows * z.head_dim);
    s.last_nqb = s.nqb;
}

void CudaLocalAttentionStep::Impl::sparse_select(int64_t l, const void* q_tiled, bool means_given) {
    Sparse& s = sp;
    const cuda_step::SparseSizes& z = s.z;
    const int64_t H = z.heads, hd = z.head_dim, T = z.tiles, P = z.pool_blocks;
    // The layer's summaries in one launch: the mean key of each block written by this forward (a frame's blocks
    // are one page: consecutive physical blocks) and the mean query of each query block, head-major as the
    // selection reads it.
    SegmentMeanBf16Params jobs[kMaxSegmentMeanJobs];
    int n_jobs = 0;
    const auto add = [&](const SegmentMeanBf16Params& job) {
        if (n_jobs == kMaxSegmentMeanJobs) {
            launch_segment_means_bf16(jobs, n_jobs, stream);
            n_jobs = 0;
        }
        jobs[n_jobs++] = job;
    };
    if (s.summaries) {
        const std::vector<int64_t>& pages = cache->slot_pages();
        const KvWrite& w = cache->last_plan().write;
        for (int64_t f = 0; f < s.written; ++f) {
            const int64_t page = pages[static_cast<size_t>(w.write_begin + f)];
            SegmentMeanBf16Params m;
            m.x = cache->keys(l);
            m.out = s.kmean + ((l * P) + page * cache->blocks_per_frame()) * H * hd;
            m.seg_begin = s.device(s.o_seg_begin) + f * T;
            m.seg_len = s.device(s.o_seg_len) + f * T;
            m.segments = T;
            m.heads = H;
            m.head_dim = hd;
            add(m);
        }
    }
    if (s.summaries && !means_given) {
        SegmentMeanBf16Params q;
        q.x = q_tiled;
        q.out = s.qmean + l * H * s.nqb * hd;
        q.seg_begin = s.device(s.o_qseg_begin);
        q.seg_len = s.device(s.o_qseg_len);
        q.segments = s.nqb;
        q.heads = H;
        q.head_dim = hd;
        q.out_stride = hd;
        q.out_head_stride = s.nqb * hd;
        add(q);
    }
    if (n_jobs > 0) launch_segment_means_bf16(jobs, n_jobs, stream);
    BlockSelectParams bp;
    bp.q_mean = s.qmean + l * H * s.nqb * hd;
    bp.k_mean = s.kmean + l * P * H * hd;
    bp.heads = H;
    bp.head_dim = hd;
    bp.num_q_blocks = s.nqb;
    bp.num_blocks = P;
    bp.cand_block = s.device(s.o_cand_block);
    bp.cand_group = s.device(s.o_cand_group);
    bp.cand_kind = reinterpret_cast<const uint8_t*>(s.device(s.o_cand_kind));
    bp.num_cand = s.num_cand;
    bp.group_competes = reinterpret_cast<const uint8_t*>(s.device(s.o_competes));
    bp.num_groups = static_cast<int64_t>(s.sel.group_competes.size());
    bp.topk_groups = s.sel.topk_groups;
    bp.topk_blocks = s.sel.topk_blocks;
    bp.extra_indptr = s.device(s.o_extra_indptr) + l * (H + 1);
    bp.extra_block = s.device(s.o_extra) + l * H * z.retained;
    bp.indptr = s.device(s.o_indptr) + l * (H * z.max_q_blocks + 1);
    bp.indices = s.indices;
    launch_block_select(bp, stream);
}

void CudaLocalAttentionStep::Impl::sparse_attention(int64_t l, const void* q_tiled, void* out_tiled,
                                                    int64_t split_ctas) {
    Sparse& s = sp;
    const int64_t H = s.z.heads, hd = s.z.head_dim;
    PagedAttentionParams p;
    p.q = q_tiled;
    p.out = out_tiled;
    p.k = cfg.rope == RopePositions::kWindowRelative ? rotated_keys(l) : cache->keys(l);
    p.v = cache->values(l);
    p.block_len = cache->device_block_len();
    p.block_len_heads = static_cast<int>(cache->block_len_heads());
    p.indptr = s.device(s.o_indptr) + l * (H * s.z.max_q_blocks + 1);
    p.indices = s.indices;
    p.table_heads = static_cast<int>(H);
    p.q_len = static_cast<int>(forward_rows());
    p.heads = static_cast<int>(H);
    p.head_dim = static_cast<int>(hd);
    p.block_size = static_cast<int>(cfg.block_size);
    p.q_block = static_cast<int>(kCudaQBlock);
    p.split_ctas = split_ctas;
    launch_paged_attention(p, stream);
}

void CudaLocalAttentionStep::Impl::sparse_after_layers() {
    Sparse& s = sp;
    if (s.policy->retention_score() != RetentionScore::kChange || s.n_change == 0) return;
    BlockChangeParams c;
    c.kmean = s.kmean;
    c.change = s.change;
    c.pool_blocks = s.z.pool_blocks;
    c.heads = s.z.heads;
    c.head_dim = s.z.head_dim;
    c.entries = s.device(s.o_change);
    c.n = s.n_change;
    launch_block_change(c, stream);
}

}  // namespace lr

#endif  // LONGROLL_HAS_CUDA
