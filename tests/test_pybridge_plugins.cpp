// Python methods (pybridge/) through the real kdbench binary: a plugin's methods listed, validated, trained in a
// sweep beside native ones and recorded with their file and digest; each way a plugin can be wrong ends in one
// error naming the file and line (or fails one run only, when it is wrong while training); a kdbench whose Python
// part or venv is missing says so and still runs native methods.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include <torch/torch.h>

#include "store/store.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool have_fashion_mnist() {
  return fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

std::string cli(const std::string& args) {
  return kd::test::kdbench_bin() + " " + args;
}

std::string plugin(const std::string& name) {
  return kd::test::source_dir() + "/tests/data/plugins/" + name;
}

std::string example() {
  return kd::test::source_dir() + "/examples/my_kd.py";
}

// Teachers trained by these tests are shared through one cache (keyed by their content, written atomically).
std::string cache_dir() {
  return (fs::temp_directory_path() / "kdbench-test-pybridge-cache").string();
}

// A small sweep on a Fashion-MNIST subset (1 epoch, 2 seeds) with the given plugins and method entries.
std::string write_config(const std::string& dir, const json& plugins, const json& methods) {
  json j = {{"name", "pybridge-test"},
            {"output", dir + "/out"},
            {"cache_dir", cache_dir()},
            {"plugins", plugins},
            {"dataset", {{"name", "fashion_mnist"}, {"train_subset", 1500}, {"test_subset", 500}, {"val_fraction", 0.2}}},
            {"seeds", {0, 1}},
            {"student", "cnn_tiny"},
            {"teachers", {{"cnn_large", {{"model", "cnn_large"}, {"seed", 0}}}}},
            {"recipe", {{"epochs", 1}, {"batch_size", 64}, {"lr", 0.05}, {"momentum", 0.9}, {"schedule", "cosine"}}},
            {"teacher_recipe", {{"epochs", 1}, {"lr", 0.05}}},
            {"methods", methods}};
  std::string path = dir + "/sweep.json";
  kd::test::write_file(path, j.dump(2));
  return path;
}

std::vector<kd::RunRecord> runs_of(const std::string& out) {
  kd::SqliteStore store(out + "/results.db", true);
  return store.runs();
}

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

std::string sha256(const std::string& path) {
  auto r = kd::test::run_command("sha256sum '" + path + "'");
  return r.output.substr(0, 64);
}

