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

// Keeps the replicas of a data-parallel run identical (harness/distributed.h implements it over LibTorch's
// c10d). Each replica steps on its own share of every global batch; all replicas make the same calls in the
// same order (collectives).
class ReplicaSync {
 public:
  virtual ~ReplicaSync() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Overwrites `tensors` with rank 0's (in place, one collective).
  virtual void broadcast_from_first(const std::vector<torch::Tensor>& tensors) = 0;
  // Replaces each defined gradient of `params` by the gradient of the mean over the global batch: the sum over
  // replicas of (local gradient x local images) / (global images). A replica whose loss was not finite passes
  // ok = false (its gradients are not used); returns false on every replica if any one did.
  virtual bool average_gradients(const std::vector<torch::Tensor>& params, int64_t local_images, bool ok) = 0;
  // Element-wise sums over the replicas, in place.
  virtual void sum(std::vector<double>& values) = 0;
};

// Rank 0's buffers of `module` (batch-norm running statistics) to every replica: what PyTorch's
// DistributedDataParallel does at the start of each forward pass by default (broadcast_buffers=True), so each
// replica normalises a batch with its own share's statistics and all carry rank 0's running statistics.
void broadcast_buffers(ReplicaSync& replicas, torch::nn::Module& module);

// What one step shares across the runs of a group.
struct StepBatch {
  int64_t epoch = 0, step = 0, steps_per_epoch = 1;
  const torch::Tensor& x;
  const torch::Tensor& y;
  const torch::Tensor& indices;
  const std::map<std::string, TapMap>& teacher_out;  // teacher run id -> its taps on this batch
  bool bf16 = false;
  torch::Device device = torch::kCPU;
  ReplicaSync* replicas = nullptr;  // data-parallel: x, y and indices are this replica's share of the batch
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

// A step of a run on its own model (called on a lane thread; with replicas, on one lane only, so every replica
// makes its collectives in the same order).
void step_on_lane(RunState& rs, const StepBatch& b);
// A step of every live student of a fused model: one forward of the fused model, each run's step core on
// its student's slices of the taps, one backward of the sum of the runs' losses (a run's parameters get
// only its own loss's gradient), then each student's own SGD update.
void step_fused(FusedGroup& g, const StepBatch& b);

}  // namespace kd
