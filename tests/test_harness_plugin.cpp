// A method registered from a test file runs through the whole harness with no change anywhere
// else; a NaN loss fails only its own run, with a record of epoch, step and term.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "base/errors.h"
#include "harness/runner.h"
#include "methods/method.h"
#include "store/store.h"
#include "test_util.h"

namespace {

// CE plus an L2 penalty on the logits (a made-up method, only to prove the plugin path).
class PluginLogitPenalty : public kd::Method {
 public:
  struct Options {
    double beta = 0.01;
  };
  static kd::MethodInfo info() {
    return kd::MethodInfo::of<PluginLogitPenalty>("test_logit_penalty", "test plugin: CE + beta * mean(logits^2)")
        .cite("none (test)")
        .teachers(0, 0)
        .number("beta", &Options::beta, 0, 10, "weight of the logit penalty");
  }
  explicit PluginLogitPenalty(const Options& o) : beta_(o.beta) {}
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
  struct Options {};
  static kd::MethodInfo info() {
    return kd::MethodInfo::of<PluginNaN>("test_nan", "test plugin: NaN at step 3").cite("none (test)").teachers(1, 1);
  }
  explicit PluginNaN(const Options&) {}
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

// Counts how often its factory runs: a run's method is made once, when the run is planned, and that
// instance trains it.
class PluginCounted : public kd::Method {
 public:
  struct Options {
    double beta = 0.0;
  };
  static int& made() {
    static int n = 0;
    return n;
  }
  static int& computed_by_others() {
    static int n = 0;
    return n;
  }
  static kd::MethodInfo info() {
    return kd::MethodInfo::of<PluginCounted>("test_counted", "test plugin: CE, counting its instances")
        .cite("none (test)")
        .teachers(1, 1)
        .number("beta", &Options::beta, 0, 10, "unused weight");
  }
  explicit PluginCounted(const Options&) { ++made(); }
  std::vector<std::string> teacher_taps(int) const override { return {"logits"}; }
  void prepare(const kd::PrepareContext&) override { prepared_ = true; }
  kd::LossTerms compute(const kd::MethodInput& in) override {
    if (!prepared_) ++computed_by_others();  // an instance that was not the prepared one
    return {{"ce", torch::cross_entropy_loss(in.student.at("logits"), in.labels), 1.0}};
  }

