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
// Row split (DESIGN.md sections 5 and 7), as VaeStream's (wan_vae.h): with `rows` of R > 1 ranks, every rank
// makes the same calls with the same latents and decodes only its latent rows (vae_row_range) at every
// resolution, each frame buffer holding the rank's rows plus one halo row above and below. Before every conv with
// a 3x3 spatial kernel the halo rows of its input are exchanged with the ranks above and below (zeros at the
// frame's top and bottom); the causal caches keep the rank's halo-padded input frames; the middle attention
// all-gathers k and v; rank 0 gathers the rows of every output frame and alone calls `emit`. Every conv kernel,
// norm and softmax computes each row of the rank exactly as the whole-frame decode does; the 1x1 convs and the
// attention's GEMMs run through cuBLASLt on fewer rows, whose algorithm choice may differ with the row count, so
// the frames match the whole-frame decode to fp32 summation order (tests/dist/dist_vae_rows_gpu_test.cpp).
// Transport: a communicator on host buffers (MPI) is staged through pinned memory, the stream synchronised
// before each exchange; one on device buffers (NCCL) exchanges the frame rows in place on `comm_stream` (its
// stream, NcclCommunicator::stream()), ordered against the decode's stream by events, without blocking the host.
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

class Communicator;

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
    // With `rows` of more than one rank: the row split (collective over `rows`: every rank builds its stream with
    // the same sizes). More ranks than latent rows is an InputError on every rank alike; a communicator on device
    // buffers needs its stream as `comm_stream`.
    CudaVaeStream(const WanVaeDecoder& host, int64_t latent_height, int64_t latent_width,
                  VaeFrameFormat format = VaeFrameFormat::kRgb24, Stream stream = nullptr, Communicator* rows = nullptr,
                  Stream comm_stream = nullptr);
    // Real channel counts with weights drawn on the device (no host copy exists): for benchmarks. The
    // distribution follows make_default_wan_vae_weights, not its exact values (and does not depend on the split).
    static CudaVaeStream with_random_weights(const WanVaeConfig& cfg, int64_t latent_height, int64_t latent_width,
                                             uint64_t seed, VaeFrameFormat format = VaeFrameFormat::kRgb24,
                                             Stream stream = nullptr, Communicator* rows = nullptr,
                                             Stream comm_stream = nullptr);
    // Device bytes a stream of this config and latent size needs: weights, caches, activations, workspaces and
    // the GEMM workspace; for rank `row_rank` of a row split over `row_ranks` ranks, its rows with their halos,
    // the whole frame's k and v for the attention, the all-gather's buffers and (rank 0) the whole output frame.
    // Pure arithmetic; works without a GPU. InputError for more ranks than latent rows.
    static size_t device_bytes(const WanVaeConfig& cfg, int64_t latent_height, int64_t latent_width, int row_ranks = 1,
                               int row_rank = 0);

    CudaVaeStream(CudaVaeStream&&) noexcept;
    CudaVaeStream& operator=(CudaVaeStream&&) noexcept;
    ~CudaVaeStream();

    // Starts a new video: the next latent frame is a first frame again.
    void reset();

    // Decodes the next `frames` latent frames, [frames, z_dim, latent_height, latent_width] f32 (the rollout's
    // layout), in host memory or, with latents_on_device, in device memory. Emits frames_for(frames) frames of
    // [8 latent_height, 8 latent_width] in order through `emit`, in host memory valid during the callback, before
    // it returns (like VaeStream::decode). With a row split every rank passes the whole latents and only rank 0
    // of `rows` emits; the decode's work on every rank is complete when it returns.
    void decode(const float* latents, int64_t frames, const VaeFrameFn& emit, bool latents_on_device = false);

    // Frames that decoding `latent_frames` more latent frames emits: 1 + 4 (n - 1) at the start of a stream, 4 n after.
    int64_t frames_for(int64_t latent_frames) const;
    int64_t latent_frames_decoded() const;
    int64_t frames_emitted() const;  // frames decoded, on every rank of a row split
    // Whether this rank emits the frames: always without a row split, rank 0 of `rows` with one.
    bool emits() const;
    // Device bytes of the caches, activations and workspaces (weights excluded), plus the pinned host frame and
    // the pinned staging of a row split over host buffers.
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
