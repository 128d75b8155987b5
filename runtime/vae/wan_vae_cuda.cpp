// Wan2.1 VAE decode on the GPU (see wan_vae_cuda.h). The block walk mirrors VaeStream::State in wan_vae.cpp
// line by line; what differs is where the frames live (one planned device allocation), their dtypes (bf16 into
// every conv, f32 residual stream and conv outputs that feed a norm) and the ops (kernels/vae_cuda.h, GemmRunner).
//
// The plan is computed twice by the same code: once with a counting carver (device_bytes, and the memory check
// before anything is allocated), then over the real allocation.
#include "runtime/vae/wan_vae_cuda.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "kernels/vae_cuda.h"
#include "runtime/core/check.h"
#include "runtime/core/det_random.h"
#include "runtime/core/tensor.h"
#include "runtime/vae/wan_vae_cuda_state.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cast.h"
#include "kernels/gemm_cuda.h"
#include "runtime/core/cuda_check.h"
#endif

namespace lr {

using vae_cuda::band_pixels;
using vae_cuda::Carver;
using vae_cuda::kAttentionBudget;
using vae_cuda::kCountingBase;
using vae_cuda::kGemmWorkspaceBytes;
using vae_cuda::kHeadOutPad;
using vae_cuda::kQueryBandAlign;
using vae_cuda::Pool;
using vae_cuda::Ring;
using vae_cuda::round_up;
using vae_cuda::WeightSlot;
#ifdef LONGROLL_HAS_CUDA
using vae_cuda::PinnedBuffer;
#endif

// ------------------------------------------------------------------------------------------------------------------
// Planning (no CUDA needed)
// ------------------------------------------------------------------------------------------------------------------

void CudaVaeStream::State::plan(Carver& c) {
    slots.clear();
    blocks.clear();
    levels.clear();
    rings.clear();
    ring_specs.clear();
    pools.clear();
    resamples = 0;
    attn_level = -1;
    plan_weights(c);
    weight_bytes = c.used;
    plan_buffers(c);
    planned_bytes = c.used;
}

// Weights first, so that they are one prefix of the allocation; also fixes the blocks, the rings and the channel
// capacities of every level (the CPU's WanVaeDecoder::Weights::bind).
void CudaVaeStream::State::plan_weights(Carver& c) {
    auto vec = [&](const std::string& name, int64_t out_total, int64_t begin, int64_t count, int64_t pad) {
        float* d = c.take<float>(pad);
        slots.push_back({name, false, d, out_total, begin, count, pad, 1});
        return d;
    };
    // Output channels [begin, begin + count) of the conv `prefix` (all of them by default), padded to `pad`.
    auto conv = [&](const std::string& prefix, int64_t in, int64_t out, int64_t kt, int64_t kh, int64_t kw,
                    int64_t begin = 0, int64_t count = -1, int64_t pad = -1) {
        ConvDev d;
        d.in = in;
        d.out = count < 0 ? out : count;
        d.out_pad = pad < 0 ? d.out : pad;
        d.kt = kt;
        d.kh = kh;
        d.kw = kw;
        d.w = c.take<uint16_t>(d.out_pad * d.k());
        slots.push_back({prefix + ".weight", true, d.w, out, begin, d.out, d.out_pad, d.k()});
        d.b = vec(prefix + ".bias", out, begin, d.out, d.out_pad);
        return d;
    };
    auto gamma = [&](const std::string& name, int64_t ch) { return vec(name, ch, 0, ch, ch); };
    auto need = [&](int level, int64_t LevelDev::*field, int64_t ch) {
        if (static_cast<size_t>(level) >= levels.size()) levels.resize(static_cast<size_t>(level) + 1);
        int64_t& v = levels[static_cast<size_t>(level)].*field;
        v = std::max(v, ch);
    };
    auto new_ring = [&](int level, int64_t ch) {
        ring_specs.emplace_back(level, ch);
        return static_cast<int>(ring_specs.size()) - 1;
    };

    const int64_t z = cfg.z_dim, d0 = cfg.dims()[0];
    conv2 = conv("conv2", z, z, 1, 1, 1);
    conv1 = conv("decoder.conv1", z, d0, 3, 3, 3);
    ring_conv1 = new_ring(0, z);
    need(0, &LevelDev::cx, d0);
    int level = 0;
    int64_t last = d0;
    for (const VaeBlock& vb : wan_vae_decoder_blocks(cfg)) {
        BlockDev b;
        b.kind = vb.kind;
        b.level = level;
        b.in = vb.in_ch;
        b.out = vb.out_ch;
        const std::string& p = vb.prefix;
        switch (vb.kind) {
            case VaeBlockKind::kResidual:
                b.gamma1 = gamma(p + ".residual.0.gamma", b.in);
                b.conv1 = conv(p + ".residual.2", b.in, b.out, 3, 3, 3);
                b.gamma2 = gamma(p + ".residual.3.gamma", b.out);
                b.conv2 = conv(p + ".residual.6", b.out, b.out, 3, 3, 3);
                b.ring1 = new_ring(level, b.in);
                b.ring2 = new_ring(level, b.out);
                need(level, &LevelDev::cx, std::max(b.in, b.out));
                need(level, &LevelDev::ct, b.out);
                if (b.in != b.out) {
                    b.shortcut = conv(p + ".shortcut", b.in, b.out, 1, 1, 1);
                    need(level, &LevelDev::cxs, b.in);
                    levels[static_cast<size_t>(level)].shortcut = true;
                }
                break;
            case VaeBlockKind::kAttention:
                LR_ASSERT(attn_level < 0, "the VAE decoder has one attention block");
                b.gamma1 = gamma(p + ".norm.gamma", b.in);
                b.q = conv(p + ".to_qkv", b.in, 3 * b.in, 1, 1, 1, 0, b.in);
                b.k = conv(p + ".to_qkv", b.in, 3 * b.in, 1, 1, 1, b.in, b.in);
                b.v = conv(p + ".to_qkv", b.in, 3 * b.in, 1, 1, 1, 2 * b.in, b.in);
                b.proj = conv(p + ".proj", b.in, b.in, 1, 1, 1);
                need(level, &LevelDev::cx, b.in);
                attn_level = level;
                attn_c = b.in;
                break;
            case VaeBlockKind::kUpsample3d:
                b.time_conv = conv(p + ".time_conv", b.in, 2 * b.in, 3, 1, 1);
                b.ring1 = new_ring(level, b.in);
                need(level, &LevelDev::ctc, 2 * b.in);
                [[fallthrough]];
            case VaeBlockKind::kUpsample2d:
                b.conv1 = conv(p + ".resample.1", b.in, b.out, 1, 3, 3);
                b.resample = resamples++;
                ++level;
                need(level, &LevelDev::cup, b.in);
                need(level, &LevelDev::cx, b.out);
                break;
        }
        last = b.out;
        blocks.push_back(std::move(b));
    }
    head_gamma = gamma("decoder.head.0.gamma", last);
    head_conv = conv("decoder.head.2", last, 3, 3, 3, 3, 0, 3, kHeadOutPad);
    ring_head = new_ring(level, last);
    need(level, &LevelDev::ct, kHeadOutPad);
}

void CudaVaeStream::State::plan_buffers(Carver& c) {
    const int64_t z = cfg.z_dim;
    mean = c.take<float>(z);
    inv_std = c.take<float>(z);
    const auto [first, rows_here] = split() ? latent_rows[static_cast<size_t>(rank)] : std::pair{int64_t{0}, height};
    for (size_t l = 0; l < levels.size(); ++l) {
        LevelDev& L = levels[l];
        L.height = rows_here << l;
        L.full_height = height << l;
        L.row0 = first << l;
        L.width = width << l;
        L.halo = split() ? 1 : 0;
        const int64_t n = L.padded_pixels();
        L.x = c.take<float>(n * L.cx);
        if (L.shortcut) L.x2 = c.take<float>(n * L.cx);
        if (L.ct) L.t = c.take<float>(n * L.ct);
        if (L.cxs) L.xs = c.take<uint16_t>(L.pixels() * L.cxs);
        if (L.cup) L.up = c.take<uint16_t>(n * L.cup);
        if (L.ctc) L.tc = c.take<uint16_t>(n * L.ctc);
    }
    z_in = c.take<float>(z * levels[0].full_pixels());
    latent = c.take<uint16_t>(levels[0].pixels() * z);

    if (attn_level >= 0) {
        // Queries are the rank's pixels, keys and values the whole frame's.
        const LevelDev& A = levels[static_cast<size_t>(attn_level)];
        const int64_t n = A.pixels(), keys = A.full_pixels(), ch = attn_c;
        ldp = round_up(keys, 8);
        const int64_t fit = kAttentionBudget / (6 * ldp) / kQueryBandAlign * kQueryBandAlign;
        q_band = std::min(n, std::max(fit, kQueryBandAlign));
        an = c.take<uint16_t>(n * ch);
        q = c.take<uint16_t>(n * ch);
        k = c.take<uint16_t>(keys * ch);
        v = c.take<uint16_t>(keys * ch);
        ao = c.take<uint16_t>(n * ch);
        vt = c.take<uint16_t>(ch * ldp);
        scores = c.take<float>(q_band * ldp);
        probs = c.take<uint16_t>(q_band * ldp);
    }

    // The widest im2col band any conv needs (the implicit GEMM needs none, but the path is selectable at run time).
    int64_t col_elems = 0;
    auto band_need = [&](const ConvDev& cv, int level) {
        if (cv.w == nullptr || cv.pointwise()) return;
        const int64_t n = levels[static_cast<size_t>(level)].padded_pixels();
        col_elems = std::max(col_elems, band_pixels(n, cv.k()) * cv.k());
    };
    band_need(conv1, 0);
    for (const BlockDev& b : blocks) {
        band_need(b.conv1, b.kind == VaeBlockKind::kResidual ? b.level : b.level + 1);
        band_need(b.conv2, b.level);
        band_need(b.time_conv, b.level);
    }
    band_need(head_conv, static_cast<int>(levels.size()) - 1);
    col = c.take<uint16_t>(col_elems);

    // Cache frames: 2 per ring + 1 spare per frame size.
    rings.assign(ring_specs.size(), Ring{});
    for (size_t r = 0; r < ring_specs.size(); ++r) {
        const auto [level, ch] = ring_specs[r];
        const int64_t elems = levels[static_cast<size_t>(level)].padded_pixels() * ch;
        auto it = std::find_if(pools.begin(), pools.end(), [&](const Pool& p) { return p.elems == elems; });
        if (it == pools.end()) it = pools.insert(pools.end(), Pool{elems, 0, {}});
        ++it->rings;
        rings[r].pool = static_cast<int>(it - pools.begin());
    }
    for (Pool& p : pools) {
        for (int i = 0; i < 2 * p.rings + 1; ++i) p.free.push_back(c.take<uint16_t>(p.elems));
    }

    // Sized for planar f32 in either format, so that device_bytes() needs no format.
    float* out = c.take<float>(out_pixels() * 3);
    if (format == VaeFrameFormat::kRgb24) {
        out_u8 = reinterpret_cast<uint8_t*>(out);
    } else {
        out_planar = out;
    }
    plan_rows(c);
}

namespace {

void check_latent_size(int64_t h, int64_t w) {
    LR_CHECK(h > 0 && w > 0 && h <= 4096 && w <= 4096, "CUDA VAE: latent size ", h, "x", w,
             " out of range (1 to 4096 each)");
}

}  // namespace

size_t CudaVaeStream::device_bytes(const WanVaeConfig& cfg, int64_t latent_height, int64_t latent_width, int row_ranks,
                                   int row_rank) {
    cfg.validate();
    check_latent_size(latent_height, latent_width);
    State s;
    s.cfg = cfg;
    s.height = latent_height;
    s.width = latent_width;
    s.set_rows(nullptr, nullptr, row_ranks, row_rank);
    Carver counter{kCountingBase, 0};
    s.plan(counter);
    return counter.used + kGemmWorkspaceBytes;
}

CudaVaeStream::CudaVaeStream(std::unique_ptr<State> s) : s_(std::move(s)) {}
CudaVaeStream::CudaVaeStream(CudaVaeStream&&) noexcept = default;
CudaVaeStream& CudaVaeStream::operator=(CudaVaeStream&&) noexcept = default;
CudaVaeStream::~CudaVaeStream() = default;

int64_t CudaVaeStream::frames_for(int64_t latent_frames) const {
    if (latent_frames <= 0) return 0;
    const int64_t per = s_->cfg.frames_per_latent();
    return s_->latents_done == 0 ? 1 + per * (latent_frames - 1) : per * latent_frames;
}
int64_t CudaVaeStream::latent_frames_decoded() const { return s_->latents_done; }
int64_t CudaVaeStream::frames_emitted() const { return s_->frames_done; }
bool CudaVaeStream::emits() const { return s_->emits(); }
size_t CudaVaeStream::state_bytes() const {
    return s_->planned_bytes - s_->weight_bytes + kGemmWorkspaceBytes + s_->frame_bytes() + s_->staging_bytes();
}
size_t CudaVaeStream::weight_bytes() const { return s_->weight_bytes; }
Stream CudaVaeStream::stream() const { return s_->stream; }
int64_t CudaVaeStream::latent_height() const { return s_->height; }
int64_t CudaVaeStream::latent_width() const { return s_->width; }
void CudaVaeStream::set_conv_algo(VaeConvAlgo algo) { s_->algo = algo; }
VaeConvAlgo CudaVaeStream::conv_algo() const { return s_->algo; }

#ifndef LONGROLL_HAS_CUDA

CudaVaeStream::State::~State() = default;
void CudaVaeStream::State::use_stream(Stream given) { stream = given; }

CudaVaeStream::CudaVaeStream(const WanVaeDecoder&, int64_t, int64_t, VaeFrameFormat, Stream, Communicator*, Stream) {
    LR_RUNTIME(false, "CUDA VAE decoder: this longroll was built without CUDA");
}
CudaVaeStream CudaVaeStream::with_random_weights(const WanVaeConfig&, int64_t, int64_t, uint64_t, VaeFrameFormat,
                                                 Stream, Communicator*, Stream) {
    LR_RUNTIME(false, "CUDA VAE decoder: this longroll was built without CUDA");
    return CudaVaeStream(nullptr);
}
void CudaVaeStream::reset() {}
void CudaVaeStream::decode(const float*, int64_t, const VaeFrameFn&, bool) {
    LR_RUNTIME(false, "CUDA VAE decoder: this longroll was built without CUDA");
}

#else

// ------------------------------------------------------------------------------------------------------------------
// Set-up
// ------------------------------------------------------------------------------------------------------------------

CudaVaeStream::State::~State() {
    if (owned_stream) {
        cudaStreamSynchronize(owned_stream);
        cudaStreamDestroy(owned_stream);
    }
    if (comm_ready) cudaEventDestroy(comm_ready);
    if (comm_done) cudaEventDestroy(comm_done);
}

void CudaVaeStream::State::use_stream(Stream given) {
    stream = given;
    if (given) return;
    int least = 0, greatest = 0;
    LR_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    LR_CUDA_CHECK(cudaStreamCreateWithPriority(&owned_stream, cudaStreamNonBlocking, least));
    stream = owned_stream;
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0) LR_CUDA_CHECK(cudaMallocHost(&data_, bytes));
}
PinnedBuffer::~PinnedBuffer() {
    if (data_) cudaFreeHost(data_);
}

