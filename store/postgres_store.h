// The PostgreSQL backend of the results store (libpq): one database that workers on many machines share.
// Torch-free.
//
// The tables are those of the SQLite backend (store/store.h), with PostgreSQL types, plus
//   runs.seq / epochs.seq  BIGSERIAL   insertion order (SQLite's rowid)
//   run_events(seq BIGSERIAL, run_id TEXT, owner TEXT, event TEXT, at DOUBLE PRECISION)
//        event: 'claim' | 'reclaim' (a run whose owner stopped heartbeating) | 'finish' | 'fail' |
//               'discard' (a result offered by a process that no longer owned the run: not recorded)
//        an append-only log: "was anything run twice?" is
//        SELECT run_id, count(*) FROM run_events WHERE event='finish' GROUP BY run_id HAVING count(*) > 1
//
// Claims are one UPDATE ... WHERE status='pending' OR (running AND heartbeat older than the stale limit)
// RETURNING: PostgreSQL re-checks the WHERE clause on the row it locked, so two workers never both win.
// Heartbeats and the stale test use the server's clock (workers' clocks may disagree). A run is finished or
// failed only by the process that owns it while it is still running, in one transaction with its metrics.
//
// Credentials: the URL (postgresql://user[:password]@host:port/db), PGPASSWORD, ~/.pgpass or libpq's other
// environment variables (PGHOST, PGUSER, ...). path() and every message carry the URL without its password.
#pragma once
#include <mutex>
#include <string>

#include "store/store.h"

struct pg_conn;
struct pg_result;

namespace kd {

class PostgresStore final : public ResultsStore {
 public:
  // Connects to `url` and creates the tables if they are missing. Throws std::runtime_error naming the URL
  // (without its password) and libpq's reason.
  explicit PostgresStore(const std::string& url, bool read_only = false);
  ~PostgresStore() override;
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

  const std::string& path() const override { return shown_url_; }
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
  bool spans_hosts() const override { return true; }

  // A query's result (libpq's, cleared when it goes).
  class Result;

 private:
  // Runs `sql` with text parameters ($1, $2, ...); an empty optional is NULL. Reconnects once if the
  // connection was lost outside a transaction. Throws naming the URL and the server's message.
  Result query(const std::string& sql, const std::vector<std::optional<std::string>>& params = {}) const;
  void exec(const std::string& sql) const;
  void connect() const;
  void create_schema();
  // BEGIN ... COMMIT around `body`; ROLLBACK if it throws.
  template <typename Fn>
  auto in_transaction(Fn body) const;
  void write_epochs(const std::string& run_id, const std::vector<EpochMetric>& epochs) const;
  void write_finals(const std::string& run_id, const std::map<std::string, double>& finals) const;
  void log_event(const std::string& run_id, const std::string& owner, const char* event) const;

  std::string url_, shown_url_;
  bool read_only_ = false;
  mutable pg_conn* conn_ = nullptr;
  mutable bool in_tx_ = false;
  mutable std::recursive_mutex mu_;  // one connection, used by the training thread and the heartbeat thread
};

}  // namespace kd
