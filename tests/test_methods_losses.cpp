// Each method's loss against values computed from the paper's formula (independently, with plain
// arithmetic on the same small tensors; the derivations are in the comments). A wrong sign, a
// missing T^2, a sum instead of the batch mean, a swapped KL, a missing normalisation or square in
// AT, or a wrong multi-teacher weighting each fail one of these tests.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/errors.h"
#include "methods/conv_reg.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace {

using kd::LossTerms;
using kd::MethodInput;
using kd::MethodRegistry;
using kd::TapMap;

// Two samples, three classes; T = 2. Softmax(x/T) per row, KL(p_t || p_s) per row:
//   KL_0 + KL_1 = 0.913215448...; batch mean = 0.45660772; x T^2 = 1.82643090.
//   (sum instead of mean: 3.65286179; no T^2: 0.45660772; KL(p_s || p_t) instead: 1.91557972.)
const std::vector<std::vector<float>> kS{{1.0f, 2.0f, 0.0f}, {0.5f, -1.0f, 2.0f}};
const std::vector<std::vector<float>> kT{{0.0f, 1.0f, 3.0f}, {2.0f, 0.0f, -1.0f}};
const std::vector<std::vector<float>> kT2{{1.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 1.0f}};

torch::Tensor mat(const std::vector<std::vector<float>>& v) {
  auto t = torch::empty({static_cast<int64_t>(v.size()), static_cast<int64_t>(v[0].size())}, torch::kDouble);
  for (size_t i = 0; i < v.size(); ++i)
    for (size_t j = 0; j < v[i].size(); ++j) t[i][j] = v[i][j];
  return t;
}

double term(const LossTerms& terms, const std::string& name, double* weight = nullptr) {
  for (const auto& t : terms)
    if (t.name == name) {
      if (weight) *weight = t.weight;
      return t.value.item<double>();
    }
  ADD_FAILURE() << "no term " << name;
  return NAN;
}

LossTerms run(const std::string& method, const nlohmann::json& params, const TapMap& student,
              std::vector<TapMap> teachers, const torch::Tensor& labels, int stage = 0,
              std::unique_ptr<kd::Method>* keep = nullptr) {
  auto& reg = MethodRegistry::instance();
  auto m = reg.create(method, reg.resolve(method, params, "test"));
  std::vector<const TapMap*> tp;
  for (auto& t : teachers) tp.push_back(&t);
  kd::TapShapes ss;
  for (auto& [k, v] : student) ss[k] = v.sizes().vec();
  std::vector<kd::TapShapes> ts;
  for (auto& t : teachers) {
    kd::TapShapes s;
    for (auto& [k, v] : t) s[k] = v.sizes().vec();
    ts.push_back(s);
  }
  kd::PrepareContext ctx;
  ctx.student = ss;
  ctx.teachers = ts;
  m->prepare(ctx);
  const auto indices = torch::arange(labels.size(0), torch::kLong);
  MethodInput in{student, tp, labels, indices, stage};
  auto out = m->compute(in);
  if (keep) *keep = std::move(m);
  return out;
}

TEST(Losses, HintonSoftKLByHand) {
  auto v = kd::losses::soft_kl(mat(kS), mat(kT), 2.0).item<double>();
  EXPECT_NEAR(v, 1.8264308963508862, 1e-9);
  EXPECT_GT(std::fabs(v - 3.6528617927017724), 1.0) << "sum reduction would give this";
  EXPECT_GT(std::fabs(v - 0.45660772408772154), 1.0) << "missing T^2 would give this";
  EXPECT_GT(std::fabs(v - 1.9155797245634145), 0.05) << "KL(p_s || p_t) would give this";
  // At T = 1 the T^2 factor is 1 and KL of identical inputs is 0.
  EXPECT_NEAR(kd::losses::soft_kl(mat(kS), mat(kS), 3.0).item<double>(), 0.0, 1e-12);
}

