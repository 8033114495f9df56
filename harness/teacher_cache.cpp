#include "harness/teacher_cache.h"

#include "harness/lanes.h"
#include "harness/metrics.h"

namespace kd {

bool TeacherOutputCache::lookup(const TeacherHandle& teacher, const std::set<std::string>& taps,
                                const torch::Tensor& indices, const DataSplits& data, torch::Device device, TapMap* out,
                                int lanes) {
  auto& have = full_[teacher.run_id];
  std::set<std::string> missing;
  for (const auto& tap : taps) {
    if (refused_.count({teacher.run_id, tap})) return false;
    if (!have.count(tap)) missing.insert(tap);
  }
  if (!missing.empty()) {
    Loader loader(data.train, in_order(data, kFillBatch, 1));
    loader.start_epoch(0);
    torch::NoGradGuard ng;
    const bool was_training = teacher.model->is_training();
    teacher.model->eval();
    std::map<std::string, std::vector<torch::Tensor>> parts;
    Batch b;
    bool first = true;
    while (loader.next(b)) {
      // The batch in one chunk per lane (each lane's torch runs one thread while a group trains).
      TapMap all = forward_on_lanes(*teacher.model, b.x.to(device), std::max(1, lanes), lanes, missing, nullptr);
      if (first) {
        // Refuse, before computing the rest, the taps whose whole-split size would break the budget.
        int64_t need = 0;
        for (const auto& tap : missing) need += all.at(tap).numel() / b.x.size(0) * data.train->size() * 4;
        if (used_ + need > budget_) {
          for (const auto& tap : missing) refused_.insert({teacher.run_id, tap});
          teacher.model->train(was_training);
          return false;
        }
        used_ += need;
        first = false;
      }
      for (const auto& tap : missing) parts[tap].push_back(all.at(tap).to(torch::kFloat).clone());
    }
    teacher.model->train(was_training);
    for (auto& [tap, v] : parts) have[tap] = torch::cat(v, 0);
  }
  auto idx = indices.to(device);
  for (const auto& tap : taps) (*out)[tap] = have.at(tap).index_select(0, idx);
  return true;
}

}  // namespace kd
