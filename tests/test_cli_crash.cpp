// Crash safety, concurrent processes, a full disk and a read-only folder, through the real CLI.
//
// A small synthetic sweep (a teacher, four student methods, two seeds, the report) is run once
// uninterrupted as the reference. Then the same sweep is killed with SIGKILL again and again, at fixed
// moments (a training step, a checkpoint write, the teacher cache, a store commit, a report write; the
// KDBENCH_CRASH_AT hook in base/fsutil.h) and at random times, and resumed each time. After every kill
// the store must open and pass SQLite's integrity check, runs that were finished must be untouched (same
// finish time, same metrics: not repeated), and no finished-looking file may be partial. At the end the
// resumed sweeps must hold exactly the reference's runs with exactly its metrics.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "store/store.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kSweep = R"({
  "name": "crash",
  "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 1024, "test_size": 256, "image_size": 16,
              "channels": 1, "seed": 3},
  "student": "cnn_tiny", "seeds": [0, 1], "threads": 1,
  "teachers": {"t": {"model": "cnn_medium"}},
  "recipe": {"epochs": 2, "batch_size": 64, "lr": 0.1},
  "methods": [
    {"method": "baseline"},
    {"method": "logit_kd", "grid": {"temperature": [2, 4]}},
    {"method": "fitnets", "params": {"mode": "two_stage", "hint_epochs": 1}},
    {"method": "attention"}
  ]
})";

std::string write_config(const std::string& dir, bool report) {
  json j = json::parse(kSweep);
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  j["report"] = report;
  std::string path = dir + "/sweep.json";
  kd::test::write_file(path, j.dump(2));
  return path;
}

struct Spawned {
  pid_t pid = -1;
};

// Starts `kdbench sweep CONFIG` with extra environment (NAME=VALUE entries); output goes to `log`.
Spawned spawn_sweep(const std::string& config, const std::vector<std::string>& env, const std::string& log) {
  Spawned s;
  s.pid = fork();
  if (s.pid == 0) {
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    ::dup2(STDOUT_FILENO, STDERR_FILENO);
    std::string bin = kd::test::kdbench_bin();
    execl(bin.c_str(), bin.c_str(), "sweep", config.c_str(), nullptr);
    _exit(127);
  }
  return s;
}

// Waits for the child; returns its exit code, or 128 + signal.
int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct RunState {
  kd::RunStatus status = kd::RunStatus::Pending;
  double finished_at = 0;
  std::map<std::string, double> finals;
  std::string checkpoint;
};

std::map<std::string, RunState> read_runs(const std::string& out) {
  std::map<std::string, RunState> m;
  if (!fs::exists(out + "/results.db")) return m;
  kd::SqliteStore store(out + "/results.db");
  for (const auto& r : store.runs()) {
    auto finals = store.finals(r.id);
    // A timing, not a result: measured anew by each process, so it differs between two sweeps (the metrics
    // of a finished run must not change at all: its whole record, timings included, is kept).
    if (r.status == kd::RunStatus::Done && !r.model.empty()) {
      EXPECT_GT(finals.erase("latency_ms"), 0u) << "run " << r.id << " has no latency";
    }
    m[r.id] = {r.status, r.finished_at, finals, r.checkpoint};
  }
  return m;
}

// Everything a kill may never break; `before` is the state before the killed attempt.
void check_after_kill(const std::string& out, const std::map<std::string, RunState>& before, const std::string& what) {
  if (!fs::exists(out + "/results.db")) {
    EXPECT_TRUE(before.empty()) << what << ": the store disappeared";
    return;
  }
  auto ic = kd::test::run_command("sqlite3 '" + out + "/results.db' 'PRAGMA integrity_check'");
  EXPECT_EQ(ic.output, "ok\n") << what << ": integrity check: " << ic.output;
  std::map<std::string, RunState> now;
  ASSERT_NO_THROW(now = read_runs(out)) << what << ": the store does not open";
  for (const auto& [id, b] : before) {
    if (b.status != kd::RunStatus::Done) continue;
    ASSERT_TRUE(now.count(id)) << what << ": finished run " << id << " vanished";
    EXPECT_EQ(now[id].status, kd::RunStatus::Done) << what << ": run " << id;
    EXPECT_EQ(now[id].finished_at, b.finished_at) << what << ": finished run " << id << " was run again";
    EXPECT_EQ(now[id].finals, b.finals) << what << ": finished run " << id << " changed its metrics";
  }
  for (const auto& [id, r] : now) {
    if (r.status != kd::RunStatus::Done) continue;
    EXPECT_FALSE(r.finals.empty()) << what << ": run " << id << " is done without metrics";
    if (!r.checkpoint.empty()) {
      EXPECT_TRUE(fs::exists(r.checkpoint)) << what << ": " << r.checkpoint;
      EXPECT_GT(fs::exists(r.checkpoint) ? fs::file_size(r.checkpoint) : 0u, 0u) << what << ": " << r.checkpoint;
    }
  }
  // A report file is either absent or complete.
  if (fs::exists(out + "/report/index.html")) {
    std::string html = slurp(out + "/report/index.html");
    EXPECT_NE(html.find("</html>"), std::string::npos) << what << ": partial index.html";
  }
}

