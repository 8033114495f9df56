// Residual networks (He et al. 2016). CIFAR variants as RepDistiller's models/resnet.py defines them:
// a 3x3 conv + BN + ReLU stem, three stages of basic blocks (n = (depth - 2) / 6 each, the last two
// stages starting with stride 2), 1x1 conv + BN projection shortcuts whenever the shape changes,
// global average pooling, a linear classifier; resnet8..resnet110 use 16-16-32-64 filters (stem,
// stages), resnet8x4 / resnet32x4 use 32-64-128-256. ImageNet variants as torchvision defines them:
// a 7x7/2 conv + BN + ReLU + 3x3/2 max-pool stem, four stages of basic blocks (resnet18/34) or
// bottlenecks with the stride on the 3x3 conv (resnet50), 64-128-256-512 (x4 for bottlenecks)
// channels. Taps: "stem" after the stem (after the max-pool for ImageNet), "blockK" the output of
// stage K, "preact_blockK" the last block's residual sum before its final ReLU, "pool" the pooled
// features. Modules and parameters are registered in the reference definitions' order and under
// their names. Weights: convs kaiming-normal (fan_out, relu), BN 1/0, linear layers PyTorch's default.
#include "models/layers.h"

namespace kd::models {

namespace {

using torch::nn::BatchNorm2d;

// Every width below is already multiplied by K (the fusion factor, 1 for a plain model); g = K groups.
torch::nn::Sequential projection(int64_t in, int64_t out, int64_t stride, int64_t g) {
  return torch::nn::Sequential(conv(in, out, 1, stride, g), BatchNorm2d(out));
}

// Residual blocks return the sum before the final ReLU; the caller applies it.
struct BasicBlockImpl : torch::nn::Module {
  static constexpr int64_t kExpansion = 1;
  BasicBlockImpl(int64_t in, int64_t planes, int64_t stride, int64_t K) {
    conv1 = register_module("conv1", conv(K * in, K * planes, 3, stride, K));
    bn1 = register_module("bn1", BatchNorm2d(K * planes));
    conv2 = register_module("conv2", conv(K * planes, K * planes, 3, 1, K));
    bn2 = register_module("bn2", BatchNorm2d(K * planes));
    if (stride != 1 || in != planes)
      downsample = register_module("downsample", projection(K * in, K * planes, stride, K));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::relu(bn1(conv1(x)));
    h = bn2(conv2(h));
    return h + (downsample ? downsample->forward(x) : x);
  }
  MConv2d conv1{nullptr}, conv2{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

struct BottleneckImpl : torch::nn::Module {
  static constexpr int64_t kExpansion = 4;
  BottleneckImpl(int64_t in, int64_t planes, int64_t stride, int64_t K) {
    const int64_t out = planes * kExpansion;
    conv1 = register_module("conv1", conv(K * in, K * planes, 1, 1, K));
    bn1 = register_module("bn1", BatchNorm2d(K * planes));
    conv2 = register_module("conv2", conv(K * planes, K * planes, 3, stride, K));
    bn2 = register_module("bn2", BatchNorm2d(K * planes));
    conv3 = register_module("conv3", conv(K * planes, K * out, 1, 1, K));
    bn3 = register_module("bn3", BatchNorm2d(K * out));
    if (stride != 1 || in != out) downsample = register_module("downsample", projection(K * in, K * out, stride, K));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::relu(bn1(conv1(x)));
    h = torch::relu(bn2(conv2(h)));
    h = bn3(conv3(h));
    return h + (downsample ? downsample->forward(x) : x);
  }
  MConv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

template <typename Block>
class ResNet : public ZooModel {
 public:
  // imagenet: 7x7/2 stem and 3x3/2 max-pool; otherwise a 3x3/1 stem. Stage s > 0 starts with stride 2.
  ResNet(std::string arch, int64_t in_ch, int64_t stem_width, const std::vector<int64_t>& planes,
         const std::vector<int64_t>& depths, bool imagenet, int64_t classes, int64_t K = 1)
      : ZooModel(std::move(arch), static_cast<int>(planes.size())), imagenet_(imagenet) {
    conv1_ = register_module("conv1", imagenet ? conv(in_ch, K * stem_width, 7, 2) : conv(in_ch, K * stem_width, 3));
    bn1_ = register_module("bn1", BatchNorm2d(K * stem_width));
    int64_t in = stem_width;
    for (size_t s = 0; s < planes.size(); ++s) {
      auto stage = torch::nn::ModuleList();
      for (int64_t b = 0; b < depths[s]; ++b) {
        Block block(in, planes[s], (b == 0 && s > 0) ? 2 : 1, K);
        blocks_.emplace_back(s, block.ptr());
        stage->push_back(block);
        in = planes[s] * Block::Impl::kExpansion;
      }
      register_module("layer" + std::to_string(s + 1), stage);
      // The residual branch of the stage's last block ends in bn2 (basic) or bn3 (bottleneck).
      set_tap_norm(static_cast<int>(s) + 1, "layer" + std::to_string(s + 1) + "." + std::to_string(depths[s] - 1) +
                                                (Block::Impl::kExpansion == 4 ? ".bn3" : ".bn2"));
    }
    fc_.make(*this, K, in, classes);
    init_convs_fan_out(*this);
  }

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto h = torch::relu(bn1_(conv1_(x)));
    if (imagenet_) h = torch::max_pool2d(h, {3, 3}, {2, 2}, {1, 1});
    put(taps, kStem, h);
    for (size_t i = 0; i < blocks_.size(); ++i) {
      auto pre = blocks_[i].second->forward(h);
      h = torch::relu(pre);
      const size_t stage = blocks_[i].first;
      if (i + 1 == blocks_.size() || blocks_[i + 1].first != stage)
        put_block(taps, static_cast<int>(stage) + 1, pre, h);
    }
    return pool_and_classify(h, fc_, taps);
  }

 private:
  bool imagenet_;
  MConv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};
  std::vector<std::pair<size_t, std::shared_ptr<typename Block::Impl>>> blocks_;  // (stage, block)
  Classifier fc_;
};

}  // namespace

void add_resnet_models(ZooTable& table) {
  auto cifar = [&](int depth, int64_t stem, std::vector<int64_t> planes, const std::string& suffix) {
    const std::string name = "resnet" + std::to_string(depth) + suffix;
    const int64_t n = (depth - 2) / 6;
    add(table, name,
        "CIFAR ResNet-" + std::to_string(depth) + suffix + ", basic blocks, " + std::to_string(planes[0]) + "-" +
            std::to_string(planes[1]) + "-" + std::to_string(planes[2]) + " channels",
        32, [name, n, stem, planes](const ModelSpec& s) -> ModelPtr {
          return std::make_shared<ResNet<BasicBlock>>(name, s.in_channels, stem, planes, std::vector<int64_t>{n, n, n},
                                                      false, s.num_classes, s.fused);
        });
  };
  for (int depth : {8, 14, 20, 32, 44, 56, 110}) cifar(depth, 16, {16, 32, 64}, "");
  for (int depth : {8, 32}) cifar(depth, 32, {64, 128, 256}, "x4");

  const std::vector<int64_t> planes{64, 128, 256, 512};
  add(table, "resnet18", "ImageNet ResNet-18 (torchvision layout)", 224, [planes](const ModelSpec& s) -> ModelPtr {
    return std::make_shared<ResNet<BasicBlock>>("resnet18", s.in_channels, 64, planes, std::vector<int64_t>{2, 2, 2, 2},
                                                true, s.num_classes, s.fused);
  });
  add(table, "resnet34", "ImageNet ResNet-34 (torchvision layout)", 224, [planes](const ModelSpec& s) -> ModelPtr {
    return std::make_shared<ResNet<BasicBlock>>("resnet34", s.in_channels, 64, planes, std::vector<int64_t>{3, 4, 6, 3},
                                                true, s.num_classes, s.fused);
  });
  add(table, "resnet50", "ImageNet ResNet-50, bottlenecks (torchvision layout)", 224,
      [planes](const ModelSpec& s) -> ModelPtr {
        return std::make_shared<ResNet<Bottleneck>>("resnet50", s.in_channels, 64, planes,
                                                    std::vector<int64_t>{3, 4, 6, 3}, true, s.num_classes, s.fused);
      });
}

}  // namespace kd::models
