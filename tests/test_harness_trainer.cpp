#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "base/json_reader.h"
#include "harness/trainer.h"

namespace {

TEST(Metrics, TopKNllAgreementByHand) {
  // 3 samples, 3 classes.
  auto logits = torch::tensor({{2.0, 1.0, 0.0}, {0.0, 3.0, 1.0}, {1.0, 0.0, 2.0}});
  auto labels = torch::tensor({0, 2, 1}, torch::kLong);
  auto teacher = torch::tensor({{5.0, 0.0, 0.0}, {0.0, 5.0, 0.0}, {5.0, 0.0, 0.0}});
  kd::EvalMetrics m = kd::metrics_from_logits(logits, labels, teacher);
  EXPECT_NEAR(m.top1, 100.0 / 3, 1e-9);  // only sample 0 correct
  EXPECT_NEAR(m.top5, 100.0, 1e-9);      // 3 classes: top-5 covers all
  // NLL = mean(-log softmax[label]): hand values
  double lse0 = std::log(std::exp(2.0) + std::exp(1.0) + 1.0);
  double lse1 = std::log(1.0 + std::exp(3.0) + std::exp(1.0));
  double lse2 = std::log(std::exp(1.0) + 1.0 + std::exp(2.0));
  double nll = ((lse0 - 2.0) + (lse1 - 1.0) + (lse2 - 0.0)) / 3.0;
  EXPECT_NEAR(m.nll, nll, 1e-9);
  // predictions 0,1,2 vs teacher 0,1,0 -> 2/3 agree
  EXPECT_NEAR(m.agreement, 200.0 / 3, 1e-9);
}

TEST(Metrics, ExpectedCalibrationErrorByHand) {
  // Two samples in bin [0.9,1.0) (conf 0.95, one correct) and one in [0.6,0.667) (conf 0.6, correct).
  auto probs = torch::tensor({{0.95, 0.05}, {0.95, 0.05}, {0.4, 0.6}}, torch::kDouble);
  auto labels = torch::tensor({0, 1, 1}, torch::kLong);
  // bin A: |acc 0.5 - conf 0.95| * 2/3 = 0.3; bin B: |1 - 0.6| * 1/3 = 0.13333
  EXPECT_NEAR(kd::expected_calibration_error(probs, labels, 15), 0.3 + 0.4 / 3, 1e-12);
}

TEST(Schedule, CosineStepMultistepWarmup) {
  kd::Recipe r;
  r.lr = 0.1;
  r.schedule = "cosine";
  EXPECT_NEAR(kd::learning_rate(r, 10, 0, 100), 0.1, 1e-12);
  EXPECT_NEAR(kd::learning_rate(r, 10, 5, 100), 0.05, 1e-12);  // half way: (1+cos(pi/2))/2 = 0.5
  EXPECT_NEAR(kd::learning_rate(r, 10, 10, 100), 0.0, 1e-12);
  r.schedule = "multistep";
  r.milestones = {150, 180, 210};
  r.gamma = 0.1;
  EXPECT_NEAR(kd::learning_rate(r, 240, 149.9, 10), 0.1, 1e-12);
  EXPECT_NEAR(kd::learning_rate(r, 240, 150, 10), 0.01, 1e-12);
  EXPECT_NEAR(kd::learning_rate(r, 240, 215, 10), 0.0001, 1e-12);
  r.schedule = "step";
  r.step_size = 30;
  EXPECT_NEAR(kd::learning_rate(r, 100, 61, 10), 0.001, 1e-12);
  r.schedule = "constant";
  r.warmup_epochs = 2;
  // step 0 of 20 warm-up steps: lr * 1/20; step 19: full lr
  EXPECT_NEAR(kd::learning_rate(r, 10, 0, 10), 0.1 / 20, 1e-12);
  EXPECT_NEAR(kd::learning_rate(r, 10, 1.95, 10), 0.1, 1e-12);
  EXPECT_NEAR(kd::learning_rate(r, 10, 3, 10), 0.1, 1e-12);
}

}  // namespace
