#include "store/postgres_store.h"

#include <libpq-fe.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "base/errors.h"
#include "base/fsutil.h"
#include "store/store_url.h"

namespace kd {
namespace {

constexpr int kPgSchemaVersion = 2;  // the same tables and meanings as the SQLite backend's schema 2

// Created under an advisory lock: workers that start together would otherwise race on CREATE TABLE.
const char* kPgSchema = R"SQL(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sweeps(id TEXT PRIMARY KEY, name TEXT, config TEXT, created_at DOUBLE PRECISION,
  environment TEXT);
CREATE TABLE IF NOT EXISTS runs(
  seq BIGSERIAL, id TEXT PRIMARY KEY, sweep_id TEXT, role TEXT, name TEXT, method TEXT, setting TEXT, seed BIGINT,
  model TEXT, teachers TEXT, config TEXT, status TEXT, error TEXT, owner TEXT, heartbeat DOUBLE PRECISION,
  started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, wall_seconds DOUBLE PRECISION,
  images_per_second DOUBLE PRECISION, environment TEXT, checkpoint TEXT, params BIGINT, macs BIGINT,
  method_params BIGINT, reference INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs(sweep_id);
CREATE TABLE IF NOT EXISTS epochs(seq BIGSERIAL, run_id TEXT, stage TEXT, epoch BIGINT, name TEXT,
  value DOUBLE PRECISION, PRIMARY KEY(run_id, stage, epoch, name));
CREATE TABLE IF NOT EXISTS finals(run_id TEXT, name TEXT, value DOUBLE PRECISION, PRIMARY KEY(run_id, name));
CREATE TABLE IF NOT EXISTS run_events(seq BIGSERIAL PRIMARY KEY, run_id TEXT, owner TEXT, event TEXT,
  at DOUBLE PRECISION);
)SQL";

// The server's clock in seconds since the epoch (heartbeats and stale tests use it, not the workers').
const char* kNow = "extract(epoch from clock_timestamp())";

const char* kRunColumns =
    "id, sweep_id, role, name, method, setting, seed, model, teachers, config, status, error, owner, heartbeat, "
    "started_at, finished_at, wall_seconds, images_per_second, environment, checkpoint, params, macs, "
    "method_params, reference";

std::string number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
std::string number(int64_t v) {
  return std::to_string(v);
}

}  // namespace

// A query result that clears itself.
class PostgresStore::Result {
 public:
  explicit Result(pg_result* r) : r_(r) {}
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  ~Result() {
    if (r_) PQclear(r_);
  }
  int rows() const { return PQntuples(r_); }
  std::string text(int row, int col) const {
    return PQgetisnull(r_, row, col) ? std::string() : std::string(PQgetvalue(r_, row, col));
  }
  double real(int row, int col) const {
    return PQgetisnull(r_, row, col) ? 0.0 : std::strtod(PQgetvalue(r_, row, col), nullptr);
  }
  int64_t integer(int row, int col) const {
    return PQgetisnull(r_, row, col) ? 0 : std::strtoll(PQgetvalue(r_, row, col), nullptr, 10);
  }
  ExecStatusType status() const { return r_ ? PQresultStatus(r_) : PGRES_FATAL_ERROR; }
  std::string error() const { return r_ ? PQresultErrorMessage(r_) : ""; }
  int affected() const {
    const char* n = PQcmdTuples(r_);
    return n && *n ? std::atoi(n) : 0;
  }

 private:
  pg_result* r_;
};

template <typename Fn>
auto PostgresStore::in_transaction(Fn body) const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  exec("BEGIN");
  in_tx_ = true;
  try {
    auto out = body();
    exec("COMMIT");
    in_tx_ = false;
    return out;
  } catch (...) {
    in_tx_ = false;
    try {
      if (conn_ && PQstatus(conn_) == CONNECTION_OK) exec("ROLLBACK");
    } catch (...) {
    }
    throw;
  }
}

PostgresStore::PostgresStore(const std::string& url, bool read_only)
    : url_(url), shown_url_(redact_store_url(url)), read_only_(read_only) {
  // (libpq's own message for a string it cannot read may quote a part of it: a password)
  if (const std::string e = store_url_error(url); !e.empty())
    throw ConfigError("store", "not a connection string libpq can read: " + e);
  connect();
  if (!read_only_) create_schema();
  Result v = query("SELECT value FROM meta WHERE key='schema_version'");
  if (v.rows() != 1) throw std::runtime_error(shown_url_ + ": not a kdbench results store (no schema_version)");
  if (v.text(0, 0) != std::to_string(kPgSchemaVersion))
    throw std::runtime_error(shown_url_ + ": results store schema version " + v.text(0, 0) + ", this kdbench reads " +
                             std::to_string(kPgSchemaVersion));
}

