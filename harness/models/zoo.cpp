// The model zoo. Every model fills the standard feature taps of harness/model.h.
//  - cnn_tiny / cnn_medium / cnn_large / cnn_wide: small CNNs for 28x28 (or 32x32) inputs, three
//    stages (block1..3) of conv3x3 + BN + ReLU, global average pooling, a linear classifier.
//  - CIFAR ResNets (He et al. 2016, Sec. 4.2; the variants of RepDistiller's models/resnet.py):
//    resnet{8,14,20,32,44,56,110} with 16-32-64 filters and resnet8x4 / resnet32x4 with 64-128-256
//    after a 32-filter stem; basic blocks, 1x1 conv + BN projection shortcuts when the shape changes.
//  - WRN-d-k (Zagoruyko & Komodakis 2016): pre-activation wide basic blocks, widths 16k-32k-64k.
//  - VGG8/11/13 with BN for CIFAR (RepDistiller's vgg.py layout: 5 conv groups, max-pooling).
//  - ResNet18/34/50 for 224x224 (torchvision's definition).
#include <cmath>
#include <functional>
#include <map>

#include "harness/errors.h"
#include "harness/model.h"

namespace F = torch::nn::functional;
using torch::nn::BatchNorm2d;
using torch::nn::Conv2d;
using torch::nn::Conv2dOptions;
using torch::nn::Linear;

namespace kd {

namespace {

thread_local int64_t* g_macs = nullptr;

// Conv2d / Linear that count their multiply-accumulates while count_macs() runs.
struct MConv2dImpl : torch::nn::Conv2dImpl {
  using Conv2dImpl::Conv2dImpl;
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = Conv2dImpl::forward(x);
    if (g_macs) {
      const auto& k = options.kernel_size();
      *g_macs += (y.numel() / y.size(0)) * (options.in_channels() / options.groups()) * (*k)[0] * (*k)[1];
    }
    return y;
  }
};
TORCH_MODULE(MConv2d);

struct MLinearImpl : torch::nn::LinearImpl {
  using LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& x) {
    if (g_macs) *g_macs += options.in_features() * options.out_features();
    return LinearImpl::forward(x);
  }
};
TORCH_MODULE(MLinear);

MConv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = -1, bool bias = false,
            int64_t groups = 1) {
  if (pad < 0) pad = k / 2;
  return MConv2d(Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(bias).groups(groups));
}

// Base with the common bookkeeping: named stages -> taps.
class ZooModel : public TapModel {
 public:
  explicit ZooModel(std::string arch) : arch_(std::move(arch)) {}
  std::string arch() const override { return arch_; }
  std::vector<std::string> tap_names() const override {
    std::vector<std::string> v{"stem"};
    for (int i = 1; i <= num_blocks_; ++i) v.push_back("preact_block" + std::to_string(i)), v.push_back("block" + std::to_string(i));
    v.push_back("pool");
    v.push_back("logits");
    return v;
  }

 protected:
  int num_blocks_ = 3;
  std::string arch_;
};

void put(TapMap* taps, const std::string& k, const torch::Tensor& v) {
  if (taps) (*taps)[k] = v;
}

// ---- small CNNs ------------------------------------------------------------------------------
class SmallCnn : public ZooModel {
 public:
  SmallCnn(std::string arch, int64_t in_ch, std::vector<int64_t> widths, bool double_first, int64_t classes)
      : ZooModel(std::move(arch)) {
    stem_ = register_module("stem", conv(in_ch, widths[0], 3));
    stem_bn_ = register_module("stem_bn", BatchNorm2d(widths[0]));
    for (size_t i = 1; i < widths.size(); ++i) {
      int64_t stride = i <= 2 ? 2 : 1;
      auto seq = torch::nn::Sequential();
      seq->push_back(conv(widths[i - 1], widths[i], 3, stride));
      seq->push_back(BatchNorm2d(widths[i]));
      if (double_first && i == 1) {
        seq->push_back(torch::nn::ReLU());
        seq->push_back(conv(widths[i], widths[i], 3));
        seq->push_back(BatchNorm2d(widths[i]));
      }
      blocks_.push_back(register_module("block" + std::to_string(i), seq));
    }
    num_blocks_ = static_cast<int>(blocks_.size());
    fc_ = register_module("fc", MLinear(widths.back(), classes));
    for (auto& m : modules(false))
      if (auto* c = m->as<torch::nn::Conv2dImpl>()) torch::nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
  }
  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto h = torch::relu(stem_bn_(stem_(x)));
    put(taps, "stem", h);
    for (size_t i = 0; i < blocks_.size(); ++i) {
      auto pre = blocks_[i]->forward(h);
      h = torch::relu(pre);
      put(taps, "preact_block" + std::to_string(i + 1), pre);
      put(taps, "block" + std::to_string(i + 1), h);
    }
    auto pooled = h.mean({2, 3});
    put(taps, "pool", pooled);
    auto logits = fc_(pooled);
    put(taps, "logits", logits);
    return logits;
  }

 private:
  MConv2d stem_{nullptr};
  BatchNorm2d stem_bn_{nullptr};
  std::vector<torch::nn::Sequential> blocks_;
  MLinear fc_{nullptr};
};

