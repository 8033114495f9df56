// Lanes: the runs of a lockstep group spread over threads (one per core on a CPU).
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "models/model.h"

namespace kd {

// Runs fn on every item, the items split into `lanes` contiguous shares, one thread per share
// (the first on the calling thread). Exceptions are re-thrown after all lanes joined.
template <typename T, typename Fn>
void for_each_lane(std::vector<T*>& items, int lanes, Fn fn) {
  lanes = std::max(1, std::min<int>(lanes, static_cast<int>(items.size())));
  if (lanes == 1) {
    for (auto* it : items) fn(*it);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<size_t>(lanes));
  auto run_share = [&](int lane) {
    try {
      size_t n = items.size();
      size_t lo = n * static_cast<size_t>(lane) / static_cast<size_t>(lanes);
      size_t hi = n * static_cast<size_t>(lane + 1) / static_cast<size_t>(lanes);
      for (size_t i = lo; i < hi; ++i) fn(*items[i]);
    } catch (...) {
      errors[static_cast<size_t>(lane)] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (int l = 1; l < lanes; ++l) threads.emplace_back(run_share, l);
  run_share(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// Runs `fn` around each piece of work on its lane thread (autocast is per thread); nullptr = run it bare.
using AroundFn = std::function<void(const std::function<void()>&)>;

// `model`'s forward pass (no grad) over `x` in `chunks` pieces spread over `lanes` threads; returns `taps`
// ("logits" included when named) for the whole of x. `around`, when given, wraps each piece's forward on its
// thread (autocast is per thread).
TapMap forward_on_lanes(TapModel& model, const torch::Tensor& x, int64_t chunks, int lanes,
                        const std::set<std::string>& taps, const AroundFn& around);

}  // namespace kd
