// Internal to the trainer: the state of one run while its lockstep group trains, and of a fused model.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "harness/metrics.h"
#include "harness/trainer.h"
#include "harness/updater.h"

namespace kd {

struct StageState {
  StageSpec spec;
  int64_t epochs = 0;
  Recipe recipe;  // the run's recipe, with the stage's own base learning rate where it declares one
  // What the stage trains (the student's parameters, all, up to a tap or none, and the method modules it trains)
  // and their optimizer state; null when it trains nothing of its own (a fused student whose method has no module).
  std::unique_ptr<Updater> updater;
};

// Why a run failed in a step; handled after the lanes joined.
struct Failure {
  std::string stage, term, message;
};

// What one epoch of a run adds up (means are taken at the epoch's end).
struct EpochAccumulators {
  int64_t epoch = 0;  // the run's epoch these sums are of
  std::map<std::string, double> term_sums;
  double total_sum = 0;
  int64_t correct = 0, seen = 0, steps = 0;
};

// What the static step (harness/static_step.h, the step CUDA graphs capture) keeps of a run: the stage it was set
// up for, its learning rate as a device tensor read at every replay, and the step's outputs.
struct StaticRunStep {
  size_t stage = static_cast<size_t>(-1);
  torch::Tensor lr;  // [1, 1] on the device
  // Written by every step: [values of the terms..., total, gradient norm (0 without clipping), correct] (doubles).
  torch::Tensor out;
  std::vector<std::string> terms;  // the names of the terms in `out`
};

struct RunState {
  const GroupMember* member = nullptr;
  const RunSpec* spec = nullptr;
  ModelPtr student;
  std::shared_ptr<Method> method;
  std::shared_ptr<torch::nn::Module> method_module;
  std::vector<StageState> stages;
  int64_t total_epochs = 0;
  std::vector<std::string> student_taps;
  std::vector<std::vector<std::string>> teacher_taps;  // per teacher of this run
  bool done = false, failed = false;
  RunOutcome outcome;
  EpochAccumulators acc;
  // best-on-validation
  double best_val = -1;
  int64_t best_epoch = -1;
  std::vector<torch::Tensor> best_state;
  EvalMetrics best_val_metrics;
  double seconds = 0;                      // training time attributed to this run
  std::optional<Failure> pending_failure;  // set by a lane, handled after the lanes join
  std::string setup_failure;               // the method's prepare() failed (MethodError): the run fails at the start
  torch::Tensor val_logits;
  EvalMetrics final_val;                           // the last epoch's validation metrics
  torch::Tensor test_logits, bestval_test_logits;  // at the end: final and best-on-validation weights
  int64_t images = 0;
  int fused_group = -1;     // index into the fused groups, or -1 (trained on a lane)
  int64_t fused_index = 0;  // which student of its fused group
  StaticRunStep static_step;

  // Stage index and epoch within it, for the run's epoch e.
  std::pair<size_t, int64_t> stage_of(int64_t e) const {
    for (size_t i = 0; i < stages.size(); ++i) {
      if (e < stages[i].epochs) return {i, e};
      e -= stages[i].epochs;
    }
    return {stages.size() - 1, stages.back().epochs - 1};
  }
  std::vector<torch::Tensor> method_parameters() const {
    return method_module ? method_module->parameters() : std::vector<torch::Tensor>{};
  }
  // The parameters of the method's modules named in `children` (direct children of its module); all when empty.
  std::vector<torch::Tensor> method_parameters(const std::vector<std::string>& children) const {
    if (!method_module || children.empty()) return method_parameters();
    std::vector<torch::Tensor> out;
    for (const auto& name : children)
      for (auto& p : method_child(name)->parameters()) out.push_back(p);
    return out;
  }
  // What stage `st` trains of the method's modules: its train_modules (all when empty) less its eval_modules.
  std::vector<torch::Tensor> method_parameters(const StageSpec& st) const {
    std::vector<torch::Tensor> out = method_parameters(st.train_modules);
    for (const auto& name : st.eval_modules)
      for (const auto& p : method_child(name)->parameters())
        out.erase(std::remove_if(out.begin(), out.end(), [&](const torch::Tensor& q) { return q.is_same(p); }),
                  out.end());
    return out;
  }
  // The method's modules in training mode for stage `st`, except its eval_modules.
  void set_method_modes(const StageSpec& st) const {
    if (!method_module) return;
    method_module->train();
    for (const auto& name : st.eval_modules) method_child(name)->eval();
  }
  std::shared_ptr<torch::nn::Module> method_child(const std::string& name) const {
    auto found = method_module ? method_module->named_children()
                               : torch::OrderedDict<std::string, std::shared_ptr<torch::nn::Module>>{};
    if (!found.contains(name))
      throw std::logic_error("run " + (spec ? spec->id : std::string("?")) + ": a stage names method module '" + name +
                             "', which the method's module() does not have");
    return found[name];
  }
};

// Runs trained as ONE horizontally fused model; student k of the fused model is runs[k].
struct FusedGroup {
  std::vector<RunState*> runs;
  ModelPtr model;
  // The fused parameters (K blocks: student k's recipe gives block k its weight decay and clipping norm).
  std::unique_ptr<Updater> updater;
  torch::Tensor lr;  // the static step's per-student learning rates, [K, 1] on the device
};

}  // namespace kd
