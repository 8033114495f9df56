// The twin check (DESIGN.md, "Methods in Python"): each Python port of a native method (python/ports/) trained
// beside the native one in ONE sweep, on the same seed, batches and initial weights, must train the same way: every
// step's loss terms equal to 1e-4 relative over more than 50 steps, and the final weights to 1e-3. A plugin with
// a classic mistake (logit KD without T^2, tests/data/plugins/wrong_logit_kd.py) trained in the same sweep must fail
// the same comparison, so the comparison can fail. The comparison is python/kdbench/twin.py (the one scripts/twin-check
// uses); the steps come from the sweep's KDBENCH_TRACE_STEPS file and the weights from the runs' checkpoints.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const kPorts[] = {"logit_kd", "dkd", "dist", "attention", "fitnets", "sp", "pkt", "rkd", "crd"};

// Each method at the setting the default sweep (configs/fashion-mnist.json) gives it; the port takes the same.
json params_of(const std::string& m) {
  if (m == "dkd") return {{"alpha", 1}, {"beta", 8}, {"temperature", 4}, {"warmup_epochs", 1}};
  if (m == "dist") return {{"beta", 2}, {"gamma", 2}, {"temperature", 4}};
  if (m == "fitnets") return {{"mode", "one_stage"}, {"beta", 10}};
  if (m == "attention") return {{"beta", 1000}};
  if (m == "sp") return {{"beta", 3000}};
  if (m == "rkd") return {{"distance_weight", 25}, {"angle_weight", 50}};
  if (m == "pkt") return {{"beta", 30000}};
  if (m == "crd") return {{"nce_k", 256}};
  return json::object();
}

TEST(PythonTwins, EachPortTrainsAsTheNativeMethodStepByStepAndAWrongPluginDoesNot) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed";
  const std::string src = kd::test::source_dir();
  auto dir = kd::test::make_temp_dir("pytwins");
  json plugins = json::array({src + "/tests/data/plugins/wrong_logit_kd.py"});
  json methods = json::array();
  std::vector<std::string> pairs;
  for (const char* m : kPorts) {
    plugins.push_back(src + "/python/ports/" + m + ".py");
    methods.push_back({{"method", m}, {"params", params_of(m)}});
    methods.push_back({{"method", std::string("py_") + m}, {"params", params_of(m)}});
    pairs.push_back(std::string(m) + "=py_" + m);
  }
  methods.push_back({{"method", "wrong_logit_kd"}});
  // 3,600 training images in batches of 64: 57 steps; one seed, one epoch.
  json cfg = {{"name", "twins"},
              {"output", dir + "/out"},
              {"cache_dir", (fs::temp_directory_path() / "kdbench-test-pybridge-cache").string()},
              {"plugins", plugins},
              {"dataset", {{"name", "fashion_mnist"}, {"train_subset", 4000}, {"test_subset", 500}, {"val_fraction", 0.1}}},
              {"seeds", {0}},
              {"student", "cnn_tiny"},
              {"teachers", {{"cnn_large", {{"model", "cnn_large"}, {"seed", 0}}}}},
              {"recipe", {{"epochs", 1}, {"batch_size", 64}, {"lr", 0.03}, {"momentum", 0.9}, {"nesterov", true},
                          {"weight_decay", 5e-4}, {"schedule", "cosine"}}},
              {"teacher_recipe", {{"epochs", 1}, {"lr", 0.05}}},
              {"methods", methods}};
  kd::test::write_file(dir + "/twins.json", cfg.dump(2));
  const std::string trace = dir + "/trace.jsonl";
  auto r = kd::test::run_command("KDBENCH_TRACE_STEPS=" + trace + " " + kd::test::kdbench_bin() + " sweep " + dir +
                                 "/twins.json --no-report 2>&1 | tail -5");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  std::string compare = "PYTHONPATH=" + src + "/python " + std::string(KDBENCH_PYTHON) + " -m kdbench.twin --trace " +
                        trace + " --store " + dir + "/out/results.db --json " + dir + "/twins-result.json";
  for (const auto& p : pairs) compare += " --pair " + p;
  compare += " --pair logit_kd=wrong_logit_kd";
  r = kd::test::run_command(compare);
  std::cout << r.output;
  EXPECT_EQ(r.exit_code, 1) << "the wrong plugin must fail, so the whole check exits 1:\n" << r.output;
  std::ifstream in(dir + "/twins-result.json");
  ASSERT_TRUE(in) << r.output;
  json result = json::parse(in);
  ASSERT_EQ(result["pairs"].size(), pairs.size() + 1);
  for (const auto& p : result["pairs"]) {
    const std::string pair = p["pair"];
    if (pair == "logit_kd=wrong_logit_kd") {
      EXPECT_FALSE(p["passed"].get<bool>()) << p.dump();
      EXPECT_GT(p["max_rel_terms"].get<double>(), 0.5) << p.dump();  // the kd term is off by T^2 = 16
      continue;
    }
    EXPECT_TRUE(p["passed"].get<bool>()) << p.dump();
    EXPECT_GE(p["steps"].get<int>(), 50) << p.dump();
    EXPECT_LE(p["max_rel_terms"].get<double>(), 1e-4) << p.dump();
    EXPECT_LE(p["max_rel_weights"].get<double>(), 1e-3) << p.dump();
  }
}

}  // namespace
