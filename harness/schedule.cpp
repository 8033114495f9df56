#include "harness/schedule.h"

#include <algorithm>
#include <cmath>

namespace kd {

double learning_rate(const Recipe& r, int64_t epochs, double t, int64_t steps_per_epoch) {
  const double base = r.lr;
  if (r.warmup_epochs > 0 && t < r.warmup_epochs) {
    // Linear warm-up reaching `base` at the end of warm-up; the first step already moves.
    double step = std::floor(t * steps_per_epoch) + 1;
    return base * std::min(1.0, step / (r.warmup_epochs * steps_per_epoch));
  }
  const auto epoch = static_cast<int64_t>(std::floor(t));
  if (r.schedule == "constant") return base;
  if (r.schedule == "step") return base * std::pow(r.gamma, static_cast<double>(epoch / r.step_size));
  if (r.schedule == "multistep") {
    int passed = 0;
    for (auto m : r.milestones) passed += epoch >= m;
    return base * std::pow(r.gamma, passed);
  }
  // cosine over the epochs after warm-up
  double span = std::max(1e-9, static_cast<double>(epochs) - r.warmup_epochs);
  double x = std::clamp((t - r.warmup_epochs) / span, 0.0, 1.0);
  return r.min_lr + (base - r.min_lr) * 0.5 * (1.0 + std::cos(M_PI * x));
}

}  // namespace kd
