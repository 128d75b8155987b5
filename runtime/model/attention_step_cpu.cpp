#include "runtime/model/attention_step_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/block_select.h"
#include "kernels/block_sparse_attention.h"
#include "kernels/rope_3d.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

BlockPolicyGeometry geometry_of(const AttentionStepConfig& c, int64_t tiles) {
    BlockPolicyGeometry g;
    g.num_layers = c.num_layers;
    g.num_heads = c.num_heads;
    g.tiles_per_frame = tiles;
    g.frames_per_chunk = c.frames_per_chunk;
    g.window_frames = c.window_frames;
    g.sink_frames = c.sink_frames;
    g.max_frames = c.window_frames == -1 ? c.run_frames : c.window_frames;
    g.run_frames = c.run_frames;
    return g;
}

TileLayout tiles_of(const AttentionStepConfig& c) {
    return TileLayout(c.grid_rows, c.grid_cols, tile_shape_for_block(c.block_size));
}

KvCacheConfig cache_config_of(const AttentionStepConfig& c, const BlockPolicy& p, int64_t tpf) {
    KvCacheConfig k;
    k.num_layers = c.num_layers;
    k.tokens_per_frame = tpf;
    k.width = c.num_heads * c.head_dim;
    k.window_frames = p.page_window_frames();
    k.sink_frames = c.sink_frames;
    k.max_frames = k.window_frames == -1 ? c.run_frames : k.window_frames;
    return k;
}

}  // namespace

CpuAttentionStep::CpuAttentionStep(const AttentionStepConfig& cfg) : cfg_(cfg), tiles_(tiles_of(cfg)) {
    LR_CHECK(cfg.num_layers > 0 && cfg.num_heads > 0 && cfg.head_dim > 0 && cfg.q_block > 0,
             "attention step: layers, heads, head_dim and q_block must be positive");
    policy_ = make_block_policy(cfg.policy, geometry_of(cfg, tiles_.tiles_per_frame()));
    cache_ = KvCache(cache_config_of(cfg, *policy_, tpf()));
    storage_frames_ = cache_.config().max_frames;
    retained_slots_ = policy_->max_retained();
    const auto L = static_cast<size_t>(cfg.num_layers);
    const int64_t tiles = tiles_.tiles_per_frame(), H = cfg.num_heads, hd = cfg.head_dim;
    kmean_.assign(L, std::vector<float>(static_cast<size_t>(storage_frames_ * tiles * H * hd), 0.0f));
    change_.assign(L, std::vector<float>(static_cast<size_t>(storage_frames_ * tiles * H), 0.0f));
    const int64_t max_qb = (cfg.max_write_frames * tpf() + cfg.q_block - 1) / cfg.q_block;
    qmean_.assign(L, std::vector<float>(static_cast<size_t>(H * max_qb * hd), 0.0f));
    qblocks_.assign(L, 0);
    const auto rsize = static_cast<size_t>(retained_slots_ * cfg.block_size * width());
    rk_.assign(L, std::vector<float>(rsize, 0.0f));
    rv_.assign(L, std::vector<float>(rsize, 0.0f));
    ret_.assign(static_cast<size_t>(cfg.num_layers * H), std::vector<Retained>(static_cast<size_t>(retained_slots_)));
    tables_.resize(L);
}

CpuAttentionStep::~CpuAttentionStep() = default;

void CpuAttentionStep::reset() {
    cache_.reset();
    for (auto& r : ret_)
        for (Retained& b : r) b = Retained{};
    std::fill(qblocks_.begin(), qblocks_.end(), 0);
    stats_ = AttentionStats{};
}

size_t CpuAttentionStep::kv_bytes_for(const AttentionStepConfig& cfg) {
    const TileLayout t = tiles_of(cfg);
    const auto policy = make_block_policy(cfg.policy, geometry_of(cfg, t.tiles_per_frame()));
    const size_t pages = KvCache::bytes_for(cache_config_of(cfg, *policy, t.tokens_per_frame()));
    const size_t retained = static_cast<size_t>(2 * cfg.num_layers * policy->max_retained() * cfg.block_size *
                                                cfg.num_heads * cfg.head_dim) *
                            sizeof(float);
    return pages + retained;
}

