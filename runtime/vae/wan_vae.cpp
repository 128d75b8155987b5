// Wan2.1 VAE decode, CPU fp32, following Self-Forcing's wan/modules/vae.py (WanVAE_.decode, Decoder3d,
// ResidualBlock, AttentionBlock, Resample, RMS_norm, CausalConv3d) and utils/wan_wrapper.py (WanVAEWrapper).
// Activations are channels-last frames [height, width, channels], so that every conv is an im2col GEMM, every
// RMS_norm a row norm and the attention a [pixels, channels] sequence.
#include "runtime/vae/wan_vae.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <tuple>

#include "dist/communicator.h"
#include "kernels/attention.h"
#include "kernels/conv3d.h"
#include "kernels/l2_norm.h"
#include "kernels/upsample_nearest.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

struct ConvW {
    const float* w = nullptr;  // [kt, kh, kw, in, out]
    const float* b = nullptr;  // [out]
    int64_t in = 0, out = 0, kt = 1, kh = 1, kw = 1;
};

// One block of wan_vae_decoder_blocks, bound to its weights and to its slots in the stream state.
struct BlockW {
    VaeBlockKind kind = VaeBlockKind::kResidual;
    int level = 0;  // resolution level of the block's input: latent size * 2^level
    int64_t in = 0, out = 0;
    const float* gamma1 = nullptr;  // residual: residual.0; attention: norm
    const float* gamma2 = nullptr;  // residual: residual.3
    ConvW conv1, conv2;             // residual: residual.2 / residual.6; attention: to_qkv / proj; resample: resample.1
    ConvW shortcut;                 // residual with in != out
    ConvW time_conv;                // upsample3d
    int hist1 = -1, hist2 = -1;     // causal caches: residual conv1 / conv2, upsample3d time_conv (hist1)
    int resample = -1;              // ordinal among the resamples
    std::string dump;               // name passed to the dump hook after the block, or empty
};

// Channels each per-level workspace must hold (pixels of the level times these).
struct LevelPlan {
    int64_t x = 0;   // the running activation
    int64_t a = 0;   // norm outputs, shortcut, attention output, upsampled input
    int64_t b = 0;   // conv outputs inside a block, qkv, the RGB head
    int64_t tc = 0;  // the time conv's output (2 frames side by side in channels)
};

}  // namespace

struct WanVaeDecoder::Weights {
    std::map<std::string, HostTensor> tensors;  // original name -> F32; conv weights [kt, kh, kw, in, out]
    ConvW conv2, conv1, head_conv;
    const float* head_gamma = nullptr;
    std::vector<BlockW> blocks;
    std::vector<LevelPlan> levels;
    std::vector<int64_t> hist_level;  // level of each causal cache
    std::vector<float> inv_std;       // 1 / std in fp32, as WanVAEWrapper passes it
    int hist_conv1 = -1, hist_head = -1;
    int resamples = 0;

    const float* get(const std::string& name) const {
        const auto it = tensors.find(name);
        LR_ASSERT(it != tensors.end(), "VAE weight '", name, "' was not loaded");
        return it->second.as<float>();
    }
    ConvW conv(const std::string& prefix, int64_t in, int64_t out, int64_t kt, int64_t kh, int64_t kw) const {
        return ConvW{get(prefix + ".weight"), get(prefix + ".bias"), in, out, kt, kh, kw};
    }
    int new_hist(int level) {
        hist_level.push_back(level);
        return static_cast<int>(hist_level.size()) - 1;
    }