TEST(PythonPlugin, MethodsListsAPluginsHyperparametersWithItsFile) {
  auto r = kd::test::run_command(cli("methods --plugin " + example()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("my_kd  —  KD with separate teacher and student temperatures"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Python plugin: " + example()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(sha256 " + sha256(example()).substr(0, 16)), std::string::npos) << r.output;
  for (const char* p : {"t_student", "t_teacher", "alpha"}) EXPECT_NE(r.output.find(p), std::string::npos) << p;
  EXPECT_NE(r.output.find("number in [0.05, 100]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("student softmax temperature"), std::string::npos) << r.output;
  // Native methods are listed beside it.
  EXPECT_NE(r.output.find("logit_kd  —"), std::string::npos);
}

TEST(PythonPlugin, EachWayAPluginFileIsWrongIsOneConfigErrorNamingFileAndLine) {
  struct Case {
    std::string file, expect1, expect2;
  };
  const std::vector<Case> cases{
      {plugin("syntax_error.py"), plugin("syntax_error.py") + ":6", "SyntaxError"},
      {plugin("missing_name.py"), plugin("missing_name.py") + ":8", "NameError: name 'undefined_constant' is not defined"},
      {plugin("bad_default.py"), "method 'bad_default_kd': the default 0.01 of option 'temperature' is outside",
       plugin("bad_default.py") + ":"},
      {plugin("no_such_plugin.py"), "plugin file", "no_such_plugin.py does not exist"},
  };
  for (const auto& c : cases) {
    auto r = kd::test::run_command(cli("methods --plugin " + c.file));
    EXPECT_EQ(r.exit_code, 2) << c.file << ": " << r.output;
    EXPECT_NE(r.output.find("kdbench: config error: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.expect1), std::string::npos) << c.file << ": " << r.output;
    EXPECT_NE(r.output.find(c.expect2), std::string::npos) << c.file << ": " << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "one line: " << r.output;
  }
  // A plugin method may not take a native method's name.
  auto dir = kd::test::make_temp_dir("pyplug-dup");
  kd::test::write_file(dir + "/dup.py",
                       "import kdbench as kd\n\nclass Dup(kd.Method):\n    \"\"\"Takes a native name.\"\"\"\n"
                       "    name = \"logit_kd\"\n\n    def compute(self, inp):\n        return []\n");
  auto r = kd::test::run_command(cli("methods --plugin " + dir + "/dup.py"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("method 'logit_kd' is already registered (a native method)"), std::string::npos) << r.output;
}

TEST(PythonPlugin, GridValuesAreCheckedAgainstThePluginsDeclaredRangesBeforeAnythingTrains) {
  auto dir = kd::test::make_temp_dir("pyplug-range");
  auto cfg = write_config(dir, json::array({example()}),
                          json::array({{{"method", "baseline"}},
                                       {{"method", "my_kd"}, {"grid", {{"t_student", {2, 200}}}}}}));
  auto r = kd::test::run_command(cli("plan " + cfg));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("methods[1].grid.t_student: value 200 is out of range [0.05, 100]"), std::string::npos)
      << r.output;
  // A relative plugin path is relative to the config's folder.
  fs::copy_file(example(), dir + "/my_kd.py");
  cfg = write_config(dir, json::array({"my_kd.py"}), json::array({{{"method", "my_kd"}}}));
  r = kd::test::run_command(cli("plan " + cfg));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(PythonPlugin, TrainsBesideNativeMethodsIsRecordedWithItsDigestAndResumesUntilTheFileChanges) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  auto dir = kd::test::make_temp_dir("pyplug-sweep");
  const std::string copy = dir + "/my_kd.py";
  fs::copy_file(example(), copy);
  auto cfg = write_config(dir, json::array({"my_kd.py"}),
                          json::array({{{"method", "baseline"}},
                                       {{"method", "logit_kd"}},
                                       {{"method", "my_kd"}, {"grid", {{"t_student", {2, 4}}}}}}));
  auto r = kd::test::run_command(cli("sweep " + cfg));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto runs = runs_of(dir + "/out");
  int plugin_runs = 0;
  for (const auto& run : runs) {
    EXPECT_EQ(run.status, kd::RunStatus::Done) << run.name;
    json config = json::parse(run.config);
    if (run.method == "my_kd") {
      ++plugin_runs;
      ASSERT_TRUE(config.contains("plugin")) << run.config;
      EXPECT_EQ(config["plugin"]["file"], "my_kd.py");
      EXPECT_EQ(config["plugin"]["sha256"], sha256(copy));
      EXPECT_NE(run.environment.find("\"python\":\"Python 3.11"), std::string::npos) << run.environment;
    } else {
      EXPECT_FALSE(config.contains("plugin")) << run.config;
    }
  }
  EXPECT_EQ(plugin_runs, 4);  // 2 settings x 2 seeds
  std::ifstream md(dir + "/out/report/comparison.md");
  std::stringstream ss;
  ss << md.rdbuf();
  EXPECT_NE(ss.str().find("my_kd"), std::string::npos) << ss.str();

  // Unchanged: everything is done already.
  r = kd::test::run_command(cli("sweep " + cfg + " --no-report"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("0 trained now"), std::string::npos) << r.output;

  // The file changed (one comment added): its runs are new runs; the native ones stay done.
  std::ofstream(copy, std::ios::app) << "# changed\n";
  r = kd::test::run_command(cli("sweep " + cfg + " --no-report"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("4 trained now"), std::string::npos) << r.output;
}

TEST(PythonPlugin, AnExceptionInComputeFailsThatRunOnlyWithTheExceptionAndTheLineAndTheSweepFinishes) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  auto dir = kd::test::make_temp_dir("pyplug-fail");
  auto cfg = write_config(dir, json::array({plugin("faulty.py")}),
                          json::array({{{"method", "logit_kd"}},
                                       {{"method", "faulty_kd"}, {"label", "raises"}, {"params", {{"fail_step", 3}}}},
                                       {{"method", "faulty_kd"}, {"label", "nan"}, {"params", {{"nan_step", 2}}}},
                                       {{"method", "faulty_kd"}, {"label", "fine"}}}));
  auto r = kd::test::run_command(cli("sweep " + cfg + " --no-report"));
  EXPECT_EQ(r.exit_code, 4) << r.output;  // finished, with failed runs
  int failed = 0;
  for (const auto& run : runs_of(dir + "/out")) {
    if (run.name == "raises" || run.name == "nan") {
      ASSERT_EQ(run.status, kd::RunStatus::Failed) << run.name;
      ++failed;
      json e = json::parse(run.error);
      EXPECT_EQ(e["epoch"], 0);
      if (run.name == "raises") {
        EXPECT_EQ(e["step"], 3);
        const std::string m = e["message"];
        EXPECT_NE(m.find("Python method 'faulty_kd', compute(): ZeroDivisionError: division by zero"), std::string::npos)
            << m;
        EXPECT_NE(m.find("(at " + plugin("faulty.py") + ":24 in compute)"), std::string::npos) << m;
      } else {
        EXPECT_EQ(e["step"], 2);
        EXPECT_EQ(e["term"], "kd");  // as for a native method's NaN term
        EXPECT_EQ(e["message"], "loss is NaN");
      }
    } else {
      EXPECT_EQ(run.status, kd::RunStatus::Done) << run.name;
    }
  }
  EXPECT_EQ(failed, 4);  // two seeds each
}

TEST(PythonPlugin, AMethodsOwnModuleTrainsByStageCountsAsExtraParametersAndIsSavedBesideTheCheckpoint) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  auto dir = kd::test::make_temp_dir("pyplug-module");
  auto cfg = write_config(dir, json::array({plugin("with_module.py")}),
                          json::array({{{"method", "linear_probe_kd"}}}));
  auto r = kd::test::run_command(cli("sweep " + cfg + " --no-report"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  int n = 0;
  for (const auto& run : runs_of(dir + "/out")) {
    if (run.method != "linear_probe_kd") continue;
    ++n;
    EXPECT_EQ(run.status, kd::RunStatus::Done);
    EXPECT_EQ(run.method_params, 10 * 10 + 10);  // Linear(10 -> 10); the buffer is not a parameter
    ASSERT_FALSE(run.checkpoint.empty());
    const std::string method_file = run.checkpoint + ".method";
    ASSERT_TRUE(fs::exists(method_file)) << method_file;
    // The saved module holds the Python module's tensors under their own names; the buffer's running mean moved.
    torch::serialize::InputArchive a;
    a.load_from(method_file);
    std::map<std::string, torch::Tensor> saved;
    collect(a, "", saved);
    std::vector<std::string> names;
    for (const auto& [k, v] : saved) names.push_back(k);
    EXPECT_EQ(names, (std::vector<std::string>{"probe.bias", "probe.weight", "teacher_mean"}));
    ASSERT_TRUE(saved.count("teacher_mean"));
    EXPECT_GT(saved["teacher_mean"].abs().sum().item<double>(), 0);
  }
  EXPECT_EQ(n, 2);
}

TEST(PythonPlugin, WithoutTheVenvOrTheBridgeAPluginIsOneClearErrorAndNativeMethodsStillRun) {
  auto r = kd::test::run_command("KDBENCH_PYTHON=/nonexistent/venv/bin/python " + cli("methods --plugin " + example()));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("Python methods are not available: the venv's interpreter /nonexistent/venv/bin/python is "
                          "missing"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "said once: " << r.output;
  r = kd::test::run_command("KDBENCH_PYTHON_BRIDGE=/nonexistent/libkd_python.so " + cli("methods --plugin " + example()));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("Python methods are not available: /nonexistent/libkd_python.so"), std::string::npos)
      << r.output;
  // Native methods are not affected by either.
  r = kd::test::run_command("KDBENCH_PYTHON=/nonexistent/venv/bin/python KDBENCH_PYTHON_BRIDGE=/nonexistent.so " +
                            cli("methods"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("logit_kd  —"), std::string::npos);
}

TEST(PythonPlugin, LossEvaluatesAPluginMethodOnSavedTensors) {
  auto dir = kd::test::make_temp_dir("pyplug-loss");
  // Inputs and the expected terms, computed in Python by the formula (not through kdbench).
  kd::test::write_file(dir + "/write.py", R"(import sys, torch, torch.nn.functional as F
g = torch.Generator().manual_seed(3)
s, t = torch.randn(6, 10, generator=g), 3 * torch.randn(6, 10, generator=g)
y = torch.randint(0, 10, (6,), generator=g)
torch.save({"student": {"logits": s}, "teachers": [{"logits": t}], "labels": y}, sys.argv[1])
kl = F.kl_div(F.log_softmax(s / 2, 1), F.softmax(t / 4, 1), reduction="batchmean") * 2 * 4
print("%.10g %.10g" % (F.cross_entropy(s, y).item(), kl.item()))
)");
  auto w = kd::test::run_command(std::string(KDBENCH_PYTHON) + " " + dir + "/write.py " + dir + "/in.pt");
  ASSERT_EQ(w.exit_code, 0) << w.output;
  std::istringstream want(w.output);
  double ce = 0, kl = 0;
  want >> ce >> kl;
  auto r = kd::test::run_command(cli("loss my_kd --plugin " + example() + " --inputs " + dir +
                                     "/in.pt --params '{\"t_student\": 2, \"t_teacher\": 4}'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json out = json::parse(r.output);
  auto value_of = [&](const std::string& term) {
    for (const auto& t : out["terms"])
      if (t["name"] == term) return t["value"].get<double>();
    return -1.0;
  };
  EXPECT_NEAR(value_of("ce"), ce, 1e-6 * std::max(1.0, ce)) << r.output;
  EXPECT_NEAR(value_of("kd"), kl, 1e-6 * std::max(1.0, kl)) << r.output;
}

}  // namespace