TEST(Losses, HintonGradientIsTTimesProbabilityDifferenceOverBatch) {
  // d/ds [T^2 * mean_b KL(p_t || softmax(s_b/T))] = T * (p_s - p_t) / B   (Hinton et al. 2015, Sec. 2.1)
  auto s = mat(kS).requires_grad_(true);
  kd::losses::soft_kl(s, mat(kT), 2.0).backward();
  const double expected[2][3] = {{0.1669515025524099, 0.2752564934335049, -0.44220799598591487},
                                 {-0.34993103001548936, -0.09962225047523471, 0.4495532804907242}};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(s.grad()[i][j].item<double>(), expected[i][j], 1e-9) << i << "," << j;
}

TEST(Losses, KLArgumentOrderMattersNoticeably) {
  // T = 1, student uniform (logits 0,0,0), teacher logits (4,0,0): p_t = (e^4, 1, 1) / (e^4 + 2)
  //   = (0.964663, 0.017668, 0.017668).
  // KL(p_t || u) = ln 3 + sum p_t ln p_t = 1.098612 - 0.177324 = 0.921289   (what Hinton's KD minimises)
  // KL(u || p_t) = -ln 3 - (1/3) sum ln p_t = -1.098612 + 2.702643 = 1.604031 (the swapped order)
  auto s = torch::zeros({1, 3}, torch::kDouble);
  auto t = torch::tensor({4.0, 0.0, 0.0}, torch::kDouble).view({1, 3});
  double v = kd::losses::soft_kl(s, t, 1.0).item<double>();
  EXPECT_NEAR(v, 0.9212886128075322, 1e-9);
  EXPECT_GT(std::fabs(v - 1.6040306777467497), 0.5);
}

TEST(Losses, PerSampleWeightsAndTeacherProbabilitiesGivenDirectly) {
  // With the teacher's probabilities given directly the value equals soft_kl; per-sample weights (w0, w1)
  // give T^2 * (w0 KL_0 + w1 KL_1) / 2. KL_0 and KL_1 for kS/kT at T = 2 (from the same arithmetic as
  // above): KL_0 = 0.47296432496, KL_1 = 0.44025112 (sum 0.91321545).
  auto pt = torch::softmax(mat(kT) / 2.0, 1);
  EXPECT_NEAR(kd::losses::soft_kl_to_probs(mat(kS), pt, 2.0).item<double>(), 1.8264308963508862, 1e-9);
  auto w = torch::tensor({1.0, 0.0}, torch::kDouble);
  EXPECT_NEAR(kd::losses::soft_kl_to_probs(mat(kS), pt, 2.0, w).item<double>(), 4.0 * 0.47296432496 / 2.0, 1e-9);
  // A one-hot teacher row (zeros in it) stays finite: 0 * log 0 = 0. KL(onehot_0 || p_s) = -log p_s[0].
  auto onehot = torch::tensor({1.0, 0.0, 0.0}, torch::kDouble).view({1, 3});
  auto s = torch::zeros({1, 3}, torch::kDouble);
  EXPECT_NEAR(kd::losses::soft_kl_to_probs(s, onehot, 1.0).item<double>(), std::log(3.0), 1e-12);
}

TEST(Losses, HintMSEAndItsGradient) {
  // r = [[1, 2], [3, 4]] (B = 2, N = 2), u = [[1, 0], [1, 1]]: diffs 0, 2, 2, 3 -> mean of squares 17/4.
  // Paper Eq. 3 per example: L_HT = 1/2 ||u - r||^2 = (2, 6.5), batch mean 4.25; (2/N) * 4.25 = 4.25 (N = 2).
  // Gradient: d/dr mean((r - u)^2) = 2 (r - u) / (B N) = (r - u) / 2.
  auto r = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble).view({2, 2}).requires_grad_(true);
  auto u = torch::tensor({1.0, 0.0, 1.0, 1.0}, torch::kDouble).view({2, 2});
  auto h = kd::losses::hint_mse(r, u);
  EXPECT_DOUBLE_EQ(h.item<double>(), 4.25);
  h.backward();
  const double g[4] = {0.0, 1.0, 1.0, 1.5};
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(r.grad().view({-1})[i].item<double>(), g[i]);
}

