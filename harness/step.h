// The step engine: one training step of a run, written once.
//
//   the loss core   method_loss: the run's method on its student taps and its teachers' outputs -> the weighted
//                   total (what backward runs on) and every term's value packed in one device tensor, with nothing
//                   read on the host; read_loss reads them (one copy) and checks that they are finite;
//   the updater     harness/updater.h: clipping and the optimizer step (SGD, AdamW), for one model or K fused
//                   students, with host or device learning rates;
//   two strategies  run_step (a run on its own model, on a lane) and fused_step (the live students of a
//                   horizontally fused model), each in two modes: Eager (the loss is read before the update, a
//                   non-finite one fails the run and skips its update; data-parallel gradients are averaged) and
//                   Static (device work only, the form a CUDA graph captures: rates from device tensors, the
//                   step's values packed in the run's static_step.out and read after the step by
//                   harness/static_step.h, which captures and replays it).
// So a new optimizer, a loss scaling or a gradient accumulation is one edit, for every execution.
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

// How a step is executed (see the top of this file).
enum class StepMode { Eager, Static };

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

// One run's loss on one step, on the device.
struct RunLoss {
  std::vector<std::string> names;  // the terms, in the method's order
  torch::Tensor total;             // the weighted sum of the terms (float), what backward runs on
  torch::Tensor packed;            // [n + 1] doubles: each term's unweighted value, then the total (detached)
};

// The run's learning rate at this step of its current stage.
double step_learning_rate(const RunState& rs, const StepBatch& b);
// The loss core: the run's method on its student taps (`logits` included) and its teachers' outputs, the weighted
// sum of its terms. A method that returns no terms or fails in its own code (MethodError: a Python exception) sets
// rs.pending_failure and gives nullopt.
std::optional<RunLoss> method_loss(RunState& rs, const TapMap& student_taps, const StepBatch& b);
// The loss on the host (one copy): the terms' values and the total; false (and rs.pending_failure) when the total
// is not finite.
bool read_loss(RunState& rs, const RunLoss& loss, const StepBatch& b, std::vector<double>& values, double& total);
// The failure a step's values mean, if any: the first non-finite term (or "total") of a NaN/inf total.
std::optional<Failure> nonfinite_loss(const std::string& stage, const std::vector<std::string>& names,
                                      const std::vector<double>& values, double total);
// Adds a step that updated the run to its epoch accumulators (names[k] has values[k]; `correct` of `seen`
// training samples predicted right).
void account_values(RunState& rs, const std::vector<std::string>& names, const std::vector<double>& values,
                    double total, int64_t correct, int64_t seen, double seconds);

// A step of a run on its own model (Eager: called on a lane thread; with replicas, on one lane only, so every
// replica makes its collectives in the same order).
void run_step(RunState& rs, const StepBatch& b, StepMode mode);
// A step of every live student of a fused model: one forward of the fused model, the loss core on each student's
// slices of the taps, one backward of the sum of the students' losses (a student's parameters get only its own
// loss's gradient), then the group's updater (each block its student's rates) and each run's own for its method's
// modules.
void fused_step(FusedGroup& g, const StepBatch& b, StepMode mode);

}  // namespace kd
