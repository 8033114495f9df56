#include "harness/model_state.h"

#include "base/errors.h"

namespace kd {

ModelPtr create_seeded_model(const std::string& name, const DataSplits& data, int64_t seed) {
  // Seed from (model name, seed) so that every run with this student and seed starts identically,
  // whatever ran before it in this process.
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  h ^= static_cast<uint64_t>(seed) * 0x9E3779B97F4A7C15ULL;
  torch::manual_seed(h & 0x7fffffffffffULL);
  ModelSpec spec{name, data.num_classes, data.channels, data.image_size};
  return create_model(spec);
}

namespace {
std::vector<torch::Tensor> state_tensors(torch::nn::Module& m) {
  std::vector<torch::Tensor> v;
  for (auto& p : m.parameters()) v.push_back(p);
  for (auto& b : m.buffers()) v.push_back(b);
  return v;
}

}  // namespace

// 4-D parameters (convolution weights) in channels-last memory format.
void to_channels_last(torch::nn::Module& m) {
  torch::NoGradGuard ng;
  for (auto& p : m.parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
}

std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> v;
  for (auto& t : state_tensors(m)) v.push_back(t.detach().clone());
  return v;
}

void restore(torch::nn::Module& m, const std::vector<torch::Tensor>& saved) {
  torch::NoGradGuard ng;
  auto cur = state_tensors(m);
  for (size_t i = 0; i < cur.size(); ++i) cur[i].copy_(saved[i]);
}

// Student parameters upstream of `tap` (found by autograd on a probe batch).
std::vector<torch::Tensor> parameters_upstream_of(TapModel& model, const std::string& tap, const torch::Tensor& x) {
  TapMap taps;
  model.forward_taps(x, &taps);
  auto it = taps.find(tap);
  if (it == taps.end())
    throw ConfigError("", "stage trains up to tap '" + tap + "', which model '" + model.arch() + "' does not have");
  auto params = model.parameters();
  std::vector<torch::Tensor> inputs;
  for (auto& p : params)
    if (p.requires_grad()) inputs.push_back(p);
  auto grads = torch::autograd::grad({it->second.sum()}, inputs, {}, false, false, /*allow_unused=*/true);
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (grads[i].defined()) out.push_back(inputs[i]);
  return out;
}

TapShapes tap_shapes(TapModel& model, const torch::Tensor& x) {
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  TapMap taps;
  model.forward_taps(x, &taps);
  model.train(was_training);
  TapShapes s;
  for (const auto& [k, v] : taps) s[k] = v.sizes().vec();
  return s;
}

}  // namespace kd
