// The Wan2.1 VAE decoder on the GPU: bf16 weights and activations, fp32 accumulation, fp32 norm statistics and an
// fp32 residual stream; the same streaming structure as the CPU reference VaeStream (wan_vae.h, DESIGN.md
// section 5), whose frames it matches to bf16 precision.
//
// Structure (as on the CPU): latent frames go in chunk by chunk; the first latent frame of a stream makes 1
// frame, every later one 4; every causal conv keeps the last 2 frames of its input, and each frame a temporal
// upsampling makes runs through the rest of the network before the next one, so that only one frame per
// resolution level plus the caches is live. Frames are channels-last [height, width, channels], so a conv is a
// GEMM over pixels.
//
// Memory is planned for one latent size when the stream is built: weights, the causal caches, the activations of
// every level and the workspaces live in one device allocation, and decode() allocates nothing. The caches
// rotate through a pool per frame size: a conv's new input frame is written into a spare buffer that joins the
// cache after the conv, and the cache's oldest frame becomes the spare, so no frame is ever copied. Bytes at
// 1088x1920 output (latent 136x240): see device_bytes().
//
// Convolutions (3x3x3 causal, 3x1x1 time, 3x3 resample) run either as an implicit GEMM (kernels/vae_cuda.h,
// launch_vae_conv: the tile of the im2col is gathered into shared memory, never written out) or as im2col in
// bands of pixels plus a cuBLASLt GEMM (GemmRunner); 1x1 convs and the attention's projections are GEMMs.
// Everything runs on `stream`; emitting a frame copies it into pinned host memory and synchronises the stream.
//
// Typical use:
//   CudaVaeStream vae(decoder, latent_h, latent_w);
//   vae.decode(chunk.latents, chunk.num_frames, [&](const VaeFrame& f) { writer->write_frame(f.rgb24, f.width * 3); });
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "runtime/core/stream.h"
#include "runtime/vae/wan_vae.h"
#include "runtime/vae/wan_vae_weights.h"

namespace lr {

enum class VaeConvAlgo {
    kImplicitGemm,  // launch_vae_conv (needs input channels % 8 == 0; others fall back to kIm2colGemm)
    kIm2colGemm,    // launch_vae_im2col in pixel bands + GemmRunner
};

class CudaVaeStream {
  public:
    // Uploads the decoder's weights (bf16 conv and linear weights, f32 gammas and biases) and plans every device
    // buffer for latent frames of latent_height x latent_width. InputError, before anything is allocated, naming
    // the bytes needed and the bytes free when the plan does not fit on the current device. RuntimeError in a
    // build without CUDA. All work goes on `stream`; nullptr gives the decoder a stream of its own at the lowest
    // priority, so that a DiT on the same GPU (highest priority) goes first.
    CudaVaeStream(const WanVaeDecoder& host, int64_t latent_height, int64_t latent_width,
                  VaeFrameFormat format = VaeFrameFormat::kRgb24, Stream stream = nullptr);
    // Real channel counts with weights drawn on the device (no host copy exists): for benchmarks. The
    // distribution follows make_default_wan_vae_weights, not its exact values.
    static CudaVaeStream with_random_weights(const WanVaeConfig& cfg, int64_t latent_height, int64_t latent_width,
                                             uint64_t seed, VaeFrameFormat format = VaeFrameFormat::kRgb24,
                                             Stream stream = nullptr);
    // Device bytes a stream of this config and latent size needs: weights, caches, activations, workspaces and
    // the GEMM workspace. Pure arithmetic; works without a GPU.
    static size_t device_bytes(const WanVaeConfig& cfg, int64_t latent_height, int64_t latent_width);

    CudaVaeStream(CudaVaeStream&&) noexcept;
    CudaVaeStream& operator=(CudaVaeStream&&) noexcept;
    ~CudaVaeStream();

    // Starts a new video: the next latent frame is a first frame again.
    void reset();

    // Decodes the next `frames` latent frames, [frames, z_dim, latent_height, latent_width] f32 (the rollout's
    // layout), in host memory or, with latents_on_device, in device memory. Emits frames_for(frames) frames of
    // [8 latent_height, 8 latent_width] in order through `emit`, in host memory valid during the callback, before
    // it returns (like VaeStream::decode).
    void decode(const float* latents, int64_t frames, const VaeFrameFn& emit, bool latents_on_device = false);

    // Frames that decoding `latent_frames` more latent frames emits: 1 + 4 (n - 1) at the start of a stream, 4 n after.
    int64_t frames_for(int64_t latent_frames) const;
    int64_t latent_frames_decoded() const;
    int64_t frames_emitted() const;
    // Device bytes of the caches, activations and workspaces (weights excluded), plus the pinned host frame.
    size_t state_bytes() const;
    // Device bytes of the weights.
    size_t weight_bytes() const;
    Stream stream() const;
    int64_t latent_height() const;
    int64_t latent_width() const;

    // Which kernel runs the 3x3 and time convs; both give the same frames up to fp32 summation order.
    void set_conv_algo(VaeConvAlgo algo);
    VaeConvAlgo conv_algo() const;

  private:
    struct State;
    explicit CudaVaeStream(std::unique_ptr<State> s);
    std::unique_ptr<State> s_;
};

}  // namespace lr
