// Sweep-config validation: every error names the key path and what was expected.
#include <gtest/gtest.h>

#include "base/errors.h"
#include "base/json_reader.h"
#include "harness/plan.h"
#include "test_util.h"

namespace {

using kd::json;

json base_config() {
  return json::parse(R"({
    "name": "t",
    "dataset": {"name": "synthetic"},
    "student": "cnn_tiny",
    "seeds": [0, 1],
    "teachers": {"big": {"model": "cnn_large"}, "wide": {"model": "cnn_wide"}},
    "methods": [
      {"method": "baseline"},
      {"method": "logit_kd", "grid": {"temperature": [2, 4], "alpha": [0.5, 0.9]}}
    ]
  })");
}

// Returns the ConfigError message, or fails.
std::string config_error(const json& j) {
  try {
    kd::parse_sweep_config(j, "test.json");
  } catch (const kd::ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError for " << j.dump();
  return "";
}

TEST(SweepConfig, ValidConfigExpandsToRuns) {
  auto cfg = kd::parse_sweep_config(base_config(), "test.json");
  kd::Plan plan = kd::plan_sweep(cfg);
  // 2 teachers + 2 seeds x (1 baseline + 4 logit_kd)
  EXPECT_EQ(plan.runs.size(), 2u + 2u * 5u);
  EXPECT_EQ(plan.runs[0].role, kd::RunRole::Teacher);
  // Ids are stable (content hashes) and unique.
  kd::Plan again = kd::plan_sweep(kd::parse_sweep_config(base_config(), "test.json"));
  std::set<std::string> ids;
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    EXPECT_EQ(plan.runs[i].id, again.runs[i].id);
    ids.insert(plan.runs[i].id);
  }
  EXPECT_EQ(ids.size(), plan.runs.size());
  // logit_kd defaults to the first teacher; baseline has none.
  for (const auto& r : plan.runs) {
    if (r.method == "baseline" && r.role == kd::RunRole::Student) {
      EXPECT_TRUE(r.teacher_ids.empty());
    }
    if (r.method == "logit_kd") {
      EXPECT_EQ(r.teacher_ids.size(), 1u);
    }
  }
}

TEST(SweepConfig, ChangingAHyperparameterChangesOnlyThatRunsId) {
  json a = base_config();
  json b = base_config();
  b["methods"][1]["grid"]["temperature"] = {2, 8};
  auto pa = kd::plan_sweep(kd::parse_sweep_config(a, "a"));
  auto pb = kd::plan_sweep(kd::parse_sweep_config(b, "b"));
  std::set<std::string> ia, ib;
  for (auto& r : pa.runs) ia.insert(r.id);
  for (auto& r : pb.runs) ib.insert(r.id);
  std::vector<std::string> common;
  std::set_intersection(ia.begin(), ia.end(), ib.begin(), ib.end(), std::back_inserter(common));
  // teachers (2) + baselines (2) + T=2 runs (2 seeds x 2 alphas) stay the same
  EXPECT_EQ(common.size(), 2u + 2u + 4u);
}

// A method entry's own "recipe" overrides keys of the sweep's recipe for that entry's runs only (the published
// CIFAR-100 recipe trains MobileNetV2/ShuffleNet students at lr 0.01, the others at 0.05).
TEST(SweepConfig, MethodEntryRecipeOverridesOnlyItsRuns) {
  json a = base_config();
  a["recipe"] = {{"lr", 0.05}, {"epochs", 4}};
  json b = a;
  b["methods"][1]["recipe"] = {{"lr", 0.01}};
  auto pa = kd::plan_sweep(kd::parse_sweep_config(a, "a"));
  auto pb = kd::plan_sweep(kd::parse_sweep_config(b, "b"));
  ASSERT_EQ(pa.runs.size(), pb.runs.size());
  for (size_t i = 0; i < pa.runs.size(); ++i) {
    const auto& r = pb.runs[i];
    if (r.method == "logit_kd") {
      EXPECT_DOUBLE_EQ(r.recipe.lr, 0.01);
      EXPECT_EQ(r.recipe.epochs, 4) << "keys the entry does not name come from the sweep's recipe";
      EXPECT_DOUBLE_EQ(r.config["recipe"]["lr"].get<double>(), 0.01);
      EXPECT_NE(r.id, pa.runs[i].id) << "the recipe is part of the run's id";
    } else {
      EXPECT_DOUBLE_EQ(r.recipe.lr, 0.05);
      EXPECT_EQ(r.id, pa.runs[i].id) << r.name << " must not change";
    }
  }
  b["methods"][1]["recipe"] = {{"lrr", 0.01}};
  std::string m = config_error(b);
  EXPECT_NE(m.find("methods[1].recipe.lrr"), std::string::npos) << m;
}

