// Where the rollout's Gaussian noise comes from: a seeded counter-based generator, or tensors replayed from a
// file so that a run of another implementation (the PyTorch reference) can be reproduced exactly.
//
// Both answer per latent frame, so chunks can be generated in any order, a run can resume in the middle, and
// the noise of frame f never depends on how many frames came before it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "runtime/core/tensor.h"
#include "runtime/io/safetensors.h"

namespace lr {

class NoiseSource {
  public:
    virtual ~NoiseSource() = default;
    // The initial noise of latent frame `frame`: [channels, height, width].
    virtual void initial(int64_t frame, float* out) const = 0;
    // The fresh noise that re-noises frame `frame` after denoising step `step` (0 <= step < steps - 1).
    virtual void step(int64_t step, int64_t frame, float* out) const = 0;
};

// Standard normal samples from Philox4x32-10 keyed by the seed, with the counter (element / 4, frame,
// stream, 0), stream 0 for the initial noise and step + 1 for step noise, turned into normals by Box-Muller
// in double. Identical on every machine and thread count.
class SeededNoise final : public NoiseSource {
  public:
    SeededNoise(uint64_t seed, int64_t channels, int64_t height, int64_t width);
    void initial(int64_t frame, float* out) const override;
    void step(int64_t step, int64_t frame, float* out) const override;

  private:
    void fill(uint32_t stream, int64_t frame, float* out) const;
    uint64_t seed_;
    int64_t numel_;
};

// Replays `noise` [T, C, H, W] and `step_noise` [steps - 1, T, C, H, W] (F32, BF16 or F16; --noise FILE).
class ReplayNoise final : public NoiseSource {
  public:
    // Views must outlive this object. Shapes are checked against (frames, steps, C, H, W).
    ReplayNoise(const TensorView& noise, const TensorView& step_noise, int64_t frames, int64_t steps, int64_t channels,
                int64_t height, int64_t width, const std::string& where = "noise");
    // Opens a safetensors file with tensors 'noise' and 'step_noise'; InputError naming the file and tensor on a
    // missing tensor or a wrong shape or dtype. With steps == 1, 'step_noise' may be absent.
    static std::unique_ptr<ReplayNoise> open(const std::string& path, int64_t frames, int64_t steps, int64_t channels,
                                             int64_t height, int64_t width);

    void initial(int64_t frame, float* out) const override;
    void step(int64_t step, int64_t frame, float* out) const override;

  private:
    std::optional<SafetensorsCheckpoint> file_;
    TensorView noise_;
    TensorView step_noise_;
    int64_t frames_ = 0;
    int64_t steps_ = 0;
    int64_t numel_ = 0;  // per frame
};

// Philox4x32-10 (Salmon et al., SC'11): 4 random 32-bit words for a 128-bit counter and a 64-bit key.
void philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

}  // namespace lr
