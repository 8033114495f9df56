// A few SGD steps of every method with tiny TapModels defined here (not zoo models): the loss is finite
// and goes down on a fixed batch, method-owned regressors get gradients, and FitNets' hint stage leaves
// every parameter after the guided layer without a gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "base/errors.h"
#include "methods/method.h"
#include "models/model.h"

namespace {

using json = nlohmann::json;
using kd::TapMap;

// conv(3x3) -> block1 [B,c1,8,8]; conv(3x3, stride s2) -> block2; conv(3x3, stride 2) -> block3;
// global average pool -> pool; linear -> logits. Input [B,1,8,8], 4 classes.
class TinyNet : public kd::TapModel {
 public:
  TinyNet(int64_t c1, int64_t c2, int64_t c3, int64_t s2)
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, c1, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, 3).padding(1).stride(s2)))),
        conv3(register_module("conv3", torch::nn::Conv2d(torch::nn::Conv2dOptions(c2, c3, 3).padding(1).stride(2)))),
        fc(register_module("fc", torch::nn::Linear(c3, 4))) {}
  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    auto b1 = torch::relu(conv1(x));
    auto b2 = torch::relu(conv2(b1));
    auto b3 = torch::relu(conv3(b2));
    auto pool = b3.mean({2, 3});
    auto logits = fc(pool);
    if (taps) *taps = {{"block1", b1}, {"block2", b2}, {"block3", b3}, {"pool", pool}, {"logits", logits}};
    return logits;
  }
  std::vector<std::string> tap_names() const override { return {"block1", "block2", "block3", "pool", "logits"}; }
  std::string arch() const override { return "test_tiny"; }

  torch::nn::Conv2d conv1, conv2, conv3;
  torch::nn::Linear fc;
};

kd::TapShapes shapes(const TapMap& taps) {
  kd::TapShapes s;
  for (const auto& [k, v] : taps) s[k] = v.sizes().vec();
  return s;
}

double total(const kd::LossTerms& terms) {
  double sum = 0;
  for (const auto& t : terms) sum += t.weight * t.value.item<double>();
  return sum;
}

torch::Tensor weighted_sum(const kd::LossTerms& terms) {
  torch::Tensor loss;
  for (const auto& t : terms) loss = loss.defined() ? loss + t.weight * t.value : t.weight * t.value;
  return loss;
}

struct Setup {
  std::shared_ptr<TinyNet> student;
  std::vector<std::shared_ptr<TinyNet>> teachers;
  std::vector<TapMap> teacher_taps;  // computed once, detached, eval mode
  std::unique_ptr<kd::Method> method;
  torch::Tensor x, y;
};

// Student 4/6/8 channels, stride-2 block2 (4x4); teachers 8/12/16 channels with a stride-1 block2 (8x8),
// so feature methods must adapt both channels and spatial size.
Setup make_setup(const std::string& name, const json& params, int n_teachers) {
  torch::manual_seed(3);
  Setup s;
  s.student = std::make_shared<TinyNet>(4, 6, 8, 2);
  s.x = torch::randn({8, 1, 8, 8});
  s.y = torch::tensor({0, 1, 2, 3, 0, 1, 2, 3}, torch::kLong);
  std::vector<kd::TapShapes> tshapes;
  for (int i = 0; i < n_teachers; ++i) {
    auto t = std::make_shared<TinyNet>(8, 12, 16, 1);
    t->eval();
    TapMap taps;
    {
      torch::NoGradGuard ng;
      t->forward_taps(s.x, &taps);
    }
    for (auto& [k, v] : taps) v = v.detach();
    tshapes.push_back(shapes(taps));
    s.teachers.push_back(t);
    s.teacher_taps.push_back(std::move(taps));
  }
  auto& reg = kd::MethodRegistry::instance();
  s.method = reg.create(name, reg.resolve(name, params, "test"));
  TapMap probe;
  {
    torch::NoGradGuard ng;
    s.student->forward_taps(s.x, &probe);
  }
  kd::PrepareContext ctx;
  ctx.student = shapes(probe);
  ctx.teachers = tshapes;
  ctx.train_size = s.y.size(0);
  s.method->prepare(ctx);
  return s;
}