// Plans, checks the plan against the free device memory, then allocates and plans again over the allocation.
void CudaVaeStream::State::allocate() {
    Carver counter{kCountingBase, 0};
    plan(counter);
    const size_t needed = counter.used + kGemmWorkspaceBytes;
    size_t free_bytes = 0, total_bytes = 0;
    LR_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    LR_CHECK(needed <= free_bytes, "CUDA VAE decoder for latent ", height, "x", width, " (frames ", height << 3, "x",
             width << 3, split() ? str_cat(", rank ", rank, " of a ", ranks, "-rank row split") : std::string(),
             ") needs ", format_bytes(needed), " (", needed, " bytes) of device memory, but only ",
             format_bytes(free_bytes), " (", free_bytes, " bytes) of ", format_bytes(total_bytes),
             " are free; decode a smaller size or free device memory");
    memory = DeviceBuffer(counter.used);
    Carver carver{reinterpret_cast<uintptr_t>(memory.data()), 0};
    plan(carver);
    LR_ASSERT(carver.used == counter.used, "VAE plan changed between passes");
    gemm = std::make_unique<GemmRunner>(kGemmWorkspaceBytes);
    host_frame = PinnedBuffer(frame_bytes());
    allocate_rows();
    started.assign(static_cast<size_t>(resamples), false);
    // Padded weight rows stay zero; the halo rows of conv outputs (computed, never read) start finite.
    LR_CUDA_CHECK(cudaMemsetAsync(memory.data(), 0, counter.used, stream));
}

