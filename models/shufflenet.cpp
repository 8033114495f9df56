// ShuffleNet V1 (Zhang et al. 2018) and V2 (Ma et al. 2018) for CIFAR, as RepDistiller's
// models/ShuffleNetv1.py (ShuffleV1: groups 3, stage widths 240-480-960, 4-8-4 blocks) and
// models/ShuffleNetv2.py (ShuffleV2: net size 1, widths 116-232-464, 3-7-3 basic blocks after one
// down-sampling block per stage, a 1x1 conv + BN + ReLU to 1024 channels before pooling) define
// them. Both start with a 1x1 conv + BN + ReLU to 24 channels at full resolution; each stage halves
// the resolution (32 -> 16 -> 8 -> 4). V1 bottlenecks: grouped 1x1 conv (ungrouped on the 24-channel
// stem output) + BN + ReLU, channel shuffle, 3x3 depthwise conv + BN + ReLU, grouped 1x1 conv + BN,
// then the residual added (stride 1) or a 3x3/2 average-pooled input concatenated (stride 2), then
// ReLU. V2 basic blocks split the channels in half, transform the second half (1x1 conv + BN + ReLU,
// 3x3 depthwise + BN, 1x1 conv + BN + ReLU), concatenate and shuffle with 2 groups. Weights are
// PyTorch's default initialisation, as in the reference. Taps: "stem" after the stem, "blockK" the
// output of stage K, "preact_blockK" its last block before the final ReLU, exactly as the reference
// returns it (for V2 that is the concatenation before the channel shuffle). "pool" is the pooled
// features.
#include "models/layers.h"

namespace kd::models {

namespace {

using torch::nn::BatchNorm2d;

torch::Tensor shuffle_channels(const torch::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  return x.view({n, groups, c / groups, h, w}).permute({0, 2, 1, 3, 4}).reshape({n, c, h, w});
}

// ---- V1 ----------------------------------------------------------------------------------------
struct ShuffleV1BlockImpl : torch::nn::Module {
  // out: channels this branch produces (the stage width minus the input's for stride 2).
  ShuffleV1BlockImpl(int64_t in, int64_t out, int64_t stride, int64_t groups)
      : stride(stride), first_groups(in == 24 ? 1 : groups) {
    const int64_t mid = out / 4;
    conv1 = register_module("conv1", conv(in, mid, 1, 1, first_groups));
    bn1 = register_module("bn1", BatchNorm2d(mid));
    conv2 = register_module("conv2", conv(mid, mid, 3, stride, mid));
    bn2 = register_module("bn2", BatchNorm2d(mid));
    conv3 = register_module("conv3", conv(mid, out, 1, 1, groups));
    bn3 = register_module("bn3", BatchNorm2d(out));
  }
  // Returns the tensor before the final ReLU.
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = shuffle_channels(torch::relu(bn1(conv1(x))), first_groups);
    h = torch::relu(bn2(conv2(h)));
    h = bn3(conv3(h));
    if (stride == 2) {
      torch::Tensor pooled = torch::avg_pool2d(x, {3, 3}, {2, 2}, {1, 1});
      return torch::cat({h, pooled}, 1);
    }
    return h + x;
  }
  int64_t stride, first_groups;
  MConv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
};
TORCH_MODULE(ShuffleV1Block);

class ShuffleNetV1 : public ZooModel {
 public:
  ShuffleNetV1(std::string arch, int64_t in_ch, const std::vector<int64_t>& widths, const std::vector<int64_t>& depths,
               int64_t groups, int64_t classes)
      : ZooModel(std::move(arch), 3) {
    conv1_ = register_module("conv1", conv(in_ch, 24, 1));
    bn1_ = register_module("bn1", BatchNorm2d(24));
    int64_t in = 24;
    for (size_t s = 0; s < widths.size(); ++s) {
      auto layer = torch::nn::Sequential();
      std::vector<ShuffleV1Block> stage;
      for (int64_t i = 0; i < depths[s]; ++i) {
        ShuffleV1Block block(in, widths[s] - (i == 0 ? in : 0), i == 0 ? 2 : 1, groups);
        layer->push_back(block);
        stage.push_back(block);
        in = widths[s];
      }
      register_module("layer" + std::to_string(s + 1), layer);
      stages_.push_back(std::move(stage));
      set_tap_norm(static_cast<int>(s) + 1,
                   "layer" + std::to_string(s + 1) + "." + std::to_string(depths[s] - 1) + ".bn3");
    }
    linear_ = register_module("linear", MLinear(in, classes));
  }

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto h = torch::relu(bn1_(conv1_(x)));
    put(taps, kStem, h);
    for (size_t s = 0; s < stages_.size(); ++s) {
      torch::Tensor pre;
      for (auto& block : stages_[s]) {
        pre = block->forward(h);
        h = torch::relu(pre);
      }
      put_block(taps, static_cast<int>(s) + 1, pre, h);
    }
    return pool_and_classify(h, linear_, taps);
  }

 private:
  MConv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};
  std::vector<std::vector<ShuffleV1Block>> stages_;
  MLinear linear_{nullptr};
};