    void bind(const WanVaeConfig& cfg) {
        const int64_t d0 = cfg.dims()[0];
        conv2 = conv("conv2", cfg.z_dim, cfg.z_dim, 1, 1, 1);
        conv1 = conv("decoder.conv1", cfg.z_dim, d0, 3, 3, 3);
        hist_conv1 = new_hist(0);
        levels.assign(1, LevelPlan{});
        auto need = [&](int level, int64_t LevelPlan::*buf, int64_t ch) {
            if (static_cast<size_t>(level) >= levels.size()) levels.resize(static_cast<size_t>(level) + 1);
            levels[static_cast<size_t>(level)].*buf = std::max(levels[static_cast<size_t>(level)].*buf, ch);
        };
        need(0, &LevelPlan::a, cfg.z_dim);  // the de-normalised latent
        need(0, &LevelPlan::b, cfg.z_dim);  // conv2's output
        need(0, &LevelPlan::x, d0);         // conv1's output
        int level = 0;
        int64_t last = d0;
        for (const VaeBlock& v : wan_vae_decoder_blocks(cfg)) {
            BlockW b;
            b.kind = v.kind;
            b.level = level;
            b.in = v.in_ch;
            b.out = v.out_ch;
            const std::string& p = v.prefix;
            switch (v.kind) {
                case VaeBlockKind::kResidual:
                    b.gamma1 = get(p + ".residual.0.gamma");
                    b.conv1 = conv(p + ".residual.2", b.in, b.out, 3, 3, 3);
                    b.gamma2 = get(p + ".residual.3.gamma");
                    b.conv2 = conv(p + ".residual.6", b.out, b.out, 3, 3, 3);
                    if (b.in != b.out) b.shortcut = conv(p + ".shortcut", b.in, b.out, 1, 1, 1);
                    b.hist1 = new_hist(level);
                    b.hist2 = new_hist(level);
                    need(level, &LevelPlan::x, std::max(b.in, b.out));
                    need(level, &LevelPlan::a, std::max(b.in, b.out));
                    need(level, &LevelPlan::b, b.out);
                    if (p == "decoder.middle.2") b.dump = "middle";
                    break;
                case VaeBlockKind::kAttention:
                    b.gamma1 = get(p + ".norm.gamma");
                    b.conv1 = conv(p + ".to_qkv", b.in, 3 * b.in, 1, 1, 1);
                    b.conv2 = conv(p + ".proj", b.in, b.in, 1, 1, 1);
                    need(level, &LevelPlan::x, b.in);
                    need(level, &LevelPlan::a, b.in);
                    need(level, &LevelPlan::b, 3 * b.in);
                    break;
                case VaeBlockKind::kUpsample3d:
                    b.time_conv = conv(p + ".time_conv", b.in, 2 * b.in, 3, 1, 1);
                    b.hist1 = new_hist(level);
                    need(level, &LevelPlan::tc, 2 * b.in);
                    [[fallthrough]];
                case VaeBlockKind::kUpsample2d:
                    b.conv1 = conv(p + ".resample.1", b.in, b.out, 1, 3, 3);
                    b.resample = resamples++;
                    b.dump = str_cat("upsample", b.resample);
                    ++level;
                    need(level, &LevelPlan::a, b.in);  // the upsampled frame, before the conv
                    need(level, &LevelPlan::x, b.out);
                    break;
            }
            last = b.out;
            blocks.push_back(std::move(b));
        }
        head_gamma = get("decoder.head.0.gamma");
        head_conv = conv("decoder.head.2", last, 3, 3, 3, 3);
        hist_head = new_hist(level);
        need(level, &LevelPlan::a, last);
        need(level, &LevelPlan::b, 3);
        for (float s : cfg.latents_std) inv_std.push_back(1.0f / s);
    }
};

namespace {

bool is_conv_weight(const std::string& name, const Shape& s) {
    return (s.ndim == 4 || s.ndim == 5) && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
}

// A PyTorch-layout F32 tensor as the decoder stores it: conv weights [kt, kh, kw, in, out] (conv3d_pack_weight),
// everything else as is.
HostTensor to_decoder_layout(const std::string& name, HostTensor t) {
    const Shape& s = t.view.shape;
    if (!is_conv_weight(name, s)) return t;
    const int64_t kt = s.ndim == 5 ? s[2] : 1;
    const int64_t kh = s[s.ndim - 2], kw = s[s.ndim - 1];
    HostTensor out(DType::kF32, Shape{kt, kh, kw, s[1], s[0]});
    conv3d_pack_weight(t.as<float>(), out.as<float>(), s[0], s[1], kt, kh, kw);
    return out;
}

}  // namespace

WanVaeDecoder::WanVaeDecoder(const WanVaeConfig& cfg, std::unique_ptr<Weights> w) : cfg_(cfg), w_(std::move(w)) {
    w_->bind(cfg_);
}
WanVaeDecoder::WanVaeDecoder(WanVaeDecoder&&) noexcept = default;
WanVaeDecoder& WanVaeDecoder::operator=(WanVaeDecoder&&) noexcept = default;
WanVaeDecoder::~WanVaeDecoder() = default;