TEST(Losses, PoolToCommonSizeAveragesTheLargerMap) {
  // a: 1x1x2x2 [[1,2],[3,4]] pooled to b's 1x1 -> 2.5; b unchanged. Mixed: a 4x1, b 2x2 -> both 2x1.
  auto a = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble).view({1, 1, 2, 2});
  auto b = torch::full({1, 1, 1, 1}, 7.0, torch::kDouble);
  auto [pa, pb] = kd::losses::pool_to_common_size(a, b);
  EXPECT_EQ(pa.sizes().vec(), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_DOUBLE_EQ(pa.item<double>(), 2.5);
  EXPECT_DOUBLE_EQ(pb.item<double>(), 7.0);
  auto tall = torch::tensor({1.0, 3.0, 5.0, 7.0}, torch::kDouble).view({1, 1, 4, 1});
  auto square = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble).view({1, 1, 2, 2});
  auto [pt, ps] = kd::losses::pool_to_common_size(tall, square);
  // tall rows (1,3) -> 2, (5,7) -> 6; square columns (1,2) -> 1.5, (3,4) -> 3.5.
  EXPECT_EQ(pt.sizes().vec(), (std::vector<int64_t>{1, 1, 2, 1}));
  EXPECT_DOUBLE_EQ(pt.view({-1})[0].item<double>(), 2.0);
  EXPECT_DOUBLE_EQ(pt.view({-1})[1].item<double>(), 6.0);
  EXPECT_DOUBLE_EQ(ps.view({-1})[0].item<double>(), 1.5);
  EXPECT_DOUBLE_EQ(ps.view({-1})[1].item<double>(), 3.5);
}

TEST(Losses, AttentionInterpolatesTheStudentMapBeforeNormalising) {
  // Student 1 channel 1x2, A = (1, sqrt 2) -> |A|^2 = (1, 2). Teacher 1 channel 1x4 of ones -> Q_t = (0.5 x 4).
  // Bilinear 1x2 -> 1x4 (align_corners = false): source x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25,
  // clamped to [0, 1] -> (1, 1.25, 1.75, 2). Norm sqrt(9.625) -> Q_s = (0.322329, 0.402911, 0.564076, 0.644658).
  // at = mean((Q_s - 0.5)^2) = 0.0165062216. (Normalising before interpolating would give 0.0604.)
  // (This is the `resize: interpolate` option; the default pools, below.)
  const auto interpolate = kd::losses::AttentionResize::Interpolate;
  auto fs = torch::tensor({1.0, std::sqrt(2.0)}, torch::kDouble).view({1, 1, 1, 2});
  auto ft = torch::ones({1, 1, 1, 4}, torch::kDouble);
  EXPECT_NEAR(kd::losses::attention_loss(fs, ft, 2.0, interpolate).item<double>(), 0.016506221584771823, 1e-9);
  // p = 2 squares |A|: a negative activation counts like a positive one.
  EXPECT_NEAR(kd::losses::attention_loss(-fs, ft, 2.0, interpolate).item<double>(), 0.016506221584771823, 1e-9);
  // The default (RepDistiller): the teacher's larger raw map is average-pooled 1x4 -> 1x2 (ones) first:
  // Q_t = (1, 1)/sqrt 2, Q_s = (1, 2)/sqrt 5, at = ((1/sqrt5 - 1/sqrt2)^2 + (2/sqrt5 - 1/sqrt2)^2) / 2
  // = 1 - 3/sqrt 10 = 0.0513167.
  EXPECT_NEAR(kd::losses::attention_loss(fs, ft, 2.0).item<double>(), 1.0 - 3.0 / std::sqrt(10.0), 1e-12);
}