 private:
  bool prepared_ = false;
};
KD_REGISTER_METHOD(PluginCounted);

TEST(Plugin, ThePlanHoldsNoMethodAndEachRunBuildsItsOwnOnce) {
  std::string dir = kd::test::make_temp_dir("counted");
  kd::json j = kd::json::parse(R"({
    "name": "counted",
    "dataset": {"name": "synthetic", "num_classes": 3, "train_size": 96, "test_size": 48, "image_size": 12,
                "channels": 1, "seed": 1},
    "student": ["cnn_tiny", "cnn_medium"], "seeds": [0, 1], "threads": 1,
    "teachers": {"t": {"model": "cnn_medium", "recipe": {"epochs": 1}}},
    "recipe": {"epochs": 1, "batch_size": 32, "lr": 0.05},
    "methods": [{"method": "test_counted", "grid": {"beta": [0.0, 1.0, 2.0]}}]
  })");
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  auto cfg = kd::parse_sweep_config(j, "counted.json");  // resolves every grid point: makes no method
  EXPECT_EQ(PluginCounted::made(), 0);
  ASSERT_EQ(cfg.methods.at(0).settings.size(), 3u);
  EXPECT_EQ(cfg.methods.at(0).settings.at(2).params.at("beta"), 2.0);
  kd::Plan plan = kd::plan_sweep(cfg);
  int counted_runs = 0;
  for (const auto& r : plan.runs) counted_runs += r.method == "test_counted";
  EXPECT_EQ(counted_runs, 12);  // 3 settings x 2 seeds x 2 students
  // The plan is a value: each setting's declarations (stages, chain) are asked of one instance, let go.
  EXPECT_EQ(PluginCounted::made(), 3) << "one instance per setting (3), not per run (12)";
  PluginCounted::made() = 0;
  kd::SweepSummary s = kd::run_sweep(cfg, kd::SweepOptions{});
  EXPECT_EQ(s.done, s.total);
  EXPECT_EQ(PluginCounted::made(), 3 + 12) << "the runner's plan asks 3, and each of the 12 runs builds its own once";
  EXPECT_EQ(PluginCounted::computed_by_others(), 0);
}

TEST(Plugin, RegisteredFromATestFile) {
  auto& reg = kd::MethodRegistry::instance();
  ASSERT_NE(reg.find("test_logit_penalty"), nullptr);
  auto p = reg.resolve("test_logit_penalty", {{"beta", 0.5}}, "methods[0].params");
  EXPECT_DOUBLE_EQ(p.all()["beta"].get<double>(), 0.5);
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
  kd::SqliteStore store(dir + "/out/results.db", true);
  int penalty_runs = 0;
  for (const auto& r : store.runs()) {
    if (r.method == "test_nan") {
      EXPECT_EQ(r.status, kd::RunStatus::Failed);
      auto e = kd::json::parse(r.error);
      EXPECT_EQ(e["epoch"], 0);
      EXPECT_EQ(e["step"], 3);
      EXPECT_EQ(e["term"], "boom");
    } else {
      EXPECT_EQ(r.status, kd::RunStatus::Done) << r.name;
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
// with finite losses, and learns above chance: the entries below (variants of some methods) and then every
// other registered built-in method at its defaults, so a new methods/<name>.cpp is covered without an edit.
TEST(AllMethods, TrainEndToEndWithoutNaN) {
  std::string dir = kd::test::make_temp_dir("allmethods");
  kd::json j = kd::json::parse(R"({
    "name": "all",
    "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 384, "test_size": 128, "image_size": 16,
                "channels": 1, "seed": 5},
    "student": "cnn_tiny", "seeds": [0], "threads": 1,
    "teachers": {"a": {"model": "cnn_medium"}, "b": {"model": "cnn_large"}, "c": {"model": "cnn_tiny"}},
    "recipe": {"epochs": 4, "batch_size": 32, "lr": 0.1},
    "methods": [
      {"method": "baseline"},
      {"method": "logit_kd"},
      {"method": "fitnets", "params": {"mode": "one_stage"}},
      {"method": "fitnets", "label": "fitnets2", "params": {"mode": "two_stage", "hint_epochs": 1}},
      {"method": "attention"},
      {"method": "multi_teacher", "teachers": ["a", "b"], "params": {"aggregation": "confidence", "beta": 1.0}},
      {"method": "progressive", "params": {"assistants": ["cnn_medium"]}},
      {"method": "vid"},
      {"method": "ab", "params": {"init_epochs": 1}},
      {"method": "fsp", "teachers": ["c"], "params": {"init_epochs": 1}},
      {"method": "ft", "params": {"init_epochs": 1}},
      {"method": "crd", "params": {"nce_k": 64}},
      {"method": "reviewkd", "params": {"warmup_epochs": 1}},
      {"method": "ofd"}
    ]
  })");
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  std::set<std::string> listed, built_in;
  for (const auto& m : j["methods"]) listed.insert(m["method"].get<std::string>());
  for (const auto& name : kd::MethodRegistry::instance().names()) {
    if (name.rfind("test_", 0) == 0) continue;  // registered by test files
    built_in.insert(name);
    if (listed.count(name)) continue;
    const int teachers = std::max(1, kd::MethodRegistry::instance().get(name).min_teachers);
    kd::json entry = {{"method", name}};
    if (kd::MethodRegistry::instance().get(name).max_teachers > 0)
      entry["teachers"] = teachers == 1 ? kd::json::array({"a"}) : kd::json::array({"a", "b"});
    j["methods"].push_back(entry);
  }
  kd::SweepSummary s = kd::run_sweep(kd::parse_sweep_config(j, "all.json"), kd::SweepOptions{});
  EXPECT_EQ(s.failed, 0);
  EXPECT_EQ(s.done, s.total);
  kd::SqliteStore store(dir + "/out/results.db", true);
  std::set<std::string> trained;
  for (const auto& r : store.runs()) trained.insert(r.method);
  for (const auto& name : built_in) EXPECT_TRUE(trained.count(name)) << name << " did not train";
  for (const auto& r : store.runs()) {
    ASSERT_EQ(r.status, kd::RunStatus::Done) << r.name << " " << r.error;
    for (const auto& e : store.epochs(r.id))
      if (e.name.rfind("loss.", 0) == 0) {
        EXPECT_TRUE(std::isfinite(e.value)) << r.name << " " << e.name;
      }
    if (r.role == kd::RunRole::Student) {
      EXPECT_GT(store.finals(r.id)["final.test.top1"], 30.0) << r.name;
    }
    if (r.name == "fitnets2") {
      std::set<std::string> stages;
      for (const auto& e : store.epochs(r.id)) stages.insert(e.stage);
      EXPECT_EQ(stages, (std::set<std::string>{"hint", "kd"}));
    }
    if (r.method == "fitnets" || r.method == "multi_teacher" || r.method == "vid" || r.method == "ab" ||
        r.method == "ft" || r.method == "crd" || r.method == "reviewkd" || r.method == "ofd") {
      EXPECT_GT(r.method_params, 0) << r.name;
    }
  }
}

}  // namespace
