#pragma once
// Learning rate: linear warmup, then cosine decay to a floor (nanoGPT / llm.c schedule).

#include <trident/core/error.hpp>

#include <cmath>
#include <cstdint>

namespace trident::optim {

struct CosineSchedule {
  double max_lr = 3e-4;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;
  double min_lr_fraction = 0.1;  // the floor, as a fraction of max_lr

  // Learning rate of step `step` (counting from 1). Warmup ramps (step/warmup)*max_lr, so with
  // no warmup the first step uses exactly max_lr; then cosine from max_lr to the floor at the
  // last step.
  double operator()(std::int64_t step) const {
    require_argument(step >= 1, "trident::optim::CosineSchedule: steps count from 1, got ", step);
    if (step <= warmup_steps) return max_lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
    const double min_lr = max_lr * min_lr_fraction;
    const std::int64_t decay_steps = total_steps - warmup_steps;
    if (decay_steps <= 1) return max_lr;
    const double progress = static_cast<double>(step - warmup_steps - 1) / static_cast<double>(decay_steps - 1);
    const double cosine = 0.5 * (1.0 + std::cos(3.14159265358979323846 * std::fmin(progress, 1.0)));
    return max_lr - (1.0 - cosine) * (max_lr - min_lr);  // exactly max_lr when cosine == 1
  }
};

}  // namespace trident::optim
