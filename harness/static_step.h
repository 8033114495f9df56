// The static step: one training step of every live run of a lockstep group written so that it can be captured
// in a CUDA graph and replayed (harness/cuda_graph.h). Everything that changes from step to step is read from
// device tensors that are refilled before each replay: the batch (static input buffers), each run's learning
// rate; the teachers' forward pass (or teacher-output cache lookup), the students' forwards, the method terms,
// the backward pass, gradient clipping and the SGD update are all device work; the step's loss values, gradient
// norms and correct counts are written to device tensors read after the step, in one copy.
//
// On CUDA with cuda_graphs on, the step is run eagerly for a few warm-up steps, then captured once for the
// epoch's set of live runs and stages and replayed for every full-size batch; the last, smaller batch of an
// epoch runs the same step eagerly (same parameters, momentum buffers and learning rates), so capture is never
// broken. It is captured again when a run finishes or fails, a stage changes, or a new epoch begins (term
// weights may change per epoch). Without CUDA the same step runs eagerly (tests compare it with the laned and
// fused steps on the CPU).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness/cuda_graph.h"
#include "harness/run_state.h"
#include "harness/step.h"

namespace kd {

class StaticGroupStep {
 public:
  // The teachers' outputs for a batch: teacher run id -> taps (the group's forward or its cache).
  using TeacherOutputs =
      std::function<std::map<std::string, TapMap>(const torch::Tensor& x, const torch::Tensor& indices)>;

  // `capture`: capture and replay CUDA graphs (else every step runs eagerly).
  StaticGroupStep(bool capture, TeacherOutputs teachers);

  // Whether the static step can train these runs: an optimizer the updater implements, and methods that declare
  // themselves graph-safe.
  static bool supports(const std::vector<RunState*>& active);

  // One step of every live run in `laned` and `fused` on batch (x, y, indices). Failures are left in each run's
  // pending_failure, as the eager steps do.
  void step(const std::vector<RunState*>& laned, std::vector<FusedGroup>& fused, int64_t epoch, int64_t step,
            int64_t steps_per_epoch, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& indices,
            bool bf16);

  int64_t captures() const { return captures_; }  // graphs captured so far (for tests and the record)
  int64_t replays() const { return replays_; }     // steps run by replaying a graph

 private:
  // The work of one step on the given tensors (run eagerly, or captured): the teachers' outputs, then the step
  // engine's run_step and fused_step in their Static mode (harness/step.h).
  void body(const std::vector<RunState*>& laned, std::vector<FusedGroup*>& fused, const StepBatch& b);
  // Reads every live run's outputs (one device-to-host copy) and accounts them.
  void account(const std::vector<RunState*>& live, const StepBatch& b, double seconds);

  bool capture_;
  TeacherOutputs teachers_;
  CapturedWork graph_;
  std::string graph_key_;  // what the captured graph was made for
  int warm_steps_ = 0;     // eager steps since the key changed
  torch::Tensor x_, y_, indices_;
  int64_t captures_ = 0, replays_ = 0;
};

// Sets up run `rs`'s static step for stage `si` (its learning-rate tensor; the stage's updater holds the
// parameters and their state).
void start_static_stage(RunState& rs, size_t si, torch::Device device);
// The fused group's [K, 1] learning-rate tensor.
void start_static_fused(FusedGroup& g, torch::Device device);

}  // namespace kd
