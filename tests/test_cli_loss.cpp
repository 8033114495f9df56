// `kdbench loss` on files written by Python's torch.save (the venv's interpreter, KDBENCH_PYTHON), checked
// against the values the reference implementations computed on the same tensors (tests/data/reference/*.json;
// provenance in each file and in tests/test_methods_reference.cpp), and its errors: one line, exit 3 for a bad
// file, missing taps or unusable shapes, exit 2 for bad parameters.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace {

using json = nlohmann::json;

// Writes every input file of this suite with one Python start (import torch takes seconds).
const char* kWriter = R"PY(
import json, sys, torch
ref, out = sys.argv[1], sys.argv[2]
def load(name):
    with open(f"{ref}/{name}.json") as f:
        return json.load(f)
def t(v):
    return torch.tensor(v, dtype=torch.float64)
def save(name, obj):
    torch.save(obj, f"{out}/{name}.pt")

d = load("logit_kd")
save("logit_kd", {"student": {"logits": t(d["inputs"]["student_logits"])},
                  "teachers": [{"logits": t(d["inputs"]["teacher_logits"])}],
                  "labels": torch.zeros(4, dtype=torch.long)})
d = load("dkd")
s, te, y = t(d["inputs"]["student_logits"]), t(d["inputs"]["teacher_logits"]), torch.tensor(d["inputs"]["target"])
save("dkd", {"student": {"logits": s}, "teachers": [{"logits": te}], "labels": y, "indices": torch.arange(4) + 10})
save("dkd_wrong_classes", {"student": {"logits": s}, "teachers": [{"logits": te[:, :3]}], "labels": y})
save("float_labels", {"student": {"logits": s}, "teachers": [{"logits": te}], "labels": y.double()})
d = load("dist")
save("dist", {"student": {"logits": t(d["inputs"]["student_logits"])},
              "teachers": [{"logits": t(d["inputs"]["teacher_logits"])}], "labels": torch.zeros(4, dtype=torch.long)})
d = load("attention")
c1, c2 = d["more_cases"][0]["inputs"], d["more_cases"][1]["inputs"]
logits = torch.zeros(2, 3, dtype=torch.float64)
save("attention", {"student": {"logits": logits, "block1": t(c1["student_feat"]), "block2": t(c2["student_feat"])},
                   "teachers": [{"logits": logits, "block1": t(c1["teacher_feat"]), "block2": t(c2["teacher_feat"])}],
                   "labels": torch.zeros(2, dtype=torch.long)})
save("attention_no_block2", {"student": {"logits": logits, "block1": t(c1["student_feat"])},
                             "teachers": [{"logits": logits, "block1": t(c1["teacher_feat"])}],
                             "labels": torch.zeros(2, dtype=torch.long)})
d = load("rkd")
save("rkd", {"student": {"logits": torch.zeros(4, 3, dtype=torch.float64), "pool": t(d["inputs"]["student_emb"])},
             "teachers": [{"logits": torch.zeros(4, 3, dtype=torch.float64), "pool": t(d["inputs"]["teacher_emb"])}],
             "labels": torch.zeros(4, dtype=torch.long)})
# Part-2 methods: every tap their defaults read, equal channels on both sides (FSP needs them), seeded values.
g = torch.Generator().manual_seed(7)
def side(preact_shift):
    d = {"logits": torch.randn(4, 5, generator=g, dtype=torch.float64),
         "stem": torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64).relu(),
         "pool": torch.randn(4, 16, generator=g, dtype=torch.float64).relu()}
    for k, (c, h) in enumerate([(4, 8), (8, 4), (16, 2)], start=1):
        pre = torch.randn(4, c, h, h, generator=g, dtype=torch.float64) + preact_shift
        d[f"preact_block{k}"], d[f"block{k}"] = pre, pre.relu()
    return d
save("part2", {"student": side(0.0), "teachers": [side(0.2)], "labels": torch.tensor([0, 1, 2, 1]),
               "indices": torch.tensor([3, 7, 11, 19])})
torch.save(torch.ones(3), f"{out}/just_a_tensor.pt")
)PY";

class CliLoss : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = kd::test::make_temp_dir("cliloss");
    kd::test::write_file(dir_ + "/write.py", kWriter);
    auto r = kd::test::run_command(std::string(KDBENCH_PYTHON) + " " + dir_ + "/write.py " + kd::test::source_dir() +
                                   "/tests/data/reference " + dir_);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    kd::test::write_file(dir_ + "/garbage.pt", "this is not a torch.save file\n");
  }
  static std::string dir_;

  // `kdbench loss METHOD --inputs DIR/FILE.pt EXTRA`; stdout and stderr together unless `stdout_only`.
  static kd::test::CommandResult loss(const std::string& method, const std::string& file, const std::string& extra = "",
                                      bool stdout_only = false) {
    std::string cmd = kd::test::kdbench_bin() + " loss " + method + " --inputs " + dir_ + "/" + file + ".pt " + extra;
    return kd::test::run_command(stdout_only ? "(" + cmd + " 2>/dev/null)" : cmd);
  }
  static json loss_json(const std::string& method, const std::string& file, const std::string& extra = "") {
    auto r = loss(method, file, extra, true);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return json::parse(r.output);
  }
  static json reference(const std::string& name) {
    std::ifstream f(kd::test::source_dir() + "/tests/data/reference/" + name + ".json");
    return json::parse(f);
  }
};
std::string CliLoss::dir_;

