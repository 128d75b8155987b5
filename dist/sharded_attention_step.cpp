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

namespace {

// cfg with heads [h0, h0 + n) of its own: the policy's static-head profile sliced to them.
AttentionStepConfig slice_heads(const AttentionStepConfig& cfg, int64_t h0, int64_t n) {
    AttentionStepConfig c = cfg;
    c.num_heads = n;
    if (!cfg.policy.static_head.empty()) {
        LR_CHECK(static_cast<int64_t>(cfg.policy.static_head.size()) == cfg.num_layers * cfg.num_heads,
                 "sharded attention: the head profile has ", cfg.policy.static_head.size(), " entries for ",
                 cfg.num_layers, " layers x ", cfg.num_heads, " heads");
        c.policy.static_head.clear();
        for (int64_t l = 0; l < cfg.num_layers; ++l)
            for (int64_t h = 0; h < n; ++h)
                c.policy.static_head.push_back(cfg.policy.static_head[static_cast<size_t>(l * cfg.num_heads + h0 + h)]);
    }
    return c;
}

}  // namespace

AttentionStepConfig ShardedAttentionStep::inner_config(const AttentionStepConfig& cfg, const SequenceMesh& mesh) {
    LR_CHECK(mesh.ulysses >= 1 && cfg.num_heads % mesh.ulysses == 0, "sharded attention: ", cfg.num_heads,
             " heads cannot be split over ", mesh.ulysses, " Ulysses ranks");
    const int64_t lh = cfg.num_heads / mesh.ulysses;
    return slice_heads(cfg, mesh.ulysses_rank * lh, lh);
}

AttentionStepConfig ShardedAttentionStep::group_config(const AttentionStepConfig& cfg, const SequenceMesh& mesh,
                                                       int64_t g) {
    const int64_t G = mesh.overlap_groups;
    LR_CHECK(mesh.ulysses >= 1 && G >= 1 && cfg.num_heads % (mesh.ulysses * G) == 0,
             "sharded attention: ", cfg.num_heads, " heads cannot be split over ", mesh.ulysses, " Ulysses ranks x ", G,
             " overlap groups (parallel.overlap_groups must divide the heads of a Ulysses rank)");
    LR_ASSERT(g >= 0 && g < G, "sharded attention: head group ", g, " of ", G);
    const int64_t hg = cfg.num_heads / (mesh.ulysses * G);
    return slice_heads(cfg, mesh.ulysses_rank * hg * G + g * hg, hg);
}

size_t ShardedAttentionStep::kv_bytes_for(const AttentionStepConfig& cfg, const SequenceMesh& mesh) {
    size_t bytes = 0;
    for (int64_t g = 0; g < mesh.overlap_groups; ++g)
        bytes += CpuAttentionStep::kv_bytes_for(group_config(cfg, mesh, g));
    return bytes;
}

ShardedAttentionStep::ShardedAttentionStep(const AttentionStepConfig& cfg, const SequenceMesh& mesh)
    : cfg_(cfg), mesh_(mesh), worker_(mesh.overlap_groups > 1) {
    LR_CHECK(mesh.ulysses == 1 || (mesh.ulysses_comm && mesh.ulysses_comm->size() == mesh.ulysses &&
                                   mesh.ulysses_comm->rank() == mesh.ulysses_rank),
             "sharded attention: ", mesh.ulysses, " Ulysses ranks need a communicator of that size with this rank");
    LR_CHECK(mesh.spatial == 1 || (mesh.spatial_comm && mesh.spatial_comm->size() == mesh.spatial &&
                                   mesh.spatial_comm->rank() == mesh.spatial_rank),
             "sharded attention: ", mesh.spatial, " spatial ranks need a communicator of that size with this rank");
    for (Communicator* c : {mesh.ulysses_comm, mesh.spatial_comm})
        LR_CHECK(mesh.overlap_groups == 1 || !c || c->callable_from_any_thread(),
                 "sharded attention: parallel.overlap_groups ", mesh.overlap_groups,
                 " runs the exchanges on a thread of their own, and this communicator cannot be called from one (MPI "
                 "was initialised below MPI_THREAD_SERIALIZED)");
    groups_.resize(static_cast<size_t>(mesh.overlap_groups));
    for (int64_t g = 0; g < mesh.overlap_groups; ++g)
        groups_[static_cast<size_t>(g)].step = std::make_unique<CpuAttentionStep>(group_config(cfg, mesh, g));
}