size_t CpuAttentionStep::kv_bytes() const { return kv_bytes_for(cfg_); }

std::vector<std::pair<int64_t, int64_t>> CpuAttentionStep::retained(int64_t layer, int64_t head) const {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const Retained& r : ret_[static_cast<size_t>(layer * cfg_.num_heads + head)])
        if (r.frame >= 0) out.emplace_back(r.frame, r.tile);
    std::sort(out.begin(), out.end());
    return out;
}

// The block's pooled attention score against the last forward's query blocks of this layer.
float CpuAttentionStep::salience(int64_t layer, int64_t head, const float* kmean) const {
    const int64_t hd = cfg_.head_dim, nqb = qblocks_[static_cast<size_t>(layer)];
    float best = -INFINITY;
    for (int64_t qb = 0; qb < nqb; ++qb) {
        const float* q = qmean_[static_cast<size_t>(layer)].data() + (head * nqb + qb) * hd;
        float s = 0.0f;
        for (int64_t d = 0; d < hd; ++d) s += q[d] * kmean[d];
        best = std::max(best, s);
    }
    return nqb > 0 ? best : 0.0f;
}

// Frames [sink, sink + evict) leave the window: per (layer, head) the policy keeps the best of its retained
// blocks and the departing ones; the newly kept ones are copied into free retained slots (the cache still
// holds them: KvCache::write moves the window only when the layer is written).
void CpuAttentionStep::retain_evicted(const KvWrite& w) {
    const int64_t H = cfg_.num_heads, hd = cfg_.head_dim, tiles = tiles_.tiles_per_frame(), W = width();
    const int64_t sink = cache_.config().sink_frames, B = cfg_.block_size;
    const RetentionScore kind = policy_->retention_score();
    std::vector<RetentionCandidate> cands;
    for (int64_t l = 0; l < cfg_.num_layers; ++l) {
        const float* keys = cache_.keys(l);
        const float* values = cache_.values(l);
        for (int64_t h = 0; h < H; ++h) {
            auto& slots = ret_[static_cast<size_t>(l * H + h)];
            cands.clear();
            std::vector<int64_t> where;  // slot r for retained candidates, -1 - (evicted slot * tiles + tile) else
            for (int64_t r = 0; r < retained_slots_; ++r) {
                const Retained& b = slots[static_cast<size_t>(r)];
                if (b.frame < 0) continue;
                const float score = kind == RetentionScore::kSalience ? salience(l, h, b.kmean.data()) : 0.0f;
                cands.push_back({b.frame, b.tile, score, true});
                where.push_back(r);
            }
            for (int64_t s = sink; s < sink + w.evict_frames; ++s) {
                for (int64_t t = 0; t < tiles; ++t) {
                    const float* km = kmean_[static_cast<size_t>(l)].data() + ((s * tiles + t) * H + h) * hd;
                    const float score =
                        kind == RetentionScore::kSalience
                            ? salience(l, h, km)
                            : change_[static_cast<size_t>(l)][static_cast<size_t>((s * tiles + t) * H + h)];
                    cands.push_back({cache_.slot_frames()[static_cast<size_t>(s)], t, score, false});
                    where.push_back(-1 - (s * tiles + t));
                }
            }
            const std::vector<int64_t> keep = policy_->retain(l, h, cands);
            std::vector<uint8_t> kept_slot(static_cast<size_t>(retained_slots_), 0);
            for (int64_t i : keep)
                if (where[static_cast<size_t>(i)] >= 0)
                    kept_slot[static_cast<size_t>(where[static_cast<size_t>(i)])] = 1;
            for (int64_t r = 0; r < retained_slots_; ++r)
                if (!kept_slot[static_cast<size_t>(r)]) slots[static_cast<size_t>(r)] = Retained{};
            int64_t free_r = 0;
            for (int64_t i : keep) {
                const int64_t code = where[static_cast<size_t>(i)];
                if (code >= 0) continue;
                const int64_t s = (-1 - code) / tiles, t = (-1 - code) % tiles;
                while (slots[static_cast<size_t>(free_r)].frame >= 0) ++free_r;
                Retained& b = slots[static_cast<size_t>(free_r)];
                b.frame = cands[static_cast<size_t>(i)].frame;
                b.tile = t;
                const float* km = kmean_[static_cast<size_t>(l)].data() + ((s * tiles + t) * H + h) * hd;
                b.kmean.assign(km, km + hd);
                const int64_t row0 = s * tpf() + tiles_.tile_start(t);
                for (int64_t j = 0; j < tiles_.tile_len(t); ++j) {
                    const int64_t src = (row0 + j) * W + h * hd, dst = (free_r * B + j) * W + h * hd;
                    std::copy_n(keys + src, hd, rk_[static_cast<size_t>(l)].data() + dst);
                    std::copy_n(values + src, hd, rv_[static_cast<size_t>(l)].data() + dst);
                }
            }
        }
    }
}

