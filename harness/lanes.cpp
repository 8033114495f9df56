#include "harness/lanes.h"

#include <numeric>

namespace kd {

TapMap forward_on_lanes(TapModel& model, const torch::Tensor& x, int64_t chunks, int lanes,
                        const std::set<std::string>& taps, const AroundFn& around) {
  std::vector<torch::Tensor> xs = x.chunk(std::max<int64_t>(1, std::min<int64_t>(chunks, x.size(0))), 0);
  std::vector<TapMap> outs(xs.size());
  std::vector<size_t> order(xs.size());
  std::iota(order.begin(), order.end(), 0);
  std::vector<size_t*> items;
  for (auto& o : order) items.push_back(&o);
  for_each_lane(items, lanes, [&](size_t& c) {
    auto piece = [&] {
      torch::NoGradGuard ng;  // per thread
      TapMap all;
      auto logits = model.forward_taps(xs[c], &all);
      all["logits"] = logits;
      for (const auto& tap : taps) outs[c][tap] = all.at(tap);
    };
    if (around)
      around(piece);
    else
      piece();
  });
  TapMap out;
  for (const auto& tap : taps) {
    std::vector<torch::Tensor> parts;
    for (auto& o : outs) parts.push_back(o.at(tap));
    out[tap] = parts.size() == 1 ? parts.front() : torch::cat(parts, 0);
  }
  return out;
}

}  // namespace kd