WanVaeDecoder WanVaeDecoder::from_checkpoint(const SafetensorsCheckpoint& ckpt, const WanVaeConfig& cfg) {
    cfg.validate();
    const std::map<std::string, std::string> keys = resolve_wan_vae_weights(ckpt, cfg);
    auto w = std::make_unique<Weights>();
    for (const VaeWeightSpec& spec : wan_vae_weight_specs(cfg)) {
        HostTensor t(DType::kF32, spec.shape);
        read_finite_f32(ckpt, keys.at(spec.name), t.view);
        w->tensors.emplace(spec.name, to_decoder_layout(spec.name, std::move(t)));
    }
    return WanVaeDecoder(cfg, std::move(w));
}

WanVaeDecoder WanVaeDecoder::from_weights(std::vector<std::pair<std::string, HostTensor>> weights,
                                          const WanVaeConfig& cfg) {
    cfg.validate();
    std::map<std::string, HostTensor> given;
    for (auto& [name, t] : weights) given.emplace(name, std::move(t));
    auto w = std::make_unique<Weights>();
    for (const VaeWeightSpec& spec : wan_vae_weight_specs(cfg)) {
        const auto it = given.find(spec.name);
        LR_CHECK(it != given.end(), "missing VAE weight '", spec.name, "' (expected shape ", spec.shape.str(), ")");
        LR_CHECK(it->second.view.dtype == DType::kF32, "VAE weight '", spec.name, "' has dtype ",
                 dtype_name(it->second.view.dtype), ", expected F32");
        LR_CHECK(it->second.view.shape == spec.shape, "VAE weight '", spec.name, "' has shape ",
                 it->second.view.shape.str(), ", expected ", spec.shape.str());
        w->tensors.emplace(spec.name, to_decoder_layout(spec.name, std::move(it->second)));
    }
    return WanVaeDecoder(cfg, std::move(w));
}

WanVaeDecoder WanVaeDecoder::make_default(uint64_t seed) {
    const WanVaeConfig cfg = wan_vae_tiny_config();
    return from_weights(make_default_wan_vae_weights(cfg, seed), cfg);
}

const HostTensor& WanVaeDecoder::weight(const std::string& name) const {
    const auto it = w_->tensors.find(name);
    LR_CHECK(it != w_->tensors.end(), "Wan VAE: no weight '", name, "'");
    return it->second;
}

int64_t WanVaeDecoder::parameter_count() const {
    int64_t n = 0;
    for (const auto& [name, t] : w_->tensors) n += t.view.numel();
    return n;
}

// ------------------------------------------------------------------------------------------------------------------
// The stream
// ------------------------------------------------------------------------------------------------------------------

namespace {

// The last two input frames of one causal conv (the reference's feat_cache entry, CACHE_T = 2). Frames that were
// never pushed read as nullptr: the zero padding before the first frame.
struct History {
    HostTensor slot[2];
    int count = 0;   // frames pushed since reset, capped at 2
    int newest = 0;  // slot of the newest frame

