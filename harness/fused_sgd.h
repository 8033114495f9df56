// SGD with the learning rate and weight decay read from tensors, on K students at once: every tensor is K
// blocks along dim 0 (K = 1 for one model). Used by horizontally fused students, and by the static step
// that CUDA graphs replay (a learning rate in a device tensor is read at replay, a double would be frozen
// into the graph).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "harness/run_state.h"

namespace kd {

// PyTorch's SGD semantics (weight decay added to the gradient, momentum buffer = the first gradient, then
// mu * buf + g, Nesterov g + mu * buf, p -= lr * d) on `params` (each K blocks along dim 0) with student k's
// learning rate lr[k] and weight decay wd[k] (`lr` and `wd`: [K, 1] tensors on the parameters' device).
// `momentum` holds one buffer per parameter (undefined until the first step). `any_wd`: whether any wd is
// non-zero (else the weight-decay term is skipped, as PyTorch does for wd = 0).
void sgd_step_blocks(const std::vector<torch::Tensor>& params, std::vector<torch::Tensor>& momentum,
                     const torch::Tensor& lr, const torch::Tensor& wd, bool any_wd, double momentum_coef,
                     bool nesterov);

// The eager step of a fused group: each student's own lr[k] and wd[k] (doubles, copied to the device).
void fused_sgd_step(FusedGroup& g, const std::vector<double>& lr, const std::vector<double>& wd);

}  // namespace kd