const json& term(const json& out, const std::string& name) {
  for (const auto& t : out.at("terms"))
    if (t.at("name") == name) return t;
  throw std::runtime_error("no term " + name + " in " + out.dump());
}

torch::Tensor tensor(const json& v) {
  std::vector<int64_t> shape;
  for (const json* c = &v; c->is_array(); c = &(*c)[0]) shape.push_back(static_cast<int64_t>(c->size()));
  std::vector<double> flat;
  std::function<void(const json&)> walk = [&](const json& x) {
    if (x.is_array())
      for (const auto& e : x) walk(e);
    else
      flat.push_back(x.get<double>());
  };
  walk(v);
  return torch::tensor(flat, torch::kDouble).reshape(shape);
}

void expect_close(const json& got, const json& want, const std::string& what) {
  const double w = want.get<double>();
  EXPECT_NEAR(got.get<double>(), w, 1e-10 * std::max(1.0, std::abs(w))) << what;
}

void expect_tensor_close(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  EXPECT_LE((got - want).abs().max().item<double>(), 1e-10 * std::max(1.0, want.abs().max().item<double>())) << what;
}

TEST_F(CliLoss, LogitKdValueAndGradientEqualRepDistiller) {
  json ref = reference("logit_kd");
  json out = loss_json("logit_kd", "logit_kd", "--params '{\"alpha\": 1}'");
  expect_close(term(out, "kd")["value"], ref["outputs"]["loss"], "kd");
  EXPECT_EQ(term(out, "kd")["weight"], 1.0);
  EXPECT_EQ(term(out, "ce")["weight"], 0.0);
  expect_close(out["total"], ref["outputs"]["loss"], "total");
  // CE has weight 0: the total's gradient is DistillKL's.
  expect_tensor_close(tensor(out["grad"]["logits"]), tensor(ref["grad"]["student_logits"]), "grad");
}