    const float* older() const { return count >= 2 ? slot[1 - newest].as<float>() : nullptr; }
    const float* newer() const { return count >= 1 ? slot[newest].as<float>() : nullptr; }
    void push(const float* frame, int64_t floats) {
        const int target = count == 0 ? newest : 1 - newest;
        HostTensor& s = slot[target];
        if (s.view.numel() != floats) s = HostTensor(DType::kF32, Shape{floats});
        std::memcpy(s.as<float>(), frame, static_cast<size_t>(floats) * sizeof(float));
        newest = target;
        count = std::min(count + 1, 2);
    }
};

// One resolution level's workspaces. Without a row split they hold the whole frame; with one, the rank's rows plus
// `halo` rows above and below, [height + 2 halo, width, channels].
struct Level {
    int64_t height = 0, width = 0;  // the rank's rows (the frame's without a split) and the columns
    int64_t full_height = 0;        // the frame's rows
    int64_t row0 = 0;               // the rank's first row in the frame
    int64_t halo = 0;               // 1 with a row split, else 0
    HostTensor x, a, b, tc;
    int64_t pixels() const { return height * width; }
    int64_t padded_rows() const { return height + 2 * halo; }
    // The rank's first row in a workspace that holds `ch` channels per pixel.
    float* rows(const HostTensor& t, int64_t ch) const { return t.as<float>() + halo * width * ch; }
};

void resize(HostTensor& t, int64_t floats) {
    if (floats == 0) {
        t = HostTensor();
    } else if (t.view.numel() != floats) {
        t = HostTensor(DType::kF32, Shape{floats});
    }
}

// A conv over the single frame `in` (kt = 1).
void conv_frame(const ConvW& c, const float* in, float* out, int64_t h, int64_t w, bool accumulate = false) {
    LR_ASSERT(c.kt == 1, "conv_frame on a kt = ", c.kt, " conv");
    const float* frames[1] = {in};
    Conv3dParams p;
    p.frames = frames;
    p.weight = c.w;
    p.bias = c.b;
    p.out = out;
    p.height = h;
    p.width = w;
    p.in_ch = c.in;
    p.out_ch = c.out;
    p.kh = c.kh;
    p.kw = c.kw;
    p.accumulate = accumulate;
    conv3d_cpu(p);
}

// A causal conv over the cached frames and `in` (the reference's CausalConv3d with its feat_cache); `in` joins the
// cache afterwards.
void conv_causal(const ConvW& c, History& hist, const float* in, float* out, int64_t h, int64_t w,
                 bool accumulate = false) {
    LR_ASSERT(c.kt == 3, "conv_causal on a kt = ", c.kt, " conv");
    const float* frames[3] = {hist.older(), hist.newer(), in};
    Conv3dParams p;
    p.frames = frames;
    p.weight = c.w;
    p.bias = c.b;
    p.out = out;
    p.height = h;
    p.width = w;
    p.in_ch = c.in;
    p.out_ch = c.out;
    p.kt = c.kt;
    p.kh = c.kh;
    p.kw = c.kw;
    p.accumulate = accumulate;
    conv3d_cpu(p);
    hist.push(in, h * w * c.in);
}

void norm(const float* gamma, const float* x, float* y, int64_t rows, int64_t dim, bool silu) {
    L2NormParams p;
    p.x = x;
    p.y = y;
    p.gamma = gamma;
    p.rows = rows;
    p.dim = dim;
    p.silu = silu;
    l2_norm_cpu(p);
}

}  // namespace

struct VaeStream::State {
    const WanVaeDecoder::Weights* w = nullptr;
    WanVaeConfig cfg;
    VaeFrameFormat format = VaeFrameFormat::kRgb24;
    Communicator* comm = nullptr;  // the row split's ranks; null (or one rank): the whole frame here
    std::vector<History> hist;
    std::vector<bool> started;  // per resample: has it seen its first frame (upsample3d skips the time conv then)
    std::vector<Level> levels;
    int64_t height = 0, width = 0;  // latent size, 0 until the first decode after reset
    int64_t latents_done = 0, frames_done = 0;
    std::vector<std::pair<int64_t, int64_t>> latent_rows;  // row split: (first row, rows) of every rank
    std::vector<float> send, recv, full_qkv;               // row split: the middle attention's all-gather
    HostTensor rgb_full;                                   // row split, rank 0: the gathered [H, W, 3] frame
    HostTensor rgb_u8;                                     // [H, W, 3] (kRgb24)
    HostTensor rgb_planar;                                 // [3, H, W] (kFloatPlanar)
    VaeDumpFn dump;

    bool split() const { return comm != nullptr && comm->size() > 1; }
    bool emits() const { return !split() || comm->rank() == 0; }

    void dump_frame(const std::string& name, const float* data, int64_t h, int64_t w, int64_t c) const {
        if (dump) dump(name, data, Shape{h, w, c});
    }

