// Internal to the trainer: the teachers of a lockstep group. One model per distinct teacher run (eval mode,
// channels-last when asked) with the shapes of its taps on the group's probe batch; which teachers and taps the
// epoch's active runs need; and their outputs for a batch, computed once and shared by every run of the group:
// from the whole-split cache (harness/teacher_cache.h) when the training data are not randomly augmented, else one
// forward of the batch in a fixed number of chunks spread over the lanes (so the numbers do not depend on how many
// runs the group has).
#pragma once
#include <torch/torch.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "harness/run_state.h"
#include "harness/trainer.h"

namespace kd {

class GroupTeachers {
 public:
  // `cacheable`: the training split is not randomly augmented (a sample is the same tensor whenever drawn).
  GroupTeachers(const std::vector<GroupMember>& members, const DataSplits& data, const TrainOptions& opts, int lanes,
                bool cacheable, const torch::Tensor& probe);
  // The tap shapes of teacher run `run_id` on the probe batch.
  const TapShapes& shapes(const std::string& run_id) const { return shapes_.at(run_id); }
  // The teachers and taps the epoch's active runs need.
  void need_for(const std::vector<RunState*>& active);
  bool any_needed() const { return !needed_.empty(); }
  // Every needed teacher's taps for batch `x`; `indices`: its samples' indices in the training split (the cache's
  // key; on any device).
  std::map<std::string, TapMap> outputs(const torch::Tensor& indices, const torch::Tensor& x);

 private:
  const DataSplits& data_;
  const TrainOptions& opts_;
  const int lanes_;
  const bool cacheable_;
  std::map<std::string, const TeacherHandle*> teachers_;
  std::map<std::string, TapShapes> shapes_;
  std::map<std::string, std::set<std::string>> needed_;  // teacher run id -> taps this epoch needs
};

}  // namespace kd
