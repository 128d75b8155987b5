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
}

int64_t max_shard_tokens(const WanModelConfig& cfg, const CudaModelOptions& o) {
    return ceil_div(o.max_forward_frames * tokens_per_frame_of(cfg, o), o.shard.size);
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

PagedKvCacheConfig paged_config(const WanModelConfig& cfg, const CudaModelOptions& o) {
    PagedKvCacheConfig c;
    c.num_layers = cfg.dims.num_layers;
    c.tokens_per_frame = tokens_per_frame_of(cfg, o);
    c.width = cfg.dims.dim / o.shard.size;  // the rank's heads
    c.window_frames = o.window_frames;
    c.sink_frames = o.sink_frames;
    c.max_frames = o.max_frames;
    c.block_size = o.kv_block_size;
    c.max_write_frames = o.max_forward_frames;
    c.q_block = kQBlock;
    c.rotated_keys = o.rope == RopePositions::kWindowRelative;
    return c;
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
    if (o.rope == RopePositions::kWindowRelative) a.slot_positions = p.i32(3 * max_frames * tpf, "slot positions");
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
    return b;
}

}  // namespace lr::wan_cuda
