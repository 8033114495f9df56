// The learning-rate schedule and the optimizers of a recipe.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "harness/recipe.h"

namespace kd {

// Learning rate at fractional epoch `t` of a stage of `epochs` epochs.
double learning_rate(const Recipe& r, int64_t epochs, double t, int64_t steps_per_epoch);
// The recipe's optimizer (SGD or AdamW) over `params`.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Recipe& r, std::vector<torch::Tensor> params);
void set_lr(torch::optim::Optimizer& opt, double lr);

}  // namespace kd