TEST_F(CliLoss, DkdTermsWarmUpAndGradientEqualMdistiller) {
  json ref = reference("dkd");
  // mdistiller's epoch 20 (1-based) is kdbench's epoch 19: the warm-up weight has reached 1.
  json out = loss_json("dkd", "dkd", "--epoch 19");
  expect_close(term(out, "tckd")["value"], ref["outputs"]["tckd"], "tckd");
  expect_close(term(out, "nckd")["value"], ref["outputs"]["nckd"], "nckd");
  EXPECT_EQ(term(out, "tckd")["weight"], 1.0);
  EXPECT_EQ(term(out, "nckd")["weight"], 8.0);
  expect_close(out["total"], ref["warmup"]["values"][4]["trainer_total"], "total at mdistiller's epoch 20");
  // The gradient of the total = mdistiller's dkd_loss gradient + that of the CE term (weight 1).
  auto s = tensor(ref["inputs"]["student_logits"]).requires_grad_(true);
  std::vector<int64_t> y;
  for (const auto& v : ref["inputs"]["target"]) y.push_back(v);
  torch::cross_entropy_loss(s, torch::tensor(y, torch::kLong)).backward();
  expect_tensor_close(tensor(out["grad"]["logits"]), tensor(ref["grad"]["student_logits"]) + s.grad(), "grad");
  // Epoch 0 is mdistiller's epoch 1: weights 1/20 of alpha and beta.
  json first = loss_json("dkd", "dkd");
  EXPECT_DOUBLE_EQ(term(first, "tckd")["weight"].get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(term(first, "nckd")["weight"].get<double>(), 0.4);
  expect_close(first["total"], ref["warmup"]["values"][0]["trainer_total"], "total at mdistiller's epoch 1");
}

TEST_F(CliLoss, DistTermsEqualTheAuthorsCode) {
  json ref = reference("dist");
  json out = loss_json("dist", "dist");
  expect_close(term(out, "inter")["value"], ref["outputs"]["inter_loss_tau2"], "inter");
  expect_close(term(out, "intra")["value"], ref["outputs"]["intra_loss_tau2"], "intra");
}

TEST_F(CliLoss, AttentionPoolsTheLargerMapAsRepDistillerDoes) {
  json ref = reference("attention");
  json out = loss_json("attention", "attention",
                       "--params '{\"student_taps\": [\"block1\", \"block2\"], \"teacher_taps\": [\"block1\", "
                       "\"block2\"], \"beta\": 1}'");
  expect_close(term(out, "at")["value"], ref["multi_layer"]["sum"], "at");
  expect_tensor_close(tensor(out["grad"]["block1"]), tensor(ref["more_cases"][0]["grad"]["student_feat"]), "block1");
  expect_tensor_close(tensor(out["grad"]["block2"]), tensor(ref["more_cases"][1]["grad"]["student_feat"]), "block2");
}

TEST_F(CliLoss, RkdTermsEqualRepDistiller) {
  json ref = reference("rkd");
  json out = loss_json("rkd", "rkd");
  expect_close(term(out, "distance")["value"], ref["outputs"]["loss_distance_unweighted"], "distance");
  expect_close(term(out, "angle")["value"], ref["outputs"]["loss_angle_unweighted"], "angle");
  // Taps the method does not use get a zero gradient; logits get CE's.
  EXPECT_TRUE(out["grad"].contains("pool"));
}

TEST_F(CliLoss, MethodModulesAreSeeded) {
  // cc owns two linear embeddings: the same seed gives the same value, another seed another.
  json a = loss_json("cc", "rkd", "--seed 1"), b = loss_json("cc", "rkd", "--seed 1"),
       c = loss_json("cc", "rkd", "--seed 2");
  EXPECT_EQ(term(a, "cc")["value"], term(b, "cc")["value"]);
  EXPECT_NE(term(a, "cc")["value"], term(c, "cc")["value"]);
  EXPECT_EQ(a["seed"], 1);
}

// Every part-2 method evaluates on one file of taps with --seed: finite terms, the same seed the same values, and
// for the methods that own modules here another seed other values (FSP has none, and AB's connectors are the
// identity when, as in this file, student and teacher maps have one shape). (Their values against the reference
// code, with fixed module weights, are in tests/test_methods_reference_part2.cpp.)
TEST_F(CliLoss, Part2MethodsEvaluateWithTheirOwnSeededModules) {
  const std::map<std::string, std::string> params{
      {"vid", ""},      {"ab", ""}, {"fsp", ""}, {"ft", ""}, {"crd", "--params '{\"nce_k\": 8}'"},
      {"reviewkd", ""}, {"ofd", ""}};
  for (const auto& [method, extra] : params) {
    json a = loss_json(method, "part2", extra + " --seed 3"), b = loss_json(method, "part2", extra + " --seed 3"),
         c = loss_json(method, "part2", extra + " --seed 4");
    ASSERT_FALSE(a.at("terms").empty()) << method;
    bool any_differs = false;
    for (size_t i = 0; i < a.at("terms").size(); ++i) {
      const double v = a["terms"][i].at("value").get<double>();
      EXPECT_TRUE(std::isfinite(v)) << method << " " << a["terms"][i].dump();
      EXPECT_EQ(a["terms"][i].at("value"), b["terms"][i].at("value")) << method << ": same seed, other value";
      any_differs |= a["terms"][i].at("value") != c["terms"][i].at("value");
    }
    EXPECT_EQ(any_differs, method != "fsp" && method != "ab") << method << ": " << a.dump() << " vs " << c.dump();
    EXPECT_EQ(a["seed"], 3) << method;
  }
}

TEST_F(CliLoss, BadFilesMissingTapsAndShapesAreOneClearError) {
  auto r = kd::test::run_command(kd::test::kdbench_bin() + " loss dkd --inputs " + dir_ + "/garbage.pt");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("garbage.pt: not a file written by torch.save"), std::string::npos) << r.output;
  r = kd::test::run_command(kd::test::kdbench_bin() + " loss dkd --inputs " + dir_ + "/just_a_tensor.pt");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("expected a dict with keys student, teachers, labels"), std::string::npos) << r.output;
  r = kd::test::run_command(kd::test::kdbench_bin() + " loss dkd --inputs " + dir_ + "/missing.pt");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("missing.pt: cannot open the file"), std::string::npos) << r.output;
  r = kd::test::run_command(kd::test::kdbench_bin() + " loss attention --inputs " + dir_ +
                            "/attention_no_block2.pt --params '{\"student_taps\": [\"block1\", \"block2\"], "
                            "\"teacher_taps\": [\"block1\", \"block2\"]}'");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("student: method 'attention' needs tap 'block2' (the file has: block1, logits)"),
            std::string::npos)
      << r.output;
  r = kd::test::run_command(kd::test::kdbench_bin() + " loss dkd --inputs " + dir_ + "/dkd_wrong_classes.pt");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("dkd_wrong_classes.pt: method 'dkd' cannot use these tensors: dkd: expected student and "
                          "teacher logits of one shape"),
            std::string::npos)
      << r.output;
  r = kd::test::run_command(kd::test::kdbench_bin() + " loss dkd --inputs " + dir_ + "/float_labels.pt");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("labels: expected a 1-D integer tensor"), std::string::npos) << r.output;
  r = kd::test::run_command(kd::test::kdbench_bin() + " loss sp --inputs " + dir_ + "/dkd.pt");  // no block3
  EXPECT_EQ(r.exit_code, 3) << r.output;
  // Each error is one line.
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

TEST_F(CliLoss, BadParametersAreConfigErrors) {
  auto r = loss("dkd", "dkd", "--params '{\"beta\": -1}'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--params.beta: value -1 is out of range"), std::string::npos) << r.output;
  r = loss("dkd", "dkd", "--params '{not json'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--params: not valid JSON"), std::string::npos) << r.output;
  r = loss("dkdx", "dkd");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown method 'dkdx'"), std::string::npos) << r.output;
}

}  // namespace
