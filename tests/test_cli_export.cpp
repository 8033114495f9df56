// Students out and compiled teachers in, through the kdbench command and the venv's Python:
// `kdbench export` writes a state dict that PyTorch loads strictly into the model's Python class (kdbench's
// zoo in Python, python/kdbench_zoo.py, for a CIFAR ResNet; torchvision's for ResNet-18) with kdbench's
// logits; `kdbench export --format export` compiles a .pt2 with torch.export + AOTInductor from that Python
// model, which kdbench then loads as a teacher ("obtain": "export") with the Python model's outputs. The
// sweep's teacher is RepDistiller's checkpoint (tests/data/repdistiller) loaded with "obtain": "pytorch".
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "models/pytorch_io.h"
#include "models/torch_file.h"
#include "store/store.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string cli(const std::string& args) {
  return kd::test::kdbench_bin() + " " + args;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

torch::Tensor sine_input(std::vector<int64_t> shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return torch::sin(0.37 * torch::arange(n, torch::kFloat)).view(shape);
}

std::map<std::string, torch::Tensor> read_dict(const std::string& path) {
  std::map<std::string, torch::Tensor> m;
  for (auto& [k, t] : kd::read_torch_state_dict(path, "")) m[k] = t;
  return m;
}

// One small sweep for the whole suite: RepDistiller's resnet8 checkpoint (100 classes) as a "pytorch"
// teacher, resnet8 students by logit KD and by FitNets (whose regressor is the method's, not the
// student's), and a ResNet-18 baseline on a second, 4-class data set.
class CliExport : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = kd::test::make_temp_dir("export");
    json cifar = json::parse(R"({"name": "export", "report": false,
      "dataset": {"name": "synthetic", "num_classes": 100, "channels": 3, "train_size": 400, "test_size": 100,
                  "image_size": 32},
      "student": "resnet8", "seeds": [0], "recipe": {"epochs": 1, "batch_size": 50},
      "methods": [{"method": "logit_kd"}, {"method": "fitnets", "params": {"mode": "one_stage"}}]})");
    cifar["teachers"] = {{"rd",
                          {{"model", "resnet8"},
                           {"obtain", "pytorch"},
                           {"key", "model"},
                           {"file", kd::test::source_dir() + "/tests/data/repdistiller/resnet8_cifar100.pth"}}}};
    cifar["output"] = dir_ + "/cifar";
    cifar["cache_dir"] = dir_ + "/cache";
    kd::test::write_file(dir_ + "/cifar.json", cifar.dump());
    json tv = json::parse(R"({"name": "tv", "report": false,
      "dataset": {"name": "synthetic", "num_classes": 4, "channels": 3, "train_size": 32, "test_size": 8,
                  "image_size": 16},
      "student": "resnet18", "seeds": [0], "recipe": {"epochs": 1, "batch_size": 16},
      "methods": [{"method": "baseline"}]})");
    tv["output"] = dir_ + "/tv";
    tv["cache_dir"] = dir_ + "/cache";
    kd::test::write_file(dir_ + "/tv.json", tv.dump());
  }
  // Runs sweep "cifar" or "tv" once per process (CTest runs each test in its own).
  static void sweep(const std::string& name) {
    if (fs::exists(dir_ + "/" + name + "/results.db")) return;
    auto r = kd::test::run_command(cli("sweep " + dir_ + "/" + name + ".json --threads 2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(sweep("cifar")); }

  // The run of `dir` whose name is `name` (the method label, or the teacher's name).
  static kd::RunRecord run_named(const std::string& sweep, const std::string& name) {
    kd::SqliteStore store(dir_ + "/" + sweep + "/results.db", true);
    for (auto& r : store.runs())
      if (r.name == name) return r;
    throw std::runtime_error("no run " + name);
  }
  static torch::Tensor kdbench_logits(const kd::RunRecord& r, const torch::Tensor& x) {
    auto m = kd::load_model_checkpoint(r.checkpoint);
    m->eval();
    torch::NoGradGuard ng;
    return m->forward(x);
  }

  static std::string dir_;
};
std::string CliExport::dir_;

TEST_F(CliExport, TheSweepUsedRepDistillersCheckpointAsItsTeacher) {
  auto t = run_named("cifar", "rd");
  EXPECT_EQ(kd::to_string(t.status), "done");
  EXPECT_EQ(t.model, "resnet8");
  EXPECT_EQ(t.checkpoint, fs::absolute(kd::test::source_dir() + "/tests/data/repdistiller/resnet8_cifar100.pth"));
  auto plan = kd::test::run_command(cli("plan " + dir_ + "/cifar.json"));
  EXPECT_TRUE(contains(plan.output, "3 of 3 runs done")) << plan.output;
}

// The state dicts load with load_state_dict(strict=True) after a plain torch.load (weights_only, the
// default), into kdbench's Python resnet8 and torchvision's ResNet-18, and give kdbench's logits.
TEST_F(CliExport, StateDictLoadsStrictlyInPythonWithKdbenchsLogits) {
  struct Case {
    std::string sweep, run, model;
    int classes, size;
  };
  ASSERT_NO_FATAL_FAILURE(sweep("tv"));
  const std::vector<Case> cases{{"cifar", "logit_kd", "resnet8", 100, 32},
                                {"cifar", "fitnets", "resnet8", 100, 32},
                                {"tv", "baseline", "resnet18", 4, 16}};
  std::string py = "import sys, torch, torchvision\nsys.path.insert(0, sys.argv[1])\nimport kdbench_zoo\nout = {}\n";
  for (const auto& c : cases) {
    auto r = run_named(c.sweep, c.run);
    const std::string file = dir_ + "/" + c.run + ".pt";
    auto e = kd::test::run_command(cli("export " + r.id.substr(0, 10) + " " + dir_ + "/" + c.sweep + " -o " + file));
    ASSERT_EQ(e.exit_code, 0) << e.output;
    EXPECT_TRUE(contains(e.output, fs::absolute(file).string())) << e.output;
    const std::string make =
        c.model == "resnet18" ? "torchvision.models.resnet18(num_classes=4)" : "kdbench_zoo.create('resnet8', 100)";
    py += "m = " + make + "\n";
    py += "m.load_state_dict(torch.load('" + file + "'), strict=True)\n";
    py += "x = torch.sin(0.37 * torch.arange(2 * 3 * " + std::to_string(c.size * c.size) +
          ", dtype=torch.float32)).view(2, 3, " + std::to_string(c.size) + ", " + std::to_string(c.size) + ")\n";
    py += "with torch.no_grad(): out['" + c.run + "'] = m.eval()(x)\n";
  }
  py += "torch.save(out, sys.argv[2])\n";
  kd::test::write_file(dir_ + "/load.py", py);
  auto r = kd::test::run_command(std::string(KDBENCH_PYTHON) + " " + dir_ + "/load.py " + kd::test::source_dir() +
                                 "/python " + dir_ + "/python_logits.pt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto python = read_dict(dir_ + "/python_logits.pt");
  for (const auto& c : cases) {
    SCOPED_TRACE(c.run);
    auto mine = kdbench_logits(run_named(c.sweep, c.run), sine_input({2, 3, c.size, c.size}));
    ASSERT_EQ(python.at(c.run).sizes(), mine.sizes());
    EXPECT_LT((python.at(c.run) - mine).abs().max().item<double>(), 1e-5);
  }
}

TEST_F(CliExport, UnknownAmbiguousUnfinishedAndLoadedRunsAreRefused) {
  auto r = kd::test::run_command(cli("export zzzz " + dir_ + "/cifar"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "no run in " + dir_ + "/cifar has an id starting with 'zzzz'")) << r.output;
  r = kd::test::run_command(cli("export '' " + dir_ + "/cifar"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "starts 3 run ids")) << r.output;
  auto teacher = run_named("cifar", "rd");
  r = kd::test::run_command(cli("export " + teacher.id + " " + dir_ + "/cifar -o " + dir_ + "/t.pt"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "is the teacher 'rd' loaded from " + teacher.checkpoint +
                                     " (\"obtain\": \"pytorch\"): it is a PyTorch file already"))
      << r.output;
  EXPECT_FALSE(fs::exists(dir_ + "/t.pt"));
  r = kd::test::run_command(cli("export abc " + dir_ + "/nowhere"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, dir_ + "/nowhere: no results store here")) << r.output;
}

// One AOTInductor compilation for the whole test set: the resnet8 student, rebuilt in Python and compiled
// with every tap as a dict output. It gives the Python model's outputs in kdbench and serves as a sweep's
// teacher. Skipped (with the message) only where AOTInductor finds no C++ compiler.
TEST_F(CliExport, CompiledPackageGivesThePythonModelsOutputsAndTeaches) {
  auto r = run_named("cifar", "logit_kd");
  const std::string pkg = dir_ + "/student.pt2";
  auto e = kd::test::run_command(
      cli("export " + r.id.substr(0, 10) + " " + dir_ + "/cifar --format export --taps -o " + pkg));
  if (e.exit_code != 0 && contains(e.output, "AOTInductor has no C++ compiler")) GTEST_SKIP() << e.output;
  ASSERT_EQ(e.exit_code, 0) << e.output;

  // The Python model's outputs (the same weights, through torch.load and kdbench_zoo with taps).
  const std::string state = dir_ + "/student_state.pt";
  ASSERT_EQ(kd::test::run_command(cli("export " + r.id.substr(0, 10) + " " + dir_ + "/cifar -o " + state)).exit_code,
            0);
  kd::test::write_file(dir_ + "/taps.py", R"PY(
import sys, torch
sys.path.insert(0, sys.argv[1])
import kdbench_zoo
m = kdbench_zoo.create("resnet8", 100, taps=True)
m.load_state_dict(torch.load(sys.argv[2]), strict=True)
x = torch.sin(0.37 * torch.arange(5 * 3 * 32 * 32, dtype=torch.float32)).view(5, 3, 32, 32)
with torch.no_grad():
    torch.save(m.eval()(x), sys.argv[3])
)PY");
  auto p = kd::test::run_command(std::string(KDBENCH_PYTHON) + " " + dir_ + "/taps.py " + kd::test::source_dir() +
                                 "/python " + state + " " + dir_ + "/taps.pt");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  auto want = read_dict(dir_ + "/taps.pt");
  EXPECT_EQ(want.size(), 9u);  // stem, block1..3, preact_block1..3, pool, logits

  const std::vector<std::string> taps{"logits", "block1", "preact_block2", "block3", "pool"};
  auto m = kd::load_exported_model(pkg, taps);
  EXPECT_EQ(kd::count_parameters(*m), kd::count_parameters(*kd::load_model_checkpoint(r.checkpoint)));
  kd::TapMap got;
  torch::NoGradGuard ng;
  auto x = sine_input({5, 3, 32, 32});
  auto logits = m->forward_taps(x, &got);
  for (const auto& t : taps) EXPECT_LT((got.at(t) - want.at(t)).abs().max().item<double>(), 1e-4) << t;
  EXPECT_LT((logits - kdbench_logits(r, x)).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(m->forward(sine_input({1, 3, 32, 32})).sizes(), (std::vector<int64_t>{1, 100}));  // dynamic batch

  try {
    kd::load_exported_model(pkg, {"logits", "block9"});
    ADD_FAILURE() << "no DataError";
  } catch (const kd::DataError& de) {
    EXPECT_TRUE(contains(de.what(), pkg + ": the compiled teacher returns a dict without 'block9' (its keys: "))
        << de.what();
  }

  // As a sweep's teacher: AT on block2 and KD on the logits of a cnn student.
  json cfg = json::parse(R"({"name": "compiled", "report": false,
    "dataset": {"name": "synthetic", "num_classes": 100, "channels": 3, "train_size": 200, "test_size": 50,
                "image_size": 32},
    "student": "cnn_tiny", "seeds": [0], "recipe": {"epochs": 1, "batch_size": 50},
    "methods": [{"method": "logit_kd"}, {"method": "attention", "params": {"student_taps": ["block2"],
                 "teacher_taps": ["block2"]}}]})");
  cfg["teachers"] = {{"c", {{"obtain", "export"}, {"file", pkg}, {"taps", {"logits", "block2"}}}}};
  cfg["output"] = dir_ + "/compiled";
  cfg["cache_dir"] = dir_ + "/cache";
  kd::test::write_file(dir_ + "/compiled.json", cfg.dump());
  auto s = kd::test::run_command(cli("sweep " + dir_ + "/compiled.json --threads 2"));
  ASSERT_EQ(s.exit_code, 0) << s.output;
  kd::SqliteStore store(dir_ + "/compiled/results.db", true);
  int done = 0;
  for (auto& run : store.runs()) {
    done += run.status == kd::RunStatus::Done;
    if (run.name == "c") {
      EXPECT_EQ(run.model, "export:" + pkg);
    }
  }
  EXPECT_EQ(done, 3);
}

}  // namespace
