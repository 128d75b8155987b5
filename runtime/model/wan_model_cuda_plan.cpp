#include "runtime/model/wan_model_cuda_plan.h"

#include <algorithm>

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
    if (o.step == nullptr) {
        CudaLocalAttentionStep::check(attention_step_config(cfg, o));
    } else {
        // A step that shares tokens has its rows' patches gathered into the FFN buffer.
        const int64_t patch = d.in_dim * d.patch[0] * d.patch[1] * d.patch[2];
        LR_CHECK(patch <= d.ffn_dim, "CUDA model: a patch of ", patch, " values is wider than ffn_dim (", d.ffn_dim,
                 "), the buffer a sharded step's patches are gathered into");
        LR_CHECK(o.step->num_heads() == d.num_heads && o.step->rope() == o.rope, "CUDA model: the attention step ",
                 "attends ", o.step->num_heads(), " heads with ",
                 o.step->rope() == RopePositions::kAbsolute ? "absolute" : "window-relative", " RoPE; the model has ",
                 d.num_heads, " heads and ", o.rope == RopePositions::kAbsolute ? "absolute" : "window-relative",
                 " RoPE (CudaModelOptions::rope)");
    }
}

int64_t tokens_per_frame_of(const WanModelConfig& cfg, const CudaModelOptions& o) {
    return (o.height / cfg.dims.patch[1]) * (o.width / cfg.dims.patch[2]);
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

void lay_out_activations(Planner& p, const WanModelConfig& cfg, const CudaModelOptions& o, Activations& a) {
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
    a.forward_in = p.f32(F + 4 * F * tpf, "timesteps + positions + tokens");
    const int64_t nb = text_blocks(cfg), qb = a.rows / kQBlock;
    a.cross_block_len = p.i32(nb, "cross block_len");
    a.cross_indptr = p.i32(qb + 1, "cross indptr");
    a.cross_indices = p.i32(qb * nb, "cross indices");
    a.ctx = p.bf16(cfg.text_len * d.text_dim, "context");
    a.text_hidden = p.bf16(cfg.text_len * dim, "text hidden");
    a.text = p.bf16(cfg.text_len * dim, "text");
    a.text_tmp = p.f32(cfg.text_len * dim, "text tmp");
    if (o.step) a.head_all = p.f32(a.rows * head_out, "head rows (all workers)");
}

PlanBytes plan_bytes(const WanModelConfig& cfg, const CudaModelOptions& o) {
    check_options(cfg, o);
    PlanBytes b;
    if (o.step == nullptr) {
        const CudaAttentionStepConfig sc = attention_step_config(cfg, o);
        b.kv = CudaLocalAttentionStep::device_bytes(sc);
        b.kv_pools = PagedKvCache::pool_bytes(paged_config_of(sc));
    }
    DevWeights w;
    Planner pw(nullptr);
    lay_out_weights(pw, cfg, w);
    b.weights = pw.total();
    Activations a;
    Planner pa(nullptr);
    lay_out_activations(pa, cfg, o, a);
    b.activations = pa.total();
    b.prompt = CudaPrompt::bytes_for(cfg);
    return b;
}

}  // namespace lr::wan_cuda