TEST(Losses, ConfidenceWeightsForThreeTeachersByHand) {
  // One sample of 2 classes, label 0; teachers' logits (2,0), (0,0), (0,2):
  //   CE = ln(1 + e^-2), ln 2, ln(1 + e^2) = 0.126928, 0.693147, 2.126928
  //   softmax over teachers of CE: e^CE = 1.135335, 2, 8.389056 (sum 11.524391) -> 0.098516, 0.173545, 0.727939
  //   w = (1 - softmax) / (K - 1) = 0.450742, 0.413228, 0.136030 (sum 1; the most confident teacher weighs most)
  auto y = torch::tensor({0}, torch::kLong);
  std::vector<torch::Tensor> t{torch::tensor({2.0, 0.0}, torch::kDouble).view({1, 2}),
                               torch::zeros({1, 2}, torch::kDouble),
                               torch::tensor({0.0, 2.0}, torch::kDouble).view({1, 2})};
  auto w = kd::losses::confidence_weights(t, y);
  ASSERT_EQ(w.sizes().vec(), (std::vector<int64_t>{3, 1}));
  EXPECT_NEAR(w[0][0].item<double>(), 0.45074207, 1e-7);
  EXPECT_NEAR(w[1][0].item<double>(), 0.41322752, 1e-7);
  EXPECT_NEAR(w[2][0].item<double>(), 0.13603041, 1e-7);
  // confidence_kd = T^2 * sum_k w_k KL_k (batch of 1) at T = 1 with a uniform student:
  //   KL(softmax(t_k) || u) = ln 2 + sum p ln p: teacher 1 and 3: p = (0.880797, 0.119203) -> 0.327813; teacher 2: 0.
  //   0.327813 * (0.450742 + 0.136030) = 0.192352.
  double kl13 = std::log(2.0) + 0.8807970779778823 * std::log(0.8807970779778823) +
                0.11920292202211755 * std::log(0.11920292202211755);
  EXPECT_NEAR(kd::losses::confidence_kd(torch::zeros({1, 2}, torch::kDouble), t, y, 1.0).item<double>(),
              kl13 * (0.45074207 + 0.13603041), 1e-7);
}

TEST(Methods, LogitKDTermsAndWeights) {
  auto labels = torch::tensor({1, 2}, torch::kLong);
  auto terms =
      run("logit_kd", {{"temperature", 2.0}, {"alpha", 0.7}}, {{"logits", mat(kS)}}, {{{"logits", mat(kT)}}}, labels);
  double w_kd = 0, w_ce = 0;
  EXPECT_NEAR(term(terms, "kd", &w_kd), 1.8264308963508862, 1e-9);
  // CE = mean(-log softmax(s)[y]) = 0.32445863 (labels 1 and 2)
  EXPECT_NEAR(term(terms, "ce", &w_ce), 0.3244586305507687, 1e-9);
  EXPECT_DOUBLE_EQ(w_kd, 0.7);
  EXPECT_DOUBLE_EQ(w_ce, 1.0 - 0.7);
  for (const auto& t : terms) EXPECT_GE(t.value.item<double>(), 0.0) << "losses are non-negative: " << t.name;
}

