#include "harness/group_teachers.h"

#include "harness/autocast.h"
#include "harness/lanes.h"
#include "harness/model_state.h"

namespace kd {

GroupTeachers::GroupTeachers(const std::vector<GroupMember>& members, const DataSplits& data,
                             const TrainOptions& opts, int lanes, bool cacheable, const torch::Tensor& probe)
    : data_(data), opts_(opts), lanes_(lanes), cacheable_(cacheable && opts.teacher_cache) {
  for (const auto& m : members)
    for (const auto* t : m.teachers) teachers_[t->run_id] = t;
  for (auto& [id, t] : teachers_) {
    t->model->eval();
    if (opts_.channels_last) to_channels_last(*t->model);
    shapes_[id] = tap_shapes(*t->model, probe);
  }
}

void GroupTeachers::need_for(const std::vector<RunState*>& active) {
  needed_.clear();
  for (auto* rs : active)
    for (size_t t = 0; t < rs->member->teachers.size(); ++t)
      for (const auto& tap : rs->teacher_taps[t]) needed_[rs->member->teachers[t]->run_id].insert(tap);
}

std::map<std::string, TapMap> GroupTeachers::outputs(const torch::Tensor& indices, const torch::Tensor& x) {
  std::map<std::string, TapMap> out;
  const torch::Device device = opts_.device;
  for (const auto& [id, taps] : needed_) {
    const TeacherHandle& t = *teachers_.at(id);
    TapMap keep;
    if (cacheable_ && opts_.teacher_cache->lookup(t, taps, indices, data_, device, &keep, lanes_)) {
      out[id] = std::move(keep);
      continue;
    }
    out[id] = forward_on_lanes(*t.model, x, opts_.teacher_chunks, lanes_, taps, [&](const std::function<void()>& fn) {
      AutocastScope autocast(opts_.bf16, device.type());  // per thread, as grad mode is
      fn();
    });
  }
  return out;
}

}  // namespace kd