PostgresStore::~PostgresStore() {
  if (conn_) PQfinish(conn_);
}

void PostgresStore::connect() const {
  if (conn_) PQfinish(conn_);
  conn_ = PQconnectdb(url_.c_str());
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string msg = conn_ ? PQerrorMessage(conn_) : "out of memory";
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    PQfinish(conn_);
    conn_ = nullptr;
    throw std::runtime_error(shown_url_ + ": cannot connect to the results store: " + msg);
  }
  // Notices (e.g. "relation already exists, skipping") are not errors: keep them off stderr.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  if (read_only_) exec("SET default_transaction_read_only = on");
}

void PostgresStore::create_schema() {
  in_transaction([&] {
    query("SELECT pg_advisory_xact_lock(7301885521)");  // one creator at a time
    exec(kPgSchema);
    query("INSERT INTO meta(key, value) VALUES('schema_version', $1) ON CONFLICT(key) DO NOTHING",
          {std::to_string(kPgSchemaVersion)});
    return 0;
  });
}

PostgresStore::Result PostgresStore::query(const std::string& sql,
                                           const std::vector<std::optional<std::string>>& params) const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  for (int attempt = 0;; ++attempt) {
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
      if (in_tx_) throw std::runtime_error(shown_url_ + ": results store: the connection was lost in a transaction");
      connect();
    }
    Result r(
        PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0));
    const ExecStatusType st = r.status();
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    // A connection lost between statements (server restart, network): connect again and retry once.
    if (PQstatus(conn_) != CONNECTION_OK && !in_tx_ && attempt == 0) continue;
    std::string msg = r.error();
    if (msg.empty()) msg = PQerrorMessage(conn_);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    throw std::runtime_error(shown_url_ + ": results store: " + msg);
  }
}

void PostgresStore::exec(const std::string& sql) const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) connect();
  Result r(PQexec(conn_, sql.c_str()));
  if (r.status() != PGRES_COMMAND_OK && r.status() != PGRES_TUPLES_OK) {
    std::string msg = r.error();
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    throw std::runtime_error(shown_url_ + ": results store: " + msg);
  }
}

void PostgresStore::log_event(const std::string& run_id, const std::string& owner, const char* event) const {
  query(std::string("INSERT INTO run_events(run_id, owner, event, at) VALUES($1, $2, $3, ") + kNow + ")",
        {run_id, owner, std::string(event)});
}

void PostgresStore::put_sweep(const std::string& id, const std::string& name, const std::string& config_json,
                              const std::string& environment_json) {
  query(
      "INSERT INTO sweeps(id, name, config, created_at, environment) VALUES($1, $2, $3, $4, $5) "
      "ON CONFLICT(id) DO UPDATE SET environment=excluded.environment",
      {id, name, config_json, number(now_seconds()), environment_json});
}

void PostgresStore::add_run(const RunRecord& r) {
  query(
      "INSERT INTO runs(id, sweep_id, role, name, method, setting, seed, model, teachers, config, status, params, "
      "macs, method_params, reference) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,'pending',$11,$12,$13,$14) "
      "ON CONFLICT(id) DO NOTHING",
      {r.id, r.sweep_id, std::string(to_string(r.role)), r.name, r.method, r.setting, number(r.seed), r.model,
       r.teachers, r.config, number(r.params), number(r.macs), number(r.method_params),
       std::string(r.reference ? "1" : "0")});
}

bool PostgresStore::claim_run(const std::string& id, const std::string& owner, double stale_seconds) {
  return in_transaction([&] {
    // The row is locked until COMMIT: of two workers claiming it, the second sees the first's claim.
    Result row = query(std::string("SELECT status, heartbeat IS NULL OR heartbeat < ") + kNow +
                           " - $2::double precision FROM runs WHERE id=$1 FOR UPDATE",
                       {id, number(stale_seconds)});
    if (row.rows() != 1) return false;
    const std::string status = row.text(0, 0);
    const bool stale = row.text(0, 1) == "t";
    if (status != "pending" && !(status == "running" && stale)) return false;
    query(std::string("UPDATE runs SET status='running', owner=$1, heartbeat=") + kNow + ", started_at=" + kNow +
              ", error=NULL WHERE id=$2",
          {owner, id});
    log_event(id, owner, status == "running" ? "reclaim" : "claim");
    return true;
  });
}

