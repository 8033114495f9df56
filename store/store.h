// The results store: one interface (ResultsStore), backends behind it: SQLite (WAL) at
// <sweep dir>/results.db by default (SqliteStore), or a PostgreSQL database that workers on many machines
// share (store/postgres_store.h). open_store() picks the backend from the location. Torch-free.
//
// Schema (version 2) — reports read these tables and nothing else:
//   meta(key TEXT PRIMARY KEY, value TEXT)                       schema_version, ...
//   sweeps(id TEXT PRIMARY KEY, name TEXT, config TEXT, created_at REAL, environment TEXT)
//   runs(id TEXT PRIMARY KEY,        -- stable hash of the resolved run config
//        sweep_id TEXT, role TEXT,    -- 'teacher' | 'assistant' | 'student'
//        name TEXT,                   -- teacher/assistant name, or the method name for students
//        reference INTEGER,           -- 1: a student of the method that declared itself the reference
//                                     --    (the from-scratch student gains are measured against)
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

// A run's part in a sweep, and where it stands. Stored as their lower-case names.
enum class RunRole { Teacher, Assistant, Student };
enum class RunStatus { Pending, Running, Done, Failed };
const char* to_string(RunRole r);
const char* to_string(RunStatus s);
// Throws std::runtime_error naming the value for an unknown name.
RunRole parse_role(const std::string& s);
RunStatus parse_status(const std::string& s);
// Finished: done or failed (nothing more will happen to it unless it is reset).
inline bool is_finished(RunStatus s) {
  return s == RunStatus::Done || s == RunStatus::Failed;
}

struct RunRecord {
  std::string id, sweep_id;
  RunRole role = RunRole::Student;
  std::string name, method;
  bool reference = false;
  std::string setting = "{}";  // JSON
  int64_t seed = 0;
  std::string model, teachers = "[]", config = "{}";
  RunStatus status = RunStatus::Pending;
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

struct SweepRecord {
  std::string id, name, config, environment;
  double created_at = 0;
};

// What every backend provides. Every write is atomic: a reader never sees a run half-finished.
class ResultsStore {
 public:
  virtual ~ResultsStore() = default;
  // Where the store is, for messages (a file path, or a URL without its password).
  virtual const std::string& path() const = 0;

  virtual void put_sweep(const std::string& id, const std::string& name, const std::string& config_json,
                         const std::string& environment_json) = 0;
  // Inserts the run as pending unless a run with that id exists (then leaves it as it is).
  virtual void add_run(const RunRecord& run) = 0;
  // Atomically claims a run for `owner` if it is pending, or running with a heartbeat older than
  // `stale_seconds` (its process died or lost its connection). Returns true if this caller now owns it.
  virtual bool claim_run(const std::string& id, const std::string& owner, double stale_seconds) = 0;
  // Renews the owner's claim; false if `owner` no longer owns the running run (it was claimed again).
  virtual bool heartbeat(const std::string& id, const std::string& owner) = 0;
  // Marks the run done with everything it produced, in one transaction; `run.owner`, when not empty, must
  // still own the running run, else nothing is written and it returns false (a run is recorded once).
  virtual bool finish_run(const RunRecord& run, const std::vector<EpochMetric>& epochs,
                          const std::map<std::string, double>& finals) = 0;
  // Marks the run failed with its error record (JSON) and whatever epochs it completed; `owner`, when not
  // empty, must still own it (as for finish_run).
  virtual bool fail_run(const std::string& id, const std::string& owner, const std::string& error_json,
                        const std::vector<EpochMetric>& epochs) = 0;
  // Puts a failed or stale run back to pending (used by `--retry-failed`).
  virtual void reset_run(const std::string& id) = 0;
  // Writes a run exactly as given (status, times, owner and all) with its metrics, replacing a run of that
  // id that is not done (`kdbench merge`).
  virtual void import_run(const RunRecord& run, const std::vector<EpochMetric>& epochs,
                          const std::map<std::string, double>& finals) = 0;

  virtual std::optional<RunRecord> run(const std::string& id) const = 0;
  virtual std::vector<RunRecord> runs(const std::string& sweep_id = "") const = 0;
  virtual std::vector<EpochMetric> epochs(const std::string& run_id) const = 0;
  virtual std::map<std::string, double> finals(const std::string& run_id) const = 0;
  virtual std::vector<SweepRecord> sweeps() const = 0;
  // Whether processes on other machines may share this store (then a run's owner is judged by its
  // heartbeat only, never by a process id on this host).
  virtual bool spans_hosts() const { return false; }
};

// The SQLite backend: one file, WAL, safe for several processes on one machine.
class SqliteStore final : public ResultsStore {
 public:
  // Opens (creating if needed) the store at `path`. Throws std::runtime_error naming the path.
  explicit SqliteStore(const std::string& path, bool read_only = false);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  const std::string& path() const override { return path_; }
  void put_sweep(const std::string& id, const std::string& name, const std::string& config_json,
                 const std::string& environment_json) override;
  void add_run(const RunRecord& run) override;
  bool claim_run(const std::string& id, const std::string& owner, double stale_seconds) override;
  bool heartbeat(const std::string& id, const std::string& owner) override;
  bool finish_run(const RunRecord& run, const std::vector<EpochMetric>& epochs,
                  const std::map<std::string, double>& finals) override;
  bool fail_run(const std::string& id, const std::string& owner, const std::string& error_json,
                const std::vector<EpochMetric>& epochs) override;
  void reset_run(const std::string& id) override;
  void import_run(const RunRecord& run, const std::vector<EpochMetric>& epochs,
                  const std::map<std::string, double>& finals) override;
  std::optional<RunRecord> run(const std::string& id) const override;
  std::vector<RunRecord> runs(const std::string& sweep_id = "") const override;
  std::vector<EpochMetric> epochs(const std::string& run_id) const override;
  std::map<std::string, double> finals(const std::string& run_id) const override;
  std::vector<SweepRecord> sweeps() const override;

 private:
  void exec(const std::string& sql) const;
  void migrate();
  std::string path_;
  sqlite3* db_ = nullptr;
  std::string reference_column_ = "reference";  // an expression for stores of schema 1 opened read-only
};

// Whether `location` names a database server (postgresql://, postgres://, libpq's key=value) rather than a file.
bool is_store_url(const std::string& location);
// `location` as libpq reads it, without what libpq reads as a secret (store/store_url.h): what is shown,
// logged and stored (postgresql://user:secret@h/db -> postgresql://user@h/db). A file path comes back as it is.
std::string redact_store_url(const std::string& location);
// Opens the store at `location`: a postgresql:// URL (PostgresStore) or a file path (SqliteStore).
std::unique_ptr<ResultsStore> open_store(const std::string& location, bool read_only = false);

double now_seconds();

}  // namespace kd