// After a clean finish: the same runs as the reference, all done, the same metrics; no temporary files.
void expect_same_as_reference(const std::string& out, const std::map<std::string, RunState>& ref) {
  auto got = read_runs(out);
  ASSERT_EQ(got.size(), ref.size());
  for (const auto& [id, r] : ref) {
    ASSERT_TRUE(got.count(id)) << "run " << id << " missing";
    EXPECT_EQ(got[id].status, kd::RunStatus::Done) << id;
    EXPECT_EQ(got[id].finals, r.finals) << "run " << id << " differs from the uninterrupted sweep";
  }
  for (const char* sub : {"/checkpoints", "/report"})
    for (const auto& e : fs::directory_iterator(out + sub))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
  EXPECT_NE(slurp(out + "/report/index.html").find("</html>"), std::string::npos);
}

class CrashSafety : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ref_dir_ = new std::string(kd::test::make_temp_dir("crash-ref"));
    auto t0 = std::chrono::steady_clock::now();
    auto r = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + write_config(*ref_dir_, true));
    ref_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ref_ = new std::map<std::string, RunState>(read_runs(*ref_dir_ + "/out"));
  }
  static std::string* ref_dir_;
  static std::map<std::string, RunState>* ref_;
  static double ref_seconds_;
};
std::string* CrashSafety::ref_dir_ = nullptr;
std::map<std::string, RunState>* CrashSafety::ref_ = nullptr;
double CrashSafety::ref_seconds_ = 0;

TEST_F(CrashSafety, KilledAtEveryKindOfMomentResumesToTheSameResults) {
  ASSERT_EQ(ref_->size(), 11u);  // 1 teacher + 5 settings x 2 seeds
  std::string dir = kd::test::make_temp_dir("crash-points");
  std::string cfg = write_config(dir, true);
  // In this order each point is reached before the sweep can finish: every attempt must die.
  const std::vector<std::string> points = {
      "write.config:1",        // the sweep's config copy, before anything else
      "train_step:3",          // teacher training
      "write.checkpoint:1",    // the teacher's checkpoint (into the teacher cache)
      "write.teacher_meta:1",  // the teacher cache's metadata, checkpoint already in place
      "store_commit:1",        // the teacher's store transaction
      "store_commit:2",        // the first student's store transaction (the teacher is done now)
      "train_step:10",         // student training
      "write.checkpoint:2",    // a student checkpoint
      "store_commit:3",        // more students done first
      "write.report:2",        // all trained; the report's second file
  };
  int kills = 0;
  for (const auto& p : points) {
    auto before = read_runs(dir + "/out");
    auto s = spawn_sweep(cfg, {"KDBENCH_CRASH_AT=" + p}, dir + "/log.txt");
    int code = wait_exit(s.pid);
    EXPECT_EQ(code, 128 + SIGKILL) << p << ": the sweep was not killed there; log:\n" << slurp(dir + "/log.txt");
    kills += code == 128 + SIGKILL;
    check_after_kill(dir + "/out", before, p);
  }
  EXPECT_EQ(kills, static_cast<int>(points.size()));
  std::cout << "[ info     ] " << kills << " kills at fixed moments, each resumed and checked\n";
  auto r = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + cfg);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_as_reference(dir + "/out", *ref_);
}

TEST_F(CrashSafety, KilledAtRandomTimesResumesToTheSameResults) {
  std::string dir = kd::test::make_temp_dir("crash-random");
  std::string cfg = write_config(dir, true);
  std::mt19937 rng(12345);
  // Each attempt is killed after a random delay within the first half of an uninterrupted sweep's time,
  // until 8 attempts were killed or one finished (each resumed attempt has less left to do).
  std::uniform_real_distribution<double> when(0.05, std::max(0.5, 0.5 * ref_seconds_));
  int kills = 0, attempts = 0;
  for (; attempts < 16 && kills < 8; ++attempts) {
    auto before = read_runs(dir + "/out");
    auto s = spawn_sweep(cfg, {}, dir + "/log.txt");
    std::this_thread::sleep_for(std::chrono::duration<double>(when(rng)));
    ::kill(s.pid, SIGKILL);
    int code = wait_exit(s.pid);
    kills += code == 128 + SIGKILL;
    EXPECT_TRUE(code == 0 || code == 128 + SIGKILL) << "exit code " << code << ":\n" << slurp(dir + "/log.txt");
    check_after_kill(dir + "/out", before, "random kill " + std::to_string(attempts));
    if (code == 0) break;  // it finished before the kill
  }
  EXPECT_GE(kills, 4) << "too few attempts were killed mid-way to test anything";
  std::cout << "[ info     ] " << kills << " kills at random times in " << attempts
            << " attempts, each resumed and checked\n";
  auto r = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + cfg);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_as_reference(dir + "/out", *ref_);
}

