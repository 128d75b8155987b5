// Wan2.1 causal DiT forward, CPU fp32. Module by module as in Self-Forcing's wan/modules/causal_model.py
// (CausalWanModel._forward_inference, CausalWanAttentionBlock, CausalWanSelfAttention, CausalHead).
#include "runtime/model/wan_model.h"

#include <algorithm>
#include <cmath>
#include <map>

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
        read_finite_f32(ckpt, keys.at(spec.name), t.view);
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

KvCacheConfig WanModel::kv_cache_config(int64_t height, int64_t width, int64_t window_frames, int64_t sink_frames,
                                        int64_t max_frames) const {
    KvCacheConfig c;
    c.num_layers = num_layers();
    c.tokens_per_frame = tokens_per_frame(height, width);
    c.width = dim();
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

    // ---- The forward's plan: the step's (which also decides its share of the tokens) or the cache's.
    KvWrite plan;
    LR_CHECK(!(a.step && a.cache), "forward: an attention step owns its cache (no KvCache with it)");
    if (a.step) {
        AttentionForward af = a.attn;
        af.start_frame = a.start_frame;
        af.num_frames = F;
        af.protect_sink = a.protect_sink;
        plan = a.step->begin(af);
    } else if (a.cache) {
        const KvCacheConfig& cc = a.cache->config();
        LR_CHECK(cc.num_layers == d.num_layers && cc.width == dim && cc.tokens_per_frame == per_frame,
                 "forward: the KV cache is shaped for ", cc.num_layers, " layers, width ", cc.width, ", ",
                 cc.tokens_per_frame, " tokens per frame; this model and latent need ", d.num_layers, ", ", dim, ", ",
                 per_frame);
        plan = a.cache->plan(a.start_frame, F, a.protect_sink);
    }
    // ---- The tokens this forward computes: all of the chunk, or the attention step's share (a sequence-parallel
    // worker, attention_step.h), grouped by frame. The per-token layers run on those rows only.
    const bool subset = a.step != nullptr && a.step->shares_tokens();  // possibly no tokens at all
    const std::vector<int64_t>* share = subset ? &a.step->tokens() : nullptr;
    const int64_t n = subset ? static_cast<int64_t>(share->size()) : L;  // rows of this forward
    const auto token = [&](int64_t i) { return subset ? (*share)[static_cast<size_t>(i)] : i; };
    // Runs of rows of one frame: (first row, rows, frame).
    struct FrameRun {
        int64_t row, rows, frame;
    };
    std::vector<FrameRun> runs;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t f = token(i) / per_frame;
        LR_CHECK(token(i) >= 0 && token(i) < L && (runs.empty() || f >= runs.back().frame),
                 "forward: the attention step's tokens must be chunk tokens grouped by frame");
        if (runs.empty() || runs.back().frame != f)
            runs.push_back({i, 1, f});
        else
            ++runs.back().rows;
    }
    const int64_t ms = 6 * dim;  // stride between frames in mod: [F, 6, dim]
    // y = LN(x) * (1 + scale_f) + shift_f and x += y * gate_f with each row's frame f (shift/scale/gate rows
    // `stride` apart, one per frame).
    const auto modulated_norm = [&](const float* xin, float* yout, const float* shift, const float* scale,
                                    int64_t stride) {
        for (const FrameRun& r : runs)
            run_modulated_norm(xin + r.row * dim, yout + r.row * dim, r.rows, dim, cfg_.eps, shift + r.frame * stride,
                               scale + r.frame * stride, r.rows, stride);
    };
    const auto add_gated_rows = [&](float* xio, const float* yin, const float* gate) {
        for (const FrameRun& r : runs)
            add_gated(xio + r.row * dim, yin + r.row * dim, r.rows, dim, gate ? gate + r.frame * ms : nullptr, r.rows,
                      ms);
    };

    // ---- Patch embedding: Conv3d as a linear map of each patch. x: [n, dim].
    PatchShape ps{a.frames, d.in_dim, a.height, a.width, d.patch[0], d.patch[1], d.patch[2]};
    std::vector<float> patches(static_cast<size_t>(L * ps.patch_size()));
    patchify_cpu({a.x, patches.data(), ps});
    std::vector<float> x(static_cast<size_t>(n * dim));
    if (subset) {
        std::vector<float> mp(static_cast<size_t>(n * ps.patch_size()));
        for (int64_t i = 0; i < n; ++i)
            std::copy_n(patches.data() + token(i) * ps.patch_size(), ps.patch_size(), mp.data() + i * ps.patch_size());
        if (n > 0) run_linear(w_->patch, mp.data(), n, x.data());  // a worker may have no tokens
    } else {
        run_linear(w_->patch, patches.data(), n, x.data());
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

    // ---- Positions (frame, row, col) of the rows. In window-relative mode the frame is the slot.
    const bool relative = (a.cache || a.step) && a.rope == RopePositions::kWindowRelative;
    std::vector<int64_t> pos(static_cast<size_t>(3 * n));
    for (int64_t i = 0; i < n; ++i) {
        const int64_t t = token(i), f = t / per_frame, rc = t % per_frame;
        int64_t* p = pos.data() + 3 * i;
        p[0] = relative ? plan.slot_begin + f : a.start_frame + f;
        p[1] = rc / gw;
        p[2] = rc % gw;
    }
    // Without a cache: block-causal key ranges over the chunk itself.
    std::vector<int64_t> kv_end;
    if (!a.cache && !a.step && a.causal_block_frames > 0) {
        kv_end.resize(static_cast<size_t>(L));
        const int64_t block = a.causal_block_frames * per_frame;
        for (int64_t i = 0; i < L; ++i) kv_end[static_cast<size_t>(i)] = std::min(L, (i / block + 1) * block);
    }
    // Window-relative mode with a KvCache: the cached keys rotated by slot, rebuilt per layer.
    std::vector<float> k_rotated;
    std::vector<int64_t> cache_pos;
    if (relative && a.cache) {
        k_rotated.resize(static_cast<size_t>(plan.slot_end * per_frame * dim));
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

    std::vector<float> h(static_cast<size_t>(n * dim)), q(h.size()), k(h.size()), v(h.size()), o(h.size()), y(h.size()),
        ffn(static_cast<size_t>(n * d.ffn_dim)), mod(static_cast<size_t>(F * 6 * dim));
    for (int64_t l = 0; l < d.num_layers; ++l) {
        const BlockW& b = w_->blocks[static_cast<size_t>(l)];
        const std::string name = dump_ ? str_cat("blocks.", l, ".") : std::string();
        // m = modulation + e0: per frame (shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff)
        for (int64_t f = 0; f < F; ++f) {
            for (int64_t i = 0; i < 6 * dim; ++i)
                mod[static_cast<size_t>(f * ms + i)] = b.modulation[i] + e0[static_cast<size_t>(f * ms + i)];
        }
        const float* m = mod.data();

        // ---- Self-attention on norm1(x) * (1 + scale_sa) + shift_sa; RoPE per token at its explicit position.
        if (n > 0) {
            modulated_norm(x.data(), h.data(), m + 0 * dim, m + 1 * dim, ms);
            run_linear(b.self_q, h.data(), n, q.data());
            run_rms_norm(b.self_norm_q, q.data(), n, dim, cfg_.eps);
            run_linear(b.self_k, h.data(), n, k.data());
            run_rms_norm(b.self_norm_k, k.data(), n, dim, cfg_.eps);
            run_linear(b.self_v, h.data(), n, v.data());
            rope_3d_cpu({q.data(), q.data(), pos.data(), n, heads, hd});
            if (!relative) rope_3d_cpu({k.data(), k.data(), pos.data(), n, heads, hd});
        }
        if (dump_) {
            dump(name + "self_attn.q", q.data(), Shape{n, heads, hd});
            dump(name + "self_attn.k", k.data(), Shape{n, heads, hd});
            dump(name + "self_attn.v", v.data(), Shape{n, heads, hd});
        }
        if (a.step) {
            a.step->attend(l, q.data(), k.data(), v.data(), o.data());
        } else {
            AttentionParams ap;
            ap.q = q.data();
            ap.out = o.data();
            ap.q_len = L;
            ap.heads = heads;
            ap.head_dim = hd;
            if (a.cache) {
                a.cache->write(l, plan, k.data(), v.data());
                ap.kv_len = plan.slot_end * per_frame;
                ap.k = a.cache->keys(l);
                ap.v = a.cache->values(l);
                if (relative) {
                    rope_3d_cpu({ap.k, k_rotated.data(), cache_pos.data(), ap.kv_len, heads, hd});
                    ap.k = k_rotated.data();
                }
            } else {
                ap.kv_len = L;
                ap.k = k.data();
                ap.v = v.data();
                ap.kv_end = kv_end.empty() ? nullptr : kv_end.data();
            }
            attention_cpu(ap);
        }
        if (n > 0) {
            run_linear(b.self_o, o.data(), n, y.data());
            if (dump_) dump(name + "self_attn", y.data(), Shape{n, dim});
            add_gated_rows(x.data(), y.data(), m + 2 * dim);

            // ---- Cross-attention on norm3(x) (affine, no modulation, no gate): all heads.
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
            add_gated_rows(x.data(), y.data(), nullptr);

            // ---- FFN on norm2(x) * (1 + scale_ff) + shift_ff.
            modulated_norm(x.data(), h.data(), m + 3 * dim, m + 4 * dim, ms);
            run_linear(b.ffn0, h.data(), n, ffn.data());
            gelu_tanh_cpu({ffn.data(), ffn.data(), n * d.ffn_dim});
            run_linear(b.ffn2, ffn.data(), n, y.data());
            if (dump_) dump(name + "ffn", y.data(), Shape{n, dim});
            add_gated_rows(x.data(), y.data(), m + 5 * dim);
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
    std::vector<float> rows(static_cast<size_t>(n * head_out));
    if (n > 0) {
        modulated_norm(x.data(), h.data(), hm.data(), hm.data() + dim, 2 * dim);
        run_linear(w_->head, h.data(), n, rows.data());
    }
    // Every worker's rows, in chunk order.
    std::vector<float> all;
    const float* hout = rows.data();
    if (subset) {
        all.resize(static_cast<size_t>(L * head_out));
        a.step->gather(rows.data(), n, head_out, all.data());
        hout = all.data();
    }
    dump("head", hout, Shape{L, head_out});
    PatchShape os{a.frames, d.out_dim, a.height, a.width, d.patch[0], d.patch[1], d.patch[2]};
    unpatchify_cpu({hout, out, os});
}

}  // namespace lr