ShardedAttentionStep::~ShardedAttentionStep() = default;

KvWrite ShardedAttentionStep::begin(const AttentionForward& f) {
    KvWrite w;
    for (Group& g : groups_) w = g.step->begin(f);  // the same plan in every group: only the heads differ
    if (f.num_frames != frames_) {
        plan_ = plan_sequence(inner().tiles(), f.num_frames, inner().q_block(), mesh_);
        frames_ = f.num_frames;
    }
    LR_ASSERT(plan_.q_blocks == inner().query_blocks(), "sharded attention: ", plan_.q_blocks,
              " query blocks planned, ", inner().query_blocks(), " in the step");
    return w;
}

void ShardedAttentionStep::end() {
    for (Group& g : groups_) g.step->end();
}

void ShardedAttentionStep::reset() {
    for (Group& g : groups_) g.step->reset();
}

AttentionStats ShardedAttentionStep::stats() const {
    AttentionStats s;
    for (const Group& g : groups_) {
        const AttentionStats t = g.step->stats();
        s.read_tokens += t.read_tokens;
        s.dense_tokens += t.dense_tokens;
        s.kv_bytes_held += t.kv_bytes_held;
    }
    return s;
}

// Pipeline over the head groups (one group: in, attend, out, in turn on this thread):
//   exchange thread:  in(0) in(1)        out(0) in(2)        out(1) ...
//   this thread:            attend(0)           attend(1)           ...
void ShardedAttentionStep::attend(int64_t l, const float* q, const float* k, const float* v, float* out) {
    const auto G = static_cast<int64_t>(groups_.size());
    const int64_t wg = cfg_.num_heads * cfg_.head_dim / (mesh_.ulysses * G);
    std::vector<int64_t> in_ticket(static_cast<size_t>(G), 0);
    // Each task adds the communicator time it spent (see task_comm_ns_).
    const auto timed = [this](auto&& body) {
        const double before = comm_busy_seconds();
        body();
        task_comm_ns_ += static_cast<int64_t>((comm_busy_seconds() - before) * 1e9);
    };
    const auto post_in = [&](int64_t g) {
        in_ticket[static_cast<size_t>(g)] = worker_.post([this, g, wg, q, k, v, timed] {
            timed([&] { exchange_in(groups_[static_cast<size_t>(g)], g * wg, q, k, v); });
        });
    };
    try {
        post_in(0);
        if (G > 1) post_in(1);
        for (int64_t g = 0; g < G; ++g) {
            Group& grp = groups_[static_cast<size_t>(g)];
            worker_.wait(in_ticket[static_cast<size_t>(g)]);
            const uint8_t* mask =
                mesh_.spatial > 1 ? plan_.owns[static_cast<size_t>(mesh_.spatial_rank)].data() : nullptr;
            const float* qm = mesh_.spatial > 1 && grp.step->uses_summaries() ? grp.qm.data() : nullptr;
            grp.step->attend_tiled(l, grp.qt.data(), grp.kt.data(), grp.vt.data(), grp.ot.data(), mask, qm);
            worker_.post([this, g, wg, out, timed] {
                timed([&] { exchange_out(groups_[static_cast<size_t>(g)], g * wg, out); });
            });
            if (g + 2 < G) post_in(g + 2);
        }
        worker_.drain();
    } catch (...) {
        // The posted tasks read the caller's buffers: let them finish (their peers posted the same ones) before the
        // error leaves; a task's own error is already the one being thrown or a consequence of it.
        try {
            worker_.drain();
        } catch (...) {
        }
        throw;
    }
}

double ShardedAttentionStep::comm_busy_seconds() const {
    double s = mesh_.ulysses_comm ? mesh_.ulysses_comm->busy_seconds() : 0.0;
    if (mesh_.spatial_comm && mesh_.spatial_comm != mesh_.ulysses_comm) s += mesh_.spatial_comm->busy_seconds();
    return s;
}

