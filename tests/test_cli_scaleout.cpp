// One sweep over many processes, through the real CLI and real servers (nothing mocked):
//   - three workers on one PostgreSQL store (a server started here: initdb into a temporary folder, a free port
//     of 127.0.0.1), one killed with SIGKILL in the middle of a run: every run finishes exactly once, with the
//     metrics of a one-process sweep, and the password of the store's URL is nowhere in what they wrote;
//   - static shards (--shard i/n) merged with `kdbench merge` into the one-process sweep's results;
//   - the job files `kdbench slurm` and `kdbench k8s` write;
//   - a data-parallel run over 2 processes (Gloo on loopback) against one process with the same global batch.
// The Slurm array job on a real single-node Slurm is tests/test_cli_slurm.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "store/store.h"
#include "test_util.h"

namespace fs = std::filesystem;
using kd::test::PostgresServer;
using nlohmann::json;

namespace {

// A teacher, three student methods (four settings), two seeds: 9 runs of a few seconds each, trained in
// lockstep groups of at most two (so that three workers all get work).
const char* kSweep = R"({
  "name": "scaleout",
  "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 1024, "test_size": 256, "image_size": 16,
              "channels": 1, "seed": 3},
  "student": "cnn_tiny", "seeds": [0, 1], "threads": 1,
  "teachers": {"t": {"model": "cnn_medium"}},
  "recipe": {"epochs": 3, "batch_size": 64, "lr": 0.1},
  "lockstep": 2,
  "methods": [
    {"method": "baseline"},
    {"method": "logit_kd", "grid": {"temperature": [2, 4]}},
    {"method": "attention"}
  ],
  "report": false
})";