// ---- CIFAR ResNet basic block -------------------------------------------------------------
struct BasicBlockImpl : torch::nn::Module {
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride) {
    c1 = register_module("conv1", conv(in, out, 3, stride));
    b1 = register_module("bn1", BatchNorm2d(out));
    c2 = register_module("conv2", conv(out, out, 3));
    b2 = register_module("bn2", BatchNorm2d(out));
    if (stride != 1 || in != out) {
      down = register_module("downsample", torch::nn::Sequential(conv(in, out, 1, stride, 0), BatchNorm2d(out)));
    }
  }
  // Returns the pre-activation sum (the block output is relu of it).
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::relu(b1(c1(x)));
    h = b2(c2(h));
    return h + (down ? down->forward(x) : x);
  }
  MConv2d c1{nullptr}, c2{nullptr};
  BatchNorm2d b1{nullptr}, b2{nullptr};
  torch::nn::Sequential down{nullptr};
};
TORCH_MODULE(BasicBlock);

struct BottleneckImpl : torch::nn::Module {
  BottleneckImpl(int64_t in, int64_t planes, int64_t stride) {
    int64_t out = planes * 4;
    c1 = register_module("conv1", conv(in, planes, 1, 1, 0));
    b1 = register_module("bn1", BatchNorm2d(planes));
    c2 = register_module("conv2", conv(planes, planes, 3, stride));
    b2 = register_module("bn2", BatchNorm2d(planes));
    c3 = register_module("conv3", conv(planes, out, 1, 1, 0));
    b3 = register_module("bn3", BatchNorm2d(out));
    if (stride != 1 || in != out)
      down = register_module("downsample", torch::nn::Sequential(conv(in, out, 1, stride, 0), BatchNorm2d(out)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::relu(b1(c1(x)));
    h = torch::relu(b2(c2(h)));
    h = b3(c3(h));
    return h + (down ? down->forward(x) : x);
  }
  MConv2d c1{nullptr}, c2{nullptr}, c3{nullptr};
  BatchNorm2d b1{nullptr}, b2{nullptr}, b3{nullptr};
  torch::nn::Sequential down{nullptr};
};
TORCH_MODULE(Bottleneck);

// Stages of residual blocks; each stage's taps are its last block's pre-activation and output.
class ResNet : public ZooModel {
 public:
  // cifar: 3x3 stem, no max-pool. imagenet: 7x7/2 stem + 3x3/2 max-pool.
  ResNet(std::string arch, int64_t in_ch, int64_t stem_width, std::vector<int64_t> widths, std::vector<int64_t> depths,
         bool bottleneck, bool imagenet, int64_t classes)
      : ZooModel(std::move(arch)), imagenet_(imagenet) {
    stem_ = register_module("conv1", imagenet ? conv(in_ch, stem_width, 7, 2, 3) : conv(in_ch, stem_width, 3));
    stem_bn_ = register_module("bn1", BatchNorm2d(stem_width));
    int64_t in = stem_width;
    for (size_t s = 0; s < widths.size(); ++s) {
      std::vector<std::shared_ptr<torch::nn::Module>> blocks;
      auto list = torch::nn::ModuleList();
      for (int64_t b = 0; b < depths[s]; ++b) {
        int64_t stride = (b == 0 && s > 0) ? 2 : 1;
        if (bottleneck) {
          list->push_back(Bottleneck(in, widths[s], stride));
          in = widths[s] * 4;
        } else {
          list->push_back(BasicBlock(in, widths[s], stride));
          in = widths[s];
        }
      }
      stages_.push_back(register_module("layer" + std::to_string(s + 1), list));
    }
    bottleneck_ = bottleneck;
    num_blocks_ = static_cast<int>(stages_.size());
    fc_ = register_module("fc", MLinear(in, classes));
    for (auto& m : modules(false)) {
      if (auto* c = m->as<torch::nn::Conv2dImpl>()) torch::nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
    }
  }
  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto h = torch::relu(stem_bn_(stem_(x)));
    if (imagenet_) h = F::max_pool2d(h, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
    put(taps, "stem", h);
    for (size_t s = 0; s < stages_.size(); ++s) {
      torch::Tensor pre;
      for (auto& m : *stages_[s]) {
        pre = bottleneck_ ? m->as<BottleneckImpl>()->forward(h) : m->as<BasicBlockImpl>()->forward(h);
        h = torch::relu(pre);
      }
      put(taps, "preact_block" + std::to_string(s + 1), pre);
      put(taps, "block" + std::to_string(s + 1), h);
    }
    auto pooled = h.mean({2, 3});
    put(taps, "pool", pooled);
    auto logits = fc_(pooled);
    put(taps, "logits", logits);
    return logits;
  }

 private:
  bool imagenet_, bottleneck_ = false;
  MConv2d stem_{nullptr};
  BatchNorm2d stem_bn_{nullptr};
  std::vector<torch::nn::ModuleList> stages_;
  MLinear fc_{nullptr};
};

// ---- WRN (pre-activation wide basic blocks) ----------------------------------------------------
struct WideBlockImpl : torch::nn::Module {
  WideBlockImpl(int64_t in, int64_t out, int64_t stride) : equal(in == out) {
    b1 = register_module("bn1", BatchNorm2d(in));
    c1 = register_module("conv1", conv(in, out, 3, stride));
    b2 = register_module("bn2", BatchNorm2d(out));
    c2 = register_module("conv2", conv(out, out, 3));
    if (!equal) sc = register_module("shortcut", conv(in, out, 1, stride, 0));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto a = torch::relu(b1(x));
    auto h = c1(a);
    h = c2(torch::relu(b2(h)));
    return h + (equal ? x : sc(a));
  }
  bool equal;
  BatchNorm2d b1{nullptr}, b2{nullptr};
  MConv2d c1{nullptr}, c2{nullptr}, sc{nullptr};
};
TORCH_MODULE(WideBlock);

class WideResNet : public ZooModel {
 public:
  WideResNet(std::string arch, int64_t in_ch, int depth, int widen, int64_t classes) : ZooModel(std::move(arch)) {
    int n = (depth - 4) / 6;
    std::vector<int64_t> w{16, 16 * widen, 32 * widen, 64 * widen};
    stem_ = register_module("conv1", conv(in_ch, w[0], 3));
    int64_t in = w[0];
    for (int s = 0; s < 3; ++s) {
      auto list = torch::nn::ModuleList();
      for (int b = 0; b < n; ++b) {
        list->push_back(WideBlock(in, w[s + 1], (b == 0 && s > 0) ? 2 : 1));
        in = w[s + 1];
      }
      stages_.push_back(register_module("block" + std::to_string(s + 1), list));
    }
    bn_ = register_module("bn", BatchNorm2d(in));
    fc_ = register_module("fc", MLinear(in, classes));
    for (auto& m : modules(false))
      if (auto* c = m->as<torch::nn::Conv2dImpl>()) torch::nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
  }
  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto h = stem_(x);
    put(taps, "stem", h);
    for (size_t s = 0; s < stages_.size(); ++s) {
      for (auto& m : *stages_[s]) h = m->as<WideBlockImpl>()->forward(h);
      // Pre-activation network: a stage's output has no final activation; "block" taps apply the
      // next BN-free ReLU view for methods that expect non-negative features.
      put(taps, "preact_block" + std::to_string(s + 1), h);
      if (s + 1 < stages_.size()) put(taps, "block" + std::to_string(s + 1), torch::relu(h));
    }
    h = torch::relu(bn_(h));
    put(taps, "block3", h);
    auto pooled = h.mean({2, 3});
    put(taps, "pool", pooled);
    auto logits = fc_(pooled);
    put(taps, "logits", logits);
    return logits;
  }

 private:
  MConv2d stem_{nullptr};
  std::vector<torch::nn::ModuleList> stages_;
  BatchNorm2d bn_{nullptr};
  MLinear fc_{nullptr};
};

// ---- VGG with BN (CIFAR) -------------------------------------------------------------------
class Vgg : public ZooModel {
 public:
  Vgg(std::string arch, int64_t in_ch, std::vector<std::vector<int64_t>> groups, int64_t classes)
      : ZooModel(std::move(arch)) {
    int64_t in = in_ch;
    for (size_t g = 0; g < groups.size(); ++g) {
      auto seq = torch::nn::Sequential();
      for (size_t i = 0; i < groups[g].size(); ++i) {
        if (i > 0) seq->push_back(torch::nn::ReLU());
        seq->push_back(conv(in, groups[g][i], 3, 1, 1, true));
        seq->push_back(BatchNorm2d(groups[g][i]));
        in = groups[g][i];
      }
      groups_.push_back(register_module("group" + std::to_string(g), seq));
    }
    num_blocks_ = static_cast<int>(groups.size()) - 1;
    fc_ = register_module("classifier", MLinear(in, classes));
    for (auto& m : modules(false))
      if (auto* c = m->as<torch::nn::Conv2dImpl>()) torch::nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
  }
  std::vector<std::string> tap_names() const override {
    std::vector<std::string> v{"stem"};
    for (int i = 1; i <= num_blocks_; ++i) v.push_back("preact_block" + std::to_string(i)), v.push_back("block" + std::to_string(i));
    v.push_back("pool");
    v.push_back("logits");
    return v;
  }
  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    torch::Tensor h = x;
    for (size_t g = 0; g < groups_.size(); ++g) {
      auto pre = groups_[g]->forward(h);
      h = torch::relu(pre);
      if (g == 0) {
        put(taps, "stem", h);
      } else {
        put(taps, "preact_block" + std::to_string(g), pre);
        put(taps, "block" + std::to_string(g), h);
      }
      if (g + 1 < groups_.size()) {
        h = F::max_pool2d(h, F::MaxPool2dFuncOptions(2).stride(2));
      }
    }
    auto pooled = F::adaptive_avg_pool2d(h, F::AdaptiveAvgPool2dFuncOptions(1)).flatten(1);
    put(taps, "pool", pooled);
    auto logits = fc_(pooled);
    put(taps, "logits", logits);
    return logits;
  }

