#include "runtime/rollout/scheduler.h"

#include <cmath>

#include "runtime/core/check.h"

namespace lr {

FlowMatchScheduler::FlowMatchScheduler(double shift, int num_train_timesteps) : shift_(shift) {
    LR_CHECK(num_train_timesteps >= 2 && num_train_timesteps <= 100000, "scheduler: num_train_timesteps ",
             num_train_timesteps, " out of range");
    LR_CHECK(shift > 0 && std::isfinite(shift), "scheduler: timestep_shift must be positive, found ", shift);
    // torch.linspace(1, 0, n + 1) in fp32: step = (end - start) / n; the first half counts up from start, the
    // second half down from end, so both ends are exact. [:-1] drops the final 0.
    const int64_t steps = int64_t{num_train_timesteps} + 1;
    const float start = 1.0f, end = 0.0f;
    const float step = (end - start) / static_cast<float>(steps - 1);
    const int64_t halfway = steps / 2;
    const float s = static_cast<float>(shift);
    const float s_minus_1 = static_cast<float>(shift - 1.0);
    for (int64_t i = 0; i < num_train_timesteps; ++i) {
        const float sigma =
            i < halfway ? start + step * static_cast<float>(i) : end - step * static_cast<float>(steps - i - 1);
        const float shifted = (s * sigma) / (1.0f + s_minus_1 * sigma);
        sigmas_.push_back(shifted);
        timesteps_.push_back(shifted * static_cast<float>(num_train_timesteps));
    }
}

std::vector<float> FlowMatchScheduler::warp(const std::vector<int>& steps) const {
    const int n = static_cast<int>(timesteps_.size());
    std::vector<float> out;
    for (const int s : steps) {
        LR_CHECK(s >= 0 && s <= n, "denoising step ", s, " is outside [0, ", n, "]");
        out.push_back(s == 0 ? 0.0f : timesteps_[static_cast<size_t>(n - s)]);
    }
    return out;
}

int64_t FlowMatchScheduler::index_of(double t) const {
    int64_t best = 0;
    double best_d = std::fabs(static_cast<double>(timesteps_[0]) - t);
    for (size_t i = 1; i < timesteps_.size(); ++i) {
        const double d = std::fabs(static_cast<double>(timesteps_[i]) - t);
        if (d < best_d) {
            best_d = d;
            best = static_cast<int64_t>(i);
        }
    }
    return best;
}

void FlowMatchScheduler::flow_to_x0(const float* flow, const float* xt, double t, float* x0, int64_t n) const {
    const double sigma = sigma_at(t);
    for (int64_t i = 0; i < n; ++i) {
        x0[i] = static_cast<float>(static_cast<double>(xt[i]) - sigma * static_cast<double>(flow[i]));
    }
}

void FlowMatchScheduler::add_noise(const float* x0, const float* noise, double t, float* out, int64_t n) const {
    const float sigma = sigma_at(t);
    const float keep = 1.0f - sigma;
    for (int64_t i = 0; i < n; ++i) out[i] = keep * x0[i] + sigma * noise[i];
}

void FlowMatchScheduler::euler_step(const float* flow, double t, double t_next, float* x, int64_t n) const {
    const double d = euler_dsigma(t, t_next);
    for (int64_t i = 0; i < n; ++i)
        x[i] = static_cast<float>(static_cast<double>(x[i]) + d * static_cast<double>(flow[i]));
}

}  // namespace lr