    void allocate(int64_t h, int64_t w) {
        height = h;
        width = w;
        int64_t row0 = 0, rows = h;
        latent_rows.clear();
        if (split()) {
            for (int r = 0; r < comm->size(); ++r) {
                const auto [first, end] = vae_row_range(h, comm->size(), r);
                latent_rows.emplace_back(first, end - first);
            }
            std::tie(row0, rows) = latent_rows[static_cast<size_t>(comm->rank())];
        }
        levels.resize(this->w->levels.size());
        for (size_t l = 0; l < levels.size(); ++l) {
            Level& L = levels[l];
            const LevelPlan& plan = this->w->levels[l];
            L.height = rows << l;
            L.full_height = h << l;
            L.row0 = row0 << l;
            L.width = w << l;
            L.halo = split() ? 1 : 0;
            const int64_t px = L.padded_rows() * L.width;
            resize(L.x, px * plan.x);
            resize(L.a, px * plan.a);
            resize(L.b, px * plan.b);
            resize(L.tc, px * plan.tc);
        }
        const Level& last = levels.back();
        rgb_full = split() && emits() ? HostTensor(DType::kF32, Shape{last.full_height, last.width, 3}) : HostTensor();
        if (format == VaeFrameFormat::kRgb24) {
            rgb_u8 = emits() ? HostTensor(DType::kU8, Shape{last.full_height, last.width, 3}) : HostTensor();
            rgb_planar = HostTensor();
        } else {
            rgb_planar = emits() ? HostTensor(DType::kF32, Shape{3, last.full_height, last.width}) : HostTensor();
            rgb_u8 = HostTensor();
        }
    }

    // Row split: fills the halo rows of `t` ([padded rows, width, ch]) with the last row of the rank above and the
    // first row of the rank below, or zeros at the frame's top and bottom (the 3x3 convs' zero padding).
    void exchange_halo(const Level& L, HostTensor& t, int64_t ch) const {
        if (!split()) return;
        const int64_t row = L.width * ch;
        const size_t bytes = static_cast<size_t>(row) * sizeof(float);
        float* top = t.as<float>();
        float* first = top + row;
        float* last = top + L.height * row;
        float* bottom = last + row;
        const int r = comm->rank();
        std::vector<SendSpec> sends;
        std::vector<RecvSpec> recvs;
        if (r > 0) {
            sends.push_back({r - 1, first, bytes});
            recvs.push_back({r - 1, top, bytes});
        } else {
            std::fill(top, top + row, 0.0f);
        }
        if (r + 1 < comm->size()) {
            sends.push_back({r + 1, last, bytes});
            recvs.push_back({r + 1, bottom, bytes});
        } else {
            std::fill(bottom, bottom + row, 0.0f);
        }
        comm->send_recv(sends, recvs);
    }

    // x <- x + ResidualBlock(x), in place in L.x.  [pixels, in] -> [pixels, out]
    void residual(const BlockW& b, Level& L) {
        const int64_t n = L.pixels(), rows = L.padded_rows();
        float* x = L.rows(L.x, b.in);
        norm(b.gamma1, x, L.rows(L.a, b.in), n, b.in, true);  // a = silu(norm1(x))
        exchange_halo(L, L.a, b.in);
        conv_causal(b.conv1, hist[b.hist1], L.a.as<float>(), L.b.as<float>(), rows, L.width);  // t = conv1(a)
        float* t = L.rows(L.b, b.out);
        norm(b.gamma2, t, t, n, b.out, true);  // t = silu(norm2(t))
        exchange_halo(L, L.b, b.out);
        if (b.shortcut.w) {
            conv_frame(b.shortcut, x, L.rows(L.a, b.out), L.height, L.width);  // a = shortcut(x)
            conv_causal(b.conv2, hist[b.hist2], L.b.as<float>(), L.a.as<float>(), rows, L.width,
                        true);  // a += conv2(t)
            std::memcpy(L.rows(L.x, b.out), L.rows(L.a, b.out), static_cast<size_t>(n * b.out) * sizeof(float));
        } else {
            conv_causal(b.conv2, hist[b.hist2], L.b.as<float>(), L.x.as<float>(), rows, L.width,
                        true);  // x += conv2(t)
        }
    }

    // Row split: the whole frame's q/k/v [full pixels, 3c] from every rank's rows qkv [pixels, 3c].
    const float* gather_qkv(const Level& L, const float* qkv, int64_t c) {
        const int64_t shift = &L - levels.data();  // the level: rows double from one to the next
        int64_t max_rows = 0;
        for (const auto& [first, rows] : latent_rows) max_rows = std::max(max_rows, rows << shift);
        const int64_t row = L.width * 3 * c, block = max_rows * row;
        send.assign(static_cast<size_t>(block), 0.0f);
        std::copy_n(qkv, L.height * row, send.data());
        recv.resize(static_cast<size_t>(block * comm->size()));
        comm->all_gather(send.data(), recv.data(), static_cast<size_t>(block) * sizeof(float));
        full_qkv.resize(static_cast<size_t>(L.full_height * row));
        for (size_t p = 0; p < latent_rows.size(); ++p) {
            const auto [first, rows] = latent_rows[p];
            std::copy_n(recv.data() + static_cast<int64_t>(p) * block, (rows << shift) * row,
                        full_qkv.data() + (first << shift) * row);
        }
        return full_qkv.data();
    }

