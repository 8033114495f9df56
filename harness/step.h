// One training step. The step core (run_loss, account_step) is the same for a run stepped on its own
// model on a lane and for a student of a fused model; only the forward pass, backward and update differ.
#pragma once
#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/run_state.h"

namespace kd {

// What one step shares across the runs of a group.
struct StepBatch {
  int64_t epoch = 0, step = 0, steps_per_epoch = 1;
  const torch::Tensor& x;
  const torch::Tensor& y;
  const torch::Tensor& indices;
  const std::map<std::string, TapMap>& teacher_out;  // teacher run id -> its taps on this batch
  bool bf16 = false;
  torch::Device device = torch::kCPU;
};

// One run's loss on one step: its method's terms, their values, and the weighted total.
struct StepLoss {
  LossTerms terms;
  std::vector<double> values;
  torch::Tensor total;
  double total_value = 0;
};

// The run's learning rate at this step of its current stage.
double step_learning_rate(const RunState& rs, const StepBatch& b);
// The step core: the run's method on its student taps (`logits` included) and its teachers' outputs, the
// weighted sum of its terms, and the check that it is finite. On failure (no terms, NaN or inf) it sets
// rs.pending_failure and returns nullopt.
std::optional<StepLoss> run_loss(RunState& rs, const TapMap& student_taps, const StepBatch& b);
// The failure a step's values mean, if any: the first non-finite term (or "total") of a NaN/inf total.
std::optional<Failure> nonfinite_loss(const std::string& stage, const std::vector<std::string>& names,
                                      const std::vector<double>& values, double total);
// Adds a step that updated the run to its epoch accumulators (names[k] has values[k]; `correct` of `seen`
// training samples predicted right).
void account_values(RunState& rs, const std::vector<std::string>& names, const std::vector<double>& values,
                    double total, int64_t correct, int64_t seen, double seconds);
// The same from a StepLoss and the step's logits.
void account_step(RunState& rs, const StepLoss& loss, const torch::Tensor& logits, const torch::Tensor& y,
                  double seconds);

// A step of a run on its own model (called on a lane thread).
void step_on_lane(RunState& rs, const StepBatch& b);
// A step of every live student of a fused model: one forward of the fused model, each run's step core on
// its student's slices of the taps, one backward of the sum of the runs' losses (a run's parameters get
// only its own loss's gradient), then each student's own SGD update.
void step_fused(FusedGroup& g, const StepBatch& b);

}  // namespace kd