// Two processes on one sweep folder at once share the work: every run is trained by exactly one of them.
TEST_F(CrashSafety, TwoProcessesShareOneSweep) {
  std::string dir = kd::test::make_temp_dir("crash-two");
  std::string cfg = write_config(dir, false);
  auto a = spawn_sweep(cfg, {}, dir + "/a.log");
  auto b = spawn_sweep(cfg, {}, dir + "/b.log");
  EXPECT_EQ(wait_exit(a.pid), 0) << slurp(dir + "/a.log");
  EXPECT_EQ(wait_exit(b.pid), 0) << slurp(dir + "/b.log");
  // Each process logs "done <name> ..." for each run it trained.
  auto count_done = [](const std::string& log) {
    std::istringstream in(log);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += line.rfind("done ", 0) == 0;
    return n;
  };
  std::string la = slurp(dir + "/a.log"), lb = slurp(dir + "/b.log");
  EXPECT_EQ(count_done(la) + count_done(lb), static_cast<int>(ref_->size())) << "A:\n" << la << "\nB:\n" << lb;
  auto got = read_runs(dir + "/out");
  ASSERT_EQ(got.size(), ref_->size());
  for (const auto& [id, r] : *ref_) EXPECT_EQ(got[id].finals, r.finals) << id;
}

// An injected write failure (as on a full disk) ends the sweep with one error naming the file and the
// cause; the run being written is not marked done; a later sweep finishes it.
TEST_F(CrashSafety, FailedCheckpointWriteIsOneClearErrorAndNoFinishedRun) {
  std::string dir = kd::test::make_temp_dir("crash-full");
  std::string cfg = write_config(dir, false);
  auto s = spawn_sweep(cfg, {"KDBENCH_FAIL_WRITE=write.checkpoint:3"}, dir + "/log.txt");
  EXPECT_EQ(wait_exit(s.pid), 1);
  std::string log = slurp(dir + "/log.txt");
  EXPECT_NE(log.find("kdbench: error: " + dir + "/out/checkpoints/"), std::string::npos) << log;
  EXPECT_NE(log.find("No space left on device"), std::string::npos) << log;
  auto runs = read_runs(dir + "/out");
  int done = 0;
  for (const auto& [id, r] : runs) done += r.status == kd::RunStatus::Done;
  EXPECT_EQ(done, 2) << "the teacher and the first student (checkpoint writes 1 and 2) only";
  auto r = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + cfg);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto got = read_runs(dir + "/out");
  for (const auto& [id, ref] : *ref_) EXPECT_EQ(got[id].finals, ref.finals) << id;
}

// A real full file system (a small tmpfs) and a read-only one, where this process may mount them (root).
TEST_F(CrashSafety, FullAndReadOnlyFileSystems) {
  std::string dir = kd::test::make_temp_dir("crash-fs");
  fs::create_directories(dir + "/full");
  if (::mount("tmpfs", (dir + "/full").c_str(), "tmpfs", 0, "size=96k") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (not root): the injected-failure test covers this";
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } full_guard{dir + "/full"}, ro_guard{dir + "/ro"};
  json j = json::parse(kSweep);
  j["output"] = dir + "/full/out";
  j["cache_dir"] = dir + "/cache";
  j["report"] = false;
  kd::test::write_file(dir + "/full.json", j.dump());
  auto r = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + dir + "/full.json");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(dir + "/full/out"), std::string::npos) << r.output;
  bool says_full = r.output.find("no space left on device") != std::string::npos ||
                   r.output.find("No space left on device") != std::string::npos ||
                   r.output.find("database or disk is full") != std::string::npos;
  EXPECT_TRUE(says_full) << r.output;
  size_t error_lines = 0;
  for (size_t p = r.output.find("kdbench: "); p != std::string::npos; p = r.output.find("kdbench: ", p + 1))
    ++error_lines;
  EXPECT_EQ(error_lines, 1u) << r.output;
  if (fs::exists(dir + "/full/out/results.db")) {
    for (const auto& [id, run] : read_runs(dir + "/full/out"))
      if (run.status == kd::RunStatus::Done) {
        EXPECT_TRUE(fs::exists(run.checkpoint)) << "a done run without its checkpoint: " << id;
      }
  }

  fs::create_directories(dir + "/ro");
  ASSERT_EQ(::mount("tmpfs", (dir + "/ro").c_str(), "tmpfs", MS_RDONLY, "size=64k"), 0);
  j["output"] = dir + "/ro/out";
  kd::test::write_file(dir + "/ro.json", j.dump());
  r = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + dir + "/ro.json");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(dir + "/ro/out"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ead-only file system"), std::string::npos) << r.output;
}

}  // namespace
