// The trainer: trains a group of runs of one seed in lockstep, so that every run sees the same
// batches and the teachers' forward pass for a batch is computed ONCE and shared by all of them.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "harness/fsutil.h"
#include "harness/model.h"
#include "harness/plan.h"
#include "harness/store.h"

namespace kd {

struct EvalMetrics {
  double top1 = 0, top5 = 0, nll = 0, ece = 0, agreement = -1;  // agreement -1 = no teacher
};

// Metrics of logits [N, C] against labels [N] (and a teacher's logits [N, C] for agreement).
EvalMetrics metrics_from_logits(const torch::Tensor& logits, const torch::Tensor& labels,
                                const torch::Tensor& teacher_logits = {});
// Writes `<which>.val.*` and `<which>.test.*` (top1, top5, nll, ece; agreement when measured) into `finals`.
void record_finals(std::map<std::string, double>& finals, const std::string& which, const EvalMetrics& val,
                   const EvalMetrics& test);
// Expected calibration error with `bins` equal-width confidence bins.
double expected_calibration_error(const torch::Tensor& probs, const torch::Tensor& labels, int bins = 15);
// Logits of `model` over a whole split in dataset order (eval mode, no grad), on the CPU.
torch::Tensor predict(TapModel& model, const DatasetPtr& split, const DataSplits& data, int64_t batch_size,
                      torch::Device device, int workers);

// Inference latency of `model`: the median wall time, in milliseconds, of one forward pass of a single
// image (batch 1, eval mode, no grad) on `device` with the current torch threads, over `reps` passes after
// 3 warm-up passes. The weights do not matter; the model's mode is restored.
double inference_latency_ms(TapModel& model, const DataSplits& data, torch::Device device, int reps = 20);

// Learning rate at fractional epoch `t` of a stage of `epochs` epochs.
double learning_rate(const Recipe& r, int64_t epochs, double t, int64_t steps_per_epoch);

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

// A model a run uses as teacher, and its cached eval-split logits.
struct TeacherHandle {
  std::string run_id;
  ModelPtr model;
  torch::Tensor val_logits, test_logits;  // filled by the runner (for agreement)
};

// Teacher outputs over the whole training split, computed once per teacher and tap in a fixed order (eval
// mode, the split in index order, fixed batches of 500) and shared by every run of every seed and epoch of a
// sweep. Exact only when the training loader applies no random augmentation, so that sample i's input is
// the same tensor whenever it is drawn: the trainer uses it only then, and runs the teacher on each batch
// otherwise. Because the fill order is fixed, a run's inputs do not depend on which runs, groups or
// processes came first (resume gives the same numbers). Taps that would take more than `budget_bytes` in
// all are not cached.
class TeacherOutputCache {
 public:
  explicit TeacherOutputCache(int64_t budget_bytes = int64_t(2) << 30) : budget_(budget_bytes) {}
  void set_budget(int64_t bytes) { budget_ = bytes; }
  // Fills `out` with `taps` of `teacher` for training-split samples `indices` (int64 [B]); computes what is
  // missing first. Returns false (and fills nothing) when they do not fit the budget.
  // The missing outputs are computed in batches of kFillBatch, each split over `lanes` threads.
  bool lookup(const TeacherHandle& teacher, const std::set<std::string>& taps, const torch::Tensor& indices,
              const DataSplits& data, torch::Device device, TapMap* out, int lanes = 1);
  static constexpr int64_t kFillBatch = 256;
  int64_t bytes() const { return used_; }

 private:
  int64_t budget_, used_ = 0;
  std::map<std::string, TapMap> full_;                     // teacher run id -> tap -> [N, ...]
  std::set<std::pair<std::string, std::string>> refused_;  // (teacher, tap) over the budget
};

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
  const RunSpec* spec = nullptr;
  std::vector<const TeacherHandle*> teachers;
  std::string checkpoint_path;  // where the final model goes
};

struct TrainOptions {
  torch::Device device = torch::kCPU;
  int workers = 1;  // loader worker threads
  int lanes = 1;    // threads that step the group's runs in parallel (each run on one lane)
  // Train eligible runs of one student architecture as ONE horizontally fused model (harness/model.h):
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
  Progress* progress = nullptr;
  // A batch's teacher forward is split into this many chunks, spread over the lanes (a fixed number, so the
  // numbers do not depend on how many runs a group has).
  int teacher_chunks = 1;
  // Shared teacher outputs (used only when the training split is not randomly augmented); nullptr = none.
  TeacherOutputCache* teacher_cache = nullptr;
  // Called once per finished run (ok or failed), as soon as it finishes, from the training thread.
  std::function<void(const GroupMember&, RunOutcome&)> on_done;
  // Called every epoch (heartbeat for the store).
  std::function<void()> on_epoch;
};

// Deterministic initial weights: the same (model, seed) gives the same weights in every run.
ModelPtr create_seeded_model(const std::string& name, const DataSplits& data, int64_t seed);

// Trains every member in lockstep on the training split (seed of the first member; all members
// must share seed and batch size). Runs with fewer epochs finish earlier. A NaN/inf loss or
// gradient fails that run only.
void train_lockstep(const std::vector<GroupMember>& members, const DataSplits& data, const TrainOptions& opts);

}  // namespace kd
