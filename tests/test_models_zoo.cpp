// Model zoo: parameter counts, multiply-accumulates and tap shapes against the reference definitions,
// output shapes and tap order for every model, the unknown-name error.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "base/errors.h"
#include "models/model.h"

namespace {

using Shape = std::vector<int64_t>;

// CIFAR models, 100 classes, one 3x32x32 input. Every number below comes from instantiating
// RepDistiller's own definitions (github.com/HobbitLong/RepDistiller, models/*.py, model_dict names
// in brackets) with PyTorch 2.11 for num_classes=100:
//   params  = sum(p.numel() for p in model.parameters())
//   macs    = forward hooks on every nn.Conv2d (out.numel() * in_channels/groups * kh * kw) and
//             nn.Linear (in_features * out_features) during one forward of a zero 1x3x32x32 input
//   shapes  = model(x, is_feat=True, preact=True) features [f0, f1, ..., pooled], batch dim dropped
// The MAC figures also pin the spatial layout (e.g. VGG's missing max-pool after group 3 at 32x32),
// which parameter counts alone cannot.
struct CifarRef {
  const char* name;
  int64_t params;
  int64_t macs;
  std::vector<Shape> taps;  // stem, block1..blockN, pool
};
const std::vector<CifarRef>& cifar_refs() {
  static const std::vector<CifarRef> refs = {
      {"resnet8", 83892, 12507392, {{16, 32, 32}, {16, 32, 32}, {32, 16, 16}, {64, 8, 8}, {64}}},
      {"resnet14", 181108, 26663168, {{16, 32, 32}, {16, 32, 32}, {32, 16, 16}, {64, 8, 8}, {64}}},
      {"resnet20", 278324, 40818944, {{16, 32, 32}, {16, 32, 32}, {32, 16, 16}, {64, 8, 8}, {64}}},
      {"resnet32", 472756, 69130496, {{16, 32, 32}, {16, 32, 32}, {32, 16, 16}, {64, 8, 8}, {64}}},
      {"resnet44", 667188, 97442048, {{16, 32, 32}, {16, 32, 32}, {32, 16, 16}, {64, 8, 8}, {64}}},
      {"resnet56", 861620, 125753600, {{16, 32, 32}, {16, 32, 32}, {32, 16, 16}, {64, 8, 8}, {64}}},
      {"resnet110", 1736564, 253155584, {{16, 32, 32}, {16, 32, 32}, {32, 16, 16}, {64, 8, 8}, {64}}},
      {"resnet8x4", 1233540, 177071104, {{32, 32, 32}, {64, 32, 32}, {128, 16, 16}, {256, 8, 8}, {256}}},
      {"resnet32x4", 7433860, 1083040768, {{32, 32, 32}, {64, 32, 32}, {128, 16, 16}, {256, 8, 8}, {256}}},
      {"wrn_16_1", 180916, 26663168, {{16, 32, 32}, {16, 32, 32}, {32, 16, 16}, {64, 8, 8}, {64}}},
      {"wrn_16_2", 703284, 101118464, {{16, 32, 32}, {32, 32, 32}, {64, 16, 16}, {128, 8, 8}, {128}}},
      {"wrn_40_1", 569780, 83286272, {{16, 32, 32}, {16, 32, 32}, {32, 16, 16}, {64, 8, 8}, {64}}},
      {"wrn_40_2", 2255156, 327610880, {{16, 32, 32}, {32, 32, 32}, {64, 16, 16}, {128, 8, 8}, {128}}},
      // [vgg8], [vgg11], [vgg13] = vgg8_bn, vgg11_bn, vgg13_bn
      {"vgg8", 3965028, 96192512, {{64, 32, 32}, {128, 16, 16}, {256, 8, 8}, {512, 4, 4}, {512, 4, 4}, {512}}},
      {"vgg11", 9277284, 209438720, {{64, 32, 32}, {128, 16, 16}, {256, 8, 8}, {512, 4, 4}, {512, 4, 4}, {512}}},
      {"vgg13", 9462180, 284936192, {{64, 32, 32}, {128, 16, 16}, {256, 8, 8}, {512, 4, 4}, {512, 4, 4}, {512}}},
      // [MobileNetV2] = mobile_half
      {"mobilenetv2", 812836, 6523648, {{16, 16, 16}, {12, 16, 16}, {16, 8, 8}, {48, 4, 4}, {160, 2, 2}, {1280}}},
      // [ShuffleV1], [ShuffleV2]
      {"shufflenetv1", 949258, 38691456, {{24, 32, 32}, {240, 16, 16}, {480, 8, 8}, {960, 4, 4}, {960}}},
      {"shufflenetv2", 1355528, 44504448, {{24, 32, 32}, {116, 16, 16}, {232, 8, 8}, {464, 4, 4}, {1024}}},
  };
  return refs;
}

Shape no_batch(const torch::Tensor& t) {
  return Shape(t.sizes().begin() + 1, t.sizes().end());
}

// Checks what every zoo model promises about its taps, given the taps of one forward.
void check_taps(const kd::TapModel& m, const kd::TapMap& taps, const torch::Tensor& logits, int64_t image_size) {
  auto names = m.tap_names();
  // Standard names, in depth order: stem, ([raw_blockK,] preact_blockK, blockK) for K = 1..N, pool, logits;
  // raw_blockK only in pre-activation networks (WRN), all stages or none.
  std::vector<std::string> raw;
  for (const auto& n : names)
    if (n.rfind("raw_block", 0) == 0) raw.push_back(n);
  for (const auto& n : raw) names.erase(std::find(names.begin(), names.end(), n));
  ASSERT_GE(names.size(), 4u);
  EXPECT_EQ(names.front(), "stem");
  EXPECT_EQ(names[names.size() - 2], "pool");
  EXPECT_EQ(names.back(), "logits");
  const size_t blocks = (names.size() - 3) / 2;
  EXPECT_GE(blocks, 3u);
  ASSERT_EQ(names.size(), 3 + 2 * blocks);
  for (size_t k = 1; k <= blocks; ++k) {
    EXPECT_EQ(names[2 * k - 1], "preact_block" + std::to_string(k));
    EXPECT_EQ(names[2 * k], "block" + std::to_string(k));
  }
  if (!raw.empty()) {
    ASSERT_EQ(raw.size(), blocks);
    const auto all = m.tap_names();
    for (size_t k = 1; k <= blocks; ++k) {
      const auto at = std::find(all.begin(), all.end(), "raw_block" + std::to_string(k));
      ASSERT_NE(at + 1, all.end());
      EXPECT_EQ(*(at + 1), "preact_block" + std::to_string(k)) << "raw_blockK comes just before preact_blockK";
      EXPECT_EQ(taps.at(*at).sizes(), taps.at("block" + std::to_string(k)).sizes());
    }
  }
  names = m.tap_names();
  EXPECT_EQ(taps.size(), names.size()) << "forward fills exactly the named taps";
  for (const auto& n : names) ASSERT_TRUE(taps.count(n)) << "tap " << n << " missing";

  EXPECT_TRUE(taps.at("logits").is_same(logits));
  const auto& pool = taps.at("pool");
  ASSERT_EQ(pool.dim(), 2);
  EXPECT_EQ(pool.size(0), logits.size(0));
  ASSERT_EQ(taps.at("stem").dim(), 4);
  int64_t prev = taps.at("stem").size(2);
  EXPECT_LE(prev, image_size);
  for (size_t k = 1; k <= blocks; ++k) {
    const auto& b = taps.at("block" + std::to_string(k));
    const auto& p = taps.at("preact_block" + std::to_string(k));
    ASSERT_EQ(b.dim(), 4) << "block" << k;
    EXPECT_EQ(b.sizes(), p.sizes()) << "block" << k << " and its preact differ in shape";
    EXPECT_LE(b.size(2), prev) << "block" << k << " is larger than the tap before it";
    EXPECT_EQ(b.size(2), b.size(3));
    prev = b.size(2);
    // Blocks that end in a ReLU are non-negative and differ from their preact (which has negative
    // values after random init); blocks that end linearly (MobileNetV2) are their preact.
    if (!b.is_same(p)) {
      EXPECT_GE(b.min().item<float>(), 0.0f) << "block" << k;
      EXPECT_LT(p.min().item<float>(), 0.0f) << "preact_block" << k;
    }
  }
  // The pooled features are the last block's channels, except where a 1x1 conv comes first.
  if (m.arch() != "mobilenetv2" && m.arch() != "shufflenetv2") {
    EXPECT_EQ(taps.at("block" + std::to_string(blocks)).size(1), pool.size(1));
  }
}

// Each pre-activation tap names the batch norm behind it (OFD reads its margin from that norm): adding 1 to
// that norm's bias adds exactly 1 to the tap (the norm's output is the tap, or is added into it), in eval mode.
TEST(ModelsZoo, PreactTapsNameTheirBatchNorm) {
  std::vector<std::pair<std::string, int>> models;  // (name, input channels)
  for (const auto& ref : cifar_refs()) models.emplace_back(ref.name, 3);
  for (const char* n : {"cnn_tiny", "cnn_medium", "cnn_large", "cnn_wide"}) models.emplace_back(n, 1);
  for (const auto& [name, channels] : models) {
    SCOPED_TRACE(name);
    torch::manual_seed(0);
    auto m = kd::create_model({name, 10, channels, 32});
    m->eval();
    torch::NoGradGuard ng;
    auto x = torch::randn({2, channels, 32, 32});
    kd::TapMap before;
    m->forward_taps(x, &before);
    auto modules = m->named_modules();
    int named = 0;
    for (const auto& tap : m->tap_names()) {
      const std::string norm = m->tap_norm(tap);
      if (tap.rfind("preact_block", 0) != 0) {
        EXPECT_EQ(norm, "") << tap;
        continue;
      }
      if (name == "shufflenetv2") {
        EXPECT_EQ(norm, "") << "ShuffleNet V2's preact tap is a concatenation, not one norm's output";
        continue;
      }
      ASSERT_TRUE(modules.contains(norm)) << tap << " names '" << norm << "', not a module";
      auto* bn = modules[norm]->as<torch::nn::BatchNorm2dImpl>();
      ASSERT_NE(bn, nullptr) << norm << " is not a BatchNorm2d";
      ASSERT_EQ(bn->bias.size(0), before.at(tap).size(1));
      bn->bias.add_(1.0);
      kd::TapMap after;
      m->forward_taps(x, &after);
      bn->bias.sub_(1.0);
      // float32 rounding of large activations (deep ResNets) scales with their magnitude
      const double tol = 1e-4 + 1e-6 * before.at(tap).abs().max().item<double>();
      EXPECT_LE((after.at(tap) - before.at(tap) - 1).abs().max().item<double>(), tol)
          << tap << " is not " << norm << "'s output (or a sum it enters linearly)";
      ++named;
    }
    if (name != "shufflenetv2") {
      EXPECT_GE(named, 3);
    }
  }
}

TEST(ModelsZoo, CifarModelsMatchRepDistiller) {
  for (const auto& ref : cifar_refs()) {
    SCOPED_TRACE(ref.name);
    auto m = kd::create_model({ref.name, 100, 3, 32});
    EXPECT_EQ(m->arch(), ref.name);
    EXPECT_EQ(kd::count_parameters(*m), ref.params);
    EXPECT_EQ(kd::count_macs(*m, 3, 32), ref.macs);
    m->eval();
    torch::NoGradGuard ng;
    kd::TapMap taps;
    auto out = m->forward_taps(torch::randn({2, 3, 32, 32}), &taps);
    EXPECT_EQ(out.sizes(), (Shape{2, 100}));
    check_taps(*m, taps, out, 32);
    std::vector<std::string> order{"stem"};
    for (size_t k = 1; k + 1 < ref.taps.size(); ++k) order.push_back("block" + std::to_string(k));
    order.push_back("pool");
    const bool raw = m->arch().rfind("wrn_", 0) == 0;  // pre-activation: raw_blockK too
    ASSERT_EQ(m->tap_names().size(), 3 + (raw ? 3 : 2) * (ref.taps.size() - 2));
    for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(no_batch(taps.at(order[i])), ref.taps[i]) << order[i];
  }
}

// torchvision's ResNets, 1000 classes. Parameter counts: torchvision's documented figures.
// MACs of resnet18 at 224x224, by hand (output pixels x out channels x in channels x kernel area):
//   conv1 7x7/2: 112*112*64*3*49                                          = 118,013,952
//   layer1: 4 convs 56*56*64*64*9 = 4 * 115,605,504                       = 462,422,016
//   layer2..4 each: first 3x3/2 conv (half the input channels) 57,802,752 + three 3x3 convs
//     3 * 115,605,504 + 1x1/2 projection 6,422,528 = 411,041,792, times 3  = 1,233,125,376
//   fc 512*1000                                                             = 512,000
//   total                                                                   = 1,814,073,344 (~1.82 G)
TEST(ModelsZoo, ImageNetResNetsMatchTorchvision) {
  struct Ref {
    const char* name;
    int64_t params;
    int64_t expansion;
  };
  for (const Ref& ref : {Ref{"resnet18", 11689512, 1}, Ref{"resnet34", 21797672, 1}, Ref{"resnet50", 25557032, 4}}) {
    SCOPED_TRACE(ref.name);
    auto m = kd::create_model({ref.name, 1000, 3, 224});
    EXPECT_EQ(kd::count_parameters(*m), ref.params);
    m->eval();
    torch::NoGradGuard ng;
    kd::TapMap taps;
    auto out = m->forward_taps(torch::randn({2, 3, 224, 224}), &taps);
    EXPECT_EQ(out.sizes(), (Shape{2, 1000}));
    check_taps(*m, taps, out, 224);
    EXPECT_EQ(no_batch(taps.at("stem")), (Shape{64, 56, 56}));
    const int64_t e = ref.expansion;
    EXPECT_EQ(no_batch(taps.at("block1")), (Shape{64 * e, 56, 56}));
    EXPECT_EQ(no_batch(taps.at("block2")), (Shape{128 * e, 28, 28}));
    EXPECT_EQ(no_batch(taps.at("block3")), (Shape{256 * e, 14, 14}));
    EXPECT_EQ(no_batch(taps.at("block4")), (Shape{512 * e, 7, 7}));
    EXPECT_EQ(no_batch(taps.at("pool")), (Shape{512 * e}));
  }
  auto r18 = kd::create_model({"resnet18", 1000, 3, 224});
  const int64_t macs = kd::count_macs(*r18, 3, 224);
  EXPECT_EQ(macs, 1814073344);
  EXPECT_NEAR(macs / 1.82e9, 1.0, 0.01);
}

// The small CNNs, 10 classes, 1 input channel, by hand (conv weights k*k*in*out, no conv bias; BN 2 per
// channel; fc in*out + out):
//   cnn_tiny  4-6-8-8:   stem 36+8, 4->6 216+12, 6->8 432+16, 8->8 576+16, fc 80+10          = 1,402
//   cnn_medium 8-16-24-32: stem 72+16, 8->16 1152+32, 16->24 3456+48, 24->32 6912+64, fc 330 = 12,082
//   cnn_large 16-32(x2)-64-64: stem 144+32, 16->32 4608+64, 32->32 9216+64, 32->64 18432+128,
//             64->64 36864+128, fc 650                                                        = 70,330
//   cnn_wide 24-48-64-64: stem 216+48, 24->48 10368+96, 48->64 27648+128, 64->64 36864+128, fc 650 = 76,146
// cnn_tiny MACs at 28x28: stem 28*28*4*1*9 = 28,224; block1 (stride 2, 14x14) 14*14*6*4*9 = 42,336;
// block2 (7x7) 7*7*8*6*9 = 21,168; block3 7*7*8*8*9 = 28,224; fc 8*10 = 80; total 120,032.
TEST(ModelsZoo, SmallCnnsByHand) {
  const std::vector<std::pair<std::string, int64_t>> expected{
      {"cnn_tiny", 1402}, {"cnn_medium", 12082}, {"cnn_large", 70330}, {"cnn_wide", 76146}};
  for (const auto& [name, params] : expected) {
    SCOPED_TRACE(name);
    auto m = kd::create_model({name, 10, 1, 28});
    EXPECT_EQ(kd::count_parameters(*m), params);
    m->eval();
    torch::NoGradGuard ng;
    for (int size : {28, 32}) {
      kd::TapMap taps;
      auto out = m->forward_taps(torch::randn({2, 1, size, size}), &taps);
      EXPECT_EQ(out.sizes(), (Shape{2, 10}));
      check_taps(*m, taps, out, size);
      const int64_t s2 = (size + 1) / 2, s3 = (s2 + 1) / 2;  // 3x3 convs, padding 1, stride 2
      EXPECT_EQ(taps.at("stem").size(2), size);
      EXPECT_EQ(taps.at("block1").size(2), s2);
      EXPECT_EQ(taps.at("block2").size(2), s3);
      EXPECT_EQ(taps.at("block3").size(2), s3);
    }
  }
  auto tiny = kd::create_model({"cnn_tiny", 10, 1, 28});
  EXPECT_EQ(kd::count_macs(*tiny, 1, 28), 120032);
  // Three input channels: only the stem grows, by 2 * 36 weights.
  EXPECT_EQ(kd::count_parameters(*kd::create_model({"cnn_tiny", 10, 3, 32})), 1402 + 72);
}

// Every registered model: output shape for a batch of 2 at its default size (ImageNet models are
// covered above at 224; here they run at 64 to keep the suite fast), taps complete and ordered,
// other input channel counts, and the listing.
TEST(ModelsZoo, EveryModelRunsWithItsTaps) {
  const auto models = kd::list_models();
  std::set<std::string> names;
  for (const auto& info : models) names.insert(info.name);
  const std::set<std::string> expected{
      "cnn_tiny",     "cnn_medium",   "cnn_large", "cnn_wide",  "resnet8",   "resnet14",   "resnet20",
      "resnet32",     "resnet44",     "resnet56",  "resnet110", "resnet8x4", "resnet32x4", "wrn_16_1",
      "wrn_16_2",     "wrn_40_1",     "wrn_40_2",  "vgg8",      "vgg11",     "vgg13",      "mobilenetv2",
      "shufflenetv1", "shufflenetv2", "resnet18",  "resnet34",  "resnet50"};
  EXPECT_EQ(names, expected);
  EXPECT_TRUE(std::is_sorted(models.begin(), models.end(),
                             [](const kd::ModelInfo& a, const kd::ModelInfo& b) { return a.name < b.name; }));
  for (const auto& info : models) {
    SCOPED_TRACE(info.name);
    EXPECT_TRUE(kd::has_model(info.name));
    EXPECT_FALSE(info.description.empty());
    const bool small = info.name.rfind("cnn_", 0) == 0;
    const bool imagenet = info.name == "resnet18" || info.name == "resnet34" || info.name == "resnet50";
    const int expected_size = small ? 28 : imagenet ? 224 : 32;
    EXPECT_EQ(info.default_image_size, expected_size);
    if (small) continue;  // covered by SmallCnnsByHand
    const int size = info.default_image_size == 224 ? 64 : info.default_image_size;
    auto m = kd::create_model({info.name, 7, 1, size});  // one input channel, 7 classes
    m->eval();
    torch::NoGradGuard ng;
    kd::TapMap taps;
    auto out = m->forward_taps(torch::randn({2, 1, size, size}), &taps);
    EXPECT_EQ(out.sizes(), (Shape{2, 7}));
    check_taps(*m, taps, out, size);
    // Without a tap map, the same logits (eval mode, same input).
    auto x = torch::randn({2, 1, size, size});
    kd::TapMap again;
    EXPECT_TRUE(torch::allclose(m->forward(x), m->forward_taps(x, &again)));
  }
  EXPECT_FALSE(kd::has_model("resnet9000"));
}

TEST(ModelsZoo, UnknownNameIsAConfigErrorListingTheKnownOnes) {
  try {
    kd::create_model({"resnet9000", 10, 3, 32});
    FAIL() << "no error";
  } catch (const kd::ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown model 'resnet9000' (known: cnn_large, cnn_medium, cnn_tiny, cnn_wide, mobilenetv2, "
                     "resnet110, resnet14, resnet18, resnet20, resnet32, resnet32x4, resnet34, resnet44, resnet50, "
                     "resnet56, resnet8, resnet8x4, shufflenetv1, shufflenetv2, vgg11, vgg13, vgg8, wrn_16_1, "
                     "wrn_16_2, wrn_40_1, wrn_40_2)"),
              std::string::npos)
        << m;
  }
}

}  // namespace