    // x <- x + proj(attention(qkv(norm(x)))): one head over the pixels of the frame (the whole frame's keys).
    void attention(const BlockW& b, Level& L) {
        const int64_t n = L.pixels(), c = b.in;
        float* x = L.rows(L.x, c);
        float* a = L.rows(L.a, c);
        float* qkv = L.rows(L.b, 3 * c);
        norm(b.gamma1, x, a, n, c, false);
        conv_frame(b.conv1, a, qkv, L.height, L.width);  // [n, 3c]: q | k | v
        const float* kv = split() ? gather_qkv(L, qkv, c) : qkv;
        AttentionParams p;
        p.q = qkv;
        p.k = kv + c;
        p.v = kv + 2 * c;
        p.out = a;  // [n, c]
        p.q_len = n;
        p.kv_len = L.full_height * L.width;
        p.heads = 1;
        p.head_dim = c;
        p.q_stride = p.k_stride = p.v_stride = 3 * c;
        attention_cpu(p);
        conv_frame(b.conv2, a, x, L.height, L.width, true);  // x += proj(a)
    }

    // x2 nearest + conv of one frame of level l (channels `b.in`, the rank's rows, pixels `stride` apart) into
    // level l + 1's x, then the rest of the network from block `next`.
    void resample_and_continue(const BlockW& b, size_t next, const float* src, int64_t stride, const VaeFrameFn& emit) {
        const Level& L = levels[static_cast<size_t>(b.level)];
        Level& N = levels[static_cast<size_t>(b.level) + 1];
        UpsampleNearest2xParams u;
        u.x = src;
        u.y = N.rows(N.a, b.in);
        u.height = L.height;
        u.width = L.width;
        u.channels = b.in;
        u.x_pixel_stride = stride;
        upsample_nearest2x_cpu(u);
        exchange_halo(N, N.a, b.in);
        conv_frame(b.conv1, N.a.as<float>(), N.x.as<float>(), N.padded_rows(), N.width);
        dump_frame(b.dump, N.rows(N.x, b.out), N.height, N.width, b.out);
        run(next, emit);
    }

    // Blocks [first, end) on one frame in levels[blocks[first].level].x, then the head; a temporal upsampling
    // carries each of its two frames through the rest before the other.
    void run(size_t first, const VaeFrameFn& emit) {
        const std::vector<BlockW>& blocks = w->blocks;
        for (size_t i = first; i < blocks.size(); ++i) {
            const BlockW& b = blocks[i];
            Level& L = levels[static_cast<size_t>(b.level)];
            switch (b.kind) {
                case VaeBlockKind::kResidual:
                    residual(b, L);
                    break;
                case VaeBlockKind::kAttention:
                    attention(b, L);
                    break;
                case VaeBlockKind::kUpsample2d:
                    resample_and_continue(b, i + 1, L.rows(L.x, b.in), b.in, emit);
                    return;
                case VaeBlockKind::kUpsample3d: {
                    if (!started[static_cast<size_t>(b.resample)]) {
                        // The stream's first frame passes without the time conv (the reference's "Rep"): 1 frame.
                        started[static_cast<size_t>(b.resample)] = true;
                        resample_and_continue(b, i + 1, L.rows(L.x, b.in), b.in, emit);
                        return;
                    }
                    // [pixels, 2 * in]: channels [0, in) are the earlier frame, [in, 2 in) the later one. A 3x1x1
                    // conv: no halo, the rank's rows only.
                    float* tc = L.rows(L.tc, 2 * b.in);
                    conv_causal(b.time_conv, hist[b.hist1], L.rows(L.x, b.in), tc, L.height, L.width);
                    for (int64_t j = 0; j < 2; ++j) resample_and_continue(b, i + 1, tc + j * b.in, 2 * b.in, emit);
                    return;
                }
            }
            if (!b.dump.empty()) dump_frame(b.dump, L.rows(L.x, b.out), L.height, L.width, b.out);
        }
        head(emit);
    }