void CudaVaeStream::State::upload_latent_stats() {
    std::vector<float> inv;
    for (float s : cfg.latents_std) inv.push_back(1.0f / s);
    const size_t bytes = static_cast<size_t>(cfg.z_dim) * sizeof(float);
    LR_CUDA_CHECK(cudaMemcpyAsync(mean, cfg.latents_mean.data(), bytes, cudaMemcpyHostToDevice, stream));
    LR_CUDA_CHECK(cudaMemcpyAsync(inv_std, inv.data(), bytes, cudaMemcpyHostToDevice, stream));
    LR_CUDA_CHECK(cudaStreamSynchronize(stream));  // `inv` dies here
}

void CudaVaeStream::State::upload(const WanVaeDecoder& host) {
    std::vector<uint16_t> wbuf;
    std::vector<float> fbuf;
    for (const WeightSlot& s : slots) {
        const HostTensor& t = host.weight(s.name);
        // Conv weights are [kt, kh, kw, in, out] = [k, out]; gammas [C, 1, 1(, 1)] and biases [C] are [1, C].
        LR_ASSERT(t.view.dtype == DType::kF32 && t.view.numel() == s.k * s.out_total &&
                      (!s.matrix || t.view.shape[t.view.ndim() - 1] == s.out_total),
                  "VAE weight '", s.name, "' is ", t.view.str(), ", expected [", s.k, ", ", s.out_total, "]");
        const float* src = t.as<float>();
        if (s.matrix) {
            // [k, out_total] -> rows [out_begin, out_begin + out_count) of [out, k], bf16.
            wbuf.assign(static_cast<size_t>(s.out_pad * s.k), 0);
            for (int64_t kk = 0; kk < s.k; ++kk) {
                const float* row = src + kk * s.out_total + s.out_begin;
                for (int64_t o = 0; o < s.out_count; ++o)
                    wbuf[static_cast<size_t>(o * s.k + kk)] = f32_to_bf16_bits(row[o]);
            }
            LR_CUDA_CHECK(
                cudaMemcpyAsync(s.dst, wbuf.data(), wbuf.size() * sizeof(uint16_t), cudaMemcpyHostToDevice, stream));
        } else {
            fbuf.assign(static_cast<size_t>(s.out_pad), 0.0f);
            std::copy(src + s.out_begin, src + s.out_begin + s.out_count, fbuf.begin());
            LR_CUDA_CHECK(
                cudaMemcpyAsync(s.dst, fbuf.data(), fbuf.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
        }
        // Pageable sources: the copy has left `wbuf` / `fbuf` when cudaMemcpyAsync returns, so they can be reused.
    }
    upload_latent_stats();
}

void CudaVaeStream::State::randomize(uint64_t seed) {
    for (const WeightSlot& s : slots) {
        VaeFillUniformParams f;
        f.data = s.dst;
        f.dtype = s.matrix ? DType::kBF16 : DType::kF32;
        f.n = s.out_count * s.k;
        f.key = tensor_stream_key(seed, s.name) + static_cast<uint64_t>(s.out_begin * s.k);
        if (s.name.ends_with(".gamma")) {
            f.offset = 1.0f;
            f.scale = 0.1f;
        } else if (s.name.ends_with(".bias")) {
            f.scale = 0.02f;
        } else {
            const float gain = s.name == "decoder.head.2.weight" ? 0.5f : 1.0f;
            f.scale = gain * std::sqrt(3.0f / static_cast<float>(s.k));
        }
        launch_vae_fill_uniform(f, stream);
    }
    upload_latent_stats();
}

void CudaVaeStream::State::reset_caches() {
    for (Ring& r : rings) {
        for (uint16_t** f : {&r.older, &r.newer}) {
            if (*f) pools[static_cast<size_t>(r.pool)].free.push_back(std::exchange(*f, nullptr));
        }
    }
    started.assign(static_cast<size_t>(resamples), false);
    latents_done = frames_done = 0;
}

CudaVaeStream::CudaVaeStream(const WanVaeDecoder& host, int64_t latent_height, int64_t latent_width,
                             VaeFrameFormat format, Stream stream, Communicator* rows, Stream comm_stream)
    : s_(std::make_unique<State>()) {
    check_latent_size(latent_height, latent_width);
    s_->cfg = host.config();
    s_->height = latent_height;
    s_->width = latent_width;
    s_->format = format;
    s_->set_rows(rows, comm_stream, 1, 0);
    s_->use_stream(stream);
    s_->allocate();
    s_->upload(host);
}

CudaVaeStream CudaVaeStream::with_random_weights(const WanVaeConfig& cfg, int64_t latent_height, int64_t latent_width,
                                                 uint64_t seed, VaeFrameFormat format, Stream stream,
                                                 Communicator* rows, Stream comm_stream) {
    cfg.validate();
    check_latent_size(latent_height, latent_width);
    auto s = std::make_unique<State>();
    s->cfg = cfg;
    s->height = latent_height;
    s->width = latent_width;
    s->format = format;
    s->set_rows(rows, comm_stream, 1, 0);
    s->use_stream(stream);
    s->allocate();
    s->randomize(seed);
    return CudaVaeStream(std::move(s));
}

void CudaVaeStream::reset() { s_->reset_caches(); }

// ------------------------------------------------------------------------------------------------------------------
// The decode
// ------------------------------------------------------------------------------------------------------------------

uint16_t* CudaVaeStream::State::take(int ring) {
    Pool& p = pools[static_cast<size_t>(rings[static_cast<size_t>(ring)].pool)];
    LR_ASSERT(!p.free.empty(), "VAE cache pool of ", p.elems, " elements is empty");
    uint16_t* f = p.free.back();
    p.free.pop_back();
    return f;
}

// `frame` (the conv's input, just used) becomes the newest cached frame; the oldest goes back to the pool. The
// stream orders the pool's next writer after the conv that read the frame.
void CudaVaeStream::State::commit(int ring, uint16_t* frame) {
    Ring& r = rings[static_cast<size_t>(ring)];
    if (r.older) pools[static_cast<size_t>(r.pool)].free.push_back(r.older);
    r.older = r.newer;
    r.newer = frame;
}

// y [pixels, out] = x [pixels, in] . w^T + bias (a 1x1 conv).
void CudaVaeStream::State::conv_pointwise(const ConvDev& c, const uint16_t* x, int64_t pixels, void* y, DType y_dtype,
                                          bool accumulate) {
    gemm_run({.x = x,
              .w = c.w,
              .bias = c.b,
              .y = y,
              .y_dtype = y_dtype,
              .m = pixels,
              .n = c.out_pad,
              .k = c.in,
              .epilogue = GemmEpilogue::kBias,
              .accumulate = accumulate});
}

// y (+)= conv over `frames` (the first c.kt; nullptr = zeros) of level L; frames and y are frame buffers of the
// level, [padded rows, width, channels] (out_pad channels for y). A conv with a spatial kernel runs over all the
// padded rows: with a row split, launch_vae_conv's 'same' zero padding then only touches the halo rows' outputs,
// which are never read, and the rank's rows see their neighbours through the exchanged halo rows. A conv without
// (the time conv) runs on the rank's rows only.
void CudaVaeStream::State::conv_frames(const ConvDev& c, const Frames& padded, const LevelDev& L, void* y,
                                       DType y_dtype, bool accumulate) {
    const int64_t skip = c.spatial() ? 0 : L.halo;  // rows left out at the top of every buffer
    const int64_t height = c.spatial() ? L.padded_rows() : L.height;
    const size_t y_bytes = y_dtype == DType::kF32 ? sizeof(float) : sizeof(uint16_t);
    Frames frames{};
    for (size_t i = 0; i < frames.size(); ++i) frames[i] = padded[i] ? padded[i] + skip * L.width * c.in : nullptr;
    y = static_cast<char*>(y) + static_cast<size_t>(skip * L.width * c.out_pad) * y_bytes;
    if (c.pointwise()) {
        conv_pointwise(c, frames[0], height * L.width, y, y_dtype, accumulate);
        return;
    }
    if (algo == VaeConvAlgo::kImplicitGemm && c.in % 8 == 0) {
        launch_vae_conv({.frames = {frames[0], frames[1], frames[2]},
                         .weight = c.w,
                         .bias = c.b,
                         .y = y,
                         .y_dtype = y_dtype,
                         .ldy = c.out_pad,
                         .accumulate = accumulate,
                         .height = height,
                         .width = L.width,
                         .in_ch = c.in,
                         .out_ch = c.out_pad,
                         .kt = c.kt,
                         .kh = c.kh,
                         .kw = c.kw},
                        stream);
        return;
    }
    const int64_t pixels = height * L.width, k = c.k(), band = band_pixels(pixels, k);
    for (int64_t p0 = 0; p0 < pixels; p0 += band) {
        const int64_t n = std::min(band, pixels - p0);
        launch_vae_im2col({.frames = {frames[0], frames[1], frames[2]},
                           .col = col,
                           .height = height,
                           .width = L.width,
                           .channels = c.in,
                           .kt = c.kt,
                           .kh = c.kh,
                           .kw = c.kw,
                           .pixel0 = p0,
                           .pixels = n},
                          stream);
        gemm_run({.x = col,
                  .w = c.w,
                  .bias = c.b,
                  .y = static_cast<char*>(y) + static_cast<size_t>(p0 * c.out_pad) * y_bytes,
                  .y_dtype = y_dtype,
                  .m = n,
                  .n = c.out_pad,
                  .k = k,
                  .epilogue = GemmEpilogue::kBias,
                  .accumulate = accumulate});
    }
}

// The causal conv of `ring` over its two cached frames and `in` (taken from the ring's pool), which then joins
// the cache: the reference's CausalConv3d with feat_cache. With a row split the cache keeps the rank's
// halo-padded input frames, halos included.
void CudaVaeStream::State::conv_causal(const ConvDev& c, int ring, uint16_t* in, const LevelDev& L, void* y,
                                       DType y_dtype, bool accumulate) {
    LR_ASSERT(c.kt == 3, "causal conv with kt = ", c.kt);
    const Ring& r = rings[static_cast<size_t>(ring)];
    conv_frames(c, {r.older, r.newer, in}, L, y, y_dtype, accumulate);
    commit(ring, in);
}

void CudaVaeStream::State::norm(const float* gamma, const float* x, uint16_t* y, int64_t rows, int64_t dim, bool silu,
                                uint16_t* x_copy) {
    launch_vae_rms_norm({.x = x, .y = y, .x_copy = x_copy, .gamma = gamma, .rows = rows, .dim = dim, .silu = silu},
                        stream);
}

// x <- x + ResidualBlock(x) at level L ([pixels, in] -> [pixels, out]).
void CudaVaeStream::State::residual(const BlockDev& b, LevelDev& L) {
    const int64_t n = L.pixels();
    const bool shortcut = b.shortcut.w != nullptr;
    uint16_t* a = take(b.ring1);
    // a = silu(norm1(x)), xs = bf16(x)
    norm(b.gamma1, L.mid(L.x, b.in), L.mid(a, b.in), n, b.in, true, shortcut ? L.xs : nullptr);
    exchange_halo(L, a, b.in);
    conv_causal(b.conv1, b.ring1, a, L, L.t, DType::kF32, false);  // t = conv1(a)
    uint16_t* t2 = take(b.ring2);
    norm(b.gamma2, L.mid(L.t, b.out), L.mid(t2, b.out), n, b.out, true);  // t2 = silu(norm2(t))
    exchange_halo(L, t2, b.out);
    if (shortcut) {
        conv_pointwise(b.shortcut, L.xs, n, L.mid(L.x2, b.out), DType::kF32, false);  // x2 = shortcut(x)
        conv_causal(b.conv2, b.ring2, t2, L, L.x2, DType::kF32, true);                // x2 += conv2(t2)
        std::swap(L.x, L.x2);
    } else {
        conv_causal(b.conv2, b.ring2, t2, L, L.x, DType::kF32, true);  // x += conv2(t2)
    }
}

// x <- x + proj(softmax(q k^T / sqrt(c)) v), one head over the pixels of the frame, in bands of queries. With a
// row split the queries are the rank's pixels and k, v are all-gathered: the whole frame's keys.
void CudaVaeStream::State::attention(const BlockDev& b, LevelDev& L) {
    const int64_t n = L.pixels(), keys = L.full_pixels(), c = b.in;
    norm(b.gamma1, L.mid(L.x, c), an, n, c, false);
    conv_pointwise(b.q, an, n, q, DType::kBF16, false);
    if (split()) {
        conv_pointwise(b.k, an, n, kv_send, DType::kBF16, false);
        conv_pointwise(b.v, an, n, kv_send + kv_px * c, DType::kBF16, false);
        gather_kv(L, c);
    } else {
        conv_pointwise(b.k, an, n, k, DType::kBF16, false);
        conv_pointwise(b.v, an, n, v, DType::kBF16, false);
    }
    // v^T [c, ldp]: the weight operand of probs . v
    launch_vae_transpose({.x = v, .y = vt, .rows = keys, .cols = c, .y_stride = ldp}, stream);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c)));
    for (int64_t q0 = 0; q0 < n; q0 += q_band) {
        const int64_t rows = std::min(q_band, n - q0);
        // scores [rows, keys] = q[q0 : q0 + rows] . k^T; softmax; ao[q0 : q0 + rows] = probs . v
        gemm_run(
            {.x = q + q0 * c, .w = k, .y = scores, .y_dtype = DType::kF32, .m = rows, .n = keys, .k = c, .ldy = ldp});
        launch_vae_softmax_rows({.scores = scores,
                                 .probs = probs,
                                 .rows = rows,
                                 .cols = keys,
                                 .scores_stride = ldp,
                                 .probs_stride = ldp,
                                 .scale = scale},
                                stream);
        gemm_run({.x = probs,
                  .w = vt,
                  .y = ao + q0 * c,
                  .y_dtype = DType::kBF16,
                  .m = rows,
                  .n = c,
                  .k = keys,
                  .ldx = ldp,
                  .ldw = ldp});
    }
    conv_pointwise(b.proj, ao, n, L.mid(L.x, c), DType::kF32, true);  // x += proj(ao)
}