bool PostgresStore::heartbeat(const std::string& id, const std::string& owner) {
  Result r = query(std::string("UPDATE runs SET heartbeat=") + kNow + " WHERE id=$1 AND owner=$2 AND status='running'",
                   {id, owner});
  return r.affected() == 1;
}

void PostgresStore::write_epochs(const std::string& run_id, const std::vector<EpochMetric>& epochs) const {
  query("DELETE FROM epochs WHERE run_id=$1", {run_id});
  if (epochs.empty()) return;
  // One statement for all rows: arrays unnested in order (seq keeps that order).
  std::string stages = "{", numbers = "{", names = "{", values = "{";
  auto quote = [](const std::string& v) {
    std::string o = "\"";
    for (char c : v) {
      if (c == '"' || c == '\\') o += '\\';
      o += c;
    }
    return o + "\"";
  };
  for (size_t i = 0; i < epochs.size(); ++i) {
    const char* sep = i ? "," : "";
    stages += sep + quote(epochs[i].stage);
    numbers += sep + number(epochs[i].epoch);
    names += sep + quote(epochs[i].name);
    values += sep + number(epochs[i].value);
  }
  query(
      "INSERT INTO epochs(run_id, stage, epoch, name, value) SELECT $1, s, e, n, v FROM "
      "unnest($2::text[], $3::bigint[], $4::text[], $5::double precision[]) WITH ORDINALITY AS t(s, e, n, v, o) "
      "ORDER BY o ON CONFLICT(run_id, stage, epoch, name) DO UPDATE SET value=excluded.value",
      {run_id, stages + "}", numbers + "}", names + "}", values + "}"});
}

void PostgresStore::write_finals(const std::string& run_id, const std::map<std::string, double>& finals) const {
  query("DELETE FROM finals WHERE run_id=$1", {run_id});
  for (const auto& [name, value] : finals)
    query("INSERT INTO finals(run_id, name, value) VALUES($1, $2, $3)", {run_id, name, number(value)});
}

bool PostgresStore::finish_run(const RunRecord& r, const std::vector<EpochMetric>& epochs,
                               const std::map<std::string, double>& finals) {
  return in_transaction([&] {
    // Lock the row; with an owner given, only while that owner still holds the running run.
    Result own = r.owner.empty()
                     ? query("SELECT status FROM runs WHERE id=$1 FOR UPDATE", {r.id})
                     : query("SELECT status FROM runs WHERE id=$1 AND owner=$2 AND status='running' FOR UPDATE",
                             {r.id, r.owner});
    if (own.rows() != 1) {
      if (r.owner.empty()) throw std::runtime_error(shown_url_ + ": run " + r.id + " is not in the store");
      log_event(r.id, r.owner, "discard");
      return false;
    }
    write_epochs(r.id, epochs);
    write_finals(r.id, finals);
    query(std::string("UPDATE runs SET status='done', error=NULL, finished_at=") + kNow +
              ", wall_seconds=$1, images_per_second=$2, environment=$3, checkpoint=$4, params=$5, macs=$6, "
              "method_params=$7 WHERE id=$8",
          {number(r.wall_seconds), number(r.images_per_second), r.environment, r.checkpoint, number(r.params),
           number(r.macs), number(r.method_params), r.id});
    log_event(r.id, r.owner, "finish");
    crash_point("store_commit");
    return true;
  });
}

bool PostgresStore::fail_run(const std::string& id, const std::string& owner, const std::string& error_json,
                             const std::vector<EpochMetric>& epochs) {
  return in_transaction([&] {
    Result own =
        owner.empty()
            ? query("SELECT status FROM runs WHERE id=$1 FOR UPDATE", {id})
            : query("SELECT status FROM runs WHERE id=$1 AND owner=$2 AND status='running' FOR UPDATE", {id, owner});
    if (own.rows() != 1) return false;
    write_epochs(id, epochs);
    query(std::string("UPDATE runs SET status='failed', error=$1, finished_at=") + kNow + " WHERE id=$2",
          {error_json, id});
    log_event(id, owner, "fail");
    return true;
  });
}

void PostgresStore::reset_run(const std::string& id) {
  query("UPDATE runs SET status='pending', owner=NULL, heartbeat=NULL, error=NULL WHERE id=$1 AND status!='done'",
        {id});
}

