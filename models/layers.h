// Internal to the model zoo (models/): layers that count their multiply-accumulates, the
// common TapModel base with pre-built tap names, weight initialisers, and the per-family functions
// that add their models to the zoo's name -> factory table. Nothing outside models/ includes it.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "models/model.h"

namespace kd::models {

// Non-null only on the thread running count_macs(); the counting layers add to it.
extern thread_local int64_t* g_mac_counter;

// Conv2d that adds (output elements per sample) x (input channels per group) x (kernel area) to the
// counter while count_macs() runs.
struct MConv2dImpl : torch::nn::Conv2dImpl {
  using Conv2dImpl::Conv2dImpl;
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = Conv2dImpl::forward(x);
    if (g_mac_counter) {
      const auto& k = *options.kernel_size();
      *g_mac_counter += (y.numel() / y.size(0)) * (options.in_channels() / options.groups()) * k[0] * k[1];
    }
    return y;
  }
};
TORCH_MODULE(MConv2d);

// Linear that adds in_features x out_features per sample while count_macs() runs.
struct MLinearImpl : torch::nn::LinearImpl {
  using LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& x) {
    if (g_mac_counter) *g_mac_counter += options.in_features() * options.out_features();
    return LinearImpl::forward(x);
  }
};
TORCH_MODULE(MLinear);

// Horizontal fusion's classifier: K linear layers applied to K blocks of features, [B, K*in] -> [B, K*out],
// as one batched matmul. Weight [K, out, in], bias [K, out]; each slice initialised like torch's Linear.
struct GroupedLinearImpl : torch::nn::Module {
  GroupedLinearImpl(int64_t groups, int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t groups, in, out;
  torch::Tensor weight, bias;
};
TORCH_MODULE(GroupedLinear);

// A model's classifier, registered as "fc" (the reference name): a counting Linear, or for a model fused
// K > 1 times, a GroupedLinear.
struct Classifier {
  MLinear linear{nullptr};
  GroupedLinear grouped{nullptr};
  void make(torch::nn::Module& owner, int64_t fused, int64_t in, int64_t out) {
    if (fused > 1) {
      grouped = owner.register_module("fc", GroupedLinear(fused, in, out));
    } else {
      linear = owner.register_module("fc", MLinear(in, out));
    }
  }
  torch::Tensor operator()(const torch::Tensor& x) { return linear ? linear(x) : grouped(x); }
};

// A k x k convolution; padding k/2 unless given.
inline MConv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t groups = 1, bool bias = false,
                    int64_t pad = -1) {
  return MConv2d(
      torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad < 0 ? k / 2 : pad).groups(groups).bias(bias));
}

// Base of every zoo model: the standard taps of models/model.h for `num_blocks` stages. The names
// are built once, so a forward allocates nothing for them. `raw_taps` adds "raw_blockK" before each
// "preact_blockK" (pre-activation networks, whose stages end in a residual sum that the next stage's
// batch norm and ReLU follow).
class ZooModel : public TapModel {
 public:
  ZooModel(std::string arch, int num_blocks, bool raw_taps = false);
  std::string arch() const override { return arch_; }
  std::vector<std::string> tap_names() const override { return tap_names_; }
  std::string tap_norm(const std::string& tap) const override {
    auto it = tap_norms_.find(tap);
    return it == tap_norms_.end() ? "" : it->second;
  }

 protected:
  static void put(TapMap* taps, const std::string& name, const torch::Tensor& t) {
    if (taps) (*taps)[name] = t;
  }
  // The common tail: global average pooling ("pool"), then the classifier `fc` ("logits").
  template <typename Fc>
  static torch::Tensor pool_and_classify(const torch::Tensor& h, Fc& fc, TapMap* taps) {
    auto pooled = h.mean({2, 3});
    put(taps, kPool, pooled);
    auto logits = fc(pooled);
    put(taps, kLogits, logits);
    return logits;
  }
  // Stage i (1-based): its output and its output before the final activation.
  void put_block(TapMap* taps, int i, const torch::Tensor& preact, const torch::Tensor& out) const {
    if (!taps) return;
    (*taps)[preact_names_[i - 1]] = preact;
    (*taps)[block_names_[i - 1]] = out;
  }
  // Stage i's (1-based) raw output (models built with raw_taps).
  void put_raw(TapMap* taps, int i, const torch::Tensor& raw) const {
    if (taps) (*taps)[raw_names_[i - 1]] = raw;
  }
  // Names the batch norm behind "preact_block<i>" (see TapModel::tap_norm); each family calls it once per stage.
  void set_tap_norm(int i, std::string module_name) { tap_norms_[preact_names_[i - 1]] = std::move(module_name); }
  static const std::string kStem, kPool, kLogits;

 private:
  std::string arch_;
  std::vector<std::string> block_names_, preact_names_, raw_names_, tap_names_;
  std::map<std::string, std::string> tap_norms_;
};

// Initialisers used by the reference definitions.
// Conv weights ~ N(0, 2 / (k*k*out_channels)) ("kaiming normal, fan_out, relu"); conv biases zero.
void init_convs_fan_out(torch::nn::Module& m);
// Linear weights ~ N(0, std), biases zero.
void init_linears_normal(torch::nn::Module& m, double std);
// Linear biases zero (weights keep the default init).
void zero_linear_biases(torch::nn::Module& m);

using Factory = std::function<ModelPtr(const ModelSpec&)>;
struct ZooEntry {
  ModelInfo info;
  Factory make;
};
using ZooTable = std::map<std::string, ZooEntry>;
void add(ZooTable& table, const std::string& name, const std::string& description, int default_image_size,
         Factory make);

// One per model file.
void add_cnn_models(ZooTable& table);
void add_resnet_models(ZooTable& table);
void add_wrn_models(ZooTable& table);
void add_vgg_models(ZooTable& table);
void add_mobilenet_models(ZooTable& table);
void add_shufflenet_models(ZooTable& table);

}  // namespace kd::models
