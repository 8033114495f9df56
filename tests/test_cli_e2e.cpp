// End-to-end tests of the kdbench CLI on tiny real data (a Fashion-MNIST subset).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "models/model.h"
#include "store/store.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool have_fashion_mnist() {
  return fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

// The smoke config with its output and teacher cache redirected into `dir`.
std::string smoke_config(const std::string& dir, const std::string& cache) {
  std::ifstream in(kd::test::source_dir() + "/configs/smoke.json");
  json j = json::parse(in);
  j["output"] = dir + "/out";
  j["cache_dir"] = cache;
  std::string path = dir + "/smoke.json";
  kd::test::write_file(path, j.dump(2));
  return path;
}

std::string cli(const std::string& args) {
  return kd::test::kdbench_bin() + " " + args;
}

std::map<std::string, std::pair<std::string, double>> run_table(const std::string& db) {
  kd::SqliteStore store(db, true);
  std::map<std::string, std::pair<std::string, double>> out;
  for (const auto& r : store.runs()) {
    auto f = store.finals(r.id);
    out[r.id] = {kd::to_string(r.status), f.count("final.test.top1") ? f["final.test.top1"] : -1.0};
  }
  return out;
}

TEST(Cli, HelpAndListings) {
  auto r = kd::test::run_command(cli("--help"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* sub : {"sweep", "plan", "runs", "report", "methods", "models", "datasets"})
    EXPECT_NE(r.output.find(sub), std::string::npos) << sub;
  r = kd::test::run_command(cli("methods"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* m : {"baseline", "logit_kd", "fitnets", "attention", "multi_teacher", "progressive"})
    EXPECT_NE(r.output.find(m), std::string::npos) << m;
  EXPECT_NE(r.output.find("temperature"), std::string::npos);
  r = kd::test::run_command(cli("models --input-size 32"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resnet8x4"), std::string::npos);
  r = kd::test::run_command(cli("datasets"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("fashion_mnist"), std::string::npos);
  if (have_fashion_mnist()) {
    EXPECT_NE(r.output.find("found"), std::string::npos) << r.output;
  }
}

TEST(Cli, AnUnknownCommandFailsWithTheKnownOnesWhateverFollows) {
  for (const char* args : {"bogus", "bogus --help", "bogus -h x", "sweepp configs/smoke.json"}) {
    auto r = kd::test::run_command(cli(args));
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
    EXPECT_NE(r.output.find("unknown command"), std::string::npos) << args << ": " << r.output;
    EXPECT_NE(r.output.find("(known: sweep, plan, runs, report"), std::string::npos) << args << ": " << r.output;
    EXPECT_EQ(r.output.find("Usage:"), std::string::npos) << args << ": the main help is not printed";
  }
  // A known command's --help is its own help.
  auto r = kd::test::run_command(cli("runs --help"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--format"), std::string::npos) << r.output;
}

TEST(Cli, BadConfigsFailWithOneClearMessage) {
  std::string dir = kd::test::make_temp_dir("badcfg");
  kd::test::write_file(dir + "/malformed.json", "{\n  \"name\": \"x\",\n  oops\n}");
  auto r = kd::test::run_command(cli("plan " + dir + "/malformed.json"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("malformed.json:3:3"), std::string::npos) << r.output;
  r = kd::test::run_command(cli("plan " + dir + "/does-not-exist.json"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("does-not-exist.json"), std::string::npos) << r.output;
  // Missing data folder: a data error naming the folder.
  json j = json::parse(std::ifstream(kd::test::source_dir() + "/configs/smoke.json"));
  j["dataset"]["root"] = dir + "/no-such-data";
  j["output"] = dir + "/out";
  kd::test::write_file(dir + "/nodata.json", j.dump());
  r = kd::test::run_command(cli("sweep " + dir + "/nodata.json"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("no-such-data"), std::string::npos) << r.output;
}

// Runs the smoke sweep uninterrupted, then again in another folder (sharing the teacher cache),
// killing it with SIGKILL as soon as some student runs are finished, and resuming. The resumed
// sweep must end with the same runs, none twice, and the same metrics.
TEST(Cli, SmokeSweepRunsResumesAfterKillAndMatches) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  std::string dir = kd::test::make_temp_dir("smoke");
  std::string cache = dir + "/cache";
  fs::create_directories(dir + "/a");
  fs::create_directories(dir + "/b");
  std::string cfg_a = smoke_config(dir + "/a", cache);
  std::string cfg_b = smoke_config(dir + "/b", cache);

  auto r = kd::test::run_command(cli("sweep --no-report " + cfg_a));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto a = run_table(dir + "/a/out/results.db");
  ASSERT_GE(a.size(), 10u);
  for (auto& [id, v] : a) EXPECT_EQ(v.first, "done") << id;

  // Re-running a finished sweep trains nothing.
  r = kd::test::run_command(cli("sweep --no-report " + cfg_a));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("0 trained now"), std::string::npos) << r.output;

  // Interrupted sweep.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);  // its own process group, so the kill reaches kdbench too
    std::string log = dir + "/b/killed.log";
    execl("/bin/sh", "sh", "-c", (cli("sweep --no-report " + cfg_b) + " >" + log + " 2>&1").c_str(), nullptr);
    _exit(127);
  }
  bool killed = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!fs::exists(dir + "/b/out/results.db")) continue;
    int done_students = 0;
    try {
      kd::SqliteStore s(dir + "/b/out/results.db", true);
      for (const auto& run : s.runs())
        done_students += run.role == kd::RunRole::Student && run.status == kd::RunStatus::Done;
    } catch (...) {
      continue;
    }
    if (done_students >= 1) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(killed) << "the sweep finished no student run within 5 minutes";
  // sh -c exec'ed kdbench? sh may have forked: make sure no kdbench of ours survives.
  kd::test::run_command("pkill -9 -f '" + cfg_b + "' || true");
  auto partial = run_table(dir + "/b/out/results.db");
  int partial_done = 0;
  for (auto& [id, v] : partial) partial_done += v.first == "done";
  EXPECT_LT(partial_done, static_cast<int>(a.size())) << "killed too late to test resume";

  r = kd::test::run_command(cli("sweep --no-report " + cfg_b));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto b = run_table(dir + "/b/out/results.db");
  ASSERT_EQ(b.size(), a.size());
  for (auto& [id, v] : a) {
    ASSERT_TRUE(b.count(id)) << "run " << id << " missing after resume";
    EXPECT_EQ(b[id].first, "done");
    EXPECT_DOUBLE_EQ(b[id].second, v.second) << "run " << id << " differs from the uninterrupted sweep";
  }
  // runs export: CSV has a header and one line per run; JSONL one object per run.
  r = kd::test::run_command(cli("runs " + dir + "/b/out --format csv"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), static_cast<long>(a.size() + 1));
  r = kd::test::run_command(cli("runs " + dir + "/b/out --format jsonl -o " + dir + "/runs.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream jl(dir + "/runs.jsonl");
  std::string line;
  size_t lines = 0;
  while (std::getline(jl, line)) {
    auto j = json::parse(line);
    EXPECT_TRUE(j.contains("finals"));
    ++lines;
  }
  EXPECT_EQ(lines, a.size());
  // plan shows everything done
  r = kd::test::run_command(cli("plan " + cfg_b));
  EXPECT_NE(r.output.find(std::to_string(a.size()) + " of " + std::to_string(a.size()) + " runs done"),
            std::string::npos)
      << r.output;
}

}  // namespace

namespace {

// A teacher checkpoint with 10 classes used on a 4-class data set: one error naming the checkpoint and
// the two shapes, exit code 3, nothing trained.
TEST(Cli, TeacherWithAnotherClassCountIsOneClearError) {
  std::string dir = kd::test::make_temp_dir("classes");
  auto teacher = kd::create_model(kd::ModelSpec{"cnn_medium", 10, 1, 16});
  kd::save_model(*teacher, dir + "/teacher10.pt");
  json j = json::parse(R"({"name": "classes", "report": false,
    "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 128, "test_size": 32, "image_size": 16},
    "student": "cnn_tiny", "seeds": [0], "recipe": {"epochs": 1},
    "methods": [{"method": "logit_kd"}]})");
  j["teachers"] = {{"t", {{"model", "cnn_medium"}, {"obtain", "checkpoint"}, {"file", dir + "/teacher10.pt"}}}};
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  kd::test::write_file(dir + "/classes.json", j.dump());
  auto r = kd::test::run_command(cli("sweep " + dir + "/classes.json"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("kdbench: data error: " + dir + "/teacher10.pt"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("fc.weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[10, 32] in the checkpoint, the model's is [4, 32]"), std::string::npos) << r.output;
}

}  // namespace