KvWrite CpuAttentionStep::begin(const AttentionForward& f) {
    fwd_ = f;
    plan_ = cache_.plan(f.start_frame, f.num_frames, f.protect_sink);
    const int64_t tiles = tiles_.tiles_per_frame(), H = cfg_.num_heads, hd = cfg_.head_dim;
    const int64_t sink = cache_.config().sink_frames;
    if (plan_.evict_frames > 0) {
        if (retained_slots_ > 0) retain_evicted(plan_);
        // The summaries follow the slots as KvCache::write moves them.
        const int64_t kept = cache_.frames() - plan_.evict_frames - sink;
        for (int64_t l = 0; l < cfg_.num_layers; ++l) {
            float* km = kmean_[static_cast<size_t>(l)].data();
            float* ch = change_[static_cast<size_t>(l)].data();
            const int64_t kf = tiles * H * hd, cf = tiles * H;
            std::memmove(km + sink * kf, km + (sink + plan_.evict_frames) * kf, static_cast<size_t>(kept * kf) * 4);
            std::memmove(ch + sink * cf, ch + (sink + plan_.evict_frames) * cf, static_cast<size_t>(kept * cf) * 4);
        }
    }
    // The window after this write: surviving slots, then the forward's frames.
    frames_.assign(static_cast<size_t>(plan_.slot_end), -1);
    const std::vector<int64_t>& old = cache_.slot_frames();
    for (int64_t s = 0; s < plan_.slot_begin; ++s) {
        const int64_t src = s < sink ? s : s + plan_.evict_frames;
        frames_[static_cast<size_t>(s)] = old[static_cast<size_t>(src)];
    }
    for (int64_t s = plan_.slot_begin; s < plan_.slot_end; ++s)
        frames_[static_cast<size_t>(s)] = f.start_frame + (s - plan_.slot_begin);
    PolicyForward pf;
    pf.chunk = f.chunk;
    pf.step = f.step;
    pf.num_steps = f.num_steps;
    pf.start_frame = f.start_frame;
    pf.num_frames = f.num_frames;
    pf.recompute = plan_.recompute;
    PolicyWindow w;
    w.slot_frames = frames_.data();
    w.slot_end = plan_.slot_end;
    w.chunk_begin = plan_.slot_begin;
    policy_->select(pf, w, &sel_);
    stats_ = AttentionStats{};
    return plan_;
}

