#include "dist/sharded_attention_step.h"

#include <algorithm>

#include "runtime/core/check.h"

namespace lr {

SequencePlan plan_sequence(const TileLayout& tiles, int64_t frames, int64_t q_block, const SequenceMesh& mesh) {
    const int64_t S = mesh.spatial, U = mesh.ulysses;
    LR_CHECK(S >= 1 && U >= 1 && mesh.spatial_rank >= 0 && mesh.spatial_rank < S && mesh.ulysses_rank >= 0 &&
                 mesh.ulysses_rank < U && q_block > 0 && frames > 0,
             "sequence plan: rank (", mesh.ulysses_rank, ", ", mesh.spatial_rank, ") of a ", U, " x ", S,
             " mesh, q_block ", q_block, ", ", frames, " frames");
    SequencePlan p;
    const int64_t T = tiles.tokens_per_frame();
    p.rows = frames * T;
    p.q_block = q_block;
    p.q_blocks = (p.rows + q_block - 1) / q_block;
    p.spatial = S;
    p.ulysses = U;
    p.slist.assign(static_cast<size_t>(S), {});
    p.owns.assign(static_cast<size_t>(S), std::vector<uint8_t>(static_cast<size_t>(p.q_blocks), 0));
    for (int64_t b = 0; b < p.q_blocks; ++b) {
        const auto s = static_cast<size_t>(b % S);
        p.owns[s][static_cast<size_t>(b)] = 1;
        for (int64_t r = b * q_block; r < std::min(p.rows, (b + 1) * q_block); ++r) p.slist[s].push_back(r);
    }
    const auto& mine = p.slist[static_cast<size_t>(mesh.spatial_rank)];
    const auto ns = static_cast<int64_t>(mine.size());
    p.shard = (ns + U - 1) / U;
    p.first = std::min(ns, mesh.ulysses_rank * p.shard);
    p.count = std::min(ns, p.first + p.shard) - p.first;
    for (int64_t i = 0; i < p.count; ++i) {
        const int64_t r = mine[static_cast<size_t>(p.first + i)];
        p.tokens.push_back((r / T) * T + tiles.to_raster(r % T));
    }
    return p;
}

AttentionStepConfig ShardedAttentionStep::inner_config(const AttentionStepConfig& cfg, const SequenceMesh& mesh) {
    LR_CHECK(mesh.ulysses >= 1 && cfg.num_heads % mesh.ulysses == 0, "sharded attention: ", cfg.num_heads,
             " heads cannot be split over ", mesh.ulysses, " Ulysses ranks");
    AttentionStepConfig c = cfg;
    const int64_t lh = cfg.num_heads / mesh.ulysses, h0 = mesh.ulysses_rank * lh;
    c.num_heads = lh;
    if (!cfg.policy.static_head.empty()) {
        LR_CHECK(static_cast<int64_t>(cfg.policy.static_head.size()) == cfg.num_layers * cfg.num_heads,
                 "sharded attention: the head profile has ", cfg.policy.static_head.size(), " entries for ",
                 cfg.num_layers, " layers x ", cfg.num_heads, " heads");
        c.policy.static_head.clear();
        for (int64_t l = 0; l < cfg.num_layers; ++l)
            for (int64_t h = 0; h < lh; ++h)
                c.policy.static_head.push_back(cfg.policy.static_head[static_cast<size_t>(l * cfg.num_heads + h0 + h)]);
    }
    return c;
}

ShardedAttentionStep::ShardedAttentionStep(const AttentionStepConfig& cfg, const SequenceMesh& mesh)
    : cfg_(cfg), mesh_(mesh) {
    LR_CHECK(mesh.ulysses == 1 || (mesh.ulysses_comm && mesh.ulysses_comm->size() == mesh.ulysses &&
                                   mesh.ulysses_comm->rank() == mesh.ulysses_rank),
             "sharded attention: ", mesh.ulysses, " Ulysses ranks need a communicator of that size with this rank");
    LR_CHECK(mesh.spatial == 1 || (mesh.spatial_comm && mesh.spatial_comm->size() == mesh.spatial &&
                                   mesh.spatial_comm->rank() == mesh.spatial_rank),
             "sharded attention: ", mesh.spatial, " spatial ranks need a communicator of that size with this rank");
    inner_ = std::make_unique<CpuAttentionStep>(inner_config(cfg, mesh));
}

ShardedAttentionStep::~ShardedAttentionStep() = default;

KvWrite ShardedAttentionStep::begin(const AttentionForward& f) {
    const KvWrite w = inner_->begin(f);
    if (f.num_frames != frames_) {
        plan_ = plan_sequence(inner_->tiles(), f.num_frames, inner_->q_block(), mesh_);
        frames_ = f.num_frames;
    }
    LR_ASSERT(plan_.q_blocks == inner_->query_blocks(), "sharded attention: ", plan_.q_blocks,
              " query blocks planned, ", inner_->query_blocks(), " in the step");
    return w;
}

void ShardedAttentionStep::attend(int64_t l, const float* q, const float* k, const float* v, float* out) {
    const int64_t U = mesh_.ulysses, S = mesh_.spatial;
    const int64_t W = cfg_.num_heads * cfg_.head_dim, w = W / U;
    const auto& mine = plan_.slist[static_cast<size_t>(mesh_.spatial_rank)];
    const auto ns = static_cast<int64_t>(mine.size());
    const int64_t n = plan_.count, Ls = plan_.shard, L = plan_.rows;

    // ---- Ulysses: the worker's rows (all heads) -> the s-list's rows of this worker's heads.
    qs_.assign(static_cast<size_t>(ns * w), 0.0f);
    ks_.assign(qs_.size(), 0.0f);
    vs_.assign(qs_.size(), 0.0f);
    if (U == 1) {
        std::copy_n(q, ns * w, qs_.data());
        std::copy_n(k, ns * w, ks_.data());
        std::copy_n(v, ns * w, vs_.data());
    } else {
        const float* src[3] = {q, k, v};
        float* dst[3] = {qs_.data(), ks_.data(), vs_.data()};
        send_.assign(static_cast<size_t>(U * 3 * Ls * w), 0.0f);
        recv_.resize(send_.size());
        for (int64_t p = 0; p < U; ++p)
            for (int64_t j = 0; j < 3; ++j)
                for (int64_t t = 0; t < n; ++t)
                    std::copy_n(src[j] + t * W + p * w, w, send_.data() + ((p * 3 + j) * Ls + t) * w);
        mesh_.ulysses_comm->all_to_all(send_.data(), recv_.data(), static_cast<size_t>(3 * Ls * w) * sizeof(float));
        for (int64_t p = 0; p < U; ++p)
            for (int64_t j = 0; j < 3; ++j)
                for (int64_t t = 0; t < Ls && p * Ls + t < ns; ++t)
                    std::copy_n(recv_.data() + ((p * 3 + j) * Ls + t) * w, w, dst[j] + (p * Ls + t) * w);
    }

    // ---- The forward in tiled order: this rank's rows, the peers' K/V rows and query means.
    qt_.assign(static_cast<size_t>(L * w), 0.0f);
    kt_.resize(qt_.size());
    vt_.resize(qt_.size());
    ot_.resize(qt_.size());
    for (int64_t i = 0; i < ns; ++i) {
        const int64_t r = mine[static_cast<size_t>(i)];
        std::copy_n(qs_.data() + i * w, w, qt_.data() + r * w);
        std::copy_n(ks_.data() + i * w, w, kt_.data() + r * w);
        std::copy_n(vs_.data() + i * w, w, vt_.data() + r * w);
    }
    const uint8_t* mask = nullptr;
    const float* qm = nullptr;
    if (S > 1) {
        const auto& owns = plan_.owns[static_cast<size_t>(mesh_.spatial_rank)];
        mask = owns.data();
        // Mean queries only for the policies that score blocks.
        const bool means = inner_->uses_summaries();
        qm_.assign(static_cast<size_t>(plan_.q_blocks * w), 0.0f);
        if (means) inner_->query_means(qt_.data(), mask, qm_.data());
        const auto blocks_of = [&](int64_t p) {
            std::vector<int64_t> b;
            for (int64_t i = 0; i < plan_.q_blocks; ++i)
                if (plan_.owns[static_cast<size_t>(p)][static_cast<size_t>(i)]) b.push_back(i);
            return b;
        };
        // Own query means, packed by block.
        const std::vector<int64_t> my_blocks = means ? blocks_of(mesh_.spatial_rank) : std::vector<int64_t>{};
        std::vector<float> my_qm(my_blocks.size() * static_cast<size_t>(w));
        for (size_t i = 0; i < my_blocks.size(); ++i)
            std::copy_n(qm_.data() + my_blocks[i] * w, w, my_qm.data() + static_cast<int64_t>(i) * w);
        peer_k_.resize(static_cast<size_t>(S));
        peer_v_.resize(static_cast<size_t>(S));
        peer_qm_.resize(static_cast<size_t>(S));
        std::vector<SendSpec> sends;
        std::vector<RecvSpec> recvs;
        for (int64_t p = 0; p < S; ++p) {
            if (p == mesh_.spatial_rank) continue;
            const int peer = static_cast<int>(p);
            const size_t my_bytes = static_cast<size_t>(ns * w) * sizeof(float);
            sends.push_back({peer, ks_.data(), my_bytes});
            sends.push_back({peer, vs_.data(), my_bytes});
            if (means) sends.push_back({peer, my_qm.data(), my_qm.size() * sizeof(float)});
            const auto pn = static_cast<int64_t>(plan_.slist[static_cast<size_t>(p)].size());
            peer_k_[static_cast<size_t>(p)].resize(static_cast<size_t>(pn * w));
            peer_v_[static_cast<size_t>(p)].resize(static_cast<size_t>(pn * w));
            peer_qm_[static_cast<size_t>(p)].resize(means ? blocks_of(p).size() * static_cast<size_t>(w) : 0);
            recvs.push_back(
                {peer, peer_k_[static_cast<size_t>(p)].data(), static_cast<size_t>(pn * w) * sizeof(float)});
            recvs.push_back(
                {peer, peer_v_[static_cast<size_t>(p)].data(), static_cast<size_t>(pn * w) * sizeof(float)});
            if (means)
                recvs.push_back({peer, peer_qm_[static_cast<size_t>(p)].data(),
                                 peer_qm_[static_cast<size_t>(p)].size() * sizeof(float)});
        }
        mesh_.spatial_comm->send_recv(sends, recvs);
        for (int64_t p = 0; p < S; ++p) {
            if (p == mesh_.spatial_rank) continue;
            const auto& rows = plan_.slist[static_cast<size_t>(p)];
            for (size_t i = 0; i < rows.size(); ++i) {
                std::copy_n(peer_k_[static_cast<size_t>(p)].data() + static_cast<int64_t>(i) * w, w,
                            kt_.data() + rows[i] * w);
                std::copy_n(peer_v_[static_cast<size_t>(p)].data() + static_cast<int64_t>(i) * w, w,
                            vt_.data() + rows[i] * w);
            }
            const std::vector<int64_t> pb = means ? blocks_of(p) : std::vector<int64_t>{};
            for (size_t i = 0; i < pb.size(); ++i)
                std::copy_n(peer_qm_[static_cast<size_t>(p)].data() + static_cast<int64_t>(i) * w, w,
                            qm_.data() + pb[i] * w);
        }
        qm = means ? qm_.data() : nullptr;
    }

    // ---- Attention: the whole chunk's K/V into the replicated window, this rank's query blocks.
    inner_->attend_tiled(l, qt_.data(), kt_.data(), vt_.data(), ot_.data(), mask, qm);
    os_.resize(static_cast<size_t>(ns * w));
    for (int64_t i = 0; i < ns; ++i) std::copy_n(ot_.data() + mine[static_cast<size_t>(i)] * w, w, os_.data() + i * w);

    // ---- Ulysses: the s-list's rows of this worker's heads -> the worker's rows, all heads.
    if (U == 1) {
        std::copy_n(os_.data(), ns * w, out);
        return;
    }
    send_.assign(static_cast<size_t>(U * Ls * w), 0.0f);
    recv_.resize(send_.size());
    for (int64_t p = 0; p < U; ++p)
        for (int64_t t = 0; t < Ls && p * Ls + t < ns; ++t)
            std::copy_n(os_.data() + (p * Ls + t) * w, w, send_.data() + (p * Ls + t) * w);
    mesh_.ulysses_comm->all_to_all(send_.data(), recv_.data(), static_cast<size_t>(Ls * w) * sizeof(float));
    for (int64_t p = 0; p < U; ++p)
        for (int64_t t = 0; t < n; ++t) std::copy_n(recv_.data() + (p * Ls + t) * w, w, out + t * W + p * w);
}

void ShardedAttentionStep::gather(const float* rows_in, int64_t rows, int64_t width, float* all) {
    LR_CHECK(rows == plan_.count, "sharded attention: gather of ", rows, " rows, the worker has ", plan_.count);
    const int64_t U = mesh_.ulysses, S = mesh_.spatial, Ls = plan_.shard;
    const int64_t T = inner_->tiles().tokens_per_frame();
    const auto& mine = plan_.slist[static_cast<size_t>(mesh_.spatial_rank)];
    const auto ns = static_cast<int64_t>(mine.size());
    // Over U: the s-list's rows (shard p padded to Ls rows).
    std::vector<float> slist(static_cast<size_t>(std::max<int64_t>(U * Ls, ns) * width), 0.0f);
    if (U == 1) {
        std::copy_n(rows_in, ns * width, slist.data());
    } else {
        std::vector<float> padded(static_cast<size_t>(Ls * width), 0.0f);
        std::copy_n(rows_in, rows * width, padded.data());
        mesh_.ulysses_comm->all_gather(padded.data(), slist.data(), static_cast<size_t>(Ls * width) * sizeof(float));
    }
    // Over S: every spatial rank's s-list (padded to the longest), put back at its tokens.
    int64_t max_ns = 0;
    for (const auto& s : plan_.slist) max_ns = std::max<int64_t>(max_ns, static_cast<int64_t>(s.size()));
    std::vector<float> every;
    const float* src = slist.data();
    int64_t stride = 0;
    if (S > 1) {
        std::vector<float> padded(static_cast<size_t>(max_ns * width), 0.0f);
        std::copy_n(slist.data(), ns * width, padded.data());
        every.resize(static_cast<size_t>(S * max_ns * width));
        mesh_.spatial_comm->all_gather(padded.data(), every.data(),
                                       static_cast<size_t>(max_ns * width) * sizeof(float));
        src = every.data();
        stride = max_ns;
    }
    for (int64_t p = 0; p < S; ++p) {
        const auto& list = plan_.slist[static_cast<size_t>(p)];
        for (size_t i = 0; i < list.size(); ++i) {
            const int64_t r = list[i], token = (r / T) * T + inner_->tiles().to_raster(r % T);
            std::copy_n(src + (p * stride + static_cast<int64_t>(i)) * width, width, all + token * width);
        }
    }
}

}  // namespace lr
