// Wide residual networks WRN-d-k (Zagoruyko & Komodakis 2016) as RepDistiller's models/wrn.py defines
// them: a 3x3 conv stem with 16 filters, three stages of n = (d - 4) / 6 pre-activation basic blocks
// (BN, ReLU, 3x3 conv, BN, ReLU, 3x3 conv) with 16k, 32k, 64k filters, the last two stages starting
// with stride 2, a 1x1 conv shortcut taken from the activated input when the width changes, then BN +
// ReLU, global average pooling and a linear classifier; no dropout. Weights: convs N(0, 2/(k*k*out)),
// BN 1/0, linear weights PyTorch's default with zero bias. Taps: "stem" is the stem conv's output
// (it has no BN/ReLU of its own). Stages of a pre-activation network end without an activation; the
// activation that follows stage K is the BN + ReLU that opens stage K+1 (or the final BN + ReLU), so
// "preact_blockK" is that BN's output (RepDistiller's preact features) and "blockK" its ReLU; "raw_blockK"
// is the stage's residual sum itself (RepDistiller's and ReviewKD's default is_feat features of a WRN).
// All three are activations the forward computes anyway.
#include "models/layers.h"

namespace kd::models {

namespace {

using torch::nn::BatchNorm2d;

struct WideBlockImpl : torch::nn::Module {
  WideBlockImpl(int64_t in, int64_t out, int64_t stride) : equal_in_out(in == out) {
    bn1 = register_module("bn1", BatchNorm2d(in));
    conv1 = register_module("conv1", conv(in, out, 3, stride));
    bn2 = register_module("bn2", BatchNorm2d(out));
    conv2 = register_module("conv2", conv(out, out, 3));
    if (!equal_in_out) shortcut = register_module("convShortcut", conv(in, out, 1, stride));
  }
  // x: the block input; a = relu(bn1(x)).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& a) {
    auto h = conv2(torch::relu(bn2(conv1(a))));
    return (equal_in_out ? x : shortcut(a)) + h;
  }
  bool equal_in_out;
  BatchNorm2d bn1{nullptr}, bn2{nullptr};
  MConv2d conv1{nullptr}, conv2{nullptr}, shortcut{nullptr};
};
TORCH_MODULE(WideBlock);

class WideResNet : public ZooModel {
 public:
  WideResNet(std::string arch, int64_t in_ch, int depth, int widen, int64_t classes)
      : ZooModel(std::move(arch), 3, /*raw_taps=*/true) {
    const int n = (depth - 4) / 6;
    const std::vector<int64_t> w{16, 16 * widen, 32 * widen, 64 * widen};
    conv1_ = register_module("conv1", conv(in_ch, w[0], 3));
    int64_t in = w[0];
    for (int s = 0; s < 3; ++s) {
      auto layer = torch::nn::Sequential();
      for (int b = 0; b < n; ++b) {
        WideBlock block(in, w[s + 1], (b == 0 && s > 0) ? 2 : 1);
        blocks_.push_back(block);
        layer->push_back(block);
        in = w[s + 1];
      }
      // RepDistiller nests each stage as blockK.layer; the same names keep checkpoints comparable.
      auto stage = std::make_shared<torch::nn::Module>();
      stage->register_module("layer", layer);
      register_module("block" + std::to_string(s + 1), stage);
      stage_starts_.push_back(blocks_.size() - n);
    }
    bn1_ = register_module("bn1", BatchNorm2d(in));
    set_tap_norm(1, "block2.layer.0.bn1");
    set_tap_norm(2, "block3.layer.0.bn1");
    set_tap_norm(3, "bn1");
    fc_ = register_module("fc", MLinear(in, classes));
    init_convs_fan_out(*this);
    zero_linear_biases(*this);
  }

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto h = conv1_(x);
    put(taps, kStem, h);
    int stage = 0;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      auto pre = blocks_[i]->bn1(h);
      auto a = torch::relu(pre);
      if (stage + 1 < static_cast<int>(stage_starts_.size()) && i == stage_starts_[stage + 1]) {
        put_raw(taps, stage + 1, h);
        put_block(taps, stage + 1, pre, a);  // stage `stage + 1` ended; this BN + ReLU follows it
        ++stage;
      }
      h = blocks_[i]->forward(h, a);
    }
    put_raw(taps, 3, h);
    auto pre = bn1_(h);
    h = torch::relu(pre);
    put_block(taps, 3, pre, h);
    return pool_and_classify(h, fc_, taps);
  }

 private:
  MConv2d conv1_{nullptr};
  std::vector<WideBlock> blocks_;
  std::vector<size_t> stage_starts_;  // index of each stage's first block
  BatchNorm2d bn1_{nullptr};
  MLinear fc_{nullptr};
};

}  // namespace

void add_wrn_models(ZooTable& table) {
  for (auto [d, k] : std::vector<std::pair<int, int>>{{16, 1}, {16, 2}, {40, 1}, {40, 2}}) {
    const std::string name = "wrn_" + std::to_string(d) + "_" + std::to_string(k);
    add(table, name,
        "Wide ResNet-" + std::to_string(d) + "-" + std::to_string(k) + " for CIFAR, " + std::to_string(16 * k) + "-" +
            std::to_string(32 * k) + "-" + std::to_string(64 * k) + " channels",
        32, [name, d = d, k = k](const ModelSpec& s) -> ModelPtr {
          return std::make_shared<WideResNet>(name, s.in_channels, d, k, s.num_classes);
        });
  }
}

}  // namespace kd::models
