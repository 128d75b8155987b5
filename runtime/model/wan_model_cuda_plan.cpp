#include "runtime/model/wan_model_cuda_plan.h"

#include <algorithm>

#include "dist/communicator.h"
#include "runtime/core/check.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "runtime/core/cuda_check.h"
#endif

namespace lr::wan_cuda {
namespace {

void zero_device(void* p, size_t bytes) {
#ifdef LONGROLL_HAS_CUDA
    LR_CUDA_CHECK(cudaMemset(p, 0, bytes));
#else
    LR_ASSERT(false, "device memory in a build without CUDA (", p, ", ", bytes, " bytes)");
#endif
}

DevLinear take_linear(Planner& p, int64_t out, int64_t in, const char* what) {
    DevLinear l;
    l.out = out;
    l.in = in;
    l.w = p.bf16(out * in, what);
    l.b = p.f32(out, what);
    return l;
}

}  // namespace

void check_options(const WanModelConfig& cfg, const CudaModelOptions& o) {
    const WanDims& d = cfg.dims;
    LR_CHECK(d.dim > 0 && d.num_heads > 0 && d.dim % d.num_heads == 0 && d.num_layers > 0 && d.ffn_dim > 0,
             "CUDA model: dim (", d.dim, "), num_heads (", d.num_heads, "), num_layers (", d.num_layers,
             ") and ffn_dim (", d.ffn_dim, ") must be positive, dim a multiple of num_heads");
    const int64_t hd = d.dim / d.num_heads;
    LR_CHECK(hd % 2 == 0 && hd <= 256, "CUDA model: head_dim ", hd,
             " must be even and at most 256 (the attention kernel's range)");
    LR_CHECK(d.patch[0] == 1 && d.patch[1] > 0 && d.patch[2] > 0, "CUDA model: patch [", d.patch[0], ", ", d.patch[1],
             ", ", d.patch[2], "] is not supported (patch t must be 1)");
    LR_CHECK(d.in_dim > 0 && d.out_dim > 0 && d.text_dim > 0 && d.freq_dim > 0 && d.freq_dim % 2 == 0,
             "CUDA model: in_dim, out_dim, text_dim and freq_dim (even) must be positive");
    LR_CHECK(cfg.text_len > 0 && cfg.eps > 0, "CUDA model: text_len (", cfg.text_len, ") and eps (", cfg.eps,
             ") must be positive");
    LR_CHECK(o.height > 0 && o.width > 0 && o.height % d.patch[1] == 0 && o.width % d.patch[2] == 0,
             "CUDA model: latent size ", o.height, "x", o.width, " is not a positive multiple of the patch ",
             d.patch[1], "x", d.patch[2]);
    LR_CHECK(o.max_forward_frames > 0, "CUDA model: max_forward_frames must be positive, found ", o.max_forward_frames);
    if (sparse_step(o)) {
        LR_CHECK(o.shard.comm == nullptr && o.spatial.comm == nullptr, "attention.policy ",
                 block_policy_name(o.policy.kind),
                 " on the GPU runs on one rank: the sharded attention steps read every block (DENSE, SINK_WINDOW)");
        LR_CHECK(o.rope == RopePositions::kAbsolute, "attention.policy ", block_policy_name(o.policy.kind),
                 " with window-relative RoPE is not built on the GPU yet (it runs on the CPU, --device cpu)");
    }
    LR_CHECK(o.kv_block_size > 0 && (hd != 128 || o.kv_block_size % 64 == 0), "CUDA model: kv_block_size ",
             o.kv_block_size, " must be positive (a multiple of 64 with head_dim 128)");
    const AttentionShard& sh = o.shard;
    LR_CHECK(sh.size >= 1 && sh.rank >= 0 && sh.rank < sh.size && d.num_heads % sh.size == 0,
             "CUDA model: head sharding rank ", sh.rank, " of ", sh.size, " does not split ", d.num_heads, " heads");
    LR_CHECK(sh.size == 1 || sh.comm != nullptr, "CUDA model: head sharding over ", sh.size,
             " ranks needs a communicator");
    LR_CHECK(sh.comm == nullptr || (sh.comm->size() == sh.size && sh.comm->rank() == sh.rank),
             "CUDA model: head sharding rank ", sh.rank, " of ", sh.size, " needs a communicator of that size with ",
             "this rank");
    LR_CHECK(sh.comm == nullptr || !sh.comm->device_buffers() || o.comm_stream != nullptr,
             "CUDA model: a communicator on device buffers needs CudaModelOptions.comm_stream (its stream)");
    const SpatialShard& sp = o.spatial;
    LR_CHECK(sp.size >= 1 && sp.rank >= 0 && sp.rank < sp.size, "CUDA model: spatial rank ", sp.rank, " of ", sp.size);
    LR_CHECK(sp.size == 1 || sp.comm != nullptr, "CUDA model: spatial sharding over ", sp.size,
             " ranks needs a communicator");
    if (sp.comm) {
        LR_CHECK(sp.comm->size() == sp.size && sp.comm->rank() == sp.rank, "CUDA model: spatial rank ", sp.rank, " of ",
                 sp.size, " needs a communicator of that size with this rank");
        LR_CHECK(!sp.comm->device_buffers() || o.spatial_comm_stream != nullptr,
                 "CUDA model: a spatial communicator on device buffers needs CudaModelOptions.spatial_comm_stream");
        LR_CHECK(sp.block_size == o.kv_block_size, "CUDA model: spatial blocks of ", sp.block_size,
                 " tokens must be the KV cache's blocks (kv_block_size ", o.kv_block_size, ")");
        const int64_t tpf = tokens_per_frame_of(cfg, o), nb = ceil_div(tpf, o.kv_block_size);
        LR_CHECK(sp.size <= nb, "CUDA model: ", sp.size, " spatial ranks but a frame of ", tpf, " tokens has only ", nb,
                 " blocks of ", o.kv_block_size);
    }
}

SpatialLayout spatial_layout(const WanModelConfig& cfg, const CudaModelOptions& o, int64_t slots) {
    SpatialLayout l;
    l.on = spatial_sharded(o);
    l.S = o.spatial.size;
    l.s = o.spatial.rank;
    l.block = o.kv_block_size;
    l.tpf = tokens_per_frame_of(cfg, o);
    l.nb = ceil_div(l.tpf, l.block);
    l.rpf.assign(static_cast<size_t>(l.S), 0);
    l.nbl.assign(static_cast<size_t>(l.S), 0);
    for (int64_t b = 0; b < l.nb; ++b) {
        l.rpf[static_cast<size_t>(b % l.S)] += std::min(l.block, l.tpf - b * l.block);
        ++l.nbl[static_cast<size_t>(b % l.S)];
    }
    l.max_rpf = *std::max_element(l.rpf.begin(), l.rpf.end());
    l.nbmax = *std::max_element(l.nbl.begin(), l.nbl.end());
    l.slots = slots;
    return l;
}

int64_t rank_tokens_per_frame(const WanModelConfig& cfg, const CudaModelOptions& o) {
    if (!spatial_sharded(o)) return tokens_per_frame_of(cfg, o);
    return spatial_layout(cfg, o, 0).my_rpf();
}

int64_t spatial_table_ints(const WanModelConfig& cfg, const CudaModelOptions& o, int64_t slots) {
    const SpatialLayout l = spatial_layout(cfg, o, slots);
    const int64_t F = o.max_forward_frames, rows = ceil_div(F * l.my_rpf(), kQBlock);
    return l.S * F * l.max_rpf + rows + 1 + rows * slots * l.nb;
}

int64_t max_shard_tokens(const WanModelConfig& cfg, const CudaModelOptions& o) {
    return ceil_div(o.max_forward_frames * rank_tokens_per_frame(cfg, o), o.shard.size);
}

size_t exchange_bytes(const WanModelConfig& cfg, const CudaModelOptions& o) {
    if (!head_sharded(o)) return 0;
    const WanDims& d = cfg.dims;
    const int64_t U = o.shard.size, Ls = max_shard_tokens(cfg, o), w = d.dim / U;
    const int64_t head_out = d.out_dim * d.patch[0] * d.patch[1] * d.patch[2];
    // q, k, v of Ls tokens for each rank (bf16); the head's all-gather receives U shards of f32 rows.
    return std::max(static_cast<size_t>(U * 3 * Ls * w) * 2, static_cast<size_t>(U * Ls * head_out) * 4);
}

int64_t tokens_per_frame_of(const WanModelConfig& cfg, const CudaModelOptions& o) {
    return (o.height / cfg.dims.patch[1]) * (o.width / cfg.dims.patch[2]);
}

bool sparse_step(const CudaModelOptions& o) {
    return o.policy.kind != BlockPolicyKind::kDense && o.policy.kind != BlockPolicyKind::kSinkWindow;
}

std::unique_ptr<BlockPolicy> make_policy(const WanModelConfig& cfg, const CudaModelOptions& o) {
    const TileLayout t(o.height / cfg.dims.patch[1], o.width / cfg.dims.patch[2],
                       tile_shape_for_block(o.kv_block_size));
    BlockPolicyGeometry g;
    g.num_layers = cfg.dims.num_layers;
    g.num_heads = cfg.dims.num_heads;
    g.tiles_per_frame = t.tiles_per_frame();
    g.frames_per_chunk = o.frames_per_chunk;
    g.window_frames = o.window_frames;
    g.sink_frames = o.sink_frames;
    g.max_frames = o.max_frames;
    g.run_frames = o.run_frames;
    return make_block_policy(o.policy, g);
}

size_t SparseSizes::bytes() const {
    return align_up(static_cast<size_t>(kmean) * 4) + align_up(static_cast<size_t>(change) * 4) +
           align_up(static_cast<size_t>(qmean) * 4) + align_up(static_cast<size_t>(indices) * 4) +
           align_up(static_cast<size_t>(scores) * 4) + align_up(static_cast<size_t>(staging_ints) * 4);
}

SparseSizes sparse_sizes(const WanModelConfig& cfg, const CudaModelOptions& o) {
    SparseSizes z;
    if (!sparse_step(o)) return z;
    const PagedKvCacheConfig kc = paged_config(cfg, o);
    const int64_t max_frames = KvWindow(kc.window_frames, kc.sink_frames, kc.max_frames).max_frames();
    const TileLayout t(o.height / cfg.dims.patch[1], o.width / cfg.dims.patch[2], kc.tile);
    z.layers = cfg.dims.num_layers;
    z.heads = cfg.dims.num_heads;
    z.head_dim = cfg.dims.dim / cfg.dims.num_heads;
    z.tiles = t.tiles_per_frame();
    z.frames = max_frames;
    z.window_blocks = max_frames * z.tiles;
    z.retained = kc.retained_blocks;
    z.pool_blocks = z.window_blocks + z.retained;
    z.max_q_blocks = ceil_div(o.max_forward_frames * t.tokens_per_frame(), kQBlock);
    z.row_cap = z.window_blocks + z.retained;
    z.kmean = z.layers * z.pool_blocks * z.heads * z.head_dim;
    z.change = z.layers * z.pool_blocks * z.heads;
    z.qmean = z.layers * z.heads * z.max_q_blocks * z.head_dim;
    z.indices = z.heads * z.max_q_blocks * z.row_cap;
    z.scores = z.layers * z.pool_blocks * z.heads;
    // q_perm, candidates (block, group, kind, competes), per layer extras and indptr, write/query segments,
    // retention entries (copy 4, change 3, salience 2 ints each).
    const int64_t F = o.max_forward_frames, L = z.layers, H = z.heads;
    z.staging_ints = F * t.tokens_per_frame() + 4 * z.window_blocks + L * (H + 1) + L * H * z.retained +
                     L * (H * z.max_q_blocks + 1) + 2 * F * z.tiles + 2 * z.max_q_blocks + L * H * z.window_blocks * 4 +
                     L * F * z.tiles * 3 + L * z.pool_blocks * 2;
    return z;
}

PagedKvCacheConfig paged_config(const WanModelConfig& cfg, const CudaModelOptions& o) {
    PagedKvCacheConfig c;
    c.num_layers = cfg.dims.num_layers;
    c.tokens_per_frame = rank_tokens_per_frame(cfg, o);  // its spatial blocks'
    c.width = cfg.dims.dim / o.shard.size;               // the rank's heads
    c.window_frames = o.window_frames;
    c.sink_frames = o.sink_frames;
    c.max_frames = o.max_frames;
    c.block_size = o.kv_block_size;
    c.max_write_frames = o.max_forward_frames;
    c.q_block = kQBlock;
    // Spatial sharding re-rotates the assembled scratch instead of the cache's own pool.
    c.rotated_keys = o.rope == RopePositions::kWindowRelative && !spatial_sharded(o);
    if (sparse_step(o)) {
        const auto policy = make_policy(cfg, o);
        c.window_frames = policy->page_window_frames();  // Forcing-KV: sink + ring + chunk
        if (c.window_frames != -1) c.max_frames = c.window_frames;
        c.tile = tile_shape_for_block(o.kv_block_size);
        c.grid_cols = o.width / cfg.dims.patch[2];
        c.retained_blocks = policy->max_retained();
        c.heads = cfg.dims.num_heads;
    }
    return c;
}

int64_t max_cache_frames(const WanModelConfig& cfg, const CudaModelOptions& o) {
    const PagedKvCacheConfig kc = paged_config(cfg, o);
    return KvWindow(kc.window_frames, kc.sink_frames, kc.max_frames).max_frames();
}

int64_t text_blocks(const WanModelConfig& cfg) { return ceil_div(cfg.text_len, CudaPrompt::kCrossBlock); }

void* Planner::take(size_t bytes, const char* what) {
    if (bytes == 0) return nullptr;
    total_ += align_up(bytes);
    if (!arena_) return nullptr;
    void* p = arena_->alloc_bytes(bytes, what);
    if (zero) zero_device(p, bytes);
    return p;
}

void lay_out_weights(Planner& p, const WanModelConfig& cfg, DevWeights& w) {
    const WanDims& d = cfg.dims;
    const int64_t dim = d.dim;
    w.patch = take_linear(p, dim, d.in_dim * d.patch[0] * d.patch[1] * d.patch[2], "patch_embedding");
    w.text0 = take_linear(p, dim, d.text_dim, "text_embedding.0");
    w.text2 = take_linear(p, dim, dim, "text_embedding.2");
    w.time0 = take_linear(p, dim, d.freq_dim, "time_embedding.0");
    w.time2 = take_linear(p, dim, dim, "time_embedding.2");
    w.time_proj = take_linear(p, 6 * dim, dim, "time_projection.1");
    w.blocks.assign(static_cast<size_t>(d.num_layers), DevBlock{});
    for (DevBlock& b : w.blocks) {
        b.modulation = p.f32(6 * dim, "modulation");
        b.qkv = take_linear(p, 3 * dim, dim, "self_attn.qkv");
        b.self_o = take_linear(p, dim, dim, "self_attn.o");
        b.norm_q = p.f32(dim, "self_attn.norm_q");
        b.norm_k = p.f32(dim, "self_attn.norm_k");
        b.norm3_w = p.f32(dim, "norm3.weight");
        b.norm3_b = p.f32(dim, "norm3.bias");
        b.cross_q = take_linear(p, dim, dim, "cross_attn.q");
        b.cross_k = take_linear(p, dim, dim, "cross_attn.k");
        b.cross_v = take_linear(p, dim, dim, "cross_attn.v");
        b.cross_o = take_linear(p, dim, dim, "cross_attn.o");
        b.cross_norm_q = p.f32(dim, "cross_attn.norm_q");
        b.cross_norm_k = p.f32(dim, "cross_attn.norm_k");
        b.ffn0 = take_linear(p, d.ffn_dim, dim, "ffn.0");
        b.ffn2 = take_linear(p, dim, d.ffn_dim, "ffn.2");
    }
    w.head_modulation = p.f32(2 * dim, "head.modulation");
    w.head = take_linear(p, d.out_dim * d.patch[0] * d.patch[1] * d.patch[2], dim, "head.head");
}

void lay_out_activations(Planner& p, const WanModelConfig& cfg, const CudaModelOptions& o, int64_t max_frames,
                         Activations& a) {
    const WanDims& d = cfg.dims;
    const int64_t dim = d.dim, F = o.max_forward_frames, tpf = tokens_per_frame_of(cfg, o);
    const int64_t head_out = d.out_dim * d.patch[0] * d.patch[1] * d.patch[2];
    a.rows = ceil_div(F * tpf, kQBlock) * kQBlock;
    a.tmp_width = std::max(3 * dim, head_out);
    a.x = p.f32(a.rows * dim, "x");
    a.h = p.bf16(a.rows * dim, "h");
    a.tmp = p.f32(a.rows * a.tmp_width, "tmp");
    a.q = p.bf16(a.rows * dim, "q");
    a.attn = p.bf16(a.rows * dim, "attn");
    a.ffn = p.bf16(a.rows * d.ffn_dim, "ffn");
    a.patches = p.bf16(a.rows * d.in_dim * d.patch[0] * d.patch[1] * d.patch[2], "patches");
    a.sinusoid = p.f32(F * d.freq_dim, "sinusoid");
    a.sinusoid_bf = p.bf16(F * d.freq_dim, "sinusoid bf16");
    a.t_hidden = p.f32(F * dim, "time hidden");
    a.t_act = p.bf16(F * dim, "time act");
    a.e = p.f32(F * dim, "e");
    a.e0 = p.f32(F * 6 * dim, "e0");
    a.mod = p.f32(F * 6 * dim, "mod");
    a.head_shift = p.f32(F * dim, "head shift");
    a.head_scale = p.f32(F * dim, "head scale");
    a.forward_in = p.f32(F + 3 * F * tpf, "timesteps + positions");
    if (o.rope == RopePositions::kWindowRelative && !spatial_sharded(o))
        a.slot_positions = p.i32(3 * max_frames * tpf, "slot positions");
    const int64_t nb = text_blocks(cfg), qb = a.rows / kQBlock;
    a.cross_block_len = p.i32(nb, "cross block_len");
    a.cross_indptr = p.i32(qb + 1, "cross indptr");
    a.cross_indices = p.i32(qb * nb, "cross indices");
    a.ctx = p.bf16(cfg.text_len * d.text_dim, "context");
    a.text_hidden = p.bf16(cfg.text_len * dim, "text hidden");
    a.text = p.bf16(cfg.text_len * dim, "text");
    a.text_tmp = p.f32(cfg.text_len * dim, "text tmp");
    if (head_sharded(o)) {
        const int64_t U = o.shard.size, w = dim / U;
        a.head_rows = std::max(a.rows, U * max_shard_tokens(cfg, o));
        a.qh = p.bf16(a.head_rows * w, "q (rank's heads)");
        a.kh = p.bf16(a.head_rows * w, "k (rank's heads)");
        a.vh = p.bf16(a.head_rows * w, "v (rank's heads)");
        a.oh = p.bf16(a.head_rows * w, "attention (rank's heads)");
        if (o.shard.comm->device_buffers()) {
            a.xsend = p.take(exchange_bytes(cfg, o), "exchange send");
            a.xrecv = p.take(exchange_bytes(cfg, o), "exchange recv");
        }
    }
    if (spatial_sharded(o)) {
        const SpatialLayout l = spatial_layout(cfg, o, max_frames);
        const int64_t w = dim / o.shard.size, rows = l.scratch_blocks() * l.block;
        a.sk = p.bf16(rows * w, "spatial scratch K");
        a.sv = p.bf16(rows * w, "spatial scratch V");
        if (o.rope == RopePositions::kWindowRelative) {
            a.sk_rot = p.bf16(rows * w, "spatial scratch K (rotated)");
            a.s_positions = p.i32(3 * rows, "spatial scratch positions");
        }
        a.s_block_len = p.i32(l.scratch_blocks(), "spatial scratch block_len");
        a.s_table_rows = ceil_div(F * l.my_rpf(), kQBlock);
        a.s_table_cols = max_frames * l.nb;
        a.s_tables = p.i32(spatial_table_ints(cfg, o, max_frames), "spatial tables");
        a.s_gather = p.f32(l.S * F * l.max_rpf * head_out, "spatial head gather");
    }
}

PlanBytes plan_bytes(const WanModelConfig& cfg, const CudaModelOptions& o) {
    check_options(cfg, o);
    const PagedKvCacheConfig kc = paged_config(cfg, o);
    PlanBytes b;
    b.kv = PagedKvCache::device_bytes(kc);  // validates the cache numbers too
    b.kv_pools = PagedKvCache::pool_bytes(kc);
    const int64_t max_frames = KvWindow(kc.window_frames, kc.sink_frames, kc.max_frames).max_frames();
    DevWeights w;
    Planner pw(nullptr);
    lay_out_weights(pw, cfg, w);
    b.weights = pw.total();
    Activations a;
    Planner pa(nullptr);
    lay_out_activations(pa, cfg, o, max_frames, a);
    b.activations = pa.total();
    b.prompt = CudaPrompt::bytes_for(cfg);
    b.sparse = sparse_sizes(cfg, o).bytes();
    return b;
}

}  // namespace lr::wan_cuda
