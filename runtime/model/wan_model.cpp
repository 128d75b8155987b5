// Wan2.1 causal DiT forward, CPU fp32. Module by module as in Self-Forcing's wan/modules/causal_model.py
// (CausalWanModel._forward_inference, CausalWanAttentionBlock, CausalWanSelfAttention, CausalHead).
#include "runtime/model/wan_model.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "dist/communicator.h"
#include "kernels/attention.h"
#include "kernels/cast.h"
#include "kernels/gelu.h"
#include "kernels/layer_norm.h"
#include "kernels/linear.h"
#include "kernels/patchify.h"
#include "kernels/rms_norm.h"
#include "kernels/rope_3d.h"
#include "kernels/silu.h"
#include "kernels/timestep_embedding.h"
#include "runtime/core/check.h"
#include "runtime/io/json.h"

namespace lr {
namespace {

struct LinearW {
    const float* w = nullptr;  // [out, in]
    const float* b = nullptr;  // [out]
    int64_t out = 0;
    int64_t in = 0;
};

struct BlockW {
    const float* modulation = nullptr;  // [6, dim]
    LinearW self_q, self_k, self_v, self_o;
    const float* self_norm_q = nullptr;
    const float* self_norm_k = nullptr;
    const float* norm3_w = nullptr;
    const float* norm3_b = nullptr;
    LinearW cross_q, cross_k, cross_v, cross_o;
    const float* cross_norm_q = nullptr;
    const float* cross_norm_k = nullptr;
    LinearW ffn0, ffn2;
};

// y[rows, out] = x[rows, in] W^T + b
void run_linear(const LinearW& l, const float* x, int64_t rows, float* y) {
    linear_cpu({x, l.w, l.b, y, rows, l.in, l.out});
}

void run_rms_norm(const float* weight, float* x, int64_t rows, int64_t dim, double eps) {
    RmsNormParams p;
    p.x = x;
    p.y = x;
    p.weight = weight;
    p.rows = rows;
    p.dim = dim;
    p.eps = static_cast<float>(eps);
    rms_norm_cpu(p);
}

// y = LN(x) * (1 + scale_f) + shift_f for the frame f of each row; shift/scale rows are mod_stride apart.
void run_modulated_norm(const float* x, float* y, int64_t rows, int64_t dim, double eps, const float* shift,
                        const float* scale, int64_t rows_per_frame, int64_t mod_stride) {
    LayerNormParams p;
    p.x = x;
    p.y = y;
    p.rows = rows;
    p.dim = dim;
    p.eps = static_cast<float>(eps);
    p.shift = shift;
    p.scale = scale;
    p.rows_per_group = rows_per_frame;
    p.mod_stride = mod_stride;
    layer_norm_cpu(p);
}

// run_modulated_norm over rows that start at token `row0` of the chunk (a token shard): the rows are cut at
// frame boundaries so that each part gets its frame's shift and scale. row0 = 0 is one call, as before.
void run_modulated_norm_at(int64_t row0, const float* x, float* y, int64_t rows, int64_t dim, double eps,
                           const float* shift, const float* scale, int64_t rows_per_frame, int64_t mod_stride) {
    int64_t r = 0;
    const int64_t head = std::min(rows, (rows_per_frame - row0 % rows_per_frame) % rows_per_frame);
    if (head > 0) {  // the partial frame the shard starts in
        const int64_t f = row0 / rows_per_frame;
        run_modulated_norm(x, y, head, dim, eps, shift + f * mod_stride, scale + f * mod_stride, rows_per_frame,
                           mod_stride);
        r = head;
    }
    if (r < rows) {
        const int64_t f = (row0 + r) / rows_per_frame;
        run_modulated_norm(x + r * dim, y + r * dim, rows - r, dim, eps, shift + f * mod_stride, scale + f * mod_stride,
                           rows_per_frame, mod_stride);
    }
}

// x += y * gate_f (gate rows mod_stride apart, one per frame of rows_per_frame rows); gate null: x += y.
// Row r is token row0 + r of the chunk.
void add_gated(float* x, const float* y, int64_t rows, int64_t dim, const float* gate, int64_t rows_per_frame,
               int64_t mod_stride, int64_t row0 = 0) {
    for (int64_t r = 0; r < rows; ++r) {
        float* xr = x + r * dim;
        const float* yr = y + r * dim;
        if (gate) {
            const float* g = gate + ((row0 + r) / rows_per_frame) * mod_stride;
            for (int64_t i = 0; i < dim; ++i) xr[i] += yr[i] * g[i];
        } else {
            for (int64_t i = 0; i < dim; ++i) xr[i] += yr[i];
        }
    }
}

}  // namespace

struct WanModel::Weights {
    std::map<std::string, HostTensor> tensors;  // original name -> F32
    LinearW patch, text0, text2, time0, time2, time_proj, head;
    const float* head_modulation = nullptr;  // [2, dim]
    std::vector<BlockW> blocks;