// ---- V2 ----------------------------------------------------------------------------------------
struct ShuffleV2BasicImpl : torch::nn::Module {
  explicit ShuffleV2BasicImpl(int64_t channels) : half(channels / 2) {
    conv1 = register_module("conv1", conv(half, half, 1));
    bn1 = register_module("bn1", BatchNorm2d(half));
    conv2 = register_module("conv2", conv(half, half, 3, 1, half));
    bn2 = register_module("bn2", BatchNorm2d(half));
    conv3 = register_module("conv3", conv(half, half, 1));
    bn3 = register_module("bn3", BatchNorm2d(half));
  }
  // Returns the block output; *preact (if given) gets the concatenation before the last ReLU and shuffle.
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* preact) {
    auto x1 = x.narrow(1, 0, half);
    auto x2 = x.narrow(1, half, x.size(1) - half);
    auto h = torch::relu(bn1(conv1(x2)));
    h = bn2(conv2(h));
    auto pre = bn3(conv3(h));
    if (preact) *preact = torch::cat({x1, pre}, 1);
    return shuffle_channels(torch::cat({x1, torch::relu(pre)}, 1), 2);
  }
  int64_t half;
  MConv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
};
TORCH_MODULE(ShuffleV2Basic);

struct ShuffleV2DownImpl : torch::nn::Module {
  ShuffleV2DownImpl(int64_t in, int64_t out) {
    const int64_t mid = out / 2;
    conv1 = register_module("conv1", conv(in, in, 3, 2, in));  // left: depthwise 3x3/2, 1x1
    bn1 = register_module("bn1", BatchNorm2d(in));
    conv2 = register_module("conv2", conv(in, mid, 1));
    bn2 = register_module("bn2", BatchNorm2d(mid));
    conv3 = register_module("conv3", conv(in, mid, 1));  // right: 1x1, depthwise 3x3/2, 1x1
    bn3 = register_module("bn3", BatchNorm2d(mid));
    conv4 = register_module("conv4", conv(mid, mid, 3, 2, mid));
    bn4 = register_module("bn4", BatchNorm2d(mid));
    conv5 = register_module("conv5", conv(mid, mid, 1));
    bn5 = register_module("bn5", BatchNorm2d(mid));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto left = torch::relu(bn2(conv2(bn1(conv1(x)))));
    auto right = torch::relu(bn3(conv3(x)));
    right = torch::relu(bn5(conv5(bn4(conv4(right)))));
    return shuffle_channels(torch::cat({left, right}, 1), 2);
  }
  MConv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, conv4{nullptr}, conv5{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr}, bn4{nullptr}, bn5{nullptr};
};
TORCH_MODULE(ShuffleV2Down);

class ShuffleNetV2 : public ZooModel {
 public:
  ShuffleNetV2(std::string arch, int64_t in_ch, const std::vector<int64_t>& widths, const std::vector<int64_t>& depths,
               int64_t last, int64_t classes)
      : ZooModel(std::move(arch), 3) {
    conv1_ = register_module("conv1", conv(in_ch, 24, 1));
    bn1_ = register_module("bn1", BatchNorm2d(24));
    int64_t in = 24;
    for (size_t s = 0; s < widths.size(); ++s) {
      auto layer = torch::nn::Sequential();
      ShuffleV2Down down(in, widths[s]);
      layer->push_back(down);
      downs_.push_back(down);
      std::vector<ShuffleV2Basic> stage;
      for (int64_t i = 0; i < depths[s]; ++i) {
        ShuffleV2Basic block(widths[s]);
        layer->push_back(block);
        stage.push_back(block);
      }
      in = widths[s];
      register_module("layer" + std::to_string(s + 1), layer);
      stages_.push_back(std::move(stage));
    }
    conv2_ = register_module("conv2", conv(in, last, 1));
    bn2_ = register_module("bn2", BatchNorm2d(last));
    linear_ = register_module("linear", MLinear(last, classes));
  }

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto h = torch::relu(bn1_(conv1_(x)));
    put(taps, kStem, h);
    for (size_t s = 0; s < stages_.size(); ++s) {
      h = downs_[s]->forward(h);
      torch::Tensor pre;
      for (size_t i = 0; i < stages_[s].size(); ++i) {
        const bool last = i + 1 == stages_[s].size();
        h = stages_[s][i]->forward(h, last && taps ? &pre : nullptr);
      }
      if (taps) put_block(taps, static_cast<int>(s) + 1, pre.defined() ? pre : h, h);
    }
    h = torch::relu(bn2_(conv2_(h)));
    return pool_and_classify(h, linear_, taps);
  }

 private:
  MConv2d conv1_{nullptr}, conv2_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  std::vector<ShuffleV2Down> downs_;
  std::vector<std::vector<ShuffleV2Basic>> stages_;
  MLinear linear_{nullptr};
};

}  // namespace

void add_shufflenet_models(ZooTable& table) {
  add(table, "shufflenetv1", "ShuffleNet V1 for CIFAR, 3 groups, 240-480-960 channels (RepDistiller's ShuffleV1)", 32,
      [](const ModelSpec& s) -> ModelPtr {
        return std::make_shared<ShuffleNetV1>("shufflenetv1", s.in_channels, std::vector<int64_t>{240, 480, 960},
                                              std::vector<int64_t>{4, 8, 4}, 3, s.num_classes);
      });
  add(table, "shufflenetv2", "ShuffleNet V2 1x for CIFAR, 116-232-464 channels (RepDistiller's ShuffleV2)", 32,
      [](const ModelSpec& s) -> ModelPtr {
        return std::make_shared<ShuffleNetV2>("shufflenetv2", s.in_channels, std::vector<int64_t>{116, 232, 464},
                                              std::vector<int64_t>{3, 7, 3}, 1024, s.num_classes);
      });
}

}  // namespace kd::models