TEST(Methods, MultiTeacherAggregations) {
  auto labels = torch::tensor({1, 2}, torch::kLong);
  TapMap s{{"logits", mat(kS)}};
  std::vector<TapMap> ts{{{"logits", mat(kT)}}, {{"logits", mat(kT2)}}};
  // average: p = (softmax(t1/T) + softmax(t2/T)) / 2; T^2 * mean_b KL(p || p_s) = 0.78200462
  EXPECT_NEAR(term(run("multi_teacher", {{"temperature", 2.0}}, s, ts, labels), "kd"), 0.7820046197113861, 1e-9);
  // weighted 1:3 -> p = 0.25 p1 + 0.75 p2: 0.50169700
  EXPECT_NEAR(term(run("multi_teacher",
                       {{"temperature", 2.0}, {"aggregation", "weighted"}, {"teacher_weights", {1, 3}}}, s, ts, labels),
                   "kd"),
              0.5016970032001673, 1e-9);
  // confidence (CA-MKD): per sample w_k = (1 - softmax_k(CE_k)) / (K - 1):
  //   sample 0: CE = (2.1698, 1.5514) -> w = (0.35015, 0.64985); sample 1: w = (0.06796, 0.93204)
  //   kd = T^2 * mean_b sum_k w_kb KL(p_kb || p_sb) = 0.67840736
  EXPECT_NEAR(term(run("multi_teacher", {{"temperature", 2.0}, {"aggregation", "confidence"}}, s, ts, labels), "kd"),
              0.6784073645896667, 1e-9);
  auto w = kd::losses::confidence_weights({mat(kT), mat(kT2)}, labels);
  EXPECT_NEAR(w[0][0].item<double>(), 0.3501451367654529, 1e-9);
  EXPECT_NEAR(w[1][1].item<double>(), 0.9320365079165275, 1e-9);
  // A weight list of the wrong length is a config error naming the key.
  try {
    run("multi_teacher", {{"aggregation", "weighted"}, {"teacher_weights", {1, 2, 3}}}, s, ts, labels);
    FAIL();
  } catch (const kd::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("teacher_weights"), std::string::npos) << e.what();
  }
}

TEST(Methods, AttentionMapAndLossByHand) {
  // Student feature, 1 sample, 2 channels, 1x2: c0 = [1, 2], c1 = [3, 0]; teacher c0 = [2, 2], c1 = [0, 0].
  // Q_s = normalise(mean_c A^2) = normalise([5, 2]) = [0.928477, 0.371391]; Q_t = [0.707107, 0.707107]
  // at = mean((Q_s - Q_t)^2) = 0.08085497   (p = 1 would give 0.0513167; no normalisation 4.5)
  auto fs = torch::tensor({1.0, 2.0, 3.0, 0.0}, torch::kDouble).view({1, 2, 1, 2});
  auto ft = torch::tensor({2.0, 2.0, 0.0, 0.0}, torch::kDouble).view({1, 2, 1, 2});
  auto q = kd::losses::attention_map(fs, 2.0);
  EXPECT_NEAR(q[0][0].item<double>(), 0.9284766908852594, 1e-9);
  EXPECT_NEAR(q[0][1].item<double>(), 0.3713906763541037, 1e-9);
  EXPECT_NEAR(kd::losses::attention_loss(fs, ft, 2.0).item<double>(), 0.08085496998194212, 1e-9);
  // Through the method: three tap pairs of the same maps -> at = 3 x 0.08085497, weight beta.
  TapMap s{{"logits", torch::zeros({1, 3}, torch::kDouble)}, {"block1", fs}, {"block2", fs}, {"block3", fs}};
  TapMap t{{"logits", torch::zeros({1, 3}, torch::kDouble)}, {"block1", ft}, {"block2", ft}, {"block3", ft}};
  double w = 0;
  auto terms = run("attention", {{"beta", 1000.0}}, s, {t}, torch::tensor({0}, torch::kLong));
  EXPECT_NEAR(term(terms, "at", &w), 3 * 0.08085496998194212, 1e-9);
  EXPECT_DOUBLE_EQ(w, 1000.0);
  // Different spatial sizes: the larger map is pooled to the smaller (no error, finite).
  auto big = torch::rand({2, 4, 8, 8}, torch::kDouble), small = torch::rand({2, 6, 4, 4}, torch::kDouble);
  EXPECT_TRUE(std::isfinite(kd::losses::attention_loss(big, small, 2.0).item<double>()));
}

