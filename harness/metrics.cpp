#include "harness/metrics.h"

#include <chrono>
#include <vector>

#include "base/summary.h"

namespace kd {

double expected_calibration_error(const torch::Tensor& probs, const torch::Tensor& labels, int bins) {
  auto [conf, pred] = probs.max(1);
  auto correct = pred.eq(labels).to(torch::kDouble);
  conf = conf.to(torch::kDouble);
  const int64_t n = labels.size(0);
  if (n == 0) return 0;
  auto bin = (conf * bins).floor().clamp(0, bins - 1).to(torch::kLong);
  auto count = torch::zeros({bins}, torch::kDouble).index_add_(0, bin, torch::ones_like(conf));
  auto conf_sum = torch::zeros({bins}, torch::kDouble).index_add_(0, bin, conf);
  auto acc_sum = torch::zeros({bins}, torch::kDouble).index_add_(0, bin, correct);
  // sum_b |acc_b - conf_b| * n_b / n  ==  sum_b |acc_sum_b - conf_sum_b| / n
  return (acc_sum - conf_sum).abs().sum().item<double>() / static_cast<double>(n);
}

EvalMetrics metrics_from_logits(const torch::Tensor& logits_in, const torch::Tensor& labels_in,
                                const torch::Tensor& teacher_logits) {
  EvalMetrics m;
  auto logits = logits_in.to(torch::kCPU, torch::kFloat);
  auto labels = labels_in.to(torch::kCPU, torch::kLong);
  const int64_t n = labels.size(0);
  if (n == 0) return m;
  auto pred = logits.argmax(1);
  m.top1 = pred.eq(labels).sum().item<double>() / n * 100.0;
  int64_t k = std::min<int64_t>(5, logits.size(1));
  auto topk = std::get<1>(logits.topk(k, 1));
  m.top5 = topk.eq(labels.unsqueeze(1)).any(1).sum().item<double>() / n * 100.0;
  auto logp = torch::log_softmax(logits.to(torch::kDouble), 1);
  m.nll = torch::nll_loss(logp, labels).item<double>();
  m.ece = expected_calibration_error(logp.exp(), labels) * 100.0;
  if (teacher_logits.defined())
    m.agreement = pred.eq(teacher_logits.to(torch::kCPU).argmax(1)).sum().item<double>() / n * 100.0;
  return m;
}

void record_finals(std::map<std::string, double>& finals, const std::string& which, const EvalMetrics& val,
                   const EvalMetrics& test, bool with_val) {
  for (const auto& [split, m] : {std::pair<const char*, const EvalMetrics&>{"val", val}, {"test", test}}) {
    if (!with_val && std::string(split) == "val") continue;
    const std::string p = which + "." + split + ".";
    finals[p + "top1"] = m.top1;
    finals[p + "top5"] = m.top5;
    finals[p + "nll"] = m.nll;
    finals[p + "ece"] = m.ece;
    if (m.agreement >= 0) finals[p + "agreement"] = m.agreement;
  }
}

LoaderOptions in_order(const DataSplits& data, int64_t batch_size, int workers) {
  LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.shuffle = false;
  lo.augment = false;
  lo.norm = data.norm;
  lo.image_size = data.image_size;
  lo.workers = workers;
  return lo;
}

torch::Tensor predict(TapModel& model, const DatasetPtr& split, const DataSplits& data, int64_t batch_size,
                      torch::Device device, int workers) {
  Loader loader(split, in_order(data, batch_size, workers));
  loader.start_epoch(0);
  torch::NoGradGuard ng;
  bool was_training = model.is_training();
  model.eval();
  std::vector<torch::Tensor> out;
  Batch b;
  while (loader.next(b)) out.push_back(model.forward(b.x.to(device)).to(torch::kCPU, torch::kFloat));
  model.train(was_training);
  if (out.empty()) return torch::zeros({0, data.num_classes});
  return torch::cat(out, 0);
}

double inference_latency_ms(TapModel& model, const DataSplits& data, torch::Device device, int reps) {
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  auto x = torch::zeros({1, data.channels, data.image_size, data.image_size}, torch::TensorOptions().device(device));
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int i = 0; i < 3; ++i) model.forward(x);
  sync();
  std::vector<double> ms;
  for (int i = 0; i < std::max(1, reps); ++i) {
    auto t0 = std::chrono::steady_clock::now();
    model.forward(x);
    sync();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  model.train(was_training);
  return stats::median(std::move(ms));
}

}  // namespace kd
