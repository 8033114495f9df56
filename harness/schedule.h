// The learning-rate schedule of a recipe (the optimizers are harness/updater.h).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "harness/recipe.h"

namespace kd {

// Learning rate at fractional epoch `t` of a stage of `epochs` epochs.
double learning_rate(const Recipe& r, int64_t epochs, double t, int64_t steps_per_epoch);

}  // namespace kd
