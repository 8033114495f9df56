// A method registered from a test file runs through the whole harness with no change anywhere
// else; a NaN loss fails only its own run, with a record of epoch, step and term.
#include <gtest/gtest.h>

#include <filesystem>

#include "harness/errors.h"
#include "harness/runner.h"
#include "harness/store.h"
#include "methods/method.h"
#include "test_util.h"

namespace {

// CE plus an L2 penalty on the logits (a made-up method, only to prove the plugin path).
class PluginLogitPenalty : public kd::Method {
 public:
  static kd::MethodInfo info() {
    return kd::MethodInfo("test_logit_penalty", "test plugin: CE + beta * mean(logits^2)")
        .teachers(0, 0)
        .number("beta", 0.01, 0, 10, "weight of the logit penalty");
  }
  explicit PluginLogitPenalty(const kd::MethodParams& p) : beta_(p.number("beta")) {}
  kd::LossTerms compute(const kd::MethodInput& in) override {
    const auto& s = in.student.at("logits");
    return {{"ce", torch::cross_entropy_loss(s, in.labels), 1.0}, {"penalty", s.pow(2).mean(), beta_}};
  }

 private:
  double beta_;
};
KD_REGISTER_METHOD(PluginLogitPenalty);

// Returns NaN in term "boom" from its 4th step (step index 3) on.
class PluginNaN : public kd::Method {
 public:
  static kd::MethodInfo info() { return kd::MethodInfo("test_nan", "test plugin: NaN at step 3").teachers(1, 1); }
  explicit PluginNaN(const kd::MethodParams&) {}
  std::vector<std::string> teacher_taps(int) const override { return {"logits"}; }
  kd::LossTerms compute(const kd::MethodInput& in) override {
    const auto& s = in.student.at("logits");
    EXPECT_TRUE(in.teachers[0]->count("logits"));
    auto ce = torch::cross_entropy_loss(s, in.labels);
    auto boom = calls_++ >= 3 ? ce * std::numeric_limits<float>::quiet_NaN() : ce * 0;
    return {{"ce", ce, 1.0}, {"boom", boom, 1.0}};
  }

 private:
  int calls_ = 0;
};
KD_REGISTER_METHOD(PluginNaN);

TEST(Plugin, RegisteredFromATestFile) {
  auto& reg = kd::MethodRegistry::instance();
  ASSERT_NE(reg.find("test_logit_penalty"), nullptr);
  auto p = reg.resolve("test_logit_penalty", {{"beta", 0.5}}, "methods[0].params");
  EXPECT_DOUBLE_EQ(p.number("beta"), 0.5);
  try {
    reg.resolve("test_logit_penalty", {{"beta", 50}}, "methods[0].params");
    FAIL();
  } catch (const kd::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("methods[0].params.beta"), std::string::npos) << e.what();
  }
}

TEST(Plugin, RunsThroughTheHarnessAndNaNFailsOnlyItsRun) {
  std::string dir = kd::test::make_temp_dir("plugin");
  kd::json j = kd::json::parse(R"({
    "name": "plugin",
    "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 512, "test_size": 256, "image_size": 16,
                "channels": 1, "seed": 3},
    "student": "cnn_tiny", "seeds": [0], "threads": 1,
    "teachers": {"t": {"model": "cnn_medium"}},
    "recipe": {"epochs": 2, "batch_size": 32, "lr": 0.05},
    "methods": [
      {"method": "baseline"},
      {"method": "test_logit_penalty", "grid": {"beta": [0.0, 0.1]}},
      {"method": "test_nan"}
    ]
  })");
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  auto cfg = kd::parse_sweep_config(j, "plugin.json");
  kd::SweepOptions opts;
  kd::SweepSummary s = kd::run_sweep(cfg, opts);
  EXPECT_EQ(s.total, 5);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.done, 4);
  kd::ResultsStore store(dir + "/out/results.db", true);
  int penalty_runs = 0;
  for (const auto& r : store.runs()) {
    if (r.method == "test_nan") {
      EXPECT_EQ(r.status, "failed");
      auto e = kd::json::parse(r.error);
      EXPECT_EQ(e["epoch"], 0);
      EXPECT_EQ(e["step"], 3);
      EXPECT_EQ(e["term"], "boom");
    } else {
      EXPECT_EQ(r.status, "done") << r.name;
      auto f = store.finals(r.id);
      EXPECT_GT(f["final.test.top1"], 25.0 + 10.0) << r.name << ": should learn the synthetic data above chance";
    }
    if (r.method == "test_logit_penalty") {
      ++penalty_runs;
      bool has_penalty_term = false;
      for (const auto& e : store.epochs(r.id)) has_penalty_term |= e.name == "loss.penalty";
      EXPECT_TRUE(has_penalty_term) << "each term is logged separately";
    }
  }
  EXPECT_EQ(penalty_runs, 2);
}

}  // namespace

namespace {

// Every built-in method trains end to end through the harness for a few steps on synthetic data,
// with finite losses, and learns above chance.
TEST(AllMethods, TrainEndToEndWithoutNaN) {
  std::string dir = kd::test::make_temp_dir("allmethods");
  kd::json j = kd::json::parse(R"({
    "name": "all",
    "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 384, "test_size": 128, "image_size": 16,
                "channels": 1, "seed": 5},
    "student": "cnn_tiny", "seeds": [0], "threads": 1,
    "teachers": {"a": {"model": "cnn_medium"}, "b": {"model": "cnn_large"}},
    "recipe": {"epochs": 4, "batch_size": 32, "lr": 0.1},
    "methods": [
      {"method": "baseline"},
      {"method": "logit_kd"},
      {"method": "fitnets", "params": {"mode": "one_stage"}},
      {"method": "fitnets", "label": "fitnets2", "params": {"mode": "two_stage", "hint_epochs": 1}},
      {"method": "attention"},
      {"method": "multi_teacher", "teachers": ["a", "b"], "params": {"aggregation": "confidence", "beta": 1.0}},
      {"method": "progressive", "params": {"assistants": ["cnn_medium"]}}
    ]
  })");
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  kd::SweepSummary s = kd::run_sweep(kd::parse_sweep_config(j, "all.json"), kd::SweepOptions{});
  EXPECT_EQ(s.failed, 0);
  EXPECT_EQ(s.done, s.total);
  kd::ResultsStore store(dir + "/out/results.db", true);
  for (const auto& r : store.runs()) {
    ASSERT_EQ(r.status, "done") << r.name << " " << r.error;
    for (const auto& e : store.epochs(r.id))
      if (e.name.rfind("loss.", 0) == 0) {
        EXPECT_TRUE(std::isfinite(e.value)) << r.name << " " << e.name;
      }
    if (r.role == "student") {
      EXPECT_GT(store.finals(r.id)["final.test.top1"], 30.0) << r.name;
    }
    if (r.name == "fitnets2") {
      std::set<std::string> stages;
      for (const auto& e : store.epochs(r.id)) stages.insert(e.stage);
      EXPECT_EQ(stages, (std::set<std::string>{"hint", "kd"}));
    }
    if (r.method == "fitnets" || r.method == "multi_teacher") {
      EXPECT_GT(r.method_params, 0) << r.name;
    }
  }
}

}  // namespace