 private:
  std::vector<torch::nn::Sequential> groups_;
  MLinear fc_{nullptr};
};

using Factory = std::function<ModelPtr(const ModelSpec&)>;
struct Entry {
  ModelInfo info;
  Factory make;
};

std::map<std::string, Entry>& zoo() {
  static std::map<std::string, Entry> z = [] {
    std::map<std::string, Entry> m;
    auto add = [&](const std::string& name, const std::string& desc, int size, Factory f) {
      m[name] = Entry{ModelInfo{name, desc, size}, std::move(f)};
    };
    auto cnn = [&](const std::string& name, const std::string& desc, std::vector<int64_t> w, bool dbl) {
      add(name, desc, 28, [name, w, dbl](const ModelSpec& s) {
        return std::make_shared<SmallCnn>(name, s.in_channels, w, dbl, s.num_classes);
      });
    };
    cnn("cnn_tiny", "tiny 3-stage CNN student (4-6-8-8 channels)", {4, 6, 8, 8}, false);
    cnn("cnn_medium", "3-stage CNN, teaching-assistant size (8-16-24-32)", {8, 16, 24, 32}, false);
    cnn("cnn_large", "3-stage CNN teacher (16-32x2-64-64)", {16, 32, 64, 64}, true);
    cnn("cnn_wide", "3-stage CNN teacher, a second design (24-48-64-64)", {24, 48, 64, 64}, false);
    for (int depth : {8, 14, 20, 32, 44, 56, 110}) {
      std::string name = "resnet" + std::to_string(depth);
      int64_t n = (depth - 2) / 6;
      add(name, "CIFAR ResNet-" + std::to_string(depth) + " (16-32-64)", 32, [name, n](const ModelSpec& s) {
        return std::make_shared<ResNet>(name, s.in_channels, 16, std::vector<int64_t>{16, 32, 64},
                                        std::vector<int64_t>{n, n, n}, false, false, s.num_classes);
      });
    }
    for (int depth : {8, 32}) {
      std::string name = "resnet" + std::to_string(depth) + "x4";
      int64_t n = (depth - 2) / 6;
      add(name, "CIFAR ResNet-" + std::to_string(depth) + "x4 (64-128-256)", 32, [name, n](const ModelSpec& s) {
        return std::make_shared<ResNet>(name, s.in_channels, 32, std::vector<int64_t>{64, 128, 256},
                                        std::vector<int64_t>{n, n, n}, false, false, s.num_classes);
      });
    }
    for (auto [d, k] : std::vector<std::pair<int, int>>{{16, 1}, {16, 2}, {40, 1}, {40, 2}}) {
      std::string name = "wrn_" + std::to_string(d) + "_" + std::to_string(k);
      add(name, "Wide ResNet-" + std::to_string(d) + "-" + std::to_string(k), 32, [name, d = d, k = k](const ModelSpec& s) {
        return std::make_shared<WideResNet>(name, s.in_channels, d, k, s.num_classes);
      });
    }
    std::map<std::string, std::vector<std::vector<int64_t>>> vggs{
        {"vgg8", {{64}, {128}, {256}, {512}, {512}}},
        {"vgg11", {{64}, {128}, {256, 256}, {512, 512}, {512, 512}}},
        {"vgg13", {{64, 64}, {128, 128}, {256, 256}, {512, 512}, {512, 512}}}};
    for (auto& [name, groups] : vggs) {
      add(name, "VGG with BN for CIFAR", 32, [name = name, groups = groups](const ModelSpec& s) {
        return std::make_shared<Vgg>(name, s.in_channels, groups, s.num_classes);
      });
    }
    auto imagenet = [&](const std::string& name, std::vector<int64_t> depths, bool bottleneck) {
      add(name, "ImageNet " + name + " (torchvision layout)", 224, [name, depths, bottleneck](const ModelSpec& s) {
        return std::make_shared<ResNet>(name, s.in_channels, 64, std::vector<int64_t>{64, 128, 256, 512}, depths,
                                        bottleneck, true, s.num_classes);
      });
    };
    imagenet("resnet18", {2, 2, 2, 2}, false);
    imagenet("resnet34", {3, 4, 6, 3}, false);
    imagenet("resnet50", {3, 4, 6, 3}, true);
    return m;
  }();
  return z;
}

}  // namespace

