#include "harness/fused_sgd.h"

#include <algorithm>

namespace kd {

void fused_sgd_step(FusedGroup& g, const std::vector<double>& lr, const std::vector<double>& wd) {
  torch::NoGradGuard ng;
  const auto K = static_cast<int64_t>(lr.size());
  if (g.params.empty()) return;
  auto opt = torch::TensorOptions().dtype(g.params.front().scalar_type()).device(g.params.front().device());
  auto lr_t = torch::tensor(lr, torch::kDouble).to(opt).view({K, 1});
  auto wd_t = torch::tensor(wd, torch::kDouble).to(opt).view({K, 1});
  const bool any_wd = std::any_of(wd.begin(), wd.end(), [](double v) { return v != 0; });
  for (size_t i = 0; i < g.params.size(); ++i) {
    auto& p = g.params[i];
    if (!p.grad().defined()) continue;
    auto pv = p.view({K, -1});
    auto d = p.grad().view({K, -1});
    if (any_wd) d = d + wd_t * pv;
    if (g.momentum_coef != 0) {
      auto& buf = g.momentum[i];
      if (!buf.defined()) {
        buf = d.clone();
      } else {
        buf.mul_(g.momentum_coef).add_(d);
      }
      d = g.nesterov ? d.add(buf, g.momentum_coef) : buf;
    }
    pv.sub_(lr_t * d);
  }
}

}  // namespace kd
