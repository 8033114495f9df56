// SGD on K horizontally fused students at once (every fused tensor is K blocks along dim 0).
#pragma once
#include <vector>

#include "harness/run_state.h"

namespace kd {

// PyTorch's SGD semantics (weight decay added to the gradient, momentum buffer = the first gradient, then
// mu * buf + g, Nesterov g + mu * buf) with each student's own learning rate lr[k] and weight decay wd[k].
void fused_sgd_step(FusedGroup& g, const std::vector<double>& lr, const std::vector<double>& wd);

}  // namespace kd