kd::LossTerms step_terms(Setup& s, int stage) {
  TapMap taps;
  s.student->forward_taps(s.x, &taps);
  std::vector<const TapMap*> tp;
  for (const auto& t : s.teacher_taps) tp.push_back(&t);
  const auto indices = torch::arange(s.y.size(0), torch::kLong);
  return s.method->compute(kd::MethodInput{taps, tp, s.y, indices, stage});
}

// Five SGD steps of stage `stage`; returns the weighted total before each step.
std::vector<double> train(Setup& s, int stage, double lr) {
  auto params = s.student->parameters();
  if (auto m = s.method->module()) {
    m->train();
    for (auto& p : m->parameters()) params.push_back(p);
  }
  torch::optim::SGD opt(params, torch::optim::SGDOptions(lr));
  std::vector<double> losses;
  for (int i = 0; i < 5; ++i) {
    opt.zero_grad();
    auto terms = step_terms(s, stage);
    losses.push_back(total(terms));
    weighted_sum(terms).backward();
    opt.step();
  }
  return losses;
}

void expect_finite_and_decreasing(const std::vector<double>& l, const std::string& what) {
  for (double v : l) EXPECT_TRUE(std::isfinite(v)) << what;
  EXPECT_LT(l.back(), l.front()) << what << ": the loss did not go down over 5 steps on one batch";
}

bool has_grad(const torch::Tensor& p) {
  return p.grad().defined() && p.grad().abs().sum().item<double>() > 0;
}

struct Case {
  std::string method;
  json params;
  int teachers;
  std::vector<std::string> terms;  // expected term names, in any order
};

TEST(Training, EveryMethodTrainsForAFewSteps) {
  const std::vector<Case> cases{
      {"baseline", json::object(), 0, {"ce"}},
      {"logit_kd", {{"temperature", 2.0}}, 1, {"ce", "kd"}},
      {"fitnets", {{"mode", "one_stage"}, {"beta", 1.0}}, 1, {"ce", "kd", "hint"}},
      {"fitnets", {{"mode", "one_stage"}, {"alpha", 0.0}, {"regressor", "linear"}}, 1, {"ce", "hint"}},
      {"attention", {{"beta", 100.0}}, 1, {"ce", "at"}},
      {"attention", {{"beta", 100.0}, {"alpha", 0.5}}, 1, {"ce", "at", "kd"}},
      {"multi_teacher", json::object(), 2, {"ce", "kd"}},
      {"multi_teacher", {{"aggregation", "weighted"}, {"teacher_weights", {1, 2, 3}}}, 3, {"ce", "kd"}},
      {"multi_teacher",
       {{"aggregation", "confidence"}, {"beta", 1.0}, {"feature_teacher", 1}},
       2,
       {"ce", "kd", "feat"}},
      {"progressive", json::object(), 1, {"ce", "kd"}},
  };
  for (const auto& c : cases) {
    std::string what = c.method + " " + c.params.dump();
    auto s = make_setup(c.method, c.params, c.teachers);
    auto terms = step_terms(s, 0);
    std::set<std::string> names;
    for (const auto& t : terms) {
      names.insert(t.name);
      EXPECT_EQ(t.value.dim(), 0) << what << ": term " << t.name << " is not a scalar";
    }
    EXPECT_EQ(names, std::set<std::string>(c.terms.begin(), c.terms.end())) << what;
    auto losses = train(s, 0, 0.05);
    expect_finite_and_decreasing(losses, what);
    // Method-owned parameters (regressors) received gradients from the last step.
    if (auto m = s.method->module()) {
      for (const auto& p : m->parameters()) {
        EXPECT_TRUE(has_grad(p)) << what << ": a regressor parameter has no gradient";
      }
    }
  }
}

