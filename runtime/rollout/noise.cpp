#include "runtime/rollout/noise.h"

#include <cmath>

#include "kernels/cast.h"
#include "runtime/core/check.h"

namespace lr {

void philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = uint64_t{kM0} * c0;
        const uint64_t p1 = uint64_t{kM1} * c2;
        const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
        const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += kW0;
        k1 += kW1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

SeededNoise::SeededNoise(uint64_t seed, int64_t channels, int64_t height, int64_t width)
    : seed_(seed), numel_(channels * height * width) {
    LR_CHECK(numel_ > 0, "noise: empty latent frame [", channels, ", ", height, ", ", width, "]");
}

void SeededNoise::fill(uint32_t stream, int64_t frame, float* out) const {
    LR_ASSERT(frame >= 0 && frame < (int64_t{1} << 32), "noise: frame ", frame);
    const uint32_t key[2] = {static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)};
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    for (int64_t i = 0; i < numel_; i += 4) {
        const uint32_t counter[4] = {static_cast<uint32_t>(i / 4), static_cast<uint32_t>(frame), stream, 0};
        uint32_t r[4];
        philox4x32(counter, key, r);
        double z[4];
        for (int pair = 0; pair < 2; ++pair) {
            // u1 in (0, 1] so the log is finite; u2 in [0, 1).
            const double u1 = (static_cast<double>(r[2 * pair]) + 1.0) * (1.0 / 4294967296.0);
            const double u2 = static_cast<double>(r[2 * pair + 1]) * (1.0 / 4294967296.0);
            const double radius = std::sqrt(-2.0 * std::log(u1));
            z[2 * pair] = radius * std::cos(kTwoPi * u2);
            z[2 * pair + 1] = radius * std::sin(kTwoPi * u2);
        }
        for (int64_t j = 0; j < 4 && i + j < numel_; ++j) out[i + j] = static_cast<float>(z[j]);
    }
}

void SeededNoise::initial(int64_t frame, float* out) const { fill(0, frame, out); }

void SeededNoise::step(int64_t step, int64_t frame, float* out) const {
    LR_ASSERT(step >= 0 && step < (int64_t{1} << 31), "noise: step ", step);
    fill(static_cast<uint32_t>(step + 1), frame, out);
}

namespace {

void check_noise_tensor(const TensorView& t, const Shape& want, const std::string& where, const char* name) {
    LR_CHECK(t.shape == want, where, ": tensor '", name, "' has shape ", t.shape.str(), ", expected ", want.str());
    LR_CHECK(t.dtype == DType::kF32 || t.dtype == DType::kBF16 || t.dtype == DType::kF16, where, ": tensor '", name,
             "' has dtype ", dtype_name(t.dtype), ", expected F32, BF16 or F16");
    LR_CHECK(t.is_contiguous(), where, ": tensor '", name, "' must be contiguous");
}

}  // namespace

ReplayNoise::ReplayNoise(const TensorView& noise, const TensorView& step_noise, int64_t frames, int64_t steps,
                         int64_t channels, int64_t height, int64_t width, const std::string& where)
    : noise_(noise), step_noise_(step_noise), frames_(frames), steps_(steps), numel_(channels * height * width) {
    check_noise_tensor(noise, Shape{frames, channels, height, width}, where, "noise");
    if (steps > 1)
        check_noise_tensor(step_noise, Shape{steps - 1, frames, channels, height, width}, where, "step_noise");
}

std::unique_ptr<ReplayNoise> ReplayNoise::open(const std::string& path, int64_t frames, int64_t steps, int64_t channels,
                                               int64_t height, int64_t width) {
    SafetensorsCheckpoint f = SafetensorsCheckpoint::open(path);
    LR_CHECK(f.find("noise") != nullptr, path, ": no tensor 'noise' (expected [", frames, ", ", channels, ", ", height,
             ", ", width, "])");
    LR_CHECK(steps <= 1 || f.find("step_noise") != nullptr, path, ": no tensor 'step_noise' (expected [", steps - 1,
             ", ", frames, ", ", channels, ", ", height, ", ", width, "])");
    const TensorView noise = f.view("noise");
    const TensorView step_noise = steps > 1 ? f.view("step_noise") : TensorView();
    auto r = std::make_unique<ReplayNoise>(noise, step_noise, frames, steps, channels, height, width, path);
    r->file_.emplace(std::move(f));  // the views point into the mapping, which moves with the object
    return r;
}

void ReplayNoise::initial(int64_t frame, float* out) const {
    LR_ASSERT(frame >= 0 && frame < frames_, "replayed noise: frame ", frame, " of ", frames_);
    TensorView src = noise_.slice0(frame, frame + 1);
    cast(src, TensorView(out, DType::kF32, src.shape));
}

void ReplayNoise::step(int64_t step, int64_t frame, float* out) const {
    LR_ASSERT(step >= 0 && step < steps_ - 1 && frame >= 0 && frame < frames_, "replayed step noise: step ", step,
              ", frame ", frame);
    const TensorView s = step_noise_.slice0(step, step + 1).reshape(Shape{frames_, numel_}).slice0(frame, frame + 1);
    cast(s, TensorView(out, DType::kF32, s.shape));
}

}  // namespace lr