TEST(SweepConfig, UnknownTopLevelKey) {
  json j = base_config();
  j["epochz"] = 3;
  std::string m = config_error(j);
  EXPECT_NE(m.find("epochz"), std::string::npos) << m;
  EXPECT_NE(m.find("unknown key"), std::string::npos) << m;
}

TEST(SweepConfig, WrongType) {
  json j = base_config();
  j["seeds"] = "zero";
  std::string m = config_error(j);
  EXPECT_NE(m.find("seeds"), std::string::npos) << m;
  EXPECT_NE(m.find("expected an integer"), std::string::npos) << m;
  j = base_config();
  j["recipe"] = {{"epochs", "three"}};
  m = config_error(j);
  EXPECT_NE(m.find("recipe.epochs: expected an integer, got a string"), std::string::npos) << m;
}

TEST(SweepConfig, UnknownMethodNamesItsPath) {
  json j = base_config();
  j["methods"][1]["method"] = "dark_magic";
  std::string m = config_error(j);
  EXPECT_NE(m.find("methods[1].method"), std::string::npos) << m;
  EXPECT_NE(m.find("dark_magic"), std::string::npos) << m;
  EXPECT_NE(m.find("logit_kd"), std::string::npos) << "lists the known methods: " << m;
}

TEST(SweepConfig, OutOfRangeGridValueNamesGridKey) {
  json j = base_config();
  j["methods"][1]["grid"]["temperature"] = {4, -1};
  std::string m = config_error(j);
  EXPECT_NE(m.find("methods[1].grid.temperature"), std::string::npos) << m;
}

TEST(SweepConfig, UnknownHyperparameter) {
  json j = base_config();
  j["methods"][1]["params"] = {{"tempreature", 4}};
  std::string m = config_error(j);
  EXPECT_NE(m.find("methods[1].params.tempreature"), std::string::npos) << m;
}

TEST(SweepConfig, UnknownModelAndTeacher) {
  json j = base_config();
  j["student"] = "resnet9000";
  std::string m = config_error(j);
  EXPECT_NE(m.find("student"), std::string::npos) << m;
  EXPECT_NE(m.find("resnet9000"), std::string::npos) << m;
  j = base_config();
  j["methods"][1]["teachers"] = {"nobody"};
  m = config_error(j);
  EXPECT_NE(m.find("methods[1].teachers[0]"), std::string::npos) << m;
  j = base_config();
  j["teachers"]["big"]["model"] = "gpt5";
  m = config_error(j);
  EXPECT_NE(m.find("teachers.big.model"), std::string::npos) << m;
}

TEST(SweepConfig, TeacherCountChecked) {
  json j = base_config();
  j["methods"][1]["method"] = "multi_teacher";
  j["methods"][1]["teachers"] = {"big"};
  j["methods"][1].erase("grid");
  std::string m = config_error(j);
  EXPECT_NE(m.find("methods[1].teachers"), std::string::npos) << m;
}

TEST(SweepConfig, MalformedJsonGivesLineAndColumn) {
  try {
    kd::parse_json_text("{\n  \"name\": \"x\",\n  \"seeds\": [1,, 2]\n}", "bad.json");
    FAIL();
  } catch (const kd::ConfigError& e) {
    EXPECT_EQ(e.key_path(), "bad.json:3:15") << e.what();  // the second comma
  }
}