std::string write_config(const std::string& dir, const std::string& tag, const json& over = json::object()) {
  json j = json::parse(kSweep);
  j["output"] = dir + "/" + tag;
  j["cache_dir"] = dir + "/cache-" + tag;
  j.merge_patch(over);
  std::string path = dir + "/" + tag + ".json";
  kd::test::write_file(path, j.dump(2));
  return path;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Starts kdbench with `args` and extra environment (NAME=VALUE); stdout and stderr to `log`.
pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    ::dup2(STDOUT_FILENO, STDERR_FILENO);
    std::string bin = kd::test::kdbench_bin();
    std::vector<char*> argv{const_cast<char*>(bin.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// run id -> finals without the latency (a timing measured anew by each process, not a result).
std::map<std::string, std::map<std::string, double>> finals_of(const kd::ResultsStore& store) {
  std::map<std::string, std::map<std::string, double>> out;
  for (const auto& r : store.runs()) {
    EXPECT_EQ(r.status, kd::RunStatus::Done) << r.id << " " << r.name << " " << r.error;
    auto f = store.finals(r.id);
    f.erase("latency_ms");
    out[r.id] = f;
  }
  return out;
}

class Scaleout : public ::testing::Test {
 protected:
  // The one-process sweep every other way of running it must reproduce.
  static void SetUpTestSuite() {
    dir_ = new std::string(kd::test::make_temp_dir("scaleout"));
    auto r = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + write_config(*dir_, "ref"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    kd::SqliteStore store(*dir_ + "/ref/results.db", true);
    ref_ = new std::map<std::string, std::map<std::string, double>>(finals_of(store));
    ASSERT_EQ(ref_->size(), 9u);  // 1 teacher + 4 settings x 2 seeds
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static PostgresServer& server() {
    if (!server_) server_ = new PostgresServer();
    return *server_;
  }
  static std::string* dir_;
  static std::map<std::string, std::map<std::string, double>>* ref_;
  static PostgresServer* server_;
};
std::string* Scaleout::dir_ = nullptr;
std::map<std::string, std::map<std::string, double>>* Scaleout::ref_ = nullptr;
PostgresServer* Scaleout::server_ = nullptr;

TEST_F(Scaleout, ThreeWorkersOnPostgresOneKilledEveryRunOnceSameMetrics) {
  PostgresServer& pg = server();
  pg.create_database("three");
  const std::string url_pw = pg.url(true, "three"), url = pg.url(false, "three");
  const std::string cfg = write_config(*dir_, "three");
  const std::string pgpw = std::string("PGPASSWORD=") + PostgresServer::kPassword;
  auto worker_args = [&](int i, const std::string& store) {
    return std::vector<std::string>{
        "sweep",           cfg, "--store", store, "--worker-index", std::to_string(i), "--heartbeat-seconds", "0.5",
        "--stale-seconds", "4"};
  };
  // Worker 0 has the password in its URL (in KDBENCH_STORE: a command line refuses one), the others from
  // PGPASSWORD. Worker 2 kills itself (SIGKILL) at its 20th training step: in the middle of a run it claimed.
  std::vector<pid_t> pids;
  const std::string store_env = "KDBENCH_STORE=" + url_pw;
  std::vector<std::string> w0 = worker_args(0, url);
  w0.erase(w0.begin() + 2, w0.begin() + 4);  // no --store: the URL comes from the environment
  pids.push_back(spawn(w0, {store_env}, *dir_ + "/w0.log"));
  pids.push_back(spawn(worker_args(1, url), {pgpw}, *dir_ + "/w1.log"));
  pids.push_back(spawn(worker_args(2, url), {pgpw, "KDBENCH_CRASH_AT=train_step:20"}, *dir_ + "/w2.log"));
  EXPECT_EQ(wait_exit(pids[2]), 128 + SIGKILL) << slurp(*dir_ + "/w2.log");
  EXPECT_EQ(wait_exit(pids[0]), 0) << slurp(*dir_ + "/w0.log");
  EXPECT_EQ(wait_exit(pids[1]), 0) << slurp(*dir_ + "/w1.log");

  auto store = kd::open_store(url_pw, true);
  auto got = finals_of(*store);
  ASSERT_EQ(got.size(), ref_->size());
  for (const auto& [id, f] : *ref_) EXPECT_EQ(got[id], f) << "run " << id << " differs from the one-process sweep";
  // Exactly one finish per run; the killed worker's run was claimed again and finished by another worker.
  EXPECT_EQ(pg.psql("SELECT count(*) FROM (SELECT run_id FROM run_events WHERE event='finish' GROUP BY run_id "
                    "HAVING count(*) = 1) t",
                    "three"),
            std::to_string(ref_->size()) + "\n");
  EXPECT_EQ(pg.psql("SELECT count(*) FROM run_events WHERE event IN ('finish', 'discard', 'fail') AND run_id NOT IN "
                    "(SELECT run_id FROM run_events WHERE event='finish' GROUP BY run_id HAVING count(*) = 1)",
                    "three"),
            "0\n");
  EXPECT_NE(pg.psql("SELECT count(*) FROM run_events WHERE event='reclaim'", "three"), "0\n")
      << "the killed worker's run was not taken over";
  const int owners = std::stoi(pg.psql("SELECT count(DISTINCT owner) FROM run_events WHERE event='finish'", "three"));
  EXPECT_GE(owners, 2) << "the workers shared the work";

  // The password is nowhere: not in the store, not in the logs, not in the sweep folder.
  const std::string dump = pg.psql(
      "SELECT string_agg(coalesce(config,'') || coalesce(environment,''), ' ') FROM "
      "(SELECT config, environment FROM runs UNION ALL SELECT config, environment FROM "
      "sweeps) t",
      "three");
  EXPECT_NE(dump.find("postgresql://kd@127.0.0.1"), std::string::npos) << "the store's URL is recorded (redacted)";
  EXPECT_EQ(dump.find(PostgresServer::kPassword), std::string::npos);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(slurp(*dir_ + "/w" + std::to_string(i) + ".log").find(PostgresServer::kPassword), std::string::npos);
  for (const auto& e : fs::recursive_directory_iterator(*dir_ + "/three")) {
    if (e.is_regular_file()) {
      EXPECT_EQ(slurp(e.path().string()).find(PostgresServer::kPassword), std::string::npos) << e.path();
    }
  }

  // Readers take the URL: runs, plan and report.
  auto runs = kd::test::run_command(pgpw + " " + kd::test::kdbench_bin() + " runs --store " + url + " --format csv");
  EXPECT_EQ(runs.exit_code, 0) << runs.output;
  EXPECT_EQ(std::count(runs.output.begin(), runs.output.end(), '\n'), 1 + static_cast<long>(ref_->size()));
  auto plan = kd::test::run_command(pgpw + " " + kd::test::kdbench_bin() + " plan " + cfg + " --store " + url);
  EXPECT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_NE(plan.output.find("9 of 9 runs done"), std::string::npos) << plan.output;
  auto report =
      kd::test::run_command(pgpw + " " + kd::test::kdbench_bin() + " report " + url + " -o " + *dir_ + "/three-report");
  EXPECT_EQ(report.exit_code, 0) << report.output;
  EXPECT_TRUE(fs::exists(*dir_ + "/three-report/index.html"));
}

TEST_F(Scaleout, ConfigStoreWithPasswordIsRefused) {
  const std::string cfg = write_config(*dir_, "pw", {{"store", "postgresql://kd:hunter2@127.0.0.1:1/x"}});
  auto r = kd::test::run_command(kd::test::kdbench_bin() + " plan " + cfg);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("store: holds a password"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("hunter2"), std::string::npos) << r.output;
}

TEST_F(Scaleout, ShardsMergeIntoTheOneProcessSweep) {
  const std::string cfg = write_config(*dir_, "shards");
  for (int i = 0; i < 3; ++i) {
    auto r = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + cfg + " --shard " + std::to_string(i) +
                                   "/3 -o " + *dir_ + "/shard" + std::to_string(i));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // Each shard holds its students and the teacher; only together do they hold the sweep.
  kd::SqliteStore s0(*dir_ + "/shard0/results.db", true);
  int done0 = 0;
  for (const auto& r : s0.runs()) done0 += r.status == kd::RunStatus::Done;
  EXPECT_LT(done0, static_cast<int>(ref_->size()));
  auto m = kd::test::run_command(kd::test::kdbench_bin() + " merge " + *dir_ + "/merged " + *dir_ + "/shard0 " + *dir_ +
                                 "/shard1 " + *dir_ + "/shard2");
  ASSERT_EQ(m.exit_code, 0) << m.output;
  kd::SqliteStore merged(*dir_ + "/merged/results.db", true);
  EXPECT_EQ(finals_of(merged), *ref_);
  for (const auto& r : merged.runs())
    if (r.role == kd::RunRole::Student) {
      EXPECT_EQ(r.checkpoint.rfind(*dir_ + "/merged/checkpoints/", 0), 0u) << r.checkpoint;
      EXPECT_TRUE(fs::exists(r.checkpoint)) << r.checkpoint;
    }
  auto bad = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + cfg + " --shard 3/3");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--shard"), std::string::npos) << bad.output;
}

TEST_F(Scaleout, SlurmAndKubernetesJobFiles) {
  const std::string cfg = write_config(*dir_, "jobs");
  const std::string url = "postgresql://kd@db.example:5432/sweeps";
  auto r = kd::test::run_command(kd::test::kdbench_bin() + " slurm " + cfg + " --workers 4 --partition gpu --gres " +
                                 "gpu:1 --time 02:00:00 --cpus-per-task 8 --store " + url);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string script = *dir_ + "/jobs/slurm/kdbench-scaleout.sbatch";
  const std::string s = slurp(script);
  for (const char* want :
       {"#SBATCH --array=0-3", "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1", "#SBATCH --time=02:00:00",
        "#SBATCH --cpus-per-task=8", "export KDBENCH_STORE='postgresql://kd@db.example:5432/sweeps'",
        "--worker-index \"$SLURM_ARRAY_TASK_ID\"", "--threads 8"})
    EXPECT_NE(s.find(want), std::string::npos) << want << "\n" << s;
  EXPECT_EQ(kd::test::run_command("bash -n " + script).exit_code, 0);
  auto pw = kd::test::run_command(kd::test::kdbench_bin() + " slurm " + cfg +
                                  " --workers 2 --store postgresql://kd:hunter2@db/x");
  EXPECT_EQ(pw.exit_code, 2) << pw.output;
  EXPECT_EQ(pw.output.find("hunter2"), std::string::npos);
  auto none =
      kd::test::run_command("env -u KDBENCH_STORE " + kd::test::kdbench_bin() + " slurm " + cfg + " --workers 2");
  EXPECT_EQ(none.exit_code, 2) << none.output;

  auto k = kd::test::run_command(kd::test::kdbench_bin() + " k8s " + cfg +
                                 " --workers 3 --image registry.example/kdbench:1 --gpus 1 --store " + url);
  ASSERT_EQ(k.exit_code, 0) << k.output;
  for (const char* want : {"kind: Job", "completionMode: Indexed", "completions: 3", "parallelism: 3",
                           "image: \"registry.example/kdbench:1\"", "value: \"postgresql://kd@db.example:5432/sweeps\"",
                           "name: PGPASSWORD", "secretKeyRef:", "nvidia.com/gpu: 1", "kind: ConfigMap",
                           "\"cache_dir\": \"/shared/cache\"", "claimName: kdbench-shared"})
    EXPECT_NE(k.output.find(want), std::string::npos) << want << "\n" << k.output;
  // The embedded config is the sweep's (it parses back to the same name and methods).
  const size_t at = k.output.find("sweep.json: |\n") + 14;
  std::string embedded;
  std::istringstream lines(k.output.substr(at));
  for (std::string line; std::getline(lines, line) && line.rfind("    ", 0) == 0;) embedded += line.substr(4) + "\n";
  json j = json::parse(embedded);
  EXPECT_EQ(j["name"], "scaleout");
  EXPECT_EQ(j["methods"].size(), 3u);
}

// One run data-parallel over two processes (Gloo over loopback), each on half of every batch, against one
// process with the same global batch of 64.
TEST_F(Scaleout, DataParallelTwoProcessesMatchOneProcess) {
  const json over = {{"methods", json::array({json{{"method", "logit_kd"}, {"params", {{"temperature", 4}}}}})},
                     {"seeds", {0}},
                     {"recipe", {{"epochs", 4}, {"batch_size", 64}, {"lr", 0.05}}}};
  const std::string one = write_config(*dir_, "dp1", over), two = write_config(*dir_, "dp2", over);
  auto r1 = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + one);
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  auto r2 = kd::test::run_command(kd::test::kdbench_bin() + " sweep " + two + " --nproc 2");
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  EXPECT_NE(r2.output.find("data-parallel: starting 2 processes"), std::string::npos) << r2.output;
  EXPECT_NE(r2.output.find("data-parallel over 2 replicas"), std::string::npos) << r2.output;
  kd::SqliteStore s1(*dir_ + "/dp1/results.db", true), s2(*dir_ + "/dp2/results.db", true);
  auto f1 = finals_of(s1), f2 = finals_of(s2);
  ASSERT_EQ(f1.size(), 2u);
  ASSERT_EQ(f2.size(), 2u);
  for (const auto& r : s2.runs()) {
    const auto env = json::parse(r.environment);
    ASSERT_TRUE(env.contains("data_parallel")) << r.environment;
    EXPECT_EQ(env["data_parallel"]["replicas"], 2);
    EXPECT_EQ(env["data_parallel"]["backend"], "gloo");
    const auto& a = f1.at(r.id);
    const auto& b = f2.at(r.id);
    // The same global batches and averaged gradients; batch norm normalises each half with its own statistics
    // (as PyTorch's DDP does), so the two trainings differ a little, not more.
    EXPECT_NEAR(a.at("final.test.top1"), b.at("final.test.top1"), 3.0) << r.name;
    EXPECT_NEAR(a.at("final.val.top1"), b.at("final.val.top1"), 3.0) << r.name;
    EXPECT_NEAR(a.at("final.test.nll"), b.at("final.test.nll"), 0.1 * a.at("final.test.nll") + 0.02) << r.name;
    std::cout << r.name << ": one process test top-1 " << a.at("final.test.top1") << " nll " << a.at("final.test.nll")
              << "; two processes " << b.at("final.test.top1") << " nll " << b.at("final.test.nll") << "\n";
  }
}

// A data-parallel run whose teacher is loaded from a file, a torch.save state dict ("obtain": "pytorch") and a
// torch.export package ("export"), both written by `kdbench export` from the reference sweep's trained teacher.
// The followers load it through the same teacher source as the leader. With the state dict (the same weights
// exactly) the student trains bit for bit as with the trained teacher; with the compiled package (its kernels
// round differently) within the data-parallel test's margins.
TEST_F(Scaleout, DataParallelRunsTakeTeachersFromPytorchAndExportFiles) {
  std::string teacher_id;
  {
    kd::SqliteStore ref(*dir_ + "/ref/results.db", true);
    for (const auto& r : ref.runs())
      if (r.role == kd::RunRole::Teacher) teacher_id = r.id;
  }
  ASSERT_FALSE(teacher_id.empty());
  const std::string bin = kd::test::kdbench_bin(), state = *dir_ + "/t_state.pt", pkg = *dir_ + "/t.pt2";
  auto e = kd::test::run_command(bin + " export " + teacher_id.substr(0, 12) + " " + *dir_ + "/ref -o " + state);
  ASSERT_EQ(e.exit_code, 0) << e.output;
  auto x = kd::test::run_command(bin + " export " + teacher_id.substr(0, 12) + " " + *dir_ + "/ref --format export -o " +
                                 pkg);
  const bool have_pkg = x.exit_code == 0;
  if (!have_pkg) ASSERT_NE(x.output.find("AOTInductor has no C++ compiler"), std::string::npos) << x.output;

  // The student's finals of a data-parallel sweep (2 processes) with teacher `t` as given.
  auto sweep = [&](const std::string& tag, const json& teacher) {
    const json over = {{"methods", json::array({json{{"method", "logit_kd"}, {"params", {{"temperature", 4}}}}})},
                       {"seeds", {0}},
                       {"recipe", {{"epochs", 3}, {"batch_size", 64}, {"lr", 0.05}}},
                       {"cache_dir", *dir_ + "/cache-ref"},  // the trained teacher is the reference sweep's
                       {"teachers", {{"t", teacher}}}};
    auto r = kd::test::run_command(bin + " sweep " + write_config(*dir_, tag, over) + " --nproc 2");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("data-parallel over 2 replicas"), std::string::npos) << r.output;
    kd::SqliteStore store(*dir_ + "/" + tag + "/results.db", true);
    std::map<std::string, double> student;
    for (const auto& run : store.runs()) {
      EXPECT_EQ(run.status, kd::RunStatus::Done) << tag << " " << run.name << " " << run.error;
      if (run.role == kd::RunRole::Student) student = store.finals(run.id);
      if (run.role == kd::RunRole::Teacher && teacher.value("obtain", "train") != "train")
        EXPECT_EQ(json::parse(run.environment)["teacher_file"]["path"],
                  fs::absolute(teacher["file"].get<std::string>()).string());
    }
    student.erase("latency_ms");
    return student;
  };
  // The reference sweep's recipe, so that this teacher is the reference's (the same id, found in its cache).
  const json ref_recipe = {{"epochs", 3}, {"batch_size", 64}, {"lr", 0.1}};
  const auto trained = sweep("dp-trained", {{"model", "cnn_medium"}, {"recipe", ref_recipe}});
  ASSERT_FALSE(trained.empty());
  {
    kd::SqliteStore store(*dir_ + "/dp-trained/results.db", true);
    EXPECT_TRUE(store.run(teacher_id).has_value()) << "the trained teacher is not the reference sweep's";
  }
  const auto from_state = sweep("dp-pytorch", {{"model", "cnn_medium"}, {"obtain", "pytorch"}, {"file", state}});
  ASSERT_EQ(from_state.size(), trained.size());
  for (const auto& [k, v] : trained) EXPECT_DOUBLE_EQ(from_state.at(k), v) << k;
  if (!have_pkg) GTEST_SKIP() << "the export teacher: " << x.output;
  const auto from_pkg = sweep("dp-export", {{"obtain", "export"}, {"file", pkg}});
  ASSERT_EQ(from_pkg.size(), trained.size());
  EXPECT_NEAR(from_pkg.at("final.test.top1"), trained.at("final.test.top1"), 3.0);
  EXPECT_NEAR(from_pkg.at("final.test.nll"), trained.at("final.test.nll"), 0.1 * trained.at("final.test.nll") + 0.02);
}

}  // namespace
