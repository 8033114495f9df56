// The trainer: trains a group of runs of one seed in lockstep, so that every run sees the same batches
// and the teachers' forward pass for a batch is computed ONCE and shared by all of them.
//
// Its parts, each in a file of its own:
//   trainer.cpp        the lockstep group and its phases: set-up, per epoch (stage switch, teacher forward or
//                      cache, one step for every run, epoch end), finish
//   run_builder.cpp    each run's student and method, built from its plan (shared with `kdbench plan` and loss)
//   run_records.cpp    a run's epoch metrics, best epoch on validation, finals and checkpoint
//   step.cpp           the step engine: the loss core (a run's method terms, their weighted sum, the finiteness
//                      check, the epoch accumulators) and its two strategies, a run on its own model (laned) and the
//                      students of a fused model, each eager or as the device work a CUDA graph captures
//   updater.cpp        clipping and the optimizer step (SGD, AdamW) for one model or K fused students
//   static_step.cpp    capture and replay of the step's device form (cuda_graph.cpp)
//   teacher_cache.cpp  teacher outputs shared across seeds and epochs when the data are not augmented
//   schedule.cpp       learning-rate schedule;  metrics.cpp  evaluation
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "harness/metrics.h"
#include "harness/model_state.h"
#include "harness/plan.h"
#include "harness/schedule.h"
#include "harness/teacher_cache.h"
#include "methods/method.h"
#include "models/model.h"
#include "store/store.h"

namespace kd {

class ReplicaSync;  // harness/step.h

// Sink for progress: work done (for the ETA), images trained (for the rate), and plain-text events.
class Progress {
 public:
  virtual ~Progress() = default;
  virtual void add_work(double units) = 0;                // more work became known
  virtual void advance(double units, double images) = 0;  // work done, and how many images that was
  virtual void note(const std::string& line) = 0;
};

// The work of training one image of a model with `macs` forward multiply-accumulates, for progress
// estimates: forward + backward ~ 3 forwards, plus a fixed per-image cost that dominates small models on
// a CPU (fitted to cnn_tiny and cnn_large epochs on 2 cores: 6M MAC-equivalents).
inline double training_cost_per_image(int64_t macs) {
  return 3.0 * static_cast<double>(macs) + 6e6;
}

struct RunOutcome {
  bool ok = false;
  std::string error_json;  // when !ok: {"epoch","step","stage","term","message"}
  std::vector<EpochMetric> epochs;
  std::map<std::string, double> finals;
  double wall_seconds = 0, images_per_second = 0;
  int64_t params = 0, macs = 0, method_params = 0;
  ModelPtr model;          // the trained student (for assistants and teachers)
  std::string checkpoint;  // written by the trainer (absolute path)
};

struct GroupMember {
  const RunSpec* spec = nullptr;  // the planned run; the trainer builds it (harness/run_builder.h)
  std::vector<const TeacherHandle*> teachers;
  std::string checkpoint_path;  // where the final model goes
};

struct TrainOptions {
  torch::Device device = torch::kCPU;
  int workers = 1;  // loader worker threads
  int lanes = 1;    // threads that step the group's runs in parallel (each run on one lane)
  // Train eligible runs of one student architecture as ONE horizontally fused model (models/model.h):
  // single-stage methods, SGD, the same momentum/Nesterov/epochs. Each keeps its own weights, momentum,
  // learning-rate schedule, weight decay, gradient clipping and method hyperparameters.
  bool fuse = false;
  // Mixed precision: forward passes and losses under bf16 autocast (on the training device; backward and
  // the optimizer stay in fp32 master weights, as torch.autocast does).
  bool bf16 = false;
  // Convolution weights and inputs in channels-last (NHWC) memory format.
  bool channels_last = false;
  // Batches prepared in pinned (page-locked) host memory and copied to the GPU without blocking.
  bool pin_memory = false;
  // CUDA graphs: on a CUDA device, a group whose runs all use SGD and graph-safe methods trains with the static
  // step (harness/static_step.h), captured once per epoch and set of live runs and replayed.
  bool cuda_graphs = false;
  // The static step without capture (the graphs' math, eagerly; on any device). For tests.
  bool static_step = false;
  Progress* progress = nullptr;
  // A batch's teacher forward is split into this many chunks, spread over the lanes (a fixed number, so the
  // numbers do not depend on how many runs a group has).
  int teacher_chunks = 1;
  // Shared teacher outputs (used only when the training split is not randomly augmented); nullptr = none.
  TeacherOutputCache* teacher_cache = nullptr;
  // Called once per finished run (ok or failed), as soon as it finishes, from the training thread.
  std::function<void(const GroupMember&, RunOutcome&)> on_done;
  // Called every epoch.
  std::function<void()> on_epoch;
  // Data-parallel: this process is one replica of every run of the group; each step trains on this replica's
  // share of the batch and the gradients are averaged over the replicas (harness/step.h). Needs lanes = 1 and
  // no fusion.
  ReplicaSync* replicas = nullptr;
};

// Trains every member in lockstep on the training split (seed of the first member; all members
// must share seed and batch size). Runs with fewer epochs finish earlier. A NaN/inf loss or
// gradient fails that run only.
void train_lockstep(const std::vector<GroupMember>& members, const DataSplits& data, const TrainOptions& opts);

}  // namespace kd