// Inputs the fuzzer (fuzz/fuzz_config.cpp) found or suggested: each is one ConfigError naming where.
TEST(SweepConfig, FuzzerFindingsAreConfigErrors) {
  auto where = [](const std::string& text) {
    try {
      kd::parse_sweep_config(kd::parse_json_text(text, "f.json"), "f.json");
    } catch (const kd::ConfigError& e) {
      return e.key_path() + " | " + e.message();
    }
    return std::string("no error");
  };
  // A number beyond double range (nlohmann throws out_of_range, not parse_error).
  std::string m = where("{\"name\": \"x\", \"seeds\": [1e999]}");
  EXPECT_NE(m.find("f.json | malformed JSON"), std::string::npos) << m;
  // A NUL inside a string (it would cut messages short).
  m = where("{\"name\": \"x\\u0000y\"}");
  EXPECT_NE(m.find("f.json:1:"), std::string::npos) << m;
  // Nesting deeper than any config needs (copying it recursed until the stack overflowed).
  m = where(std::string(101, '[') + std::string(101, ']'));
  EXPECT_NE(m.find("nested more than 100 levels"), std::string::npos) << m;
  // A grid whose cartesian product explodes, with unknown or known keys: refused before expanding it.
  std::string base =
      R"({"name": "x", "dataset": {"name": "synthetic"}, "student": "cnn_tiny", "teachers": {"t": {"model": "cnn_medium"}},
                         "methods": [{"method": "logit_kd", "grid": )";
  m = where(base + R"({"a": [0, 1]}}]})");
  EXPECT_NE(m.find("methods[0].grid.a | unknown hyperparameter of 'logit_kd'"), std::string::npos) << m;
  std::string big = "[";
  for (int i = 0; i < 200; ++i) big += (i ? "," : "") + std::to_string(1 + i * 0.01);
  big += "]";
  m = where(base + R"({"temperature": )" + big + R"(, "alpha": [0.2]}}]})");
  EXPECT_EQ(m, "no error") << "200 settings are allowed: " << m;
  std::string alphas = "[";
  for (int i = 0; i < 60; ++i) alphas += (i ? "," : "") + std::to_string(i / 100.0);
  alphas += "]";
  m = where(base + R"({"temperature": )" + big + R"(, "alpha": )" + alphas + "}}]}");
  EXPECT_NE(m.find("methods[0].grid | 12000 settings"), std::string::npos) << m;
}

TEST(SweepConfig, ReadyConfigsValidate) {
  // The CIFAR-100 and ImageNet-subset recipes validate and plan even though their data is absent.
  for (const char* name :
       {"configs/cifar100.json", "configs/imagenet-subset.json", "configs/fashion-mnist.json", "configs/smoke.json"}) {
    SCOPED_TRACE(name);
    auto cfg = kd::load_sweep_config(kd::test::source_dir() + "/" + name);
    auto plan = kd::plan_sweep(cfg);
    EXPECT_GT(plan.runs.size(), 3u);
  }
  auto cifar = kd::load_sweep_config(kd::test::source_dir() + "/configs/cifar100.json");
  EXPECT_EQ(cifar.recipe.batch_size, 64);
  EXPECT_EQ(cifar.recipe.epochs, 240);
  EXPECT_DOUBLE_EQ(cifar.recipe.lr, 0.05);
  EXPECT_EQ(cifar.recipe.milestones, (std::vector<int64_t>{150, 180, 210}));
}

TEST(SweepConfig, ProgressiveChainBecomesAssistantRuns) {
  json j = base_config();
  j["methods"].push_back({{"method", "progressive"}, {"params", {{"assistants", {"cnn_medium"}}}}});
  auto cfg = kd::parse_sweep_config(j, "t");
  auto plan = kd::plan_sweep(cfg);
  int assistants = 0;
  for (const auto& r : plan.runs) {
    if (r.role == kd::RunRole::Assistant) {
      ++assistants;
      EXPECT_EQ(r.model, "cnn_medium");
      EXPECT_EQ(r.level, 1);
    }
    if (r.method == "progressive") {
      ASSERT_EQ(r.teacher_ids.size(), 1u);
      const kd::RunSpec* ta = plan.find(r.teacher_ids[0]);
      ASSERT_NE(ta, nullptr);
      EXPECT_EQ(ta->role, kd::RunRole::Assistant);
      EXPECT_EQ(r.level, 2);
    }
  }
  EXPECT_EQ(assistants, 2);  // one per seed
}

}  // namespace