TEST(Methods, FitNetsHintStagesAndTerms) {
  // Hint = mean of squared differences over every element: [[1,2],[3,4]] vs 0 -> 30/4 = 7.5
  EXPECT_DOUBLE_EQ(
      kd::losses::hint_mse(torch::tensor({1.0, 2.0, 3.0, 4.0}).view({2, 2}), torch::zeros({2, 2})).item<double>(), 7.5);
  auto& reg = MethodRegistry::instance();
  auto two = reg.create("fitnets", reg.resolve("fitnets", {{"mode", "two_stage"}, {"hint_epochs", 2}}, "t"));
  auto stages = two->stages();
  ASSERT_EQ(stages.size(), 2u);
  EXPECT_EQ(stages[0].name, "hint");
  EXPECT_EQ(stages[0].epochs, 2);
  EXPECT_EQ(stages[0].train_until_tap, "block2") << "stage 1 trains only up to the guided layer";
  EXPECT_EQ(stages[1].train_until_tap, "");
  auto one = reg.create("fitnets", reg.resolve("fitnets", {{"mode", "one_stage"}}, "t"));
  EXPECT_EQ(one->stages().size(), 1u);

  torch::manual_seed(0);
  TapMap s{{"logits", torch::randn({4, 10})}, {"block2", torch::randn({4, 8, 7, 7})}};
  TapMap t{{"logits", torch::randn({4, 10})}, {"block2", torch::randn({4, 16, 14, 14})}};
  auto labels = torch::randint(0, 10, {4}, torch::kLong);
  auto stage0 = run("fitnets", {{"mode", "two_stage"}}, s, {t}, labels, 0);
  ASSERT_EQ(stage0.size(), 1u);
  EXPECT_EQ(stage0[0].name, "hint");
  auto stage1 = run("fitnets", {{"mode", "two_stage"}, {"alpha", 0.9}}, s, {t}, labels, 1);
  std::set<std::string> names;
  for (auto& x : stage1) names.insert(x.name);
  EXPECT_EQ(names, (std::set<std::string>{"ce", "kd"}));
  std::unique_ptr<kd::Method> keep;
  auto os = run("fitnets", {{"mode", "one_stage"}, {"beta", 5.0}}, s, {t}, labels, 0, &keep);
  double w = 0;
  term(os, "hint", &w);
  EXPECT_DOUBLE_EQ(w, 5.0);
  ASSERT_TRUE(keep->module());
  // RepDistiller's ConvReg for a student map of half the teacher's size (7 -> 14): a 4x4 transposed conv 8 -> 16
  // with bias + BN(16).
  int64_t n = 0;
  for (auto& p : keep->module()->parameters()) n += p.numel();
  EXPECT_EQ(n, 8 * 16 * 4 * 4 + 16 + 2 * 16);
  // The hint's gradient reaches the regressor and the student's guided layer.
  auto sv = s.at("block2").clone().requires_grad_(true);
  TapMap s2{{"logits", s.at("logits")}, {"block2", sv}};
  std::vector<const TapMap*> tp{&t};
  const auto indices = torch::arange(labels.size(0), torch::kLong);
  MethodInput in{s2, tp, labels, indices, 0};
  auto h = keep->compute(in);
  for (auto& x : h)
    if (x.name == "hint") x.value.backward();
  EXPECT_TRUE(sv.grad().defined());
  EXPECT_GT(sv.grad().abs().sum().item<double>(), 0);
}

