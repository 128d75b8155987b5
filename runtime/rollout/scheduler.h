// The flow-matching schedule of Self-Forcing (utils/scheduler.py FlowMatchScheduler, as WanDiffusionWrapper
// builds it: shift = timestep_shift, sigma_min = 0, extra_one_step = True, set_timesteps(1000)):
//   sigmas    = linspace(1, 0, 1001)[:-1]                    (fp32, as torch.linspace computes it)
//   sigmas'   = shift * sigma / (1 + (shift - 1) * sigma)    (fp32)
//   timesteps = 1000 * sigmas'                               (fp32)
// The denoising list [1000, 750, 500, 250] is warped to timesteps[1000 - s] (index 1000 is 0), giving
// [1000, 937.5, 833.33, 625] at shift 5 (pipeline/causal_inference.py, warp_denoising_step).
// A step converts the predicted flow to x0 = x_t - sigma_t * flow in double, then re-noises x0 to the next
// timestep with (1 - sigma) * x0 + sigma * noise in fp32; sigma_t is looked up as the reference does (the
// table entry nearest to t). The Euler sampler (rollout.sampler EULER) instead follows the flow-matching ODE to the
// next timestep, x_t' = x_t + (sigma_t' - sigma_t) * flow in double, and only the last step's x0 is kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lr {

class FlowMatchScheduler {
  public:
    explicit FlowMatchScheduler(double shift, int num_train_timesteps = 1000);

    double shift() const { return shift_; }
    const std::vector<float>& sigmas() const { return sigmas_; }        // [num_train_timesteps], from 1 down
    const std::vector<float>& timesteps() const { return timesteps_; }  // [num_train_timesteps]

    // timesteps[num_train_timesteps - s] for each s (s = 0 gives 0); InputError for s outside [0, num_train].
    std::vector<float> warp(const std::vector<int>& steps) const;
    // argmin_i |timesteps[i] - t| (the first on ties), in double.
    int64_t index_of(double t) const;
    float sigma_at(double t) const { return sigmas_[static_cast<size_t>(index_of(t))]; }

    // x0 = x_t - sigma_t * flow, computed in double and rounded to fp32. n elements.
    void flow_to_x0(const float* flow, const float* xt, double t, float* x0, int64_t n) const;
    // (1 - sigma_t) * x0 + sigma_t * noise in fp32. n elements; out may alias x0.
    void add_noise(const float* x0, const float* noise, double t, float* out, int64_t n) const;
    // x = x + (sigma(t_next) - sigma(t)) * flow, in double (the difference of the two fp32 table values), rounded to
    // fp32; in place. n elements.
    void euler_step(const float* flow, double t, double t_next, float* x, int64_t n) const;
    // sigma(t_next) - sigma(t) in double: what euler_step and launch_euler_step scale the flow by.
    double euler_dsigma(double t, double t_next) const {
        return static_cast<double>(sigma_at(t_next)) - static_cast<double>(sigma_at(t));
    }

  private:
    double shift_;
    std::vector<float> sigmas_;
    std::vector<float> timesteps_;
};

}  // namespace lr
