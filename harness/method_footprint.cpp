#include "harness/method_footprint.h"

#include "base/errors.h"
#include "harness/model_state.h"
#include "models/model.h"

namespace kd {

namespace {

void require_taps(const TapShapes& have, const std::vector<std::string>& need, const RunSpec& run,
                  const std::string& whose) {
  for (const auto& tap : need)
    if (!have.count(tap))
      throw ConfigError(
          run.name, "method '" + run.method + "' needs tap '" + tap + "' from " + whose + ", which it does not have");
}

}  // namespace

std::optional<MethodFootprint> method_footprint(const RunSpec& run, const Plan& plan, const DataSplits& data) {
  if (run.role != RunRole::Student || !run.method_instance || run.model.empty()) return std::nullopt;
  auto method = MethodRegistry::instance().create(run.method, MethodParams(run.params));
  const auto x = torch::zeros({2, data.channels, data.image_size, data.image_size});
  auto build = [&](const std::string& model) {
    return create_model(ModelSpec{model, data.num_classes, data.channels, data.image_size});
  };
  PrepareContext ctx;
  ctx.student = tap_shapes(*build(run.model), x);
  ctx.train_size = data.train->size();
  ctx.num_classes = data.num_classes;
  ctx.train_labels = data.train->all_labels();
  require_taps(ctx.student, method->student_taps(), run, "student '" + run.model + "'");
  for (size_t i = 0; i < run.teacher_ids.size(); ++i) {
    const RunSpec* t = plan.find(run.teacher_ids[i]);
    if (!t || t->model.empty()) return std::nullopt;
    auto teacher = build(t->model);
    teacher->eval();
    ctx.teachers.push_back(tap_shapes(*teacher, x));
    require_taps(ctx.teachers.back(), method->teacher_taps(static_cast<int>(i)), run,
                 "teacher " + std::to_string(i) + " ('" + t->model + "')");
    ctx.teacher_tap_norms.push_back(tap_norms(*teacher));
    ctx.teacher_modules.push_back(teacher);
  }
  try {
    method->prepare(ctx);
  } catch (const ConfigError& e) {
    throw ConfigError(run.name + " (" + run.model + ")" + (e.key_path().empty() ? "" : ".params." + e.key_path()),
                      e.message());
  }
  MethodFootprint f;
  auto module = method->module();
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