TEST(Methods, FitNetsConv1x1BnRegressorPoolsTheLargerMap) {
  // regressor conv1x1_bn, set by hand: 1x1 conv weight 1 (1 -> 1 channel), BatchNorm in eval mode with its initial
  // running statistics (mean 0, var 1, gamma 1, beta 0): r(v) = v / sqrt(1 + 1e-5) = c v.
  const double c = 1.0 / std::sqrt(1.0 + 1e-5);
  auto grid = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kFloat).view({1, 1, 2, 2});
  auto one = [](double v) { return torch::full({1, 1, 1, 1}, v, torch::kFloat); };
  auto hint_of = [&](const torch::Tensor& v, const torch::Tensor& u) {
    TapMap s{{"logits", torch::zeros({1, 2})}, {"block2", v}};
    TapMap t{{"logits", torch::zeros({1, 2})}, {"block2", u}};
    auto& reg = MethodRegistry::instance();
    auto m = reg.create("fitnets", reg.resolve("fitnets", {{"mode", "one_stage"}, {"regressor", "conv1x1_bn"}}, "t"));
    kd::PrepareContext ctx;
    ctx.student = {{"block2", v.sizes().vec()}};
    ctx.teachers = {{{"block2", u.sizes().vec()}}};
    m->prepare(ctx);
    torch::NoGradGuard ng;
    for (auto& p : m->module()->named_parameters())
      if (p.key() == "conv.weight") p.value().fill_(1.0);
    m->module()->eval();
    std::vector<const TapMap*> tp{&t};
    auto labels = torch::tensor({0}, torch::kLong);
    auto indices = torch::tensor({0}, torch::kLong);
    return term(m->compute(MethodInput{s, tp, labels, indices, 0}), "hint");
  };
  // Student map larger: r(v) pooled to 1x1 -> 2.5 c; teacher 2: hint = (2.5 c - 2)^2 = 0.24998750.
  EXPECT_NEAR(hint_of(grid, one(2.0)), std::pow(2.5 * c - 2.0, 2), 1e-6);
  // Teacher map larger: the teacher is pooled to 1x1 -> 2.5; student 3: hint = (3 c - 2.5)^2 = 0.24998500.
  EXPECT_NEAR(hint_of(one(3.0), grid), std::pow(3.0 * c - 2.5, 2), 1e-6);
  // Same size: mean over the 4 elements of (c v - u)^2 with u = 0 -> c^2 (1 + 4 + 9 + 16) / 4 = 7.5 c^2.
  EXPECT_NEAR(hint_of(grid, torch::zeros({1, 1, 2, 2})), 7.5 * c * c, 1e-5);
}