ModelPtr create_model(const ModelSpec& spec) {
  auto& z = zoo();
  auto it = z.find(spec.name);
  if (it == z.end()) {
    std::string known;
    for (auto& [k, v] : z) known += (known.empty() ? "" : ", ") + k;
    throw ConfigError("", "unknown model '" + spec.name + "' (known: " + known + ")");
  }
  return it->second.make(spec);
}

std::vector<ModelInfo> list_models() {
  std::vector<ModelInfo> v;
  for (auto& [k, e] : zoo()) v.push_back(e.info);
  return v;
}

bool has_model(const std::string& name) { return zoo().count(name) > 0; }

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

int64_t count_macs(TapModel& m, int in_channels, int image_size) {
  // Every zoo conv/linear layer adds its multiply-accumulates to g_macs during a forward pass of
  // one input (output elements x input channels per group x kernel area; in x out for linear).
  torch::NoGradGuard ng;
  bool training = m.is_training();
  m.eval();
  int64_t macs = 0;
  g_macs = &macs;
  try {
    auto device = m.parameters().empty() ? torch::Device(torch::kCPU) : m.parameters().front().device();
    m.forward(torch::zeros({1, in_channels, image_size, image_size}, torch::TensorOptions().device(device)));
  } catch (...) {
    g_macs = nullptr;
    m.train(training);
    throw;
  }
  g_macs = nullptr;
  m.train(training);
  return macs;
}

void save_model(TapModel& m, const std::string& path) {
  torch::serialize::OutputArchive a;
  const std::string arch = m.arch();
  a.write("kdbench_arch", torch::tensor(std::vector<int64_t>(arch.begin(), arch.end())));
  m.save(a);
  a.save_to(path);
}

void load_model(TapModel& m, const std::string& path) {
  torch::serialize::InputArchive a;
  try {
    a.load_from(path);
  } catch (const std::exception& e) {
    throw DataError(path, std::string("cannot read model checkpoint: ") + e.what());
  }
  torch::Tensor arch;
  if (a.try_read("kdbench_arch", arch)) {
    std::string name;
    for (int64_t i = 0; i < arch.numel(); ++i) name += static_cast<char>(arch[i].item<int64_t>());
    if (name != m.arch()) throw DataError(path, "checkpoint is a '" + name + "', expected a '" + m.arch() + "'");
  }
  try {
    m.load(a);
  } catch (const std::exception& e) {
    std::string w = e.what();
    throw DataError(path, "checkpoint does not fit model '" + m.arch() + "': " + w.substr(0, w.find('\n')));
  }
}

}  // namespace kd
