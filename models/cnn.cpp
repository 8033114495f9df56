// Small CNNs for 28x28 single-channel inputs (Fashion-MNIST), cheap enough to train many times on a
// CPU: a 3x3 conv + BN + ReLU stem at full resolution, then three stages (block1..block3) of 3x3
// conv + BN (+ ReLU), the first two with stride 2 (28 -> 14 -> 7), global average pooling and a
// linear classifier. Sizes for 10 classes and one input channel: cnn_tiny 1,402 parameters (the
// student: 4-6-8-8 channels), cnn_medium 12,082 (teaching assistant: 8-16-24-32), cnn_large 70,330
// (teacher: 16-32-64-64 with a second 32-channel conv in stage 1) and cnn_wide 76,146 (a second,
// differently shaped teacher for multi-teacher: 24-48-64-64, one conv per stage). Any input channel
// count and image size >= 8 works; the taps' spatial sizes at 32x32 are 32/16/8/8.
#include "models/layers.h"

namespace kd::models {

namespace {

class SmallCnn : public ZooModel {
 public:
  // widths = {stem, stage1, stage2, stage3}; double_first adds a second conv to stage 1.
  // fused = K > 1 builds K of them side by side (models/model.h, "Horizontal fusion").
  SmallCnn(std::string arch, int64_t in_ch, const std::vector<int64_t>& widths, bool double_first, int64_t classes,
           int64_t fused = 1)
      : ZooModel(std::move(arch), 3) {
    const int64_t K = fused;
    stem_ = register_module("stem", conv(in_ch, K * widths[0], 3));
    stem_bn_ = register_module("stem_bn", torch::nn::BatchNorm2d(K * widths[0]));
    for (size_t i = 1; i < widths.size(); ++i) {
      auto seq = torch::nn::Sequential();
      seq->push_back(conv(K * widths[i - 1], K * widths[i], 3, i <= 2 ? 2 : 1, K));
      seq->push_back(torch::nn::BatchNorm2d(K * widths[i]));
      if (double_first && i == 1) {
        seq->push_back(torch::nn::ReLU());
        seq->push_back(conv(K * widths[i], K * widths[i], 3, 1, K));
        seq->push_back(torch::nn::BatchNorm2d(K * widths[i]));
      }
      stages_.push_back(register_module("block" + std::to_string(i), seq));
      set_tap_norm(static_cast<int>(i), "block" + std::to_string(i) + "." + std::to_string(seq->size() - 1));
    }
    fc_.make(*this, K, widths.back(), classes);
    init_convs_fan_out(*this);
  }

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto h = torch::relu(stem_bn_(stem_(x)));
    put(taps, kStem, h);
    for (size_t i = 0; i < stages_.size(); ++i) {
      auto pre = stages_[i]->forward(h);
      h = torch::relu(pre);
      put_block(taps, static_cast<int>(i) + 1, pre, h);
    }
    return pool_and_classify(h, fc_, taps);
  }

 private:
  MConv2d stem_{nullptr};
  torch::nn::BatchNorm2d stem_bn_{nullptr};
  std::vector<torch::nn::Sequential> stages_;
  Classifier fc_;
};

}  // namespace

void add_cnn_models(ZooTable& table) {
  auto cnn = [&](const std::string& name, const std::string& desc, std::vector<int64_t> widths, bool dbl) {
    add(table, name, desc, 28, [name, widths, dbl](const ModelSpec& s) -> ModelPtr {
      return std::make_shared<SmallCnn>(name, s.in_channels, widths, dbl, s.num_classes, s.fused);
    });
  };
  cnn("cnn_tiny", "3-stage CNN student, 4-6-8-8 channels (~1.4k parameters)", {4, 6, 8, 8}, false);
  cnn("cnn_medium", "3-stage CNN teaching assistant, 8-16-24-32 channels (~12k parameters)", {8, 16, 24, 32}, false);
  cnn("cnn_large", "3-stage CNN teacher, 16-32x2-64-64 channels (~70k parameters)", {16, 32, 64, 64}, true);
  cnn("cnn_wide", "3-stage CNN teacher of another shape, 24-48-64-64 channels (~77k parameters)", {24, 48, 64, 64},
      false);
}

}  // namespace kd::models
