#include "harness/fused_sgd.h"

#include <algorithm>

namespace kd {

void sgd_step_blocks(const std::vector<torch::Tensor>& params, std::vector<torch::Tensor>& momentum,
                     const torch::Tensor& lr, const torch::Tensor& wd, bool any_wd, double momentum_coef,
                     bool nesterov) {
  torch::NoGradGuard ng;
  if (params.empty()) return;
  const int64_t K = lr.size(0);
  momentum.resize(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (!p.grad().defined()) continue;
    auto pv = p.view({K, -1});
    auto d = p.grad().view({K, -1});
    if (any_wd) d = d + wd * pv;
    if (momentum_coef != 0) {
      auto& buf = momentum[i];
      if (!buf.defined()) {
        buf = d.clone();
      } else {
        buf.mul_(momentum_coef).add_(d);
      }
      d = nesterov ? d.add(buf, momentum_coef) : buf;
    }
    pv.sub_(lr * d);
  }
}

void fused_sgd_step(FusedGroup& g, const std::vector<double>& lr, const std::vector<double>& wd) {
  if (g.params.empty()) return;
  const auto K = static_cast<int64_t>(lr.size());
  auto opt = torch::TensorOptions().dtype(g.params.front().scalar_type()).device(g.params.front().device());
  auto lr_t = torch::tensor(lr, torch::kDouble).to(opt).view({K, 1});
  auto wd_t = torch::tensor(wd, torch::kDouble).to(opt).view({K, 1});
  const bool any_wd = std::any_of(wd.begin(), wd.end(), [](double v) { return v != 0; });
  sgd_step_blocks(g.params, g.momentum, lr_t, wd_t, any_wd, g.momentum_coef, g.nesterov);
}

}  // namespace kd
