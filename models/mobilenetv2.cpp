// MobileNetV2 (Sandler et al. 2018) as used in CIFAR distillation tables: RepDistiller's
// models/mobilenetv2.py `mobile_half`, expansion T = 6 and width multiplier 0.5. A 3x3/2 conv + BN +
// ReLU stem (16 channels), seven groups of inverted residual blocks (1x1 expand + BN + ReLU, 3x3
// depthwise + BN + ReLU, 1x1 linear projection + BN; identity shortcut when stride 1 and the width is
// kept) with (t, c, n, s) = (1,16,1,1) (6,24,2,1) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2)
// (6,320,1,1) and c halved, a 1x1 conv + BN + ReLU to 1280 channels, global average pooling and a
// linear classifier. Weights: convs N(0, 2/(k*k*out)), BN 1/0, linear N(0, 0.01) with zero bias.
// Taps as the reference's features: "stem" after the stem, block1..block4 after groups 2, 3, 5 and 7
// (32x32 input: 16, 8, 4, 2 pixels); the groups end with a linear projection, so "preact_blockK" is
// "blockK". "pool" is the pooled 1280-channel features.
#include "models/layers.h"

namespace kd::models {

namespace {

using torch::nn::BatchNorm2d;

struct InvertedResidualImpl : torch::nn::Module {
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand)
      : use_residual(stride == 1 && in == out) {
    const int64_t mid = in * expand;
    body = register_module("conv", torch::nn::Sequential(conv(in, mid, 1), BatchNorm2d(mid), torch::nn::ReLU(),
                                                         conv(mid, mid, 3, stride, mid), BatchNorm2d(mid),
                                                         torch::nn::ReLU(), conv(mid, out, 1), BatchNorm2d(out)));
  }
  torch::Tensor forward(const torch::Tensor& x) { return use_residual ? x + body->forward(x) : body->forward(x); }
  bool use_residual;
  torch::nn::Sequential body{nullptr};
};
TORCH_MODULE(InvertedResidual);

class MobileNetV2 : public ZooModel {
 public:
  MobileNetV2(std::string arch, int64_t in_ch, int64_t expand, double width, int64_t classes)
      : ZooModel(std::move(arch), 4) {
    const int64_t stem = static_cast<int64_t>(32 * width);
    conv1_ =
        register_module("conv1", torch::nn::Sequential(conv(in_ch, stem, 3, 2), BatchNorm2d(stem), torch::nn::ReLU()));
    struct Group {
      int64_t t, c, n, s;
    };
    const Group groups[] = {{1, 16, 1, 1},      {expand, 24, 2, 1},  {expand, 32, 3, 2}, {expand, 64, 4, 2},
                            {expand, 96, 3, 1}, {expand, 160, 3, 2}, {expand, 320, 1, 1}};
    auto blocks = torch::nn::ModuleList();
    int64_t in = stem;
    for (const auto& g : groups) {
      const int64_t out = static_cast<int64_t>(g.c * width);
      auto seq = torch::nn::Sequential();
      for (int64_t i = 0; i < g.n; ++i) {
        seq->push_back(InvertedResidual(in, out, i == 0 ? g.s : 1, g.t));
        in = out;
      }
      groups_.push_back(seq);
      blocks->push_back(seq);
      // Taps after groups 2, 3, 5 and 7 (see forward_taps): the last block's projection BN (body index 7).
      const size_t gi = groups_.size() - 1;
      const int tap = gi == 1 ? 1 : gi == 2 ? 2 : gi == 4 ? 3 : gi == 6 ? 4 : 0;
      if (tap) set_tap_norm(tap, "blocks." + std::to_string(gi) + "." + std::to_string(g.n - 1) + ".conv.7");
    }
    register_module("blocks", blocks);
    const int64_t last = width > 1.0 ? static_cast<int64_t>(1280 * width) : 1280;
    conv2_ = register_module("conv2", torch::nn::Sequential(conv(in, last, 1), BatchNorm2d(last), torch::nn::ReLU()));
    fc_ = MLinear(last, classes);
    register_module("classifier", torch::nn::Sequential(fc_));
    init_convs_fan_out(*this);
    init_linears_normal(*this, 0.01);
  }

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto h = conv1_->forward(x);
    put(taps, kStem, h);
    for (size_t g = 0; g < groups_.size(); ++g) {
      h = groups_[g]->forward(h);
      // The reference's features follow groups 2, 3, 5 and 7 (indices 1, 2, 4, 6).
      if (g == 1) put_block(taps, 1, h, h);
      if (g == 2) put_block(taps, 2, h, h);
      if (g == 4) put_block(taps, 3, h, h);
      if (g == 6) put_block(taps, 4, h, h);
    }
    h = conv2_->forward(h);
    return pool_and_classify(h, fc_, taps);
  }

 private:
  torch::nn::Sequential conv1_{nullptr}, conv2_{nullptr};
  std::vector<torch::nn::Sequential> groups_;
  MLinear fc_{nullptr};
};

}  // namespace

void add_mobilenet_models(ZooTable& table) {
  add(table, "mobilenetv2", "MobileNetV2 for CIFAR, expansion 6, width 0.5 (RepDistiller's mobile_half)", 32,
      [](const ModelSpec& s) -> ModelPtr {
        return std::make_shared<MobileNetV2>("mobilenetv2", s.in_channels, 6, 0.5, s.num_classes);
      });
}

}  // namespace kd::models