void PostgresStore::import_run(const RunRecord& r, const std::vector<EpochMetric>& epochs,
                               const std::map<std::string, double>& finals) {
  in_transaction([&] {
    Result done = query("SELECT 1 FROM runs WHERE id=$1 AND status='done' FOR UPDATE", {r.id});
    if (done.rows() == 1) return 0;  // a finished run is never replaced
    query("DELETE FROM runs WHERE id=$1", {r.id});
    query(
        "INSERT INTO runs(id, sweep_id, role, name, method, setting, seed, model, teachers, config, status, error, "
        "owner, heartbeat, started_at, finished_at, wall_seconds, images_per_second, environment, checkpoint, "
        "params, macs, method_params, reference) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,"
        "$18,$19,$20,$21,$22,$23,$24)",
        {r.id,
         r.sweep_id,
         std::string(to_string(r.role)),
         r.name,
         r.method,
         r.setting,
         number(r.seed),
         r.model,
         r.teachers,
         r.config,
         std::string(to_string(r.status)),
         r.error.empty() ? std::nullopt : std::optional<std::string>(r.error),
         r.owner,
         number(r.heartbeat),
         number(r.started_at),
         number(r.finished_at),
         number(r.wall_seconds),
         number(r.images_per_second),
         r.environment,
         r.checkpoint,
         number(r.params),
         number(r.macs),
         number(r.method_params),
         std::string(r.reference ? "1" : "0")});
    write_epochs(r.id, epochs);
    write_finals(r.id, finals);
    return 0;
  });
}

namespace {
RunRecord read_run(const PostgresStore::Result& s, int i) {
  RunRecord r;
  r.id = s.text(i, 0);
  r.sweep_id = s.text(i, 1);
  r.role = parse_role(s.text(i, 2));
  r.name = s.text(i, 3);
  r.method = s.text(i, 4);
  r.setting = s.text(i, 5);
  r.seed = s.integer(i, 6);
  r.model = s.text(i, 7);
  r.teachers = s.text(i, 8);
  r.config = s.text(i, 9);
  r.status = parse_status(s.text(i, 10));
  r.error = s.text(i, 11);
  r.owner = s.text(i, 12);
  r.heartbeat = s.real(i, 13);
  r.started_at = s.real(i, 14);
  r.finished_at = s.real(i, 15);
  r.wall_seconds = s.real(i, 16);
  r.images_per_second = s.real(i, 17);
  r.environment = s.text(i, 18);
  r.checkpoint = s.text(i, 19);
  r.params = s.integer(i, 20);
  r.macs = s.integer(i, 21);
  r.method_params = s.integer(i, 22);
  r.reference = s.integer(i, 23) != 0;
  return r;
}
}  // namespace

std::optional<RunRecord> PostgresStore::run(const std::string& id) const {
  Result r = query(std::string("SELECT ") + kRunColumns + " FROM runs WHERE id=$1", {id});
  if (r.rows() != 1) return std::nullopt;
  return read_run(r, 0);
}

std::vector<RunRecord> PostgresStore::runs(const std::string& sweep_id) const {
  Result r =
      sweep_id.empty()
          ? query(std::string("SELECT ") + kRunColumns + " FROM runs ORDER BY seq")
          : query(std::string("SELECT ") + kRunColumns + " FROM runs WHERE sweep_id=$1 ORDER BY seq", {sweep_id});
  std::vector<RunRecord> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(read_run(r, i));
  return out;
}

std::vector<EpochMetric> PostgresStore::epochs(const std::string& run_id) const {
  Result r = query("SELECT stage, epoch, name, value FROM epochs WHERE run_id=$1 ORDER BY seq", {run_id});
  std::vector<EpochMetric> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({r.text(i, 0), r.integer(i, 1), r.text(i, 2), r.real(i, 3)});
  return out;
}

std::map<std::string, double> PostgresStore::finals(const std::string& run_id) const {
  Result r = query("SELECT name, value FROM finals WHERE run_id=$1", {run_id});
  std::map<std::string, double> out;
  for (int i = 0; i < r.rows(); ++i) out[r.text(i, 0)] = r.real(i, 1);
  return out;
}

std::vector<SweepRecord> PostgresStore::sweeps() const {
  Result r = query("SELECT id, name, config, environment, created_at FROM sweeps ORDER BY created_at");
  std::vector<SweepRecord> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({r.text(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3), r.real(i, 4)});
  return out;
}

}  // namespace kd