TEST(Training, FitNetsHintStageLeavesPostTapParametersWithoutGradients) {
  auto s = make_setup("fitnets", {{"mode", "two_stage"}, {"hint_epochs", 2}}, 1);
  auto stages = s.method->stages();
  ASSERT_EQ(stages.size(), 2u);
  ASSERT_EQ(stages[0].train_until_tap, "block2");
  // Stage "hint": one term, weight 1; its gradient reaches conv1, conv2 and the regressor only.
  auto terms = step_terms(s, 0);
  ASSERT_EQ(terms.size(), 1u);
  EXPECT_EQ(terms[0].name, "hint");
  EXPECT_DOUBLE_EQ(terms[0].weight, 1.0);
  weighted_sum(terms).backward();
  for (auto* m : {&s.student->conv1, &s.student->conv2})
    for (const auto& p : (*m)->parameters()) EXPECT_TRUE(has_grad(p));
  for (const auto& p : s.student->conv3->parameters()) EXPECT_FALSE(p.grad().defined()) << "conv3 is after block2";
  for (const auto& p : s.student->fc->parameters()) EXPECT_FALSE(p.grad().defined()) << "fc is after block2";
  ASSERT_TRUE(s.method->module());
  for (const auto& p : s.method->module()->parameters()) EXPECT_TRUE(has_grad(p));
  s.student->zero_grad();
  s.method->module()->zero_grad();
  // Training each stage lowers its own loss.
  expect_finite_and_decreasing(train(s, 0, 0.05), "fitnets hint stage");
  auto kd_terms = step_terms(s, 1);
  std::set<std::string> names;
  for (const auto& t : kd_terms) names.insert(t.name);
  EXPECT_EQ(names, (std::set<std::string>{"ce", "kd"}));
  expect_finite_and_decreasing(train(s, 1, 0.05), "fitnets kd stage");
}

TEST(Training, RegressorSizesFollowTheTapShapes) {
  // conv_reg (RepDistiller's ConvReg), block2 4x4 -> 8x8: a 4x4 transposed conv 6 -> 12 with bias + BatchNorm(12).
  auto conv = make_setup("fitnets", {{"mode", "one_stage"}}, 1);
  int64_t n = 0;
  for (const auto& p : conv.method->module()->parameters()) n += p.numel();
  EXPECT_EQ(n, 6 * 12 * 16 + 12 + 2 * 12);
  // conv1x1_bn: 1x1 conv 6 -> 12 channels without bias (72) + BatchNorm(12) (24) = 96 parameters.
  auto c11 = make_setup("fitnets", {{"mode", "one_stage"}, {"regressor", "conv1x1_bn"}}, 1);
  n = 0;
  for (const auto& p : c11.method->module()->parameters()) n += p.numel();
  EXPECT_EQ(n, 6 * 12 + 2 * 12);
  // linear: block2 flattened 6*4*4 = 96 -> 12*8*8 = 768, weights + bias.
  auto lin = make_setup("fitnets", {{"mode", "one_stage"}, {"regressor", "linear"}}, 1);
  n = 0;
  for (const auto& p : lin.method->module()->parameters()) n += p.numel();
  EXPECT_EQ(n, 96 * 768 + 768);
  // Methods without a feature term own no parameters.
  EXPECT_EQ(make_setup("logit_kd", json::object(), 1).method->module(), nullptr);
  EXPECT_EQ(make_setup("multi_teacher", json::object(), 2).method->module(), nullptr);
}

TEST(Training, TapsDeclaredAreTheOnesUsed) {
  auto at =
      make_setup("attention", {{"student_taps", {"block1", "block3"}}, {"teacher_taps", {"block2", "block3"}}}, 1);
  EXPECT_EQ(at.method->student_taps(), (std::vector<std::string>{"block1", "block3", "logits"}));
  EXPECT_EQ(at.method->teacher_taps(0), (std::vector<std::string>{"block2", "block3", "logits"}));
  auto mt = make_setup("multi_teacher", {{"beta", 1.0}, {"feature_teacher", 1}, {"teacher_tap", "block3"}}, 2);
  EXPECT_EQ(mt.method->teacher_taps(0), (std::vector<std::string>{"logits"}));
  EXPECT_EQ(mt.method->teacher_taps(1), (std::vector<std::string>{"logits", "block3"}));
  EXPECT_EQ(make_setup("baseline", json::object(), 0).method->teacher_taps(0).size(), 0u);
}

TEST(Training, MultiTeacherWeightCountMustMatchTheTeachers) {
  try {
    make_setup("multi_teacher", {{"aggregation", "weighted"}, {"teacher_weights", {1, 2, 3}}}, 2);
    FAIL() << "3 weights for 2 teachers was accepted";
  } catch (const kd::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "teacher_weights: has 3 weights for 2 teachers");
  }
  try {
    make_setup("multi_teacher", {{"beta", 1.0}, {"feature_teacher", 2}}, 2);
    FAIL() << "feature_teacher 2 of 2 teachers was accepted";
  } catch (const kd::ConfigError& e) {
    EXPECT_EQ(e.key_path(), "feature_teacher");
  }
}

}  // namespace