// x2 nearest + conv of one frame of level b.level (channels b.in, pixels `stride` apart in the frame buffer `src`)
// into level b.level + 1's x, then the rest of the network from block `next`.
void CudaVaeStream::State::resample_and_continue(const BlockDev& b, size_t next, const void* src, DType src_dtype,
                                                 int64_t stride, const VaeFrameFn& emit) {
    const LevelDev& L = levels[static_cast<size_t>(b.level)];
    LevelDev& N = levels[static_cast<size_t>(b.level) + 1];
    const size_t src_bytes = src_dtype == DType::kF32 ? sizeof(float) : sizeof(uint16_t);
    launch_vae_upsample_nearest2x({.x = L.mid(static_cast<const char*>(src), stride * static_cast<int64_t>(src_bytes)),
                                   .x_dtype = src_dtype,
                                   .y = N.mid(N.up, b.in),
                                   .height = L.height,
                                   .width = L.width,
                                   .channels = b.in,
                                   .x_pixel_stride = stride},
                                  stream);
    exchange_halo(N, N.up, b.in);
    conv_frames(b.conv1, {N.up, nullptr, nullptr}, N, N.x, DType::kF32, false);
    run(next, emit);
}

// Blocks [first, end) on the frame in levels[blocks[first].level].x, then the head; a temporal upsampling
// carries each of its two frames through the rest before the other (VaeStream::State::run).
void CudaVaeStream::State::run(size_t first, const VaeFrameFn& emit) {
    for (size_t i = first; i < blocks.size(); ++i) {
        const BlockDev& b = blocks[i];
        LevelDev& L = levels[static_cast<size_t>(b.level)];
        switch (b.kind) {
            case VaeBlockKind::kResidual:
                residual(b, L);
                break;
            case VaeBlockKind::kAttention:
                attention(b, L);
                break;
            case VaeBlockKind::kUpsample2d:
                resample_and_continue(b, i + 1, L.x, DType::kF32, b.in, emit);
                return;
            case VaeBlockKind::kUpsample3d: {
                if (!started[static_cast<size_t>(b.resample)]) {
                    // The stream's first frame passes without the time conv (the reference's "Rep"): 1 frame.
                    started[static_cast<size_t>(b.resample)] = true;
                    resample_and_continue(b, i + 1, L.x, DType::kF32, b.in, emit);
                    return;
                }
                uint16_t* in = take(b.ring1);
                launch_cast({L.mid(L.x, b.in), L.mid(in, b.in), DType::kF32, DType::kBF16, L.pixels() * b.in}, stream);
                // tc [pixels, 2 in]: channels [0, in) are the earlier frame, [in, 2 in) the later one. A 3x1x1
                // conv: the rank's rows only, no halo.
                conv_causal(b.time_conv, b.ring1, in, L, L.tc, DType::kBF16, false);
                for (int64_t j = 0; j < 2; ++j) {
                    resample_and_continue(b, i + 1, L.tc + j * b.in, DType::kBF16, 2 * b.in, emit);
                }
                return;
            }
        }
    }
    head(emit);
}