void CpuAttentionStep::attend(int64_t l, const float* q, const float* k, const float* v, float* out) {
    const int64_t W = width(), T = tpf();
    const int64_t F = fwd_.num_frames, L = F * T;
    // ---- To tiled order (per frame), attention, and the output back to the model's order.
    qt_.resize(static_cast<size_t>(L * W));
    kt_.resize(qt_.size());
    vt_.resize(qt_.size());
    ot_.resize(qt_.size());
    for (int64_t f = 0; f < F; ++f) {
        for (int64_t i = 0; i < T; ++i) {
            const int64_t src = (f * T + tiles_.to_raster(i)) * W, dst = (f * T + i) * W;
            std::copy_n(q + src, W, qt_.data() + dst);
            std::copy_n(k + src, W, kt_.data() + dst);
            std::copy_n(v + src, W, vt_.data() + dst);
        }
    }
    attend_tiled(l, qt_.data(), kt_.data(), vt_.data(), ot_.data(), nullptr, nullptr);
    for (int64_t f = 0; f < F; ++f)
        for (int64_t i = 0; i < T; ++i)
            std::copy_n(ot_.data() + (f * T + i) * W, W, out + (f * T + tiles_.to_raster(i)) * W);
}

bool CpuAttentionStep::uses_summaries() const {
    const BlockPolicyKind k = policy_->kind();
    return k != BlockPolicyKind::kDense && k != BlockPolicyKind::kSinkWindow && k != BlockPolicyKind::kLvsa;
}

int64_t CpuAttentionStep::query_blocks() const { return (fwd_.num_frames * tpf() + cfg_.q_block - 1) / cfg_.q_block; }

void CpuAttentionStep::query_means(const float* qt, const uint8_t* mask, float* qm) const {
    const int64_t L = fwd_.num_frames * tpf(), nqb = query_blocks();
    std::vector<int64_t> qb_begin, qb_len, qb_id;
    for (int64_t b = 0; b < nqb; ++b) {
        if (mask && !mask[b]) continue;
        qb_begin.push_back(b * cfg_.q_block);
        qb_len.push_back(std::min(cfg_.q_block, L - b * cfg_.q_block));
        qb_id.push_back(b);
    }
    const int64_t n = static_cast<int64_t>(qb_id.size()), W = width();
    std::vector<float> m(static_cast<size_t>(n * W));
    segment_mean_cpu({qt, m.data(), qb_begin.data(), qb_len.data(), n, cfg_.num_heads, cfg_.head_dim, 0, 0});
    for (int64_t i = 0; i < n; ++i) std::copy_n(m.data() + i * W, W, qm + qb_id[static_cast<size_t>(i)] * W);
}

