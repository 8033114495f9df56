// Multi-stage methods through the real trainer: their stages run in order, and in each stage exactly the declared
// parameters train (the student up to a tap, the whole student, or only some of the method's own modules).
//
// Which parameters a stage trains is read off the final checkpoints of three runs of one method in one lockstep
// group (same seed, same batches, deterministic): A (stage-1 lr a, later stages lr 0), A' (stage-1 lr a' != a,
// later lr 0) and B (stage-1 lr a, later lr b > 0). A parameter trained in stage 1 differs between A and A'; one
// trained in stage 2 differs between A and B; one trained in neither is the same in all three. Batch-norm running
// statistics are buffers, not parameters, and are left out.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "harness/run_state.h"
#include "harness/runner.h"
#include "methods/method.h"
#include "store/store.h"
#include "store/sweep_layout.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;

void collect(torch::serialize::InputArchive& a, const std::string& prefix, std::map<std::string, torch::Tensor>& out) {
  for (const auto& key : a.keys()) {
    torch::Tensor t;
    torch::serialize::InputArchive sub;
    if (a.try_read(key, t)) {
      out[prefix + key] = t;
    } else if (a.try_read(key, sub)) {
      collect(sub, prefix + key + ".", out);
    }
  }
}

// The learnable tensors of a checkpoint (student or method module), by name.
std::map<std::string, torch::Tensor> parameters_in(const std::string& path) {
  if (!std::filesystem::exists(path)) return {};  // a method without modules writes none
  torch::serialize::InputArchive a;
  a.load_from(path);
  std::map<std::string, torch::Tensor> all, params;
  collect(a, "", all);
  for (auto& [k, v] : all)
    if (k.find("running_") == std::string::npos && k.find("num_batches_tracked") == std::string::npos &&
        k != "kdbench_arch")
      params[k] = v;
  return params;
}

std::set<std::string> differing(const std::map<std::string, torch::Tensor>& a,
                                const std::map<std::string, torch::Tensor>& b) {
  std::set<std::string> d;
  EXPECT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) {
    EXPECT_TRUE(b.count(k)) << k;
    if (b.count(k) && !torch::equal(v, b.at(k))) d.insert(k);
  }
  return d;
}

std::set<std::string> matching(const std::map<std::string, torch::Tensor>& m,
                               const std::function<bool(const std::string&)>& f) {
  std::set<std::string> s;
  for (const auto& [k, v] : m)
    if (f(k)) s.insert(k);
  return s;
}

bool starts(const std::string& s, const std::string& p) {
  return s.rfind(p, 0) == 0;
}

struct Checkpoints {
  std::map<std::string, torch::Tensor> student, method;
  std::vector<std::string> stage_by_epoch;
};