// RMS_norm, SiLU, causal conv to RGB, clamp, copy to the host (with a row split: gathered on rank 0), emit.
void CudaVaeStream::State::head(const VaeFrameFn& emit) {
    LevelDev& L = levels.back();
    const int64_t n = L.pixels(), c = head_conv.in;
    uint16_t* a = take(ring_head);
    norm(head_gamma, L.mid(L.x, c), L.mid(a, c), n, c, true);
    exchange_halo(L, a, c);
    conv_causal(head_conv, ring_head, a, L, L.t, DType::kF32, false);  // [pixels, kHeadOutPad], channels 0..2: RGB
    const float* rgb = L.mid(L.t, kHeadOutPad);
    const int64_t index = frames_done++;
    if (split()) {
        gather_frame(L, rgb);
        if (!emits()) return;
    } else {
        launch_vae_rgb_out({.rgb = rgb, .pixels = n, .rgb_stride = kHeadOutPad, .u8 = out_u8, .planar = out_planar},
                           stream);
        const void* dev = out_u8 ? static_cast<const void*>(out_u8) : static_cast<const void*>(out_planar);
        LR_CUDA_CHECK(cudaMemcpyAsync(host_frame.data(), dev, frame_bytes(), cudaMemcpyDeviceToHost, stream));
    }
    LR_CUDA_CHECK(cudaStreamSynchronize(stream));
    VaeFrame f;
    f.index = index;
    f.height = L.full_height;
    f.width = L.width;
    if (format == VaeFrameFormat::kRgb24) {
        f.rgb24 = reinterpret_cast<const uint8_t*>(host_frame.data());
    } else {
        f.planar = reinterpret_cast<const float*>(host_frame.data());
    }
    emit(f);
}

