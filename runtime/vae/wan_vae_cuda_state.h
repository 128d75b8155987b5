// The state of a CudaVaeStream (wan_vae_cuda.h), shared by the files that implement it: wan_vae_cuda.cpp (the
// plan, the set-up and the decode) and wan_vae_cuda_rows.cpp (the row split: halo exchange, the attention's
// all-gather, the frame gather). Internal to runtime/vae.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/vae/wan_vae_cuda.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "kernels/gemm_cuda.h"
#endif

namespace lr {

class Communicator;

namespace vae_cuda {

constexpr size_t kAlign = 256;                            // every buffer starts 256-byte aligned (cuBLASLt, TMA)
constexpr int64_t kIm2colBudget = int64_t{256} << 20;     // bytes of one im2col band
constexpr int64_t kAttentionBudget = int64_t{256} << 20;  // bytes of one query band's f32 scores + bf16 weights
constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;
// Band starts stay multiples of 128 pixels, so that every band's GEMM operands stay 256-byte aligned.
constexpr int64_t kBandAlign = 128;
constexpr int64_t kQueryBandAlign = 64;
// The RGB head's 3 output channels are padded to 8 (zero weights): even, 32-byte rows for both conv paths.
constexpr int64_t kHeadOutPad = 8;
constexpr uintptr_t kCountingBase = 4096;  // non-null fake pointers while only counting bytes

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Hands out aligned pieces of one allocation starting at `base`; `used` is the size the allocation needs.
struct Carver {
    uintptr_t base = 0;
    size_t used = 0;

    template <typename T>
    T* take(int64_t count) {
        used = (used + kAlign - 1) / kAlign * kAlign;
        T* p = reinterpret_cast<T*>(base + used);
        used += static_cast<size_t>(count) * sizeof(T);
        return p;
    }
};

struct ConvDev {
    uint16_t* w = nullptr;  // bf16 [out_pad, k()], columns ordered (dt, dy, dx, in) like the CPU's packed weight
    float* b = nullptr;     // f32 [out_pad]
    int64_t in = 0, out = 0, out_pad = 0, kt = 1, kh = 1, kw = 1;

    int64_t k() const { return kt * kh * kw * in; }
    bool pointwise() const { return kt * kh * kw == 1; }
    bool spatial() const { return kh > 1 || kw > 1; }
};

// Where one host tensor (or a range of its output channels) lives on the device. The host tensor is read as
// [k, out_total] (the decoder's packed conv layout [kt, kh, kw, in, out]; vectors are k = 1) and stored as
// [out_pad, k] (bf16 matrix, the GEMM's weight operand) or [out_pad] (f32 vector), zero beyond out_count.
struct WeightSlot {
    std::string name;  // original Wan name
    bool matrix = false;
    void* dst = nullptr;
    int64_t out_total = 0;
    int64_t out_begin = 0;
    int64_t out_count = 0;
    int64_t out_pad = 0;
    int64_t k = 1;
};

// One block of wan_vae_decoder_blocks with its device weights and cache slots (BlockW of wan_vae.cpp).
struct BlockDev {
    VaeBlockKind kind = VaeBlockKind::kResidual;
    int level = 0;
    int64_t in = 0, out = 0;
    const float* gamma1 = nullptr;  // residual.0, attention norm
    const float* gamma2 = nullptr;  // residual.3
    ConvDev conv1, conv2;           // residual.2 / residual.6; resample.1 (conv1)
    ConvDev shortcut, time_conv;
    ConvDev q, k, v, proj;       // attention: to_qkv split by output rows, so that q, k and v are separate frames
    int ring1 = -1, ring2 = -1;  // residual conv1 / conv2 caches; time_conv (ring1)
    int resample = -1;
};

// The causal cache of one conv: its last two input frames (nullptr until pushed: the zero padding).
struct Ring {
    int pool = -1;
    uint16_t* older = nullptr;
    uint16_t* newer = nullptr;
};

// Spare frames of one size. Holds 2 per ring of that size + 1: the one being written for the next conv.
struct Pool {
    int64_t elems = 0;
    int rings = 0;
    std::vector<uint16_t*> free;
};

// One resolution level: latent size * 2^level. Channel capacities, then the buffers.
//
// Row split: every frame buffer of a level (x, x2, t, up, tc and the cached frames) is [height + 2 halo, width,
// channels]: the rank's rows with `halo` rows above and below, and mid() is the rank's first row. A conv with a
// spatial kernel runs over all the padded rows: the kernel pads with zeros ('same' padding), and the halo rows of
// its input hold the neighbours' rows (or zeros at the frame's top and bottom), so the rank's rows of the output
// are exactly the whole frame's; the output's halo rows are wrong and never read. Everything else (norms,
// 1x1 and time convs, upsampling) runs on the rank's rows only. Without a split halo is 0 and mid() the buffer.
struct LevelDev {
    int64_t height = 0, width = 0;  // the rank's rows (the frame's without a split), columns
    int64_t full_height = 0;        // the frame's rows
    int64_t row0 = 0;               // the rank's first row in the frame
    int64_t halo = 0;               // 1 with a row split, else 0
    int64_t cx = 0;                 // x: the f32 residual stream [pixels, channels]
    int64_t ct = 0;                 // t: f32 conv1 output inside a residual block; the RGB head's output
    int64_t cxs = 0;                // xs: bf16 copy of x for a 1x1 shortcut conv (the rank's rows, no halo)
    int64_t cup = 0;                // up: bf16 upsampled frame before the resample conv
    int64_t ctc = 0;                // tc: bf16 time conv output, two frames side by side in channels
    bool shortcut = false;          // a block changes channels here: x2 holds shortcut(x) + conv2, then swaps with x
    float* x = nullptr;
    float* x2 = nullptr;
    float* t = nullptr;
    uint16_t* xs = nullptr;
    uint16_t* up = nullptr;
    uint16_t* tc = nullptr;

