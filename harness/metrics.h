// Evaluation: metrics of logits against labels, predictions over a split, inference latency.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

#include "datasets/dataset.h"
#include "models/model.h"

namespace kd {

struct EvalMetrics {
  double top1 = 0, top5 = 0, nll = 0, ece = 0, agreement = -1;  // agreement -1 = no teacher
};

// Metrics of logits [N, C] against labels [N] (and a teacher's logits [N, C] for agreement).
EvalMetrics metrics_from_logits(const torch::Tensor& logits, const torch::Tensor& labels,
                                const torch::Tensor& teacher_logits = {});
// Writes `<which>.val.*` and `<which>.test.*` (top1, top5, nll, ece; agreement when measured) into `finals`;
// `<which>.test.*` only when the data set has no validation split (`with_val` false).
void record_finals(std::map<std::string, double>& finals, const std::string& which, const EvalMetrics& val,
                   const EvalMetrics& test, bool with_val = true);
// Expected calibration error with `bins` equal-width confidence bins.
double expected_calibration_error(const torch::Tensor& probs, const torch::Tensor& labels, int bins = 15);

// Loader options over a split in index order, not augmented (evaluation, teacher outputs).
LoaderOptions in_order(const DataSplits& data, int64_t batch_size, int workers);
// Logits of `model` over a whole split in dataset order (eval mode, no grad), on the CPU.
torch::Tensor predict(TapModel& model, const DatasetPtr& split, const DataSplits& data, int64_t batch_size,
                      torch::Device device, int workers);

// Inference latency of `model`: the median wall time, in milliseconds, of one forward pass of a single
// image (batch 1, eval mode, no grad) on `device` with the current torch threads, over `reps` passes after
// 3 warm-up passes. The weights do not matter; the model's mode is restored.
double inference_latency_ms(TapModel& model, const DataSplits& data, torch::Device device, int reps = 20);

}  // namespace kd