void CpuAttentionStep::attend_tiled(int64_t l, const float* qt, const float* kt, const float* vt, float* ot,
                                    const uint8_t* mask, const float* qm_in) {
    const int64_t H = cfg_.num_heads, hd = cfg_.head_dim, W = width(), T = tpf(), tiles = tiles_.tiles_per_frame();
    const int64_t F = fwd_.num_frames, L = F * T, B = cfg_.block_size;
    const auto lz = static_cast<size_t>(l);
    cache_.write(l, plan_, kt, vt);

    // ---- Summaries of the written blocks, and (Forcing-KV) how much they changed since the frame before: only for
    // the policies that score blocks (the others' tables list every candidate).
    const bool summaries = uses_summaries();
    const float* keys = cache_.keys(l);
    std::vector<int64_t> seg_begin, seg_len;
    for (int64_t s = plan_.write_begin; s < plan_.slot_end; ++s)
        for (int64_t t = 0; t < tiles; ++t) {
            seg_begin.push_back(s * T + tiles_.tile_start(t));
            seg_len.push_back(tiles_.tile_len(t));
        }
    SegmentMeanParams sm;
    sm.x = keys;
    sm.out = kmean_[lz].data() + plan_.write_begin * tiles * H * hd;
    sm.seg_begin = seg_begin.data();
    sm.seg_len = seg_len.data();
    sm.segments = static_cast<int64_t>(seg_begin.size());
    sm.heads = H;
    sm.head_dim = hd;
    if (summaries) segment_mean_cpu(sm);
    if (summaries && policy_->retention_score() == RetentionScore::kChange) {
        for (int64_t s = plan_.write_begin; s < plan_.slot_end; ++s) {
            const bool prev = s > 0 && frames_[static_cast<size_t>(s - 1)] == frames_[static_cast<size_t>(s)] - 1;
            for (int64_t t = 0; t < tiles; ++t)
                for (int64_t h = 0; h < H; ++h) {
                    float score = 0.0f;
                    if (prev) {
                        const float* a = kmean_[lz].data() + ((s * tiles + t) * H + h) * hd;
                        const float* b = a - tiles * H * hd;
                        double ab = 0, aa = 0, bb = 0;
                        for (int64_t d = 0; d < hd; ++d) {
                            ab += static_cast<double>(a[d]) * b[d];
                            aa += static_cast<double>(a[d]) * a[d];
                            bb += static_cast<double>(b[d]) * b[d];
                        }
                        score = static_cast<float>(1.0 - ab / std::max(std::sqrt(aa * bb), 1e-30));
                    }
                    change_[lz][static_cast<size_t>((s * tiles + t) * H + h)] = score;
                }
        }
    }
    // ---- Query means per (head, query block of q_block tiled rows): computed here, or given (a worker computing
    // part of the rows has the other workers' means).
    const int64_t nqb = query_blocks();
    std::vector<float> qm_own;
    const float* qm = qm_in;
    if (!qm && summaries) {
        qm_own.resize(static_cast<size_t>(nqb * W));
        query_means(qt, nullptr, qm_own.data());
        qm = qm_own.data();
    }
    std::vector<int64_t> qb_len(static_cast<size_t>(nqb));
    for (int64_t b = 0; b < nqb; ++b) qb_len[static_cast<size_t>(b)] = std::min(cfg_.q_block, L - b * cfg_.q_block);
    float* qmean = qmean_[lz].data();  // [heads][q blocks][head_dim]
    if (summaries)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t b = 0; b < nqb; ++b) std::copy_n(qm + b * W + h * hd, hd, qmean + (h * nqb + b) * hd);
    qblocks_[lz] = nqb;

    // ---- The table: the policy's window candidates plus each head's retained blocks.
    const int64_t wb = plan_.slot_end * tiles;
    const int64_t nblocks = wb + retained_slots_;
    std::vector<int32_t> extra_indptr(static_cast<size_t>(H + 1), 0), extra;
    std::vector<int32_t> block_len(static_cast<size_t>(nblocks * H), 0);
    for (int64_t b = 0; b < wb; ++b)
        for (int64_t h = 0; h < H; ++h)
            block_len[static_cast<size_t>(b * H + h)] = static_cast<int32_t>(tiles_.tile_len(b % tiles));
    for (int64_t h = 0; h < H; ++h) {
        const auto& slots = ret_[static_cast<size_t>(l * H + h)];
        std::vector<std::pair<std::pair<int64_t, int64_t>, int64_t>> order;
        for (int64_t r = 0; r < retained_slots_; ++r) {
            const Retained& b = slots[static_cast<size_t>(r)];
            if (b.frame < 0) continue;
            order.push_back({{b.frame, b.tile}, r});
            block_len[static_cast<size_t>((wb + r) * H + h)] = static_cast<int32_t>(tiles_.tile_len(b.tile));
        }
        std::sort(order.begin(), order.end());
        for (const auto& o : order) extra.push_back(static_cast<int32_t>(wb + o.second));
        extra_indptr[static_cast<size_t>(h + 1)] = static_cast<int32_t>(extra.size());
    }
    BlockSelectParams sp;
    sp.q_mean = qmean;
    sp.k_mean = kmean_[lz].data();
    sp.heads = H;
    sp.head_dim = hd;
    sp.num_q_blocks = nqb;
    sp.num_blocks = nblocks;
    sp.cand_block = sel_.cand_block.data();
    sp.cand_group = sel_.cand_group.data();
    sp.cand_kind = sel_.cand_kind.data();
    sp.num_cand = static_cast<int64_t>(sel_.cand_block.size());
    sp.group_competes = sel_.group_competes.data();
    sp.num_groups = static_cast<int64_t>(sel_.group_competes.size());
    sp.topk_groups = sel_.topk_groups;
    sp.topk_blocks = sel_.topk_blocks;
    sp.extra_indptr = extra_indptr.data();
    sp.extra_block = extra.data();
    Table& table = tables_[lz];
    table.window_blocks = wb;
    table.indptr.resize(static_cast<size_t>(H * nqb + 1));
    block_select_indptr(sp, table.indptr.data());
    table.indices.resize(static_cast<size_t>(table.indptr.back()));
    sp.indptr = table.indptr.data();
    sp.indices = table.indices.data();
    block_select_cpu(sp);

    // ---- Keys as attended: window-relative RoPE rotates the window's keys by slot and the retained ones at
    // frame position 0 (see the header).
    const float* kbase = keys;
    const float* rkbase = rk_[lz].data();
    if (cfg_.rope == RopePositions::kWindowRelative) {
        const int64_t rows = plan_.slot_end * T;
        krot_.resize(static_cast<size_t>(rows * W));
        std::vector<int64_t> pos(static_cast<size_t>(3 * rows));
        for (int64_t s = 0; s < plan_.slot_end; ++s)
            for (int64_t i = 0; i < T; ++i) {
                const int64_t r = tiles_.to_raster(i);
                int64_t* p = pos.data() + 3 * (s * T + i);
                p[0] = s;
                p[1] = r / tiles_.grid_cols();
                p[2] = r % tiles_.grid_cols();
            }
        rope_3d_cpu({keys, krot_.data(), pos.data(), rows, H, hd});
        kbase = krot_.data();
        if (retained_slots_ > 0) {
            // Every head's slice of a retained slot holds its own tile: rotate head by head.
            const int64_t rrows = retained_slots_ * B;
            rkrot_.assign(static_cast<size_t>(rrows * W), 0.0f);
            std::vector<int64_t> rpos(static_cast<size_t>(3 * rrows), 0);
            for (int64_t h = 0; h < H; ++h) {
                const auto& slots = ret_[static_cast<size_t>(l * H + h)];
                for (int64_t r = 0; r < retained_slots_; ++r) {
                    const Retained& b = slots[static_cast<size_t>(r)];
                    if (b.frame < 0) continue;
                    for (int64_t j = 0; j < tiles_.tile_len(b.tile); ++j) {
                        const int64_t raster = tiles_.to_raster(tiles_.tile_start(b.tile) + j);
                        const int64_t p[3] = {0, raster / tiles_.grid_cols(), raster % tiles_.grid_cols()};
                        const int64_t row = r * B + j;
                        rope_3d_cpu({rkbase + row * W + h * hd, rkrot_.data() + row * W + h * hd, p, 1, 1, hd});
                    }
                }
            }
            rkbase = rkrot_.data();
        }
    }
    std::vector<const float*> kb(static_cast<size_t>(nblocks)), vb(static_cast<size_t>(nblocks));
    for (int64_t b = 0; b < wb; ++b) {
        const int64_t row = (b / tiles) * T + tiles_.tile_start(b % tiles);
        kb[static_cast<size_t>(b)] = kbase + row * W;
        vb[static_cast<size_t>(b)] = cache_.values(l) + row * W;
    }
    for (int64_t r = 0; r < retained_slots_; ++r) {
        kb[static_cast<size_t>(wb + r)] = rkbase + r * B * W;
        vb[static_cast<size_t>(wb + r)] = rv_[lz].data() + r * B * W;
    }
    BlockSparseAttentionParams ap;
    ap.q = qt;
    ap.out = ot;
    ap.q_block_mask = mask;
    ap.k_blocks = kb.data();
    ap.v_blocks = vb.data();
    ap.block_len = block_len.data();
    ap.block_len_heads = H;
    ap.indptr = table.indptr.data();
    ap.indices = table.indices.data();
    ap.num_blocks = nblocks;
    ap.q_len = L;
    ap.heads = H;
    ap.head_dim = hd;
    ap.q_block = cfg_.q_block;
    ap.table_heads = H;
    block_sparse_attention_cpu(ap);

    // ---- Stats: keys read per (query row, head) against dense over the same window and retained blocks (the
    // rows computed here).
    for (int64_t h = 0; h < H; ++h)
        for (int64_t b = 0; b < nqb; ++b) {
            if (mask && !mask[b]) continue;
            const int64_t row = h * nqb + b;
            double read = 0;
            for (int32_t e = table.indptr[static_cast<size_t>(row)]; e < table.indptr[static_cast<size_t>(row + 1)];
                 ++e)
                read += block_len[static_cast<size_t>(table.indices[static_cast<size_t>(e)] * H + h)];
            double dense = static_cast<double>(plan_.slot_end * T);
            for (int32_t e = extra_indptr[static_cast<size_t>(h)]; e < extra_indptr[static_cast<size_t>(h + 1)]; ++e)
                dense += block_len[static_cast<size_t>(extra[static_cast<size_t>(e)] * H + h)];
            const double rows = static_cast<double>(qb_len[static_cast<size_t>(b)]);
            stats_.read_tokens += read * rows;
            stats_.dense_tokens += dense * rows;
        }

    // ---- Profiling: the share of each head's attention on the most recent key frames (dense softmax).
    if (profile_) {
        const int64_t K = plan_.slot_end * T;
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        std::vector<float> s(static_cast<size_t>(K));
        const int64_t last = frames_.back();
        for (int64_t h = 0; h < H; ++h) {
            double recent = 0, total = 0;
            for (int64_t i = 0; i < L; ++i) {
                if (mask && !mask[i / cfg_.q_block]) continue;
                const float* qi = qt + i * W + h * hd;
                float m = -INFINITY;
                for (int64_t j = 0; j < K; ++j) {
                    const float* kj = kbase + j * W + h * hd;
                    float dot = 0;
                    for (int64_t d = 0; d < hd; ++d) dot += qi[d] * kj[d];
                    s[static_cast<size_t>(j)] = dot * scale;
                    m = std::max(m, s[static_cast<size_t>(j)]);
                }
                double sum = 0;
                for (int64_t j = 0; j < K; ++j) sum += std::exp(static_cast<double>(s[static_cast<size_t>(j)] - m));
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t frame = frames_[static_cast<size_t>(j / T)];
                    if (frame < profile_->skip) continue;
                    const double pj = std::exp(static_cast<double>(s[static_cast<size_t>(j)] - m)) / sum;
                    total += pj;
                    if (frame > last - profile_->recent) recent += pj;
                }
            }
            profile_->recent_mass[static_cast<size_t>(l * H + h)] += recent;
            profile_->total_mass[static_cast<size_t>(l * H + h)] += total;
        }
    }
}

void CpuAttentionStep::end() {
    cache_.commit(plan_);
    int64_t retained_rows = 0;
    for (int64_t l = 0; l < cfg_.num_layers; ++l)
        for (int64_t h = 0; h < cfg_.num_heads; ++h)
            for (const Retained& b : ret_[static_cast<size_t>(l * cfg_.num_heads + h)])
                if (b.frame >= 0) retained_rows += tiles_.tile_len(b.tile);
    // Per layer: window frames x all heads, plus each head's retained rows (one head wide), K and V.
    stats_.kv_bytes_held = static_cast<int64_t>(sizeof(float)) * 2 *
                           (cfg_.num_layers * cache_.frames() * tpf() * width() + retained_rows * cfg_.head_dim);
}

}  // namespace lr