// The default regressor, RepDistiller's ConvReg (models/util.py @ b84f547): its layer chosen by the maps' heights,
// in the reference's order, and its forward conv (with bias) -> BN -> ReLU. Sizes on the CIFAR-100 pairs are checked
// against the reference's own counts in test_harness_footprint.cpp.
TEST(Methods, FitNetsConvRegRegressorFollowsRepDistillersConvReg) {
  auto& reg = MethodRegistry::instance();
  EXPECT_EQ(reg.get("fitnets").find("regressor")->default_value, "conv_reg");
  auto build = [&](std::vector<int64_t> s, std::vector<int64_t> t) {
    auto m = reg.create("fitnets", reg.resolve("fitnets", {{"mode", "one_stage"}}, "t"));
    kd::PrepareContext ctx;
    ctx.student = {{"block2", s}};
    ctx.teachers = {{{"block2", t}}};
    m->prepare(ctx);
    return m;
  };
  auto shape_of = [](const std::shared_ptr<torch::nn::Module>& mod, const std::string& name) {
    for (auto& p : mod->named_parameters())
      if (p.key() == name) return p.value().sizes().vec();
    return std::vector<int64_t>{};
  };
  // Student map twice the teacher's: a 3x3 conv of stride 2 (padding 1), 8 -> 4 (not a 5x5 conv).
  auto a = build({2, 3, 8, 8}, {2, 5, 4, 4});
  EXPECT_EQ(shape_of(a->module(), "conv.weight"), (std::vector<int64_t>{5, 3, 3, 3}));
  EXPECT_EQ(shape_of(a->module(), "conv.bias"), (std::vector<int64_t>{5}));
  EXPECT_EQ(shape_of(a->module(), "bn.weight"), (std::vector<int64_t>{5}));
  auto fwd = [](const std::unique_ptr<kd::Method>& m, const torch::Tensor& x) {
    auto reg_module = std::dynamic_pointer_cast<kd::ConvRegImpl>(m->module());
    EXPECT_TRUE(reg_module) << "the default regressor is a kd::ConvRegImpl";
    return reg_module ? reg_module->forward(x).sizes().vec() : std::vector<int64_t>{};
  };
  EXPECT_EQ(fwd(a, torch::randn({2, 3, 8, 8})), (std::vector<int64_t>{2, 5, 4, 4}));
  // Half: a 4x4 transposed conv of stride 2 (weight [in, out, 4, 4]).
  auto b = build({2, 3, 4, 4}, {2, 5, 8, 8});
  EXPECT_EQ(shape_of(b->module(), "conv.weight"), (std::vector<int64_t>{3, 5, 4, 4}));
  EXPECT_EQ(fwd(b, torch::randn({2, 3, 4, 4})), (std::vector<int64_t>{2, 5, 8, 8}));
  // Larger otherwise: a (1 + sH - tH) x (1 + sW - tW) conv; equal sizes: 1x1.
  EXPECT_EQ(shape_of(build({2, 3, 7, 6}, {2, 5, 4, 4})->module(), "conv.weight"), (std::vector<int64_t>{5, 3, 4, 3}));
  EXPECT_EQ(shape_of(build({2, 3, 4, 4}, {2, 5, 4, 4})->module(), "conv.weight"), (std::vector<int64_t>{5, 3, 1, 1}));
  // A student map smaller than the teacher's and not half of it: no ConvReg exists (RepDistiller raises).
  try {
    build({2, 3, 3, 3}, {2, 5, 4, 4});
    ADD_FAILURE() << "3x3 -> 4x4 was accepted";
  } catch (const kd::ConfigError& e) {
    EXPECT_EQ(e.key_path(), "student_tap");
    EXPECT_NE(std::string(e.what()).find("3x3 to the teacher's 4x4"), std::string::npos) << e.what();
  }

  // Values: 1x1 conv of weight 2 and bias 0.5, BN in eval mode at its initial statistics (x / sqrt(1 + 1e-5)),
  // then ReLU: v = [-1, 0.5] -> r = [0, 1.5 c]; u = [1, 1] -> hint = ((0 - 1)^2 + (1.5 c - 1)^2) / 2.
  const double c = 1.0 / std::sqrt(1.0 + 1e-5);
  auto m = build({1, 1, 1, 2}, {1, 1, 1, 2});
  {
    torch::NoGradGuard ng;
    for (auto& p : m->module()->named_parameters()) {
      if (p.key() == "conv.weight") p.value().fill_(2.0);
      if (p.key() == "conv.bias") p.value().fill_(0.5);
    }
  }
  m->module()->eval();
  TapMap s{{"logits", torch::zeros({1, 2})}, {"block2", torch::tensor({-1.0f, 0.5f}).view({1, 1, 1, 2})}};
  TapMap t{{"logits", torch::zeros({1, 2})}, {"block2", torch::ones({1, 1, 1, 2})}};
  std::vector<const TapMap*> tp{&t};
  auto labels = torch::tensor({0}, torch::kLong);
  auto indices = torch::tensor({0}, torch::kLong);
  EXPECT_NEAR(term(m->compute(MethodInput{s, tp, labels, indices, 0}), "hint"), (1.0 + std::pow(1.5 * c - 1.0, 2)) / 2,
              1e-6);
}

TEST(Methods, ProgressiveDeclaresItsChain) {
  auto& reg = MethodRegistry::instance();
  auto m = reg.create("progressive", reg.resolve("progressive", {{"assistants", {"cnn_large", "cnn_medium"}}}, "x"));
  auto chain = m->chain();
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain[0].model, "cnn_large");
  EXPECT_EQ(chain[1].model, "cnn_medium");
  EXPECT_EQ(chain[0].method, "logit_kd");
  EXPECT_EQ(chain[0].key, "assistants[0]");
  EXPECT_EQ(chain[1].key, "assistants[1]");
  EXPECT_FALSE(chain[0].params.contains("name"));
  auto terms = run("progressive", {{"temperature", 2.0}, {"alpha", 0.5}}, {{"logits", mat(kS)}},
                   {{{"logits", mat(kT)}}}, torch::tensor({1, 2}, torch::kLong));
  EXPECT_NEAR(term(terms, "kd"), 1.8264308963508862, 1e-9);
}

}  // namespace