    // Row split: the whole RGB frame [full pixels, 3] on rank 0 from every rank's rows rgb [pixels, 3]; null on the
    // other ranks.
    const float* gather_rgb(const Level& L, const float* rgb) {
        const int64_t row = L.width * 3;
        const int shift = static_cast<int>(levels.size()) - 1;
        std::vector<SendSpec> sends;
        std::vector<RecvSpec> recvs;
        if (comm->rank() == 0) {
            std::copy_n(rgb, L.height * row, rgb_full.as<float>());
            for (int p = 1; p < comm->size(); ++p) {
                const auto [first, rows] = latent_rows[static_cast<size_t>(p)];
                recvs.push_back({p, rgb_full.as<float>() + (first << shift) * row,
                                 static_cast<size_t>((rows << shift) * row) * sizeof(float)});
            }
        } else {
            sends.push_back({0, rgb, static_cast<size_t>(L.height * row) * sizeof(float)});
        }
        comm->send_recv(sends, recvs);
        return comm->rank() == 0 ? rgb_full.as<float>() : nullptr;
    }

    // RMS_norm, SiLU, causal conv to RGB, clamp, emit.
    void head(const VaeFrameFn& emit) {
        Level& L = levels.back();
        const int64_t c = w->head_conv.in;
        norm(w->head_gamma, L.rows(L.x, c), L.rows(L.a, c), L.pixels(), c, true);
        exchange_halo(L, L.a, c);
        conv_causal(w->head_conv, hist[static_cast<size_t>(w->hist_head)], L.a.as<float>(), L.b.as<float>(),
                    L.padded_rows(), L.width);
        const float* rgb = L.rows(L.b, 3);  // [pixels, 3]
        dump_frame("head", rgb, L.height, L.width, 3);
        if (split()) rgb = gather_rgb(L, rgb);
        const int64_t index = frames_done++;
        if (!emits()) return;
        const int64_t n = L.full_height * L.width;
        VaeFrame f;
        f.index = index;
        f.height = L.full_height;
        f.width = L.width;
        if (format == VaeFrameFormat::kRgb24) {
            vae_rgb_to_u8(rgb, rgb_u8.as<uint8_t>(), n * 3);
            f.rgb24 = rgb_u8.as<uint8_t>();
        } else {
            float* planar = rgb_planar.as<float>();
            for (int64_t p = 0; p < n; ++p) {
                for (int64_t ch = 0; ch < 3; ++ch) planar[ch * n + p] = std::clamp(rgb[p * 3 + ch], -1.0f, 1.0f);
            }
            f.planar = planar;
        }
        emit(f);
    }

    // One latent frame [z_dim, h, w] (the whole frame; a row split takes its rows) through conv2, conv1 and the
    // decoder.
    void decode_latent(const float* z, const VaeFrameFn& emit) {
        Level& L = levels[0];
        const int64_t n = L.pixels(), zc = cfg.z_dim;
        const int64_t frame = L.full_height * L.width, first = L.row0 * L.width;
        float* a = L.rows(L.a, zc);
        // [z, h, w] -> [h * w, z], de-normalised as WanVAE_.decode does it: z / (1 / std) + mean.
        for (int64_t ch = 0; ch < zc; ++ch) {
            const float inv = w->inv_std[static_cast<size_t>(ch)], mean = cfg.latents_mean[static_cast<size_t>(ch)];
            const float* zc_rows = z + ch * frame + first;
            for (int64_t p = 0; p < n; ++p) a[p * zc + ch] = zc_rows[p] / inv + mean;
        }
        conv_frame(w->conv2, a, L.rows(L.b, zc), L.height, L.width);
        dump_frame("conv2", L.rows(L.b, zc), L.height, L.width, zc);
        exchange_halo(L, L.b, zc);
        conv_causal(w->conv1, hist[static_cast<size_t>(w->hist_conv1)], L.b.as<float>(), L.x.as<float>(),
                    L.padded_rows(), L.width);
        run(0, emit);
        ++latents_done;
    }
};