// One latent frame [z_dim, h, w] (device memory, the whole frame) through z * std + mean, conv2, conv1 and the
// decoder; a row split reads its rows.
void CudaVaeStream::State::decode_latent(const float* z, const VaeFrameFn& emit) {
    const LevelDev& L = levels[0];
    launch_vae_denorm_latent({.z = z + L.row0 * L.width,
                              .mean = mean,
                              .inv_std = inv_std,
                              .y = latent,
                              .pixels = L.pixels(),
                              .channels = cfg.z_dim,
                              .z_stride = L.full_pixels()},
                             stream);
    uint16_t* in = take(ring_conv1);
    conv_pointwise(conv2, latent, L.pixels(), L.mid(in, cfg.z_dim), DType::kBF16, false);  // conv1's input
    exchange_halo(L, in, cfg.z_dim);
    conv_causal(conv1, ring_conv1, in, L, L.x, DType::kF32, false);
    run(0, emit);
    ++latents_done;
}

void CudaVaeStream::decode(const float* latents, int64_t frames, const VaeFrameFn& emit, bool latents_on_device) {
    LR_CHECK(frames >= 0, "CUDA VAE decode: negative frame count ", frames);
    if (frames == 0) return;
    LR_CHECK(latents != nullptr, "CUDA VAE decode: null latents");
    LR_CHECK(emit != nullptr, "CUDA VAE decode: no frame callback");
    State& s = *s_;
    const int64_t frame = s.cfg.z_dim * s.height * s.width;
    for (int64_t i = 0; i < frames; ++i) {
        const float* z = latents + i * frame;
        if (!latents_on_device) {
            LR_CUDA_CHECK(cudaMemcpyAsync(s.z_in, z, static_cast<size_t>(frame) * sizeof(float), cudaMemcpyHostToDevice,
                                          s.stream));
            z = s.z_in;
        }
        s.decode_latent(z, emit);
    }
    // A rank that does not emit never waits for its frames; a device-buffer exchange leaves them in flight.
    if (!s.emits()) LR_CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

#endif  // LONGROLL_HAS_CUDA

}  // namespace lr