// Group `g`'s inputs: its columns [col, col + wg) of every Ulysses peer's share -> the s-list's rows of its heads,
// laid out in the forward's tiled order with the spatial peers' K/V rows and query means.
void ShardedAttentionStep::exchange_in(Group& g, int64_t col, const float* q, const float* k, const float* v) {
    const int64_t U = mesh_.ulysses, S = mesh_.spatial, G = static_cast<int64_t>(groups_.size());
    const int64_t W = cfg_.num_heads * cfg_.head_dim, w = W / U, wg = w / G;
    const auto& mine = plan_.slist[static_cast<size_t>(mesh_.spatial_rank)];
    const auto ns = static_cast<int64_t>(mine.size());
    const int64_t n = plan_.count, Ls = plan_.shard, L = plan_.rows;

    // ---- Ulysses: the worker's rows (all heads) -> the s-list's rows of this group's heads.
    g.qs.assign(static_cast<size_t>(ns * wg), 0.0f);
    g.ks.assign(g.qs.size(), 0.0f);
    g.vs.assign(g.qs.size(), 0.0f);
    const float* src[3] = {q, k, v};
    float* dst[3] = {g.qs.data(), g.ks.data(), g.vs.data()};
    if (U == 1) {
        for (int64_t j = 0; j < 3; ++j)
            for (int64_t t = 0; t < ns; ++t) std::copy_n(src[j] + t * W + col, wg, dst[j] + t * wg);
    } else {
        g.send.assign(static_cast<size_t>(U * 3 * Ls * wg), 0.0f);
        g.recv.resize(g.send.size());
        for (int64_t p = 0; p < U; ++p)
            for (int64_t j = 0; j < 3; ++j)
                for (int64_t t = 0; t < n; ++t)
                    std::copy_n(src[j] + t * W + p * w + col, wg, g.send.data() + ((p * 3 + j) * Ls + t) * wg);
        mesh_.ulysses_comm->all_to_all(g.send.data(), g.recv.data(), static_cast<size_t>(3 * Ls * wg) * sizeof(float));
        for (int64_t p = 0; p < U; ++p)
            for (int64_t j = 0; j < 3; ++j)
                for (int64_t t = 0; t < Ls && p * Ls + t < ns; ++t)
                    std::copy_n(g.recv.data() + ((p * 3 + j) * Ls + t) * wg, wg, dst[j] + (p * Ls + t) * wg);
    }

    // ---- The forward in tiled order: this rank's rows, the peers' K/V rows and query means.
    g.qt.assign(static_cast<size_t>(L * wg), 0.0f);
    g.kt.resize(g.qt.size());
    g.vt.resize(g.qt.size());
    g.ot.resize(g.qt.size());
    for (int64_t i = 0; i < ns; ++i) {
        const int64_t r = mine[static_cast<size_t>(i)];
        std::copy_n(g.qs.data() + i * wg, wg, g.qt.data() + r * wg);
        std::copy_n(g.ks.data() + i * wg, wg, g.kt.data() + r * wg);
        std::copy_n(g.vs.data() + i * wg, wg, g.vt.data() + r * wg);
    }
    if (S == 1) return;
    const auto& owns = plan_.owns[static_cast<size_t>(mesh_.spatial_rank)];
    // Mean queries only for the policies that score blocks.
    const bool means = g.step->uses_summaries();
    g.qm.assign(static_cast<size_t>(plan_.q_blocks * wg), 0.0f);
    if (means) g.step->query_means(g.qt.data(), owns.data(), g.qm.data());
    const auto blocks_of = [&](int64_t p) {
        std::vector<int64_t> b;
        for (int64_t i = 0; i < plan_.q_blocks; ++i)
            if (plan_.owns[static_cast<size_t>(p)][static_cast<size_t>(i)]) b.push_back(i);
        return b;
    };
    // Own query means, packed by block.
    const std::vector<int64_t> my_blocks = means ? blocks_of(mesh_.spatial_rank) : std::vector<int64_t>{};
    std::vector<float> my_qm(my_blocks.size() * static_cast<size_t>(wg));
    for (size_t i = 0; i < my_blocks.size(); ++i)
        std::copy_n(g.qm.data() + my_blocks[i] * wg, wg, my_qm.data() + static_cast<int64_t>(i) * wg);
    g.peer_k.resize(static_cast<size_t>(S));
    g.peer_v.resize(static_cast<size_t>(S));
    g.peer_qm.resize(static_cast<size_t>(S));
    std::vector<SendSpec> sends;
    std::vector<RecvSpec> recvs;
    for (int64_t p = 0; p < S; ++p) {
        if (p == mesh_.spatial_rank) continue;
        const int peer = static_cast<int>(p);
        const auto pz = static_cast<size_t>(p);
        const size_t my_bytes = static_cast<size_t>(ns * wg) * sizeof(float);
        sends.push_back({peer, g.ks.data(), my_bytes});
        sends.push_back({peer, g.vs.data(), my_bytes});
        if (means) sends.push_back({peer, my_qm.data(), my_qm.size() * sizeof(float)});
        const auto pn = static_cast<int64_t>(plan_.slist[pz].size());
        g.peer_k[pz].resize(static_cast<size_t>(pn * wg));
        g.peer_v[pz].resize(static_cast<size_t>(pn * wg));
        g.peer_qm[pz].resize(means ? blocks_of(p).size() * static_cast<size_t>(wg) : 0);
        recvs.push_back({peer, g.peer_k[pz].data(), static_cast<size_t>(pn * wg) * sizeof(float)});
        recvs.push_back({peer, g.peer_v[pz].data(), static_cast<size_t>(pn * wg) * sizeof(float)});
        if (means) recvs.push_back({peer, g.peer_qm[pz].data(), g.peer_qm[pz].size() * sizeof(float)});
    }
    mesh_.spatial_comm->send_recv(sends, recvs);
    for (int64_t p = 0; p < S; ++p) {
        if (p == mesh_.spatial_rank) continue;
        const auto pz = static_cast<size_t>(p);
        const auto& rows = plan_.slist[pz];
        for (size_t i = 0; i < rows.size(); ++i) {
            std::copy_n(g.peer_k[pz].data() + static_cast<int64_t>(i) * wg, wg, g.kt.data() + rows[i] * wg);
            std::copy_n(g.peer_v[pz].data() + static_cast<int64_t>(i) * wg, wg, g.vt.data() + rows[i] * wg);
        }
        const std::vector<int64_t> pb = means ? blocks_of(p) : std::vector<int64_t>{};
        for (size_t i = 0; i < pb.size(); ++i)
            std::copy_n(g.peer_qm[pz].data() + static_cast<int64_t>(i) * wg, wg, g.qm.data() + pb[i] * wg);
    }
}