VaeStream::VaeStream(const WanVaeDecoder& decoder, VaeFrameFormat format, Communicator* rows)
    : s_(std::make_unique<State>()) {
    s_->w = decoder.w_.get();
    s_->cfg = decoder.config();
    s_->format = format;
    s_->comm = rows;
    s_->hist.resize(s_->w->hist_level.size());
    reset();
}
VaeStream::VaeStream(VaeStream&&) noexcept = default;
VaeStream& VaeStream::operator=(VaeStream&&) noexcept = default;
VaeStream::~VaeStream() = default;

void VaeStream::reset() {
    for (History& h : s_->hist) h.count = 0;
    s_->started.assign(static_cast<size_t>(s_->w->resamples), false);
    s_->height = s_->width = 0;
    s_->latents_done = s_->frames_done = 0;
}

void VaeStream::decode(const float* latents, int64_t frames, int64_t height, int64_t width, const VaeFrameFn& emit) {
    LR_CHECK(frames >= 0, "VAE decode: negative frame count ", frames);
    if (frames == 0) return;
    LR_CHECK(latents != nullptr, "VAE decode: null latents");
    LR_CHECK(height > 0 && width > 0 && height <= 4096 && width <= 4096, "VAE decode: latent size ", height, "x", width,
             " out of range");
    LR_CHECK(emit != nullptr, "VAE decode: no frame callback");
    State& s = *s_;
    if (s.latents_done == 0) {
        if (s.height != height || s.width != width) s.allocate(height, width);
    } else {
        LR_CHECK(height == s.height && width == s.width, "VAE decode: latent size ", height, "x", width,
                 " differs from the stream's ", s.height, "x", s.width, " (reset() the stream for a new video)");
    }
    const int64_t frame = s.cfg.z_dim * height * width;
    for (int64_t i = 0; i < frames; ++i) s.decode_latent(latents + i * frame, emit);
}

int64_t VaeStream::frames_for(int64_t latent_frames) const {
    if (latent_frames <= 0) return 0;
    const int64_t per = s_->cfg.frames_per_latent();
    return s_->latents_done == 0 ? 1 + per * (latent_frames - 1) : per * latent_frames;
}

int64_t VaeStream::latent_frames_decoded() const { return s_->latents_done; }
int64_t VaeStream::frames_emitted() const { return s_->frames_done; }
bool VaeStream::emits() const { return s_->emits(); }
int64_t VaeStream::latent_channels() const { return s_->cfg.z_dim; }

size_t VaeStream::state_bytes() const {
    size_t n = 0;
    for (const History& h : s_->hist) n += h.slot[0].buffer.size() + h.slot[1].buffer.size();
    for (const Level& L : s_->levels)
        n += L.x.buffer.size() + L.a.buffer.size() + L.b.buffer.size() + L.tc.buffer.size();
    n += (s_->send.capacity() + s_->recv.capacity() + s_->full_qkv.capacity()) * sizeof(float);
    return n + s_->rgb_full.buffer.size() + s_->rgb_u8.buffer.size() + s_->rgb_planar.buffer.size();
}

void VaeStream::set_dump(VaeDumpFn fn) { s_->dump = std::move(fn); }

std::pair<int64_t, int64_t> vae_row_range(int64_t latent_rows, int ranks, int rank) {
    LR_CHECK(ranks >= 1 && ranks <= latent_rows, "VAE row split: ", ranks, " ranks for ", latent_rows,
             " latent rows; every rank needs at least one row");
    LR_ASSERT(rank >= 0 && rank < ranks, "VAE row split: rank ", rank, " of ", ranks);
    const int64_t base = latent_rows / ranks, extra = latent_rows % ranks;
    const int64_t first = rank * base + std::min<int64_t>(rank, extra);
    return {first, first + base + (rank < extra ? 1 : 0)};
}

void vae_rgb_to_u8(const float* rgb, uint8_t* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float v = std::clamp(rgb[i], -1.0f, 1.0f);
        const float unit = std::clamp(v * 0.5f + 0.5f, 0.0f, 1.0f);
        const float scaled = unit * 255.0f;
        out[i] = scaled >= 0.0f ? static_cast<uint8_t>(static_cast<int>(scaled)) : 0;  // NaN fails the test: 0
    }
}

}  // namespace lr
