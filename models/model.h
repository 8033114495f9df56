// The model interface: every model in the zoo fills named feature taps during forward.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/taps.h"

namespace kd {

class TapModel : public torch::nn::Module {
 public:
  // Returns logits. If `taps` is non-null, fills every tap this model has (tensors are
  // views of activations that exist anyway; no extra compute).
  virtual torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) = 0;
  torch::Tensor forward(const torch::Tensor& x) { return forward_taps(x, nullptr); }
  // The names forward_taps fills, in depth order.
  virtual std::vector<std::string> tap_names() const = 0;
  // The zoo name this model was created from (or "torchscript:<file>").
  virtual std::string arch() const = 0;
  // For a pre-activation tap ("preact_blockK"): the name, in named_modules(), of the batch norm whose output
  // the tap is, or, where the tap is a residual sum, of the batch norm that ends the residual branch added
  // into it (what OFD's get_bn_before_relu returns: its margin is computed from that batch norm's affine
  // parameters). "" for other taps and for models without one (TorchScript; ShuffleNet V2, whose tap is a
  // concatenation with an untransformed half).
  virtual std::string tap_norm(const std::string& /*tap*/) const { return ""; }
};

// Every tap of `m` that names its batch norm (TapModel::tap_norm): tap -> module name.
inline std::map<std::string, std::string> tap_norms(const TapModel& m) {
  std::map<std::string, std::string> norms;
  for (const auto& tap : m.tap_names())
    if (auto norm = m.tap_norm(tap); !norm.empty()) norms[tap] = norm;
  return norms;
}
using ModelPtr = std::shared_ptr<TapModel>;

struct ModelSpec {
  std::string name;  // zoo name, e.g. "resnet8x4"
  int num_classes = 10;
  int in_channels = 3;
  int image_size = 32;  // input height = width
  // K > 1: K models of this architecture horizontally fused into one (see fuse_models below).
  int fused = 1;
};

struct ModelInfo {
  std::string name;
  std::string description;
  int default_image_size;  // 28, 32 or 224
};

// Creates a freshly initialised model. Throws ConfigError naming the model for an unknown name.
ModelPtr create_model(const ModelSpec& spec);
// Every zoo model, sorted by name.
std::vector<ModelInfo> list_models();
bool has_model(const std::string& name);

int64_t count_parameters(const torch::nn::Module& m);
// Multiply-accumulates of one forward pass on a single input of shape [C, H, W]
// (convolutions and linear layers).
int64_t count_macs(TapModel& m, int in_channels, int image_size);

// Horizontal fusion: K students of one architecture trained in lockstep as ONE model, so a group of
// small students fills a GPU (and uses bigger kernels on a CPU). Student k owns channel block k of
// every layer: the first convolution reads the shared input with K stacked filter banks, every later
// convolution has K times the channels and K times the groups, batch norm is per channel anyway, and
// the classifier is a batched linear layer. So the fused forward is exactly K independent forwards:
// every tap is [B, K*c, ...] with student k's part at channels [k*c, (k+1)*c), logits [B, K*classes].
// Families that support it: the cnn_* models and the ResNets (others throw ConfigError).
bool supports_fusion(const std::string& name);
// A fused model of `students` (same architecture, each a plain model) holding copies of their weights.
ModelPtr fuse_models(const std::vector<ModelPtr>& students, const ModelSpec& spec);
// Copies student k's part of `fused` into `student` (a plain model of the same architecture).
void unfuse_into(TapModel& fused, int64_t k, int64_t K, TapModel& student);
// Student k's part of a fused tap ([B, K*c, ...] -> [B, c, ...]), a view.
torch::Tensor fused_part(const torch::Tensor& t, int64_t k, int64_t K);

// Save/load a model's parameters and buffers (torch::save format). Load checks the architecture.
void save_model(TapModel& m, const std::string& path);
void load_model(TapModel& m, const std::string& path);

// A teacher exported from Python with torch.jit.save. `tap_outputs` names its outputs:
// if the scripted module returns a tuple/list, tap_outputs[i] names element i; if it returns
// a dict, its keys are taps and tap_outputs lists the ones expected (checked on first forward);
// one of them must be "logits". Throws DataError naming the file for a missing/bad file or tap.
ModelPtr load_torchscript_model(const std::string& path, const std::vector<std::string>& tap_outputs);

// A module path as a tap name of a loaded TorchScript or torch.export model ("layer1.0" -> "layer1_0").
inline std::string flat_name(std::string name) {
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

}  // namespace kd
