// The run builder: the one place a planned run (a value, harness/plan.h) becomes the objects that train it. It
// makes the run's method from the registry (the run's method name and its resolved parameters), puts together
// the PrepareContext the method is prepared on, checks that every tap the method takes exists on the student and
// on each teacher, prepares the method with its own modules seeded from the run's seed, and makes the student
// with its seeded initial weights. Three callers, one code path:
//   the trainer        build_run for every run of a lockstep group, on the real student and teachers
//   `kdbench plan`     build_run on untrained zoo models, to measure each method's footprint
//                      (harness/method_footprint.cpp) and check its taps before anything trains
//   `kdbench loss`     build_method on the tap shapes of the tensors in a file (cli/cmd_loss.cpp)
// The plan holds no method objects: each run's method is made here, once, when the run is built.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "base/errors.h"
#include "datasets/dataset.h"
#include "harness/plan.h"
#include "methods/method.h"
#include "models/model.h"

namespace kd {

// A method made and prepared for one run.
struct BuiltMethod {
  std::shared_ptr<Method> method;
  std::vector<std::string> student_taps;               // what it takes from the student
  std::vector<std::vector<std::string>> teacher_taps;  // what it takes from each teacher
  std::shared_ptr<torch::nn::Module> module;           // its own modules once prepared, on the device (or null)
  // The MethodError its prepare() threw (an exception in a Python method): that run fails alone, at its start.
  std::string prepare_failure;
};

// A tap a method takes that a side (the student, or teacher `teacher`) does not have. A ConfigError keyed by
// the caller's `key`; `kdbench loss` turns it into a data error naming its file.
class MissingTap : public ConfigError {
 public:
  MissingTap(const std::string& key, const std::string& message, int teacher, std::string tap)
      : ConfigError(key, message), teacher(teacher), tap(std::move(tap)) {}
  int teacher;  // -1: the student
  std::string tap;
};

// What the error messages call each side: e.g. "student 'cnn_tiny'" and "teacher 0 ('cnn_large')".
struct SideNames {
  std::string student;
  std::vector<std::string> teachers;
};

// Makes method `name` with resolved parameters `params` (the registry's factory), checks its taps against the
// shapes in `ctx` (MissingTap keyed `key`, before anything is prepared), seeds the global generator with
// `module_seed` and prepares the method on `ctx`, then moves its module to ctx.device. A MethodError from
// prepare() is kept in prepare_failure; other exceptions (a ConfigError for shapes the method cannot take)
// propagate.
BuiltMethod build_method(const std::string& name, const json& params, const PrepareContext& ctx,
                         uint64_t module_seed, const SideNames& sides, const std::string& key);

// A teacher of a run as the builder sees it: its model (eval mode) and the shapes of its taps on the probe.
struct BuildTeacher {
  std::shared_ptr<TapModel> model;
  TapShapes shapes;
  std::string name;  // for messages: "teacher 0 ('cnn_large')"
};

// Where a run is built: the data (its geometry, training-split size and labels), the device, a probe batch on
// that device (two images are enough) for the student's tap shapes, and the memory format.
struct BuildSite {
  const DataSplits* data = nullptr;
  torch::Device device = torch::kCPU;
  torch::Tensor probe;
  bool channels_last = false;
};

// A run built to train: its student (seeded initial weights, on the device) and its method.
struct BuiltRun {
  ModelPtr student;
  BuiltMethod method;
  int64_t params = 0, macs = 0, method_params = 0;  // the student's and the method's own parameters; MACs
};

// The seed of a run's method modules: a function of the run's seed alone, so a run's modules start the same
// whichever runs share its group.
uint64_t method_module_seed(int64_t run_seed);

// Builds run `run` of a plan against `teachers` (in the run's teacher order) at `site`. Throws MissingTap keyed
// by the run's name when its method takes a tap the student or a teacher lacks.
BuiltRun build_run(const RunSpec& run, const std::vector<BuildTeacher>& teachers, const BuildSite& site);

}  // namespace kd
