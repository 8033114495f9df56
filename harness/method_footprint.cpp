#include "harness/method_footprint.h"

#include "base/errors.h"
#include "harness/model_state.h"
#include "harness/run_builder.h"
#include "models/model.h"

namespace kd {

std::optional<MethodFootprint> method_footprint(const RunSpec& run, const Plan& plan, const DataSplits& data) {
  if (run.role != RunRole::Student || run.model.empty()) return std::nullopt;
  BuildSite site;
  site.data = &data;
  site.probe = torch::zeros({2, data.channels, data.image_size, data.image_size});
  std::vector<BuildTeacher> teachers;
  for (size_t i = 0; i < run.teacher_ids.size(); ++i) {
    const RunSpec* t = plan.find(run.teacher_ids[i]);
    if (!t || t->model.empty()) return std::nullopt;
    BuildTeacher bt;
    bt.model = create_model(ModelSpec{t->model, data.num_classes, data.channels, data.image_size});
    bt.model->eval();
    bt.shapes = tap_shapes(*bt.model, site.probe);
    bt.name = "teacher " + std::to_string(i) + " ('" + t->model + "')";
    teachers.push_back(std::move(bt));
  }
  BuiltRun built;
  try {
    built = build_run(run, teachers, site);
  } catch (const MissingTap&) {
    throw;
  } catch (const ConfigError& e) {  // shapes the method's modules cannot be built for
    throw ConfigError(run.name + " (" + run.model + ")" + (e.key_path().empty() ? "" : ".params." + e.key_path()),
                      e.message());
  }
  if (!built.method.prepare_failure.empty()) throw MethodError(built.method.prepare_failure);
  MethodFootprint f;
  const auto& module = built.method.module;
  if (!module) return f;
  for (const auto& p : module->parameters()) {
    f.parameters += p.numel();
    f.bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  for (const auto& b : module->buffers()) {
    f.buffer_elements += b.numel();
    f.buffer_bytes += b.numel() * static_cast<int64_t>(b.element_size());
    f.bytes += b.numel() * static_cast<int64_t>(b.element_size());
  }
  return f;
}

}  // namespace kd