    int64_t pixels() const { return height * width; }  // the rank's
    int64_t padded_rows() const { return height + 2 * halo; }
    int64_t padded_pixels() const { return padded_rows() * width; }
    int64_t full_pixels() const { return full_height * width; }
    // The rank's first pixel in a frame buffer of `pixel_stride` elements per pixel.
    template <typename T>
    T* mid(T* frame, int64_t pixel_stride) const {
        return frame + halo * width * pixel_stride;
    }
};

// Pixels per im2col band for a conv with k columns: as many as kIm2colBudget holds, a multiple of kBandAlign.
inline int64_t band_pixels(int64_t pixels, int64_t k) {
    const int64_t fit = kIm2colBudget / (2 * k) / kBandAlign * kBandAlign;
    return std::min(pixels, std::max(fit, kBandAlign));
}

#ifdef LONGROLL_HAS_CUDA
class PinnedBuffer {
  public:
    PinnedBuffer() = default;
    explicit PinnedBuffer(size_t bytes);
    ~PinnedBuffer();
    PinnedBuffer(PinnedBuffer&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(bytes_, o.bytes_);
        return *this;
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    char* data() const { return static_cast<char*>(data_); }
    size_t size() const { return bytes_; }

  private:
    void* data_ = nullptr;
    size_t bytes_ = 0;
};
#endif

}  // namespace vae_cuda

struct CudaVaeStream::State {
    using Carver = vae_cuda::Carver;
    using ConvDev = vae_cuda::ConvDev;
    using BlockDev = vae_cuda::BlockDev;
    using LevelDev = vae_cuda::LevelDev;

    WanVaeConfig cfg;
    int64_t height = 0, width = 0;  // latent size (the whole frame's)
    VaeFrameFormat format = VaeFrameFormat::kRgb24;
    Stream stream = nullptr;
    // Without a caller's stream: one of our own at the lowest priority, so that a DiT sharing the GPU (whose
    // stream has the highest) is scheduled first and the decode fills the gaps behind it.
    Stream owned_stream = nullptr;

    State() = default;
    State(const State&) = delete;
    State& operator=(const State&) = delete;
    ~State();
    void use_stream(Stream given);
    VaeConvAlgo algo = VaeConvAlgo::kImplicitGemm;

    // ---- the row split (wan_vae_cuda_rows.cpp); ranks == 1: the whole frame here ----
    Communicator* row_comm = nullptr;
    Stream comm_stream = nullptr;  // a device-buffer communicator's stream
    int rank = 0, ranks = 1;
    std::vector<std::pair<int64_t, int64_t>> latent_rows;  // (first row, rows) of every rank at the latent level
    bool split() const { return ranks > 1; }
    bool emits() const { return rank == 0; }
    bool device_comm() const;
    // Fixes rank, ranks and every rank's latent rows; InputError (the same on every rank) when a rank would get
    // no row, or when a device-buffer communicator comes without its stream.
    void set_rows(Communicator* comm, Stream comm_stream_, int ranks_, int rank_);

