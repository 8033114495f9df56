// `kdbench plan CONFIG --target-difference D`: the seeds each comparison with the student alone needs to
// detect a difference of D, from a finished sweep's spread. The store holds tests/data/reference/stats.json's
// "report_case" (three methods paired by seed with the reference, one with a seed more); the seeds printed
// must be the ones gen_stats.py found with scipy.stats for D = its target_difference.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "store/store.h"
#include "test_util.h"

namespace {

using nlohmann::json;

std::string cli(const std::string& args) {
  return kd::test::kdbench_bin() + " " + args;
}

std::string write_config(const std::string& dir) {
  json j = json::parse(R"({
    "name": "power",
    "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 128, "test_size": 32, "image_size": 16},
    "student": "cnn_tiny", "seeds": [0, 1, 2],
    "teachers": {"t": {"model": "cnn_medium"}},
    "recipe": {"epochs": 1},
    "methods": [{"method": "baseline"}, {"method": "logit_kd"}, {"method": "fitnets"}, {"method": "attention"},
                {"method": "dkd"}]
  })");
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  kd::test::write_file(dir + "/sweep.json", j.dump(2));
  return dir + "/sweep.json";
}

void add_run(kd::ResultsStore& s, const std::string& id, kd::RunRole role, const std::string& method, int64_t seed,
             double test) {
  kd::RunRecord r;
  r.id = id;
  r.sweep_id = "sw";
  r.role = role;
  r.reference = method == "baseline";
  r.name = role == kd::RunRole::Teacher ? "t" : method;
  r.method = method;
  r.seed = seed;
  r.model = role == kd::RunRole::Teacher ? "cnn_medium" : "cnn_tiny";
  r.teachers = role == kd::RunRole::Teacher || method == "baseline" ? "[]" : R"(["teacher"])";
  s.add_run(r);
  ASSERT_TRUE(s.claim_run(id, "h:1", 60));
  s.finish_run(r, {}, {{"final.val.top1", test}, {"final.test.top1", test}, {"bestval.test.top1", test}});
}

TEST(CliPlan, SeedsForATargetDifferenceMatchScipy) {
  std::ifstream in(kd::test::source_dir() + "/tests/data/reference/stats.json");
  const json rc = json::parse(in).at("report_case");
  const std::string dir = kd::test::make_temp_dir("plan-power");
  const std::string cfg = write_config(dir);

  // Before the sweep has run: one clear data error naming the store.
  auto r = kd::test::run_command(cli("plan " + cfg + " --target-difference 1"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find(dir + "/out/results.db"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("run the sweep first"), std::string::npos) << r.output;

  std::filesystem::create_directories(dir + "/out");
  {
    kd::SqliteStore s(dir + "/out/results.db");
    s.put_sweep("sw", "power", "{}", "{}");
    add_run(s, "teacher", kd::RunRole::Teacher, "baseline", 0, 90);
    auto add = [&](const std::string& method, const json& m) {
      for (size_t i = 0; i < m["test"].size(); ++i)
        add_run(s, method + std::to_string(i), kd::RunRole::Student, method, m["seeds"][i], m["test"][i]);
    };
    add("baseline", rc["reference"]);
    for (const auto& [name, m] : rc["methods"].items()) add(name, m);
  }
  const double target = rc["target_difference"];
  r = kd::test::run_command(cli("plan " + cfg + " --target-difference " + std::to_string(target)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& [name, m] : rc["methods"].items()) {
    // The method's line: student, method, test, seeds, std, detectable, needed.
    std::istringstream lines(r.output);
    std::string line, found;
    while (std::getline(lines, line))
      if (line.rfind("cnn_tiny ", 0) == 0 && line.find(" " + name + " ") != std::string::npos) found = line;
    ASSERT_FALSE(found.empty()) << name << "\n" << r.output;
    std::istringstream cols(found);
    std::vector<std::string> c;
    for (std::string w; cols >> w;) c.push_back(w);
    ASSERT_EQ(c.size(), 7u) << found;
    EXPECT_EQ(c[2], m["kind"] == "paired" ? "paired" : "Welch") << found;
    EXPECT_EQ(c[3], std::to_string(m["test"].size())) << found;
    EXPECT_EQ(c[6], std::to_string(m["seeds_for_target"].get<int>())) << name << ": " << found;
  }
  // A difference that is not positive is a config error naming the option.
  for (const char* bad : {"0", "-1"}) {
    r = kd::test::run_command(cli("plan " + cfg + " --target-difference=" + bad));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--target-difference: expected a positive number"), std::string::npos) << r.output;
  }
}

}  // namespace
