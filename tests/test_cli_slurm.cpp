// The Slurm array job that `kdbench slurm` writes, run on a real single-node Slurm (Debian's munged, slurmctld
// and slurmd, configured in a temporary folder by scripts/local-slurm) against a real PostgreSQL server: the
// sweep completes in the store, every run finished exactly once, by more than one array task.
// About 30 seconds.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "store/store.h"
#include "test_util.h"

namespace fs = std::filesystem;
using kd::test::PostgresServer;
using nlohmann::json;

namespace {

const char* kSweep = R"({
  "name": "slurm",
  "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 1024, "test_size": 256, "image_size": 16,
              "channels": 1, "seed": 3},
  "student": "cnn_tiny", "seeds": [0, 1, 2], "threads": 1,
  "teachers": {"t": {"model": "cnn_medium"}},
  "recipe": {"epochs": 2, "batch_size": 64, "lr": 0.1},
  "lockstep": 2,
  "methods": [{"method": "baseline"}, {"method": "logit_kd", "grid": {"temperature": [2, 4]}}],
  "report": false
})";

struct LocalSlurm {
  explicit LocalSlurm(const std::string& dir) : dir_(dir) {
    auto r = kd::test::run_command(kd::test::source_dir() + "/scripts/local-slurm start " + dir_);
    if (r.exit_code != 0) throw std::runtime_error("local Slurm did not start: " + r.output);
    conf_ = dir_ + "/slurm.conf";
  }
  ~LocalSlurm() { kd::test::run_command(kd::test::source_dir() + "/scripts/local-slurm stop " + dir_); }
  std::string env() const { return "SLURM_CONF=" + conf_; }
  std::string dir_, conf_;
};

TEST(Slurm, ArrayJobOfWorkersCompletesTheSweepInPostgres) {
  const std::string dir = kd::test::make_temp_dir("slurm");
  PostgresServer pg;
  LocalSlurm slurm(dir + "/slurm");
  json j = json::parse(kSweep);
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  kd::test::write_file(dir + "/sweep.json", j.dump(2));
  const std::string pgpw = std::string("PGPASSWORD=") + PostgresServer::kPassword;

  // The job file kdbench writes, submitted with sbatch (the tasks inherit PGPASSWORD from the submitter).
  auto r = kd::test::run_command(slurm.env() + " " + pgpw + " " + kd::test::kdbench_bin() + " slurm " + dir +
                                 "/sweep.json --workers 3 --cpus-per-task 1 --time 00:20:00 --store " + pg.url(false) +
                                 " --submit");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_NE(r.output.find("Submitted batch job"), std::string::npos) << r.output;

  // Until the array has left the queue (or ten minutes).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  std::string queue;
  do {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    queue = kd::test::run_command(slurm.env() + " squeue -h -n kdbench-slurm").output;
  } while (!queue.empty() && std::chrono::steady_clock::now() < deadline);
  ASSERT_TRUE(queue.empty()) << "still queued after 10 minutes:\n" << queue;

  std::string logs;
  for (const auto& e : fs::directory_iterator(dir + "/out/slurm"))
    if (e.path().extension() == ".out") {
      std::ifstream in(e.path());
      logs += e.path().string() + ":\n" + std::string(std::istreambuf_iterator<char>(in), {}) + "\n";
    }
  // The tasks' logs are where the job file's (shell-quoted) #SBATCH --output put them: sbatch read the quotes.
  EXPECT_FALSE(logs.empty()) << "no task log in " << dir << "/out/slurm";
  auto store = kd::open_store(pg.url(true), true);
  auto runs = store->runs();
  ASSERT_EQ(runs.size(), 10u) << logs;  // 1 teacher + 3 settings x 3 seeds
  for (const auto& run : runs) EXPECT_EQ(run.status, kd::RunStatus::Done) << run.id << "\n" << logs;
  EXPECT_EQ(pg.psql("SELECT count(*) FROM (SELECT run_id FROM run_events WHERE event='finish' GROUP BY run_id "
                    "HAVING count(*) = 1) t"),
            "10\n");
  EXPECT_EQ(pg.psql("SELECT count(*) FROM run_events WHERE event='finish'"), "10\n");
  // Each array task recorded its index.
  std::set<int> workers;
  for (const auto& run : runs) workers.insert(json::parse(run.environment).value("worker_index", -1));
  EXPECT_GE(workers.size(), 2u) << "the array's tasks shared the sweep\n" << logs;
  EXPECT_EQ(workers.count(-1), 0u);
}

}  // namespace
