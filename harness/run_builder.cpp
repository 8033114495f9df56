#include "harness/run_builder.h"

#include "harness/model_state.h"

namespace kd {

BuiltMethod build_method(const std::string& name, const json& params, const PrepareContext& ctx,
                         uint64_t module_seed, const SideNames& sides, const std::string& key) {
  BuiltMethod b;
  b.method = MethodRegistry::instance().create(name, MethodParams(params));
  auto require = [&](const TapShapes& have, const std::vector<std::string>& need, int teacher,
                     const std::string& side) {
    for (const auto& tap : need)
      if (!have.count(tap))
        throw MissingTap(key, "method '" + name + "' needs tap '" + tap + "' from " + side + ", which it does not have",
                         teacher, tap);
  };
  b.student_taps = b.method->student_taps();
  require(ctx.student, b.student_taps, -1, sides.student);
  for (size_t t = 0; t < ctx.teachers.size(); ++t) {
    b.teacher_taps.push_back(b.method->teacher_taps(static_cast<int>(t)));
    require(ctx.teachers[t], b.teacher_taps.back(), static_cast<int>(t),
            t < sides.teachers.size() ? sides.teachers[t] : "teacher " + std::to_string(t));
  }
  torch::manual_seed(module_seed);
  try {
    b.method->prepare(ctx);
  } catch (const MethodError& e) {
    b.prepare_failure = e.what();
  }
  b.module = b.method->module();
  if (b.module) b.module->to(ctx.device);
  return b;
}

uint64_t method_module_seed(int64_t run_seed) {
  return static_cast<uint64_t>(run_seed) * 7919 + 17;
}

BuiltRun build_run(const RunSpec& run, const std::vector<BuildTeacher>& teachers, const BuildSite& site) {
  const DataSplits& data = *site.data;
  BuiltRun b;
  b.student = create_seeded_model(run.model, data, run.seed);
  b.student->to(site.device);
  if (site.channels_last) to_channels_last(*b.student);
  PrepareContext ctx;
  ctx.student = tap_shapes(*b.student, site.probe);
  ctx.device = site.device;
  ctx.train_size = data.train->size();
  ctx.num_classes = data.num_classes;
  ctx.train_labels = data.train->all_labels();
  SideNames sides{"student '" + run.model + "'", {}};
  for (const auto& t : teachers) {
    ctx.teachers.push_back(t.shapes);
    ctx.teacher_modules.push_back(t.model);
    ctx.teacher_tap_norms.push_back(tap_norms(*t.model));
    sides.teachers.push_back(t.name);
  }
  b.method = build_method(run.method, run.params, ctx, method_module_seed(run.seed), sides, run.name);
  if (b.method.module && site.channels_last) to_channels_last(*b.method.module);
  b.params = count_parameters(*b.student);
  b.macs = count_macs(*b.student, data.channels, data.image_size);
  b.method_params = b.method.module ? count_parameters(*b.method.module) : 0;
  return b;
}

}  // namespace kd
