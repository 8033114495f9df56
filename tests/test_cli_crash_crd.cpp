// CRD's memory bank under kill -9: a CRD sweep killed while its bank is being updated (a training step), and
// again between writing the student's checkpoint and the method's (bank included), resumes to exactly the
// uninterrupted sweep's result: the same metrics and the same memory banks, embeddings and Z. A run that did not
// finish restarts from scratch (a fresh bank, the same random stream), so no half-updated bank survives.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "store/store.h"
#include "store/sweep_layout.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string write_config(const std::string& dir) {
  json j = json::parse(R"({
    "name": "crash-crd",
    "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 512, "test_size": 128, "image_size": 12,
                "channels": 1, "seed": 4},
    "student": "cnn_tiny", "seeds": [0], "threads": 1, "report": false,
    "teachers": {"t": {"model": "cnn_medium", "recipe": {"epochs": 1}}},
    "recipe": {"epochs": 2, "batch_size": 64, "lr": 0.1},
    "methods": [{"method": "crd", "params": {"nce_k": 128, "feat_dim": 16}}]
  })");
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  const std::string path = dir + "/sweep.json";
  kd::test::write_file(path, j.dump(2));
  return path;
}

// Runs `kdbench sweep CONFIG` with KDBENCH_CRASH_AT=<crash_at> (none when empty); returns the exit code, or
// 128 + the signal that ended it.
int sweep(const std::string& config, const std::string& crash_at, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!crash_at.empty()) ::setenv("KDBENCH_CRASH_AT", crash_at.c_str(), 1);
    if (!std::freopen(log.c_str(), "w", stdout)) _exit(126);
    ::dup2(STDOUT_FILENO, STDERR_FILENO);
    const std::string bin = kd::test::kdbench_bin();
    execl(bin.c_str(), bin.c_str(), "sweep", config.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct CrdRun {
  kd::RunStatus status = kd::RunStatus::Pending;
  std::map<std::string, double> finals;
  std::map<std::string, torch::Tensor> module;  // embeddings, banks and Z from the .method file
};

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

CrdRun crd_run(const std::string& out) {
  CrdRun c;
  kd::SqliteStore store(out + "/results.db", true);
  for (const auto& r : store.runs()) {
    if (r.method != "crd") continue;
    c.status = r.status;
    if (r.status != kd::RunStatus::Done) return c;
    c.finals = store.finals(r.id);
    c.finals.erase("latency_ms");  // a timing, measured anew by each process
    torch::serialize::InputArchive a;
    a.load_from(kd::method_checkpoint(r.checkpoint));
    collect(a, "", c.module);
  }
  return c;
}

TEST(CrashCRD, TheMemoryBankSurvivesKillAndResume) {
  const std::string ref_dir = kd::test::make_temp_dir("crd-ref");
  ASSERT_EQ(sweep(write_config(ref_dir), "", ref_dir + "/log.txt"), 0) << slurp(ref_dir + "/log.txt");
  const CrdRun ref = crd_run(ref_dir + "/out");
  ASSERT_EQ(ref.status, kd::RunStatus::Done);
  ASSERT_TRUE(ref.module.count("contrast.memory_v1")) << "the bank is saved with the method's module";
  const auto bank = ref.module.at("contrast.memory_v1").sizes();  // [training split, feat_dim]
  EXPECT_EQ(bank[1], 16);
  EXPECT_GT(bank[0], 400);
  EXPECT_GT(ref.module.at("contrast.params")[2].item<double>(), 0) << "Z was set";

  const std::string dir = kd::test::make_temp_dir("crd-kill");
  const std::string cfg = write_config(dir);
  // The teacher trains 8 steps (the ~460 training images in batches of 64); step 12 is in the middle of CRD's first
  // epoch.
  EXPECT_EQ(sweep(cfg, "train_step:12", dir + "/log1.txt"), 128 + SIGKILL) << slurp(dir + "/log1.txt");
  EXPECT_NE(crd_run(dir + "/out").status, kd::RunStatus::Done);
  // Resumed (the teacher is done): killed after the student's checkpoint, before the method's (with the bank).
  EXPECT_EQ(sweep(cfg, "write.checkpoint:2", dir + "/log2.txt"), 128 + SIGKILL) << slurp(dir + "/log2.txt");
  EXPECT_NE(crd_run(dir + "/out").status, kd::RunStatus::Done) << "done without its bank";
  ASSERT_EQ(sweep(cfg, "", dir + "/log3.txt"), 0) << slurp(dir + "/log3.txt");
  const CrdRun got = crd_run(dir + "/out");
  ASSERT_EQ(got.status, kd::RunStatus::Done);
  EXPECT_EQ(got.finals, ref.finals) << "the resumed CRD run differs from the uninterrupted one";
  ASSERT_EQ(got.module.size(), ref.module.size());
  for (const auto& [name, t] : ref.module) {
    ASSERT_TRUE(got.module.count(name)) << name;
    EXPECT_TRUE(torch::equal(got.module.at(name), t)) << name << " differs after kill and resume";
  }
}

}  // namespace
