// Teachers of a lockstep group: a frozen model with its cached evaluation logits, and the teacher-output
// cache shared by every run of a sweep when the training split is not randomly augmented.
#pragma once
#include <torch/torch.h>

#include <map>
#include <set>
#include <string>
#include <utility>

#include "datasets/dataset.h"
#include "models/model.h"

namespace kd {

// A model a run uses as teacher, and its cached eval-split logits.
struct TeacherHandle {
  std::string run_id;
  ModelPtr model;
  torch::Tensor val_logits, test_logits;  // filled by the runner (for agreement)
};

// Teacher outputs over the whole training split, computed once per teacher and tap in a fixed order (eval
// mode, the split in index order, fixed batches of kFillBatch) and shared by every run of every seed and
// epoch of a sweep. Exact only when the training loader applies no random augmentation, so that sample i's
// input is the same tensor whenever it is drawn: the trainer uses it only then, and runs the teacher on each
// batch otherwise. Because the fill order is fixed, a run's inputs do not depend on which runs, groups or
// processes came first (resume gives the same numbers). Taps that would take more than `budget_bytes` in
// all are not cached.
class TeacherOutputCache {
 public:
  explicit TeacherOutputCache(int64_t budget_bytes = int64_t(2) << 30) : budget_(budget_bytes) {}
  void set_budget(int64_t bytes) { budget_ = bytes; }
  // Fills `out` with `taps` of `teacher` for training-split samples `indices` (int64 [B]); computes what is
  // missing first. Returns false (and fills nothing) when they do not fit the budget.
  // The missing outputs are computed in batches of kFillBatch, each split over `lanes` threads.
  bool lookup(const TeacherHandle& teacher, const std::set<std::string>& taps, const torch::Tensor& indices,
              const DataSplits& data, torch::Device device, TapMap* out, int lanes = 1);
  static constexpr int64_t kFillBatch = 256;
  int64_t bytes() const { return used_; }

 private:
  int64_t budget_, used_ = 0;
  std::map<std::string, TapMap> full_;                     // teacher run id -> tap -> [N, ...]
  std::set<std::pair<std::string, std::string>> refused_;  // (teacher, tap) over the budget
};

}  // namespace kd
