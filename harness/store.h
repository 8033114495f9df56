// The results store: SQLite (WAL) at <sweep dir>/results.db. Torch-free.
//
// Schema (version 1) — reports read these tables and nothing else:
//   meta(key TEXT PRIMARY KEY, value TEXT)                       schema_version, ...
//   sweeps(id TEXT PRIMARY KEY, name TEXT, config TEXT, created_at REAL, environment TEXT)
//   runs(id TEXT PRIMARY KEY,        -- stable hash of the resolved run config
//        sweep_id TEXT, role TEXT,    -- 'teacher' | 'assistant' | 'student'
//        name TEXT,                   -- teacher/assistant name, or the method name for students
//        method TEXT,                 -- registry name of the method that trained it
//        setting TEXT,                -- JSON object of the swept hyperparameters ({} if none)
//        seed INTEGER, model TEXT, teachers TEXT,  -- teachers: JSON list of teacher run ids
//        config TEXT,                 -- resolved run config (JSON)
//        status TEXT,                 -- 'pending' | 'running' | 'done' | 'failed'
//        error TEXT,                  -- failure record JSON {epoch, step, term, message} or NULL
//        owner TEXT, heartbeat REAL,  -- process that claimed it (host:pid) and its last sign of life
//        started_at REAL, finished_at REAL, wall_seconds REAL, images_per_second REAL,
//        environment TEXT,            -- JSON: libtorch, device, threads, git_commit, host, cpu, ...
//        checkpoint TEXT,             -- path of the final checkpoint (relative to the sweep dir)
//        params INTEGER, macs INTEGER, method_params INTEGER)  -- student cost; method's own params
//   epochs(run_id TEXT, stage TEXT, epoch INTEGER, name TEXT, value REAL,
//          PRIMARY KEY(run_id, stage, epoch, name))
//        names: "loss.<term>" (mean over the epoch, unweighted), "loss.total", "train.top1",
//               "val.top1", "val.top5", "val.nll", "val.ece", "val.agreement", "lr",
//               "seconds" (this run's own step time so far), "images_per_second" (of that),
//               "teacher_seconds" (the epoch's shared teacher forward passes, once for the group),
//               "group_seconds" (the group's wall time training that epoch), "group_runs",
//               "group_data_wait_seconds" (of that, waiting for the loader), "group_eval_seconds"
//               (the group's validation pass after the epoch)
//   finals(run_id TEXT, name TEXT, value REAL, PRIMARY KEY(run_id, name))
//        names: "<which>.<split>.<metric>" with which = "final" (last epoch's weights) or
//               "bestval" (the epoch with the best val.top1, chosen on validation only),
//               split = val | test, metric = top1 | top5 | nll | ece | agreement;
//               plus "bestval.epoch".
// A run's epochs and finals are written in the same transaction that marks it 'done', so a
// finished-looking run is always complete.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace kd {

struct RunRecord {
  std::string id, sweep_id, role, name, method;
  std::string setting = "{}";  // JSON
  int64_t seed = 0;
  std::string model, teachers = "[]", config = "{}";
  std::string status = "pending";
  std::string error;  // empty = none
  std::string owner;
  double heartbeat = 0, started_at = 0, finished_at = 0, wall_seconds = 0, images_per_second = 0;
  std::string environment = "{}", checkpoint;
  int64_t params = 0, macs = 0, method_params = 0;
};

struct EpochMetric {
  std::string stage;
  int64_t epoch = 0;
  std::string name;
  double value = 0;
};

class ResultsStore {
 public:
  // Opens (creating if needed) the store at `path`. Throws std::runtime_error naming the path.
  explicit ResultsStore(const std::string& path, bool read_only = false);
  ~ResultsStore();
  ResultsStore(const ResultsStore&) = delete;
  ResultsStore& operator=(const ResultsStore&) = delete;

  const std::string& path() const { return path_; }

  void put_sweep(const std::string& id, const std::string& name, const std::string& config_json,
                 const std::string& environment_json);
  // Inserts the run as 'pending' unless a run with that id exists (then leaves it as it is).
  void add_run(const RunRecord& run);
  // Atomically claims a run for `owner` if it is pending, or running with a heartbeat older than
  // `stale_seconds` (its process died). Returns true if this caller now owns it.
  bool claim_run(const std::string& id, const std::string& owner, double stale_seconds);
  void heartbeat(const std::string& id, const std::string& owner);
  // Marks the run done with everything it produced, in one transaction.
  void finish_run(const RunRecord& run, const std::vector<EpochMetric>& epochs,
                  const std::map<std::string, double>& finals);
  // Marks the run failed with its error record (JSON) and whatever epochs it completed.
  void fail_run(const std::string& id, const std::string& error_json, const std::vector<EpochMetric>& epochs);
  // Puts a failed or stale run back to pending (used by `--retry-failed`).
  void reset_run(const std::string& id);

  std::optional<RunRecord> run(const std::string& id) const;
  std::vector<RunRecord> runs(const std::string& sweep_id = "") const;
  std::vector<EpochMetric> epochs(const std::string& run_id) const;
  std::map<std::string, double> finals(const std::string& run_id) const;
  // sweep id -> (name, config JSON, environment JSON)
  struct SweepRecord {
    std::string id, name, config, environment;
    double created_at = 0;
  };
  std::vector<SweepRecord> sweeps() const;

 private:
  void exec(const std::string& sql) const;
  std::string path_;
  sqlite3* db_ = nullptr;
};

double now_seconds();

}  // namespace kd