    const float* get(const std::string& name) const {
        const auto it = tensors.find(name);
        LR_ASSERT(it != tensors.end(), "weight '", name, "' was not loaded");
        return it->second.as<float>();
    }
    LinearW linear(const std::string& prefix) const {
        const HostTensor& w = tensors.at(prefix + ".weight");
        LinearW l;
        l.w = w.as<float>();
        l.b = get(prefix + ".bias");
        l.out = w.view.shape[0];
        l.in = w.view.numel() / l.out;  // the patch embedding's Conv3d weight is [dim, C, pt, ph, pw]
        return l;
    }
    void bind(const WanDims& d) {
        patch = linear("patch_embedding");
        text0 = linear("text_embedding.0");
        text2 = linear("text_embedding.2");
        time0 = linear("time_embedding.0");
        time2 = linear("time_embedding.2");
        time_proj = linear("time_projection.1");
        head = linear("head.head");
        head_modulation = get("head.modulation");
        blocks.resize(static_cast<size_t>(d.num_layers));
        for (int64_t i = 0; i < d.num_layers; ++i) {
            const std::string b = str_cat("blocks.", i, ".");
            BlockW& w = blocks[static_cast<size_t>(i)];
            w.modulation = get(b + "modulation");
            w.self_q = linear(b + "self_attn.q");
            w.self_k = linear(b + "self_attn.k");
            w.self_v = linear(b + "self_attn.v");
            w.self_o = linear(b + "self_attn.o");
            w.self_norm_q = get(b + "self_attn.norm_q.weight");
            w.self_norm_k = get(b + "self_attn.norm_k.weight");
            w.norm3_w = get(b + "norm3.weight");
            w.norm3_b = get(b + "norm3.bias");
            w.cross_q = linear(b + "cross_attn.q");
            w.cross_k = linear(b + "cross_attn.k");
            w.cross_v = linear(b + "cross_attn.v");
            w.cross_o = linear(b + "cross_attn.o");
            w.cross_norm_q = get(b + "cross_attn.norm_q.weight");
            w.cross_norm_k = get(b + "cross_attn.norm_k.weight");
            w.ffn0 = linear(b + "ffn.0");
            w.ffn2 = linear(b + "ffn.2");
        }
    }
};

namespace {

void check_config(const WanModelConfig& cfg) {
    const WanDims& d = cfg.dims;
    LR_CHECK(d.dim > 0 && d.num_heads > 0 && d.num_layers > 0 && d.ffn_dim > 0, "Wan model: dim (", d.dim,
             "), num_heads (", d.num_heads, "), num_layers (", d.num_layers, ") and ffn_dim (", d.ffn_dim,
             ") must be positive");
    LR_CHECK(d.dim % d.num_heads == 0 && (d.dim / d.num_heads) % 2 == 0, "Wan model: dim ", d.dim, " must split into ",
             d.num_heads, " heads of an even size");
    LR_CHECK(d.patch[0] == 1, "Wan model: temporal patch size ", d.patch[0],
             " is not supported (the causal model patches frames one by one: patch_size [1, ph, pw])");
    LR_CHECK(cfg.text_len > 0 && d.freq_dim > 0 && d.freq_dim % 2 == 0, "Wan model: text_len (", cfg.text_len,
             ") must be positive and freq_dim (", d.freq_dim, ") positive and even");
    LR_CHECK(cfg.eps > 0, "Wan model: eps must be positive, found ", cfg.eps);
}

}  // namespace

WanModelConfig wan_model_config_from_metadata(const SafetensorsCheckpoint& ckpt, const WanModelConfig& base,
                                              bool* found) {
    WanModelConfig cfg = base;
    cfg.dims = wan_dims_from_metadata(ckpt, base.dims, found);
    const std::string* text = ckpt.metadata_value("config");
    if (!text) return cfg;
    const std::string where = str_cat(ckpt.path(), ": __metadata__[\"config\"]");
    const json::Value v = json::parse(*text, where);
    if (const json::Value* t = v.find("text_len")) {
        LR_CHECK(t->is_integer() && t->as_int64() > 0 && t->as_int64() <= (1 << 20), where,
                 ": 'text_len' must be a positive integer");
        cfg.text_len = t->as_int64();
    }
    if (const json::Value* e = v.find("eps")) {
        LR_CHECK(e->is_number() && e->as_number() > 0 && e->as_number() < 1, where, ": 'eps' must be in (0, 1)");
        cfg.eps = e->as_number();
    }
    return cfg;
}

WanModel::WanModel(const WanModelConfig& cfg, std::unique_ptr<Weights> w) : cfg_(cfg), w_(std::move(w)) {
    w_->bind(cfg_.dims);
}
WanModel::WanModel(WanModel&&) noexcept = default;
WanModel& WanModel::operator=(WanModel&&) noexcept = default;
WanModel::~WanModel() = default;

WanModel WanModel::from_checkpoint(const SafetensorsCheckpoint& ckpt, const WanModelConfig& cfg) {
    check_config(cfg);
    const std::map<std::string, std::string> keys = resolve_wan_weights(ckpt, cfg.dims);
    auto w = std::make_unique<Weights>();
    for (const WeightSpec& spec : wan_weight_specs(cfg.dims)) {
        HostTensor t(DType::kF32, spec.shape);
        cast(ckpt.view(keys.at(spec.name)), t.view);
        w->tensors.emplace(spec.name, std::move(t));
    }
    return WanModel(cfg, std::move(w));
}

WanModel WanModel::from_weights(std::vector<std::pair<std::string, HostTensor>> weights, const WanModelConfig& cfg) {
    check_config(cfg);
    auto w = std::make_unique<Weights>();
    for (auto& [name, t] : weights) {
        LR_CHECK(t.view.dtype == DType::kF32, "weight '", name, "' has dtype ", dtype_name(t.view.dtype),
                 ", expected F32");
        w->tensors.emplace(name, std::move(t));
    }
    for (const WeightSpec& spec : wan_weight_specs(cfg.dims)) {
        const auto it = w->tensors.find(spec.name);
        LR_CHECK(it != w->tensors.end(), "missing weight '", spec.name, "' (expected shape ", spec.shape.str(), ")");
        LR_CHECK(it->second.view.shape == spec.shape, "weight '", spec.name, "' has shape ",
                 it->second.view.shape.str(), ", expected ", spec.shape.str());
    }
    return WanModel(cfg, std::move(w));
}

int64_t WanModel::tokens_per_frame(int64_t height, int64_t width) const {
    return (height / cfg_.dims.patch[1]) * (width / cfg_.dims.patch[2]);
}

int64_t WanModel::spatial_tokens_per_frame(int64_t height, int64_t width, const SpatialShard& sp) const {
    const int64_t per_frame = tokens_per_frame(height, width);
    if (sp.size == 1 && sp.rank == 0) return per_frame;
    LR_CHECK(sp.block_size > 0, "spatial sharding: block_size must be positive, found ", sp.block_size);
    const int64_t blocks = (per_frame + sp.block_size - 1) / sp.block_size;
    LR_CHECK(sp.size >= 1 && sp.rank >= 0 && sp.rank < sp.size && sp.size <= blocks, "spatial sharding: rank ", sp.rank,
             " of ", sp.size, " cannot own blocks of a frame of ", per_frame, " tokens in ", blocks, " blocks of ",
             sp.block_size);
    int64_t n = 0;
    for (int64_t b = sp.rank; b < blocks; b += sp.size) n += std::min(sp.block_size, per_frame - b * sp.block_size);
    return n;
}

KvCacheConfig WanModel::kv_cache_config(int64_t height, int64_t width, int64_t window_frames, int64_t sink_frames,
                                        int64_t max_frames, int head_shards, const SpatialShard& spatial) const {
    LR_CHECK(head_shards >= 1 && num_heads() % head_shards == 0, "KV cache: ", num_heads(),
             " heads cannot be split over ", head_shards, " ranks");
    KvCacheConfig c;
    c.num_layers = num_layers();
    c.tokens_per_frame = spatial_tokens_per_frame(height, width, spatial);
    c.width = dim() / head_shards;
    c.window_frames = window_frames;
    c.sink_frames = sink_frames;
    c.max_frames = max_frames;
    return c;
}

const HostTensor& WanModel::weight(const std::string& name) const {
    const auto it = w_->tensors.find(name);
    LR_CHECK(it != w_->tensors.end(), "Wan model: no weight '", name, "'");
    return it->second;
}

void WanModel::dump(const std::string& name, const float* data, const Shape& shape) const {
    if (dump_) dump_(name, data, shape);
}

WanPrompt WanModel::encode_prompt(const TensorView& context) const {
    const WanDims& d = cfg_.dims;
    LR_CHECK(context.ndim() == 2 && context.size(0) >= 1 && context.size(0) <= cfg_.text_len &&
                 context.size(1) == d.text_dim,
             "prompt embedding has shape ", context.shape.str(), ", expected [L, ", d.text_dim,
             "] with 1 <= L <= ", cfg_.text_len);
    const int64_t len = cfg_.text_len;
    // Zero-padded to text_len before the text embedding, as the reference does: after text_embedding's biases
    // the padding rows are not zero, and cross-attention attends to all of them.
    HostTensor ctx(DType::kF32, Shape{len, d.text_dim});
    std::fill(ctx.as<float>(), ctx.as<float>() + ctx.view.numel(), 0.0f);
    cast(context, ctx.view.slice0(0, context.size(0)));
    std::vector<float> hidden(static_cast<size_t>(len * d.dim));
    HostTensor text(DType::kF32, Shape{len, d.dim});
    run_linear(w_->text0, ctx.as<float>(), len, hidden.data());
    gelu_tanh_cpu({hidden.data(), hidden.data(), len * d.dim});
    run_linear(w_->text2, hidden.data(), len, text.as<float>());
    dump("text_embedding", text.as<float>(), text.view.shape);

    WanPrompt p;
    p.text_len = len;
    for (int64_t l = 0; l < d.num_layers; ++l) {
        const BlockW& b = w_->blocks[static_cast<size_t>(l)];
        HostTensor k(DType::kF32, Shape{len, d.dim});
        HostTensor v(DType::kF32, Shape{len, d.dim});
        run_linear(b.cross_k, text.as<float>(), len, k.as<float>());
        run_rms_norm(b.cross_norm_k, k.as<float>(), len, d.dim, cfg_.eps);
        run_linear(b.cross_v, text.as<float>(), len, v.as<float>());
        p.k.push_back(std::move(k));
        p.v.push_back(std::move(v));
    }
    return p;
}

void WanModel::forward(const WanForwardArgs& a, float* out) const {
    const WanDims& d = cfg_.dims;
    const int64_t dim = d.dim, heads = d.num_heads, hd = dim / heads;
    LR_CHECK(a.frames > 0 && a.height % d.patch[1] == 0 && a.width % d.patch[2] == 0 && a.height > 0 && a.width > 0,
             "forward: latent [", a.frames, ", ", d.in_dim, ", ", a.height, ", ", a.width,
             "] is not a whole number of patches (", d.patch[1], "x", d.patch[2], ")");
    LR_CHECK(a.prompt != nullptr && a.prompt->text_len == cfg_.text_len &&
                 static_cast<int64_t>(a.prompt->k.size()) == d.num_layers,
             "forward: no prompt prepared for this model");
    const int64_t gh = a.height / d.patch[1], gw = a.width / d.patch[2];
    const int64_t per_frame = gh * gw;       // tokens per latent frame
    const int64_t L = a.frames * per_frame;  // tokens of the chunk, order (frame, row, col)
    const int64_t F = a.frames;

    // ---- Sharding (DESIGN.md section 7) over a sequence-parallel group of U x S ranks. Spatial rank s owns the
    // blocks b % S == s of every frame; blocks_of[p]: (first token in the frame, tokens) of rank p's blocks,
    // rpf_of[p]: its tokens per frame. Its tokens of the chunk, ordered (frame, block, token), are its "s-list"
    // (ns = F * rpf tokens; s_tok maps them to chunk tokens; without spatial sharding the s-list is the chunk).
    // Ulysses rank u owns the contiguous shard [t0, t0 + n) of the s-list (Ls = ceil(ns / U) per rank, the last
    // ones shorter or empty) and, for self-attention, the heads [u * lh, (u + 1) * lh) of the whole s-list.
    const AttentionShard& sh = a.shard;
    const int64_t U = sh.size;
    LR_CHECK(U >= 1 && sh.rank >= 0 && sh.rank < U && heads % U == 0, "forward: head sharding rank ", sh.rank, " of ",
             U, " does not split ", heads, " heads");
    const bool sharded = U > 1;
    LR_CHECK(!sharded || (sh.comm != nullptr && sh.comm->size() == U && sh.comm->rank() == sh.rank),
             "forward: head sharding over ", U, " ranks needs a communicator of that size with this rank");
    const SpatialShard& sp = a.spatial;
    const int64_t S = sp.size;
    LR_CHECK(S >= 1 && sp.rank >= 0 && sp.rank < S, "forward: spatial rank ", sp.rank, " of ", S);
    const bool spatial = S > 1;
    LR_CHECK(!spatial || (sp.comm != nullptr && sp.comm->size() == S && sp.comm->rank() == sp.rank),
             "forward: spatial sharding over ", S, " ranks needs a communicator of that size with this rank");
    std::vector<std::vector<std::pair<int64_t, int64_t>>> blocks_of(static_cast<size_t>(S));
    std::vector<int64_t> rpf_of(static_cast<size_t>(S), 0);
    int64_t max_rpf = 0;
    std::vector<int64_t> s_tok;  // chunk token of each s-list entry (spatial only)
    if (spatial) {
        LR_CHECK(sp.block_size > 0, "forward: spatial block_size must be positive, found ", sp.block_size);
        const int64_t nb = (per_frame + sp.block_size - 1) / sp.block_size;
        LR_CHECK(S <= nb, "forward: ", S, " spatial ranks but a frame of ", per_frame, " tokens has only ", nb,
                 " blocks of ", sp.block_size);
        for (int64_t bk = 0; bk < nb; ++bk) {
            const int64_t start = bk * sp.block_size, len = std::min(sp.block_size, per_frame - start);
            blocks_of[static_cast<size_t>(bk % S)].push_back({start, len});
            rpf_of[static_cast<size_t>(bk % S)] += len;
        }
        for (int64_t r : rpf_of) max_rpf = std::max(max_rpf, r);
        for (int64_t f = 0; f < F; ++f)
            for (const auto& [start, len] : blocks_of[static_cast<size_t>(sp.rank)])
                for (int64_t i = 0; i < len; ++i) s_tok.push_back(f * per_frame + start + i);
    }
    const int64_t rpf = spatial ? rpf_of[static_cast<size_t>(sp.rank)] : per_frame;  // s-list tokens per frame
    const int64_t ns = F * rpf;                                                      // s-list tokens
    const int64_t Ls = sharded ? (ns + U - 1) / U : ns;  // tokens per Ulysses shard (the last ones padded)
    const int64_t t0 = std::min(ns, sh.rank * Ls);       // this rank's shard of the s-list: [t0, t0 + n)
    const int64_t n = std::min(ns, t0 + Ls) - t0;        // tokens of this rank (may be 0)
    const int64_t lh = heads / U;                        // heads of this rank
    const int64_t w = lh * hd;                           // their width
    const auto chunk_token = [&](int64_t i) { return spatial ? s_tok[static_cast<size_t>(i)] : i; };  // s-list i

    // ---- Patch embedding: Conv3d as a linear map of each patch. x: [n, dim], the rank's tokens.
    PatchShape ps{a.frames, d.in_dim, a.height, a.width, d.patch[0], d.patch[1], d.patch[2]};
    std::vector<float> patches(static_cast<size_t>(L * ps.patch_size()));
    patchify_cpu({a.x, patches.data(), ps});
    std::vector<float> x(static_cast<size_t>(n * dim));
    if (spatial) {
        std::vector<float> mp(static_cast<size_t>(n * ps.patch_size()));
        for (int64_t i = 0; i < n; ++i)
            std::copy_n(patches.data() + chunk_token(t0 + i) * ps.patch_size(), ps.patch_size(),
                        mp.data() + i * ps.patch_size());
        run_linear(w_->patch, mp.data(), n, x.data());
    } else if (n > 0) {
        run_linear(w_->patch, patches.data() + t0 * ps.patch_size(), n, x.data());
    }
    dump("patch_embedding", x.data(), Shape{n, dim});

    // ---- Time: e = time_embedding(sinusoid(t)) [F, dim]; e0 = time_projection(silu(e)) [F, 6, dim].
    std::vector<float> sinusoid(static_cast<size_t>(F * d.freq_dim));
    timestep_embedding_cpu({a.t, sinusoid.data(), F, d.freq_dim});
    std::vector<float> tmp(static_cast<size_t>(F * dim));
    std::vector<float> e(static_cast<size_t>(F * dim));
    run_linear(w_->time0, sinusoid.data(), F, tmp.data());
    silu_cpu({tmp.data(), tmp.data(), F * dim});
    run_linear(w_->time2, tmp.data(), F, e.data());
    dump("time_embedding", e.data(), Shape{F, dim});
    std::vector<float> e0(static_cast<size_t>(F * 6 * dim));
    silu_cpu({e.data(), tmp.data(), F * dim});
    run_linear(w_->time_proj, tmp.data(), F, e0.data());
    dump("time_projection", e0.data(), Shape{F, 6, dim});

    // ---- Positions (frame, row, col) of the chunk's tokens. In window-relative mode the frame is the slot.
    KvWrite plan;
    LR_CHECK(!(a.step && (a.cache || sharded || spatial)), "forward: an attention step runs one rank's attention ",
             "over its own cache (no KvCache, no Ulysses or spatial shard)");
    if (a.step) {
        AttentionForward af = a.attn;
        af.start_frame = a.start_frame;
        af.num_frames = F;
        af.protect_sink = a.protect_sink;
        plan = a.step->begin(af);
    } else if (a.cache) {
        const KvCacheConfig& cc = a.cache->config();
        LR_CHECK(cc.num_layers == d.num_layers && cc.width == w && cc.tokens_per_frame == rpf,
                 "forward: the KV cache is shaped for ", cc.num_layers, " layers, width ", cc.width, ", ",
                 cc.tokens_per_frame, " tokens per frame; this model, latent and shard need ", d.num_layers, ", ", w,
                 ", ", rpf);
        plan = a.cache->plan(a.start_frame, F, a.protect_sink);
    }
    const bool relative = (a.cache || a.step) && a.rope == RopePositions::kWindowRelative;
    std::vector<int64_t> pos(static_cast<size_t>(3 * L));
    for (int64_t f = 0; f < F; ++f) {
        for (int64_t r = 0; r < gh; ++r) {
            for (int64_t c = 0; c < gw; ++c) {
                int64_t* p = pos.data() + 3 * ((f * gh + r) * gw + c);
                p[0] = relative ? plan.slot_begin + f : a.start_frame + f;
                p[1] = r;
                p[2] = c;
            }
        }
    }
    std::vector<int64_t> my_pos_v;
    if (spatial) {
        my_pos_v.resize(static_cast<size_t>(3 * n));
        for (int64_t i = 0; i < n; ++i) std::copy_n(pos.data() + 3 * chunk_token(t0 + i), 3, my_pos_v.data() + 3 * i);
    }
    const int64_t* my_pos = spatial ? my_pos_v.data() : pos.data() + 3 * t0;
    // Without a cache: block-causal key ranges over the chunk itself, per query of the s-list.
    std::vector<int64_t> kv_end;
    if (!a.cache && a.causal_block_frames > 0) {
        kv_end.resize(static_cast<size_t>(ns));
        const int64_t block = a.causal_block_frames * per_frame;
        for (int64_t i = 0; i < ns; ++i)
            kv_end[static_cast<size_t>(i)] = std::min(L, (chunk_token(i) / block + 1) * block);
    }
    // Spatial: the other spatial ranks' K/V (of this rank's heads) of every key frame (the cache's slots, or the
    // chunk without a cache), received with one grouped send_recv per layer, and the full key set in the 1-rank
    // token order.
    const int64_t key_frames = a.cache ? plan.slot_end : F;
    std::vector<std::vector<float>> rk(static_cast<size_t>(S)), rv(static_cast<size_t>(S));
    std::vector<float> full_k, full_v;
    if (spatial) {
        for (int64_t p = 0; p < S; ++p) {
            if (p == sp.rank) continue;
            rk[static_cast<size_t>(p)].resize(static_cast<size_t>(key_frames * rpf_of[static_cast<size_t>(p)] * w));
            rv[static_cast<size_t>(p)].resize(rk[static_cast<size_t>(p)].size());
        }
        full_k.resize(static_cast<size_t>(key_frames * per_frame * w));
        full_v.resize(full_k.size());
    }
    // my_k, my_v: [key_frames * rpf, w], this rank's blocks of the key frames.
    const auto gather_keys = [&](const float* my_k, const float* my_v) {
        std::vector<SendSpec> sends;
        std::vector<RecvSpec> recvs;
        const size_t my_bytes = static_cast<size_t>(key_frames * rpf * w) * sizeof(float);
        for (int64_t p = 0; p < S; ++p) {
            if (p == sp.rank) continue;
            const int peer = static_cast<int>(p);
            sends.push_back({peer, my_k, my_bytes});
            sends.push_back({peer, my_v, my_bytes});
            const size_t bytes = rk[static_cast<size_t>(p)].size() * sizeof(float);
            recvs.push_back({peer, rk[static_cast<size_t>(p)].data(), bytes});
            recvs.push_back({peer, rv[static_cast<size_t>(p)].data(), bytes});
        }
        sp.comm->send_recv(sends, recvs);
        for (int64_t p = 0; p < S; ++p) {
            const float* pk = p == sp.rank ? my_k : rk[static_cast<size_t>(p)].data();
            const float* pv = p == sp.rank ? my_v : rv[static_cast<size_t>(p)].data();
            const int64_t prpf = rpf_of[static_cast<size_t>(p)];
            for (int64_t s = 0; s < key_frames; ++s) {
                int64_t off = 0;
                for (const auto& [start, len] : blocks_of[static_cast<size_t>(p)]) {
                    const int64_t src = (s * prpf + off) * w, dst = (s * per_frame + start) * w;
                    std::copy_n(pk + src, len * w, full_k.data() + dst);
                    std::copy_n(pv + src, len * w, full_v.data() + dst);
                    off += len;
                }
            }
        }
    };
    // Window-relative mode: the cached keys rotated by slot, rebuilt per layer.
    std::vector<float> k_rotated;
    std::vector<int64_t> cache_pos;
    if (relative) {
        k_rotated.resize(static_cast<size_t>(plan.slot_end * per_frame * w));
        cache_pos.resize(static_cast<size_t>(3 * plan.slot_end * per_frame));
        for (int64_t s = 0; s < plan.slot_end; ++s) {
            for (int64_t i = 0; i < per_frame; ++i) {
                int64_t* p = cache_pos.data() + 3 * (s * per_frame + i);
                p[0] = s;
                p[1] = i / gw;
                p[2] = i % gw;
            }
        }
    }

    // Token-shard buffers [n, dim]; with Ulysses also the head-shard q/k/v/o [ns, w] and the exchange buffers.
    std::vector<float> h(static_cast<size_t>(n * dim)), q(h.size()), k(h.size()), v(h.size()), o(h.size()), y(h.size()),
        ffn(static_cast<size_t>(n * d.ffn_dim)), mod(static_cast<size_t>(F * 6 * dim));
    std::vector<float> qh, kh, vh, oh, send, recv;
    if (sharded) {
        qh.resize(static_cast<size_t>(ns * w));
        kh.resize(qh.size());
        vh.resize(qh.size());
        oh.resize(qh.size());
        send.resize(static_cast<size_t>(U * 3 * Ls * w));
        recv.resize(send.size());
    }
    // Token shards -> head shards: block p of the all-to-all carries this rank's q/k/v rows of p's heads; the
    // result is the whole s-list of this rank's heads.
    const auto to_heads = [&]() {
        const float* src[3] = {q.data(), k.data(), v.data()};
        float* dst[3] = {qh.data(), kh.data(), vh.data()};
        std::fill(send.begin(), send.end(), 0.0f);
        for (int64_t p = 0; p < U; ++p)
            for (int64_t j = 0; j < 3; ++j)
                for (int64_t t = 0; t < n; ++t)
                    std::copy_n(src[j] + t * dim + p * w, w, send.data() + ((p * 3 + j) * Ls + t) * w);
        sh.comm->all_to_all(send.data(), recv.data(), static_cast<size_t>(3 * Ls * w) * sizeof(float));
        for (int64_t p = 0; p < U; ++p)
            for (int64_t j = 0; j < 3; ++j)
                for (int64_t t = 0; t < Ls && p * Ls + t < ns; ++t)
                    std::copy_n(recv.data() + ((p * 3 + j) * Ls + t) * w, w, dst[j] + (p * Ls + t) * w);
    };
    // Head shards -> token shards: block p carries rank p's tokens of this rank's heads.
    const auto to_tokens = [&]() {
        std::fill(send.begin(), send.begin() + U * Ls * w, 0.0f);
        for (int64_t p = 0; p < U; ++p)
            for (int64_t t = 0; t < Ls && p * Ls + t < ns; ++t)
                std::copy_n(oh.data() + (p * Ls + t) * w, w, send.data() + (p * Ls + t) * w);
        sh.comm->all_to_all(send.data(), recv.data(), static_cast<size_t>(Ls * w) * sizeof(float));
        for (int64_t p = 0; p < U; ++p)
            for (int64_t t = 0; t < n; ++t) std::copy_n(recv.data() + (p * Ls + t) * w, w, o.data() + t * dim + p * w);
    };

    const int64_t ms = 6 * dim;  // stride between frames in mod: [F, 6, dim]
    for (int64_t l = 0; l < d.num_layers; ++l) {
        const BlockW& b = w_->blocks[static_cast<size_t>(l)];
        const std::string name = dump_ ? str_cat("blocks.", l, ".") : std::string();
        // m = modulation + e0: per frame (shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff)
        for (int64_t f = 0; f < F; ++f) {
            for (int64_t i = 0; i < 6 * dim; ++i)
                mod[static_cast<size_t>(f * ms + i)] = b.modulation[i] + e0[static_cast<size_t>(f * ms + i)];
        }
        const float* m = mod.data();

        // ---- Self-attention on norm1(x) * (1 + scale_sa) + shift_sa. q/k/v of the rank's tokens, full width
        // (RMSNorm is over the whole dim), RoPE per token at its explicit position.
        if (n > 0) {
            run_modulated_norm_at(t0, x.data(), h.data(), n, dim, cfg_.eps, m + 0 * dim, m + 1 * dim, rpf, ms);
            run_linear(b.self_q, h.data(), n, q.data());
            run_rms_norm(b.self_norm_q, q.data(), n, dim, cfg_.eps);
            run_linear(b.self_k, h.data(), n, k.data());
            run_rms_norm(b.self_norm_k, k.data(), n, dim, cfg_.eps);
            run_linear(b.self_v, h.data(), n, v.data());
            rope_3d_cpu({q.data(), q.data(), my_pos, n, heads, hd});
            if (!relative) rope_3d_cpu({k.data(), k.data(), my_pos, n, heads, hd});
        }
        if (sharded) to_heads();  // now the whole s-list (ns tokens) of this rank's lh heads
        float* aq = sharded ? qh.data() : q.data();
        float* ak = sharded ? kh.data() : k.data();
        float* av = sharded ? vh.data() : v.data();
        float* ao = sharded ? oh.data() : o.data();
        if (dump_) {
            dump(name + "self_attn.q", aq, Shape{ns, lh, hd});
            dump(name + "self_attn.k", ak, Shape{ns, lh, hd});
            dump(name + "self_attn.v", av, Shape{ns, lh, hd});
        }
        if (a.step) {
            a.step->attend(l, aq, ak, av, ao);
        } else {
            AttentionParams ap;
            ap.q = aq;
            ap.out = ao;
            ap.q_len = ns;
            ap.heads = lh;
            ap.head_dim = hd;
            if (a.cache) {
                a.cache->write(l, plan, ak, av);
                ap.kv_len = plan.slot_end * per_frame;
                ap.k = a.cache->keys(l);
                ap.v = a.cache->values(l);
                if (spatial) {
                    gather_keys(a.cache->keys(l), a.cache->values(l));
                    ap.k = full_k.data();
                    ap.v = full_v.data();
                }
                if (relative) {
                    rope_3d_cpu({ap.k, k_rotated.data(), cache_pos.data(), ap.kv_len, lh, hd});
                    ap.k = k_rotated.data();
                }
            } else if (spatial) {
                gather_keys(ak, av);
                ap.kv_len = L;
                ap.k = full_k.data();
                ap.v = full_v.data();
                ap.kv_end = kv_end.empty() ? nullptr : kv_end.data();
            } else {
                ap.kv_len = L;
                ap.k = ak;
                ap.v = av;
                ap.kv_end = kv_end.empty() ? nullptr : kv_end.data();
            }
            attention_cpu(ap);
        }
        if (sharded) to_tokens();  // back to the rank's tokens, all heads
        if (n > 0) {
            run_linear(b.self_o, o.data(), n, y.data());
            if (dump_) dump(name + "self_attn", y.data(), Shape{n, dim});
            add_gated(x.data(), y.data(), n, dim, m + 2 * dim, rpf, ms, t0);

            // ---- Cross-attention on norm3(x) (affine, no modulation, no gate): the rank's tokens, all heads.
            LayerNormParams n3;
            n3.x = x.data();
            n3.y = h.data();
            n3.rows = n;
            n3.dim = dim;
            n3.eps = static_cast<float>(cfg_.eps);
            n3.weight = b.norm3_w;
            n3.bias = b.norm3_b;
            layer_norm_cpu(n3);
            run_linear(b.cross_q, h.data(), n, q.data());
            run_rms_norm(b.cross_norm_q, q.data(), n, dim, cfg_.eps);
            AttentionParams cp;
            cp.q = q.data();
            cp.k = a.prompt->k[static_cast<size_t>(l)].as<float>();
            cp.v = a.prompt->v[static_cast<size_t>(l)].as<float>();
            cp.out = o.data();
            cp.q_len = n;
            cp.kv_len = a.prompt->text_len;
            cp.heads = heads;
            cp.head_dim = hd;
            attention_cpu(cp);
            run_linear(b.cross_o, o.data(), n, y.data());
            if (dump_) dump(name + "cross_attn", y.data(), Shape{n, dim});
            add_gated(x.data(), y.data(), n, dim, nullptr, rpf, ms, t0);

            // ---- FFN on norm2(x) * (1 + scale_ff) + shift_ff.
            run_modulated_norm_at(t0, x.data(), h.data(), n, dim, cfg_.eps, m + 3 * dim, m + 4 * dim, rpf, ms);
            run_linear(b.ffn0, h.data(), n, ffn.data());
            gelu_tanh_cpu({ffn.data(), ffn.data(), n * d.ffn_dim});
            run_linear(b.ffn2, ffn.data(), n, y.data());
            if (dump_) dump(name + "ffn", y.data(), Shape{n, dim});
            add_gated(x.data(), y.data(), n, dim, m + 5 * dim, rpf, ms, t0);
        }
        if (dump_) dump(str_cat("blocks.", l), x.data(), Shape{n, dim});
    }
    if (a.step) a.step->end();
    if (a.cache) a.cache->commit(plan);

    // ---- Head: (head.modulation + e) per frame (shift, scale) -- e, not the projected e0.
    std::vector<float> hm(static_cast<size_t>(F * 2 * dim));
    for (int64_t f = 0; f < F; ++f) {
        for (int64_t j = 0; j < 2; ++j) {
            for (int64_t i = 0; i < dim; ++i) {
                hm[static_cast<size_t>((f * 2 + j) * dim + i)] =
                    w_->head_modulation[j * dim + i] + e[static_cast<size_t>(f * dim + i)];
            }
        }
    }
    const int64_t head_out = w_->head.out;  // pt * ph * pw * out_dim, ordered (kt, kh, kw, c)
    // The rank's rows [n, head_out], all-gathered in two steps so that every rank returns the whole chunk: over
    // the Ulysses ranks into the s-list (each shard padded to Ls rows: rank p's starts at s-list token p * Ls),
    // then over the spatial ranks (each s-list padded to F * max_rpf rows) and put back at their chunk tokens.
    const int64_t slist_rows = std::max(U * Ls, spatial ? F * max_rpf : 0);  // >= ns
    std::vector<float> slist(static_cast<size_t>(slist_rows * head_out), 0.0f);
    std::vector<float> mine(static_cast<size_t>((sharded ? Ls : 0) * head_out), 0.0f);
    if (n > 0) {
        run_modulated_norm_at(t0, x.data(), h.data(), n, dim, cfg_.eps, hm.data(), hm.data() + dim, rpf, 2 * dim);
        run_linear(w_->head, h.data(), n, sharded ? mine.data() : slist.data());
    }
    if (sharded) sh.comm->all_gather(mine.data(), slist.data(), static_cast<size_t>(Ls * head_out) * sizeof(float));
    const float* hout = slist.data();  // [L, head_out] in chunk order
    std::vector<float> chunk_rows;
    if (spatial) {
        const int64_t rows = F * max_rpf;
        std::vector<float> all(static_cast<size_t>(S * rows * head_out));
        sp.comm->all_gather(slist.data(), all.data(), static_cast<size_t>(rows * head_out) * sizeof(float));
        chunk_rows.resize(static_cast<size_t>(L * head_out));
        for (int64_t p = 0; p < S; ++p) {
            int64_t row = p * rows;
            for (int64_t f = 0; f < F; ++f)
                for (const auto& [start, len] : blocks_of[static_cast<size_t>(p)]) {
                    std::copy_n(all.data() + row * head_out, len * head_out,
                                chunk_rows.data() + (f * per_frame + start) * head_out);
                    row += len;
                }
        }
        hout = chunk_rows.data();
    }
    dump("head", hout, Shape{L, head_out});
    PatchShape os{a.frames, d.out_dim, a.height, a.width, d.patch[0], d.patch[1], d.patch[2]};
    unpatchify_cpu({hout, out, os});
}

}  // namespace lr