    // ---- the plan: pointers into `memory` ----
    std::vector<vae_cuda::WeightSlot> slots;
    ConvDev conv2, conv1, head_conv;
    const float* head_gamma = nullptr;
    float* mean = nullptr;     // f32 [z_dim]
    float* inv_std = nullptr;  // f32 [z_dim]: 1 / std in fp32, as WanVAEWrapper passes it
    std::vector<BlockDev> blocks;
    std::vector<LevelDev> levels;
    std::vector<vae_cuda::Ring> rings;
    std::vector<std::pair<int, int64_t>> ring_specs;  // (level, channels) per ring, while planning
    std::vector<vae_cuda::Pool> pools;
    int ring_conv1 = -1, ring_head = -1;
    int resamples = 0;
    float* z_in = nullptr;       // f32 [z_dim, frame pixels]: a host latent frame (the whole frame), uploaded
    uint16_t* latent = nullptr;  // bf16 [pixels, z_dim]: z * std + mean, the rank's rows
    // The attention block's level: normed input, q and output [pixels, c] (the rank's rows), k and v [frame
    // pixels, c], v^T [c, ldp], and one query band's scores (f32) and weights (bf16) [q_band, ldp]. ldp pads the
    // frame's pixels to 16 bytes.
    int attn_level = -1;
    int64_t attn_c = 0, q_band = 0, ldp = 0;
    uint16_t *an = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *ao = nullptr, *vt = nullptr;
    uint16_t* probs = nullptr;
    float* scores = nullptr;
    // Row split, the attention's all-gather: this rank's k rows then v rows, [2, kv_px, c], and every rank's
    // block, [ranks, 2, kv_px, c]; kv_px is the largest share's pixels at the attention level.
    int64_t kv_px = 0;
    uint16_t* kv_send = nullptr;
    uint16_t* kv_recv = nullptr;
    int64_t halo_row_elems = 0;  // row split: the widest row any halo exchange moves (bf16 elements)
    uint16_t* col = nullptr;     // im2col band, bf16
    // The RGB frame: the whole frame where this rank emits, its rows elsewhere.
    uint8_t* out_u8 = nullptr;
    float* out_planar = nullptr;
    size_t weight_bytes = 0;
    size_t planned_bytes = 0;

    // ---- run time ----
    DeviceBuffer memory;
#ifdef LONGROLL_HAS_CUDA
    std::unique_ptr<GemmRunner> gemm;
    vae_cuda::PinnedBuffer host_frame;  // the frame emitted (rank 0), or this rank's rows sent to it over MPI
    // Row split over a host-buffer communicator (MPI): pinned staging. halo_host: [4, halo_row_elems] bf16 (send
    // up, send down, receive from above, receive from below); kv_host: [1 + ranks] blocks of the all-gather.
    vae_cuda::PinnedBuffer halo_host, kv_host;
    // Row split over a device-buffer communicator: orders its stream against ours.
    cudaEvent_t comm_ready = nullptr, comm_done = nullptr;
#endif
    std::vector<bool> started;  // per resample: has it seen its first frame (upsample3d skips the time conv then)
    int64_t latents_done = 0, frames_done = 0;

    int64_t out_pixels() const { return emits() ? levels.back().full_pixels() : levels.back().pixels(); }
    size_t frame_bytes() const {
        return static_cast<size_t>(out_pixels()) * 3 * (format == VaeFrameFormat::kRgb24 ? 1 : sizeof(float));
    }
    size_t staging_bytes() const;

    void plan(Carver& c);
    void plan_weights(Carver& c);
    void plan_buffers(Carver& c);
    void plan_rows(Carver& c);

#ifdef LONGROLL_HAS_CUDA
    void allocate();
    void allocate_rows();
    void upload(const WanVaeDecoder& host);
    void randomize(uint64_t seed);
    void upload_latent_stats();
    void reset_caches();

    uint16_t* take(int ring);
    void commit(int ring, uint16_t* frame);
    void gemm_run(const CudaGemmParams& g) { gemm->run(g, stream); }
    void conv_pointwise(const ConvDev& c, const uint16_t* x, int64_t pixels, void* y, DType y_dtype, bool accumulate);
    using Frames = std::array<const uint16_t*, 3>;  // a conv's input window, oldest first; nullptr = zeros
    void conv_frames(const ConvDev& c, const Frames& frames, const LevelDev& L, void* y, DType y_dtype,
                     bool accumulate);
    void conv_causal(const ConvDev& c, int ring, uint16_t* in, const LevelDev& L, void* y, DType y_dtype,
                     bool accumulate);
    void norm(const float* gamma, const float* x, uint16_t* y, int64_t rows, int64_t dim, bool silu,
              uint16_t* x_copy = nullptr);
    void residual(const BlockDev& b, LevelDev& L);
    void attention(const BlockDev& b, LevelDev& L);
    void resample_and_continue(const BlockDev& b, size_t next, const void* src, DType src_dtype, int64_t stride,
                               const VaeFrameFn& emit);
    void run(size_t first, const VaeFrameFn& emit);
    void head(const VaeFrameFn& emit);
    void decode_latent(const float* z, const VaeFrameFn& emit);

    // Row split (wan_vae_cuda_rows.cpp); each is collective over `rows`.
    void collective(const std::function<void()>& op);
    void exchange_halo(const LevelDev& L, uint16_t* frame, int64_t ch);
    void gather_kv(const LevelDev& L, int64_t c);
    void gather_frame(const LevelDev& L, const float* rgb);
#endif
};

}  // namespace lr