// Group `g`'s output: the s-list's rows of its heads -> its columns [col, col + wg) of the worker's rows (all heads,
// from every Ulysses peer).
void ShardedAttentionStep::exchange_out(Group& g, int64_t col, float* out) {
    const int64_t U = mesh_.ulysses, G = static_cast<int64_t>(groups_.size());
    const int64_t W = cfg_.num_heads * cfg_.head_dim, w = W / U, wg = w / G;
    const auto& mine = plan_.slist[static_cast<size_t>(mesh_.spatial_rank)];
    const auto ns = static_cast<int64_t>(mine.size());
    const int64_t n = plan_.count, Ls = plan_.shard;
    g.os.resize(static_cast<size_t>(ns * wg));
    for (int64_t i = 0; i < ns; ++i)
        std::copy_n(g.ot.data() + mine[static_cast<size_t>(i)] * wg, wg, g.os.data() + i * wg);
    if (U == 1) {
        for (int64_t t = 0; t < ns; ++t) std::copy_n(g.os.data() + t * wg, wg, out + t * W + col);
        return;
    }
    g.send.assign(static_cast<size_t>(U * Ls * wg), 0.0f);
    g.recv.resize(g.send.size());
    for (int64_t p = 0; p < U; ++p)
        for (int64_t t = 0; t < Ls && p * Ls + t < ns; ++t)
            std::copy_n(g.os.data() + (p * Ls + t) * wg, wg, g.send.data() + (p * Ls + t) * wg);
    mesh_.ulysses_comm->all_to_all(g.send.data(), g.recv.data(), static_cast<size_t>(Ls * wg) * sizeof(float));
    for (int64_t p = 0; p < U; ++p)
        for (int64_t t = 0; t < n; ++t) std::copy_n(g.recv.data() + (p * Ls + t) * wg, wg, out + t * W + p * w + col);
}

void ShardedAttentionStep::gather(const float* rows_in, int64_t rows, int64_t width, float* all) {
    LR_CHECK(rows == plan_.count, "sharded attention: gather of ", rows, " rows, the worker has ", plan_.count);
    const int64_t U = mesh_.ulysses, S = mesh_.spatial, Ls = plan_.shard;
    const int64_t T = inner().tiles().tokens_per_frame();
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
            const int64_t r = list[i], token = (r / T) * T + inner().tiles().to_raster(r % T);
            std::copy_n(src + (p * stride + static_cast<int64_t>(i)) * width, width, all + token * width);
        }
    }
}

}  // namespace lr