TEST(Stages, EachStageTrainsWhatItDeclares) {
  std::string dir = kd::test::make_temp_dir("stages");
  json j = json::parse(R"({
    "name": "stages",
    "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 192, "test_size": 64, "image_size": 12,
                "channels": 1, "seed": 2},
    "student": "cnn_tiny", "seeds": [0], "threads": 1,
    "teachers": {"medium": {"model": "cnn_medium", "recipe": {"epochs": 1}},
                 "tiny": {"model": "cnn_tiny", "recipe": {"epochs": 1}}},
    "recipe": {"epochs": 1, "batch_size": 32, "lr": 0.05},
    "methods": []
  })");
  // Per method: A, A' and B as described at the top (init_lr is stage 1's lr; the recipe's lr the later stages').
  for (const std::string m : {"ab", "fsp", "ft"}) {
    const std::string teacher = m == "fsp" ? "tiny" : "medium";  // FSP needs equal channel counts
    for (const auto& [label, init_lr, lr] :
         std::vector<std::tuple<std::string, double, double>>{{"A", 0.05, 0.0}, {"A2", 0.02, 0.0}, {"B", 0.05, 0.05}})
      j["methods"].push_back({{"method", m},
                              {"label", m + "_" + label},
                              {"teachers", {teacher}},
                              {"params", {{"init_epochs", 1}, {"init_lr", init_lr}}},
                              {"recipe", {{"lr", lr}}}});
  }
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  kd::SweepSummary s = kd::run_sweep(kd::parse_sweep_config(j, "stages.json"), kd::SweepOptions{});
  ASSERT_EQ(s.failed, 0);
  ASSERT_EQ(s.done, s.total);

  kd::SqliteStore store(dir + "/out/results.db", true);
  std::map<std::string, Checkpoints> runs;
  for (const auto& r : store.runs()) {
    if (r.role != kd::RunRole::Student) continue;
    Checkpoints c;
    c.student = parameters_in(r.checkpoint);
    c.method = parameters_in(kd::method_checkpoint(r.checkpoint));
    std::map<int64_t, std::string> stage;
    for (const auto& e : store.epochs(r.id)) stage[e.epoch] = e.stage;
    for (const auto& [epoch, name] : stage) c.stage_by_epoch.push_back(name);
    runs[r.name] = std::move(c);
  }
  ASSERT_EQ(runs.size(), 9u);
  auto all = [](const std::string&) { return true; };
  auto none = [](const std::string&) { return false; };
  auto not_fc = [](const std::string& k) { return !starts(k, "fc."); };
  struct Expect {
    std::string method;
    std::vector<std::string> stages;
    std::function<bool(const std::string&)> student1, method1, student2, method2;
  };
  const std::vector<Expect> expects{
      // AB: stage 1 the student up to preact_block3 (all but the classifier) and the connectors; stage 2 the whole
      // student, not the connectors (no longer used).
      {"ab", {"init", "main"}, not_fc, all, all, none},
      // FSP: stage 1 the student up to block3; stage 2 the whole student. No modules of its own.
      {"fsp", {"init", "main"}, not_fc, none, all, none},
      // FT: stage 1 only the paraphraser (the student frozen); stage 2 the student and the translator.
      {"ft",
       {"paraphraser", "main"},
       none,
       [](const std::string& k) { return starts(k, "paraphraser."); },
       all,
       [](const std::string& k) { return starts(k, "translator."); }},
  };
  for (const auto& e : expects) {
    SCOPED_TRACE(e.method);
    const auto& a = runs.at(e.method + "_A");
    const auto& a2 = runs.at(e.method + "_A2");
    const auto& b = runs.at(e.method + "_B");
    EXPECT_EQ(a.stage_by_epoch, e.stages);
    EXPECT_EQ(differing(a.student, a2.student), matching(a.student, e.student1)) << "student, stage 1";
    EXPECT_EQ(differing(a.method, a2.method), matching(a.method, e.method1)) << "method modules, stage 1";
    EXPECT_EQ(differing(a.student, b.student), matching(a.student, e.student2)) << "student, stage 2";
    EXPECT_EQ(differing(a.method, b.method), matching(a.method, e.method2)) << "method modules, stage 2";
  }
  EXPECT_TRUE(runs.at("fsp_A").method.empty()) << "FSP has no module of its own";
}

// A stage's eval_modules (AB's connectors and FT's paraphraser after their initialisation stage, as RepDistiller's
// module_list[i].eval()) are left out of what the stage trains and run in eval mode while the others train.
TEST(Stages, EvalModulesNeitherTrainNorLeaveEvalMode) {
  kd::RunState rs;
  auto m = std::make_shared<torch::nn::Module>("Method");
  auto a = m->register_module("a", torch::nn::Linear(2, 3));
  auto b = m->register_module("b", torch::nn::BatchNorm1d(3));
  rs.method_module = m;
  kd::StageSpec st;
  EXPECT_EQ(rs.method_parameters(st).size(), 4u) << "a.weight, a.bias, b.weight, b.bias";
  st.eval_modules = {"b"};
  auto trained = rs.method_parameters(st);
  ASSERT_EQ(trained.size(), 2u);
  EXPECT_TRUE(trained[0].is_same(a->weight));
  EXPECT_TRUE(trained[1].is_same(a->bias));
  m->eval();
  rs.set_method_modes(st);
  EXPECT_TRUE(a->is_training());
  EXPECT_FALSE(b->is_training());
  st.train_modules = {"a"};
  EXPECT_EQ(rs.method_parameters(st).size(), 2u);
  st.eval_modules = {"c"};
  EXPECT_THROW(rs.method_parameters(st), std::logic_error);
}

}  // namespace
