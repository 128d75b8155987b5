// The Wan2.1 VAE decoder on the CPU reference backend, fp32, as a stream (DESIGN.md section 5).
//
// Latent frames go in chunk by chunk, in order; RGB frames come out through a callback as soon as they exist. The
// first latent frame of a stream makes 1 frame, every later one 4 (Wan2.1's two temporal upsamplings), each
// 8x the latent size. Decoding chunk by chunk gives exactly the frames of decoding the whole clip at once: like the
// reference (wan/modules/vae.py, WanVAE_.decode), every causal conv keeps the last 2 frames of its input across
// calls, and the two time convs skip the first latent frame.
//
// Memory: the reference decodes one latent frame at a time; this decoder goes further and carries each frame a
// temporal upsampling makes through the rest of the network before the next one (every later layer is per frame
// or causal, so the result is the same). Live memory is then one frame per resolution level plus the caches
// (2 input frames per causal conv): about 4.6 GB at 480x832 output in fp32, independent of the chunk length.
//
// Typical use (the rollout's chunk callback feeds a stream that feeds the video writer):
//   WanVaeDecoder vae = WanVaeDecoder::from_checkpoint(ckpt, wan_vae_config_from_checkpoint(ckpt, {}));
//   VaeStream stream(vae);
//   stream.decode(chunk.latents, chunk.num_frames, h, w, [&](const VaeFrame& f) {
//       writer->write_frame(f.rgb24, f.width * 3); });
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/io/safetensors.h"
#include "runtime/vae/wan_vae_weights.h"

namespace lr {

class Communicator;

enum class VaeFrameFormat {
    kRgb24,        // uint8 [H, W, 3], what the video writers take
    kFloatPlanar,  // float [3, H, W] in [-1, 1], the reference's decode_to_pixel output (tests)
};

// One decoded frame; the pointers are valid during the callback only.
struct VaeFrame {
    int64_t index = 0;               // frame number from the start of the stream: 0, 1, 2, ...
    int64_t height = 0;              // 8 x latent height
    int64_t width = 0;               // 8 x latent width
    const uint8_t* rgb24 = nullptr;  // [height, width, 3], rows width * 3 bytes apart (kRgb24)
    const float* planar = nullptr;   // [3, height, width] (kFloatPlanar)
};
using VaeFrameFn = std::function<void(const VaeFrame&)>;

// Observes intermediates in decode order, channels-last [height, width, channels]: "conv2" (de-normalised latent
// after conv2) and "middle" once per latent frame, "upsample<k>" for every frame resample k makes, "head" (the RGB
// output before the clamp) once per output frame. With a row split: the rank's rows.
using VaeDumpFn = std::function<void(const std::string& name, const float* data, const Shape& shape)>;

// The weights, read-only once built; any number of streams may share one decoder.
class WanVaeDecoder {
  public:
    // From a checkpoint with original, prefixed ("model.", "vae.", "first_stage_model.") or diffusers names in F32,
    // BF16 or F16 (see wan_vae_weights.h); encoder tensors are ignored. The first missing or mis-shaped tensor is an
    // InputError naming it and the file.
    static WanVaeDecoder from_checkpoint(const SafetensorsCheckpoint& ckpt, const WanVaeConfig& cfg);
    // From named F32 tensors with original names and PyTorch layouts (make_default_wan_vae_weights).
    static WanVaeDecoder from_weights(std::vector<std::pair<std::string, HostTensor>> weights, const WanVaeConfig& cfg);
    // The embedded default: wan_vae_tiny_config() with make_default_wan_vae_weights(seed).
    static WanVaeDecoder make_default(uint64_t seed = 2026);

    WanVaeDecoder(WanVaeDecoder&&) noexcept;
    WanVaeDecoder& operator=(WanVaeDecoder&&) noexcept;
    ~WanVaeDecoder();

