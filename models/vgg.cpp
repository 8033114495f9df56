// VGG with batch normalisation for CIFAR, as RepDistiller's models/vgg.py defines it (vgg8_bn,
// vgg11_bn, vgg13_bn): five groups block0..block4 of 3x3 conv (with bias) + BN + ReLU layers, the
// last ReLU of each group applied outside it; 2x2 max-pooling after groups 0, 1 and 2 (and after
// group 3 only for 64x64 inputs, as in the reference), global average pooling and one linear
// classifier (no fully connected hidden layers). Channels: vgg8 64 | 128 | 256 | 512 | 512, vgg11
// 64 | 128 | 256x2 | 512x2 | 512x2, vgg13 64x2 | 128x2 | 256x2 | 512x2 | 512x2. Weights: convs
// N(0, 2/(k*k*out)) with zero bias, BN 1/0, linear N(0, 0.01) with zero bias. Taps: "stem" is group 0
// after its ReLU, "blockK" group K after its ReLU and "preact_blockK" before it (K = 1..4).
#include "models/layers.h"

namespace kd::models {

namespace {

class Vgg : public ZooModel {
 public:
  Vgg(std::string arch, int64_t in_ch, const std::vector<std::vector<int64_t>>& groups, int64_t classes)
      : ZooModel(std::move(arch), static_cast<int>(groups.size()) - 1) {
    int64_t in = in_ch;
    for (size_t g = 0; g < groups.size(); ++g) {
      auto seq = torch::nn::Sequential();
      for (size_t i = 0; i < groups[g].size(); ++i) {
        if (i > 0) seq->push_back(torch::nn::ReLU());
        seq->push_back(conv(in, groups[g][i], 3, 1, 1, /*bias=*/true));
        seq->push_back(torch::nn::BatchNorm2d(groups[g][i]));
        in = groups[g][i];
      }
      groups_.push_back(register_module("block" + std::to_string(g), seq));
      if (g > 0) set_tap_norm(static_cast<int>(g), "block" + std::to_string(g) + "." + std::to_string(seq->size() - 1));
    }
    classifier_ = register_module("classifier", MLinear(in, classes));
    init_convs_fan_out(*this);
    init_linears_normal(*this, 0.01);
  }

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    const bool pool_after_group3 = x.size(2) == 64;
    torch::Tensor h = x;
    for (size_t g = 0; g < groups_.size(); ++g) {
      auto pre = groups_[g]->forward(h);
      h = torch::relu(pre);
      if (g == 0) {
        put(taps, kStem, h);
      } else {
        put_block(taps, static_cast<int>(g), pre, h);
      }
      if (g < 3 || (g == 3 && pool_after_group3)) h = torch::max_pool2d(h, {2, 2}, {2, 2});
    }
    return pool_and_classify(h, classifier_, taps);
  }

 private:
  std::vector<torch::nn::Sequential> groups_;
  MLinear classifier_{nullptr};
};

}  // namespace

void add_vgg_models(ZooTable& table) {
  const std::vector<std::pair<std::string, std::vector<std::vector<int64_t>>>> configs{
      {"vgg8", {{64}, {128}, {256}, {512}, {512}}},
      {"vgg11", {{64}, {128}, {256, 256}, {512, 512}, {512, 512}}},
      {"vgg13", {{64, 64}, {128, 128}, {256, 256}, {512, 512}, {512, 512}}}};
  for (const auto& [name, groups] : configs) {
    add(table, name, "VGG-" + name.substr(3) + " with BN for CIFAR (RepDistiller layout)", 32,
        [name = name, groups = groups](const ModelSpec& s) -> ModelPtr {
          return std::make_shared<Vgg>(name, s.in_channels, groups, s.num_classes);
        });
  }
}

}  // namespace kd::models