    const WanVaeConfig& config() const { return cfg_; }
    int64_t parameter_count() const;
    // An F32 weight by original Wan VAE name, as held for the CPU decoder (conv weights re-laid out as
    // [kt, kh, kw, in, out]), for backends that upload the weights (the CUDA decoder); InputError when absent.
    const HostTensor& weight(const std::string& name) const;

  private:
    friend class VaeStream;
    struct Weights;
    WanVaeDecoder(const WanVaeConfig& cfg, std::unique_ptr<Weights> w);

    WanVaeConfig cfg_;
    std::unique_ptr<Weights> w_;
};

// The latent rows [first, second) that rank `rank` of `ranks` decodes in a row-split decode: contiguous, in rank
// order, the first latent_rows % ranks ranks one row more. InputError when there are more ranks than rows.
std::pair<int64_t, int64_t> vae_row_range(int64_t latent_rows, int ranks, int rank);

// The streaming decode state of one video: the causal caches, and workspaces sized at the first decode. The
// decoder must outlive the stream. Not thread-safe; the CPU ops use cpu_threads() threads inside each call.
//
// Row split (DESIGN.md sections 5 and 7): with `rows` of R > 1 ranks, every rank of it makes the same calls with
// the same latents and decodes only its latent rows (vae_row_range) at every resolution: each workspace holds the
// rank's rows plus one halo row above and below, and before every conv with a 3x3 spatial kernel the halo rows of
// its input are exchanged with the ranks above and below (zeros at the frame's top and bottom: the conv's
// padding). The causal time caches keep the rank's own (halo-padded) input frames, nearest upsampling doubles
// the rows, and the middle attention, which needs the whole frame, all-gathers q/k/v at its resolution. Rank 0
// of `rows` gathers the rows of every output frame and alone calls `emit`, with the whole frame. Every conv,
// norm and attention row computes exactly what the whole-frame decode computes for that row, so the frames are
// bit-identical to a stream without a split. Each decode() is then collective over `rows`.
class VaeStream {
  public:
    explicit VaeStream(const WanVaeDecoder& decoder, VaeFrameFormat format = VaeFrameFormat::kRgb24,
                       Communicator* rows = nullptr);
    VaeStream(VaeStream&&) noexcept;
    VaeStream& operator=(VaeStream&&) noexcept;
    ~VaeStream();

    // Starts a new video: the next latent frame is a first frame again (its memory is kept for reuse).
    void reset();

    // Decodes the next `frames` latent frames of the stream, [frames, z_dim, height, width] (the rollout's layout),
    // one at a time, emitting frames_for(frames) RGB frames of [8 height, 8 width] in order before it returns. The
    // latent size is fixed from the first frame until reset(); another size is an InputError. With a row split
    // only rank 0 of `rows` emits (every rank passes the whole latents, and an InputError for more ranks than
    // latent rows is thrown on every rank alike).
    void decode(const float* latents, int64_t frames, int64_t height, int64_t width, const VaeFrameFn& emit);

    // Frames that decoding `latent_frames` more latent frames emits: 1 + 4 (n - 1) at the start of a stream, 4 n after.
    int64_t frames_for(int64_t latent_frames) const;
    int64_t latent_frames_decoded() const;
    int64_t frames_emitted() const;   // frames decoded, on every rank of a row split
    int64_t latent_channels() const;  // z_dim of the decoder
    // Whether this rank emits the frames: always without a row split, rank 0 of `rows` with one.
    bool emits() const;
    // Bytes held in caches and workspaces.
    size_t state_bytes() const;

    void set_dump(VaeDumpFn fn);

  private:
    struct State;
    std::unique_ptr<State> s_;
};

// decode_to_pixel's clamp to [-1, 1], then the reference pipeline's conversion to 8 bits: (x * 0.5 + 0.5).clamp(0, 1)
// * 255, truncated toward zero like torchvision.io.write_video's cast to uint8 (fp32 throughout; NaN -> 0).
void vae_rgb_to_u8(const float* rgb, uint8_t* out, int64_t n);

}  // namespace lr
