#include "store/store.h"

#include <sqlite3.h>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <thread>

#include "base/fsutil.h"
#include "store/postgres_store.h"

namespace kd {
namespace {

constexpr int kSchemaVersion = 2;

const char* kSchema = R"SQL(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sweeps(id TEXT PRIMARY KEY, name TEXT, config TEXT, created_at REAL, environment TEXT);
CREATE TABLE IF NOT EXISTS runs(
  id TEXT PRIMARY KEY, sweep_id TEXT, role TEXT, name TEXT, method TEXT, setting TEXT, seed INTEGER,
  model TEXT, teachers TEXT, config TEXT, status TEXT, error TEXT, owner TEXT, heartbeat REAL,
  started_at REAL, finished_at REAL, wall_seconds REAL, images_per_second REAL, environment TEXT,
  checkpoint TEXT, params INTEGER, macs INTEGER, method_params INTEGER, reference INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs(sweep_id);
CREATE TABLE IF NOT EXISTS epochs(run_id TEXT, stage TEXT, epoch INTEGER, name TEXT, value REAL,
  PRIMARY KEY(run_id, stage, epoch, name));
CREATE TABLE IF NOT EXISTS finals(run_id TEXT, name TEXT, value REAL, PRIMARY KEY(run_id, name));
)SQL";

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql, const std::string& path) : db_(db), path_(path) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st_, nullptr) != SQLITE_OK)
      throw std::runtime_error(path + ": SQL error: " + sqlite3_errmsg(db) + " in: " + sql);
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(st_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, double v) {
    sqlite3_bind_double(st_, i, v);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(st_, i);
    return *this;
  }
  // Returns true while a row is available.
  bool step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw std::runtime_error(path_ + ": results store: " + sqlite3_errmsg(db_));
  }
  void reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  std::string text(int c) const {
    auto* p = sqlite3_column_text(st_, c);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  double real(int c) const { return sqlite3_column_double(st_, c); }
  int64_t integer(int c) const { return sqlite3_column_int64(st_, c); }
  int changes() const { return sqlite3_changes(db_); }

 private:
  sqlite3* db_;
  std::string path_;
  sqlite3_stmt* st_ = nullptr;
};

// The columns read_run reads, with the expression that gives a run's reference flag last.
std::string run_columns(const std::string& reference) {
  return "id, sweep_id, role, name, method, setting, seed, model, teachers, config, status, error, owner, "
         "heartbeat, started_at, finished_at, wall_seconds, images_per_second, environment, checkpoint, params, macs, "
         "method_params, " +
         reference;
}

RunRecord read_run(const Stmt& s) {
  RunRecord r;
  r.id = s.text(0);
  r.sweep_id = s.text(1);
  r.role = parse_role(s.text(2));
  r.name = s.text(3);
  r.method = s.text(4);
  r.setting = s.text(5);
  r.seed = s.integer(6);
  r.model = s.text(7);
  r.teachers = s.text(8);
  r.config = s.text(9);
  r.status = parse_status(s.text(10));
  r.error = s.text(11);
  r.owner = s.text(12);
  r.heartbeat = s.real(13);
  r.started_at = s.real(14);
  r.finished_at = s.real(15);
  r.wall_seconds = s.real(16);
  r.images_per_second = s.real(17);
  r.environment = s.text(18);
  r.checkpoint = s.text(19);
  r.params = s.integer(20);
  r.macs = s.integer(21);
  r.method_params = s.integer(22);
  r.reference = s.integer(23) != 0;
  return r;
}

}  // namespace

const char* to_string(RunRole r) {
  switch (r) {
    case RunRole::Teacher:
      return "teacher";
    case RunRole::Assistant:
      return "assistant";
    case RunRole::Student:
      return "student";
  }
  return "?";
}
const char* to_string(RunStatus s) {
  switch (s) {
    case RunStatus::Pending:
      return "pending";
    case RunStatus::Running:
      return "running";
    case RunStatus::Done:
      return "done";
    case RunStatus::Failed:
      return "failed";
  }
  return "?";
}
RunRole parse_role(const std::string& s) {
  for (auto r : {RunRole::Teacher, RunRole::Assistant, RunRole::Student})
    if (s == to_string(r)) return r;
  throw std::runtime_error("results store: unknown run role '" + s + "'");
}
RunStatus parse_status(const std::string& s) {
  for (auto v : {RunStatus::Pending, RunStatus::Running, RunStatus::Done, RunStatus::Failed})
    if (s == to_string(v)) return v;
  throw std::runtime_error("results store: unknown run status '" + s + "'");
}

std::unique_ptr<ResultsStore> open_store(const std::string& location, bool read_only) {
  if (is_store_url(location)) return std::make_unique<PostgresStore>(location, read_only);
  return std::make_unique<SqliteStore>(location, read_only);
}

double now_seconds() {
  using namespace std::chrono;
  return duration_cast<duration<double>>(system_clock::now().time_since_epoch()).count();
}

SqliteStore::SqliteStore(const std::string& path, bool read_only) : path_(path) {
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error(path + ": cannot open results store: " + msg);
  }
  // Several processes may share one store: wait for locks instead of failing at once.
  sqlite3_busy_timeout(db_, 60000);
  try {
    if (!read_only) {
      exec("PRAGMA journal_mode=WAL");
      exec("PRAGMA synchronous=NORMAL");
      exec("BEGIN IMMEDIATE");
      exec(kSchema);
      exec("INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '" + std::to_string(kSchemaVersion) + "')");
      migrate();
      exec("COMMIT");
    }
    Stmt s(db_, "SELECT value FROM meta WHERE key='schema_version'", path_);
    if (!s.step()) throw std::runtime_error(path + ": not a kdbench results store (no schema_version)");
    if (read_only && s.text(0) == "1") {
      // Schema 1 had no reference column; its one reference method was called "baseline".
      reference_column_ = "(role='student' AND method='baseline')";
    } else if (s.text(0) != std::to_string(kSchemaVersion)) {
      throw std::runtime_error(path + ": results store schema version " + s.text(0) + ", this kdbench reads " +
                               std::to_string(kSchemaVersion));
    }
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

SqliteStore::~SqliteStore() {
  if (db_) sqlite3_close(db_);
}

// Schema 1 -> 2: the reference flag. Schema 1's one reference method was called "baseline".
void SqliteStore::migrate() {
  Stmt s(db_, "SELECT value FROM meta WHERE key='schema_version'", path_);
  if (!s.step() || s.text(0) != "1") return;
  exec("ALTER TABLE runs ADD COLUMN reference INTEGER NOT NULL DEFAULT 0");
  exec("UPDATE runs SET reference=1 WHERE role='student' AND method='baseline'");
  exec("UPDATE meta SET value='" + std::to_string(kSchemaVersion) + "' WHERE key='schema_version'");
}

void SqliteStore::exec(const std::string& sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw std::runtime_error(path_ + ": results store: " + msg);
  }
}

namespace {
// BEGIN IMMEDIATE ... COMMIT, rolled back if anything throws.
class Transaction {
 public:
  explicit Transaction(const std::function<void(const std::string&)>& exec) : exec_(exec) { exec_("BEGIN IMMEDIATE"); }
  void commit() {
    exec_("COMMIT");
    done_ = true;
  }
  ~Transaction() {
    if (!done_) {
      try {
        exec_("ROLLBACK");
      } catch (...) {
      }
    }
  }

 private:
  std::function<void(const std::string&)> exec_;
  bool done_ = false;
};
}  // namespace

void SqliteStore::put_sweep(const std::string& id, const std::string& name, const std::string& config_json,
                            const std::string& environment_json) {
  Stmt s(db_,
         "INSERT INTO sweeps(id, name, config, created_at, environment) VALUES(?,?,?,?,?) "
         "ON CONFLICT(id) DO UPDATE SET environment=excluded.environment",
         path_);
  s.bind(1, id).bind(2, name).bind(3, config_json).bind(4, now_seconds()).bind(5, environment_json);
  s.step();
}

void SqliteStore::add_run(const RunRecord& r) {
  Stmt s(db_,
         "INSERT OR IGNORE INTO runs(id, sweep_id, role, name, method, setting, seed, model, teachers, config, "
         "status, params, macs, method_params, reference) VALUES(?,?,?,?,?,?,?,?,?,?,'pending',?,?,?,?)",
         path_);
  s.bind(1, r.id).bind(2, r.sweep_id).bind(3, std::string(to_string(r.role))).bind(4, r.name).bind(5, r.method);
  s.bind(6, r.setting).bind(7, r.seed).bind(8, r.model).bind(9, r.teachers).bind(10, r.config);
  s.bind(11, r.params).bind(12, r.macs).bind(13, r.method_params).bind(14, int64_t{r.reference ? 1 : 0});
  s.step();
}

bool SqliteStore::claim_run(const std::string& id, const std::string& owner, double stale_seconds) {
  double now = now_seconds();
  Stmt s(db_,
         "UPDATE runs SET status='running', owner=?, heartbeat=?, started_at=?, error=NULL WHERE id=? AND "
         "(status='pending' OR (status='running' AND (heartbeat IS NULL OR heartbeat < ?)))",
         path_);
  s.bind(1, owner).bind(2, now).bind(3, now).bind(4, id).bind(5, now - stale_seconds);
  s.step();
  return s.changes() == 1;
}

bool SqliteStore::heartbeat(const std::string& id, const std::string& owner) {
  Stmt s(db_, "UPDATE runs SET heartbeat=? WHERE id=? AND owner=? AND status='running'", path_);
  s.bind(1, now_seconds()).bind(2, id).bind(3, owner);
  s.step();
  return s.changes() == 1;
}

namespace {
void write_epochs(sqlite3* db, const std::string& path, const std::string& run_id,
                  const std::vector<EpochMetric>& epochs) {
  Stmt del(db, "DELETE FROM epochs WHERE run_id=?", path);
  del.bind(1, run_id);
  del.step();
  Stmt ins(db, "INSERT OR REPLACE INTO epochs(run_id, stage, epoch, name, value) VALUES(?,?,?,?,?)", path);
  for (const auto& e : epochs) {
    ins.reset();
    ins.bind(1, run_id).bind(2, e.stage).bind(3, e.epoch).bind(4, e.name).bind(5, e.value);
    ins.step();
  }
}
}  // namespace

bool SqliteStore::finish_run(const RunRecord& r, const std::vector<EpochMetric>& epochs,
                             const std::map<std::string, double>& finals) {
  Transaction tx([this](const std::string& sql) { exec(sql); });
  if (!r.owner.empty()) {
    Stmt own(db_, "SELECT 1 FROM runs WHERE id=? AND owner=? AND status='running'", path_);
    own.bind(1, r.id).bind(2, r.owner);
    if (!own.step()) return false;  // claimed again by another process: its result is the one recorded
  }
  write_epochs(db_, path_, r.id, epochs);
  Stmt del(db_, "DELETE FROM finals WHERE run_id=?", path_);
  del.bind(1, r.id);
  del.step();
  Stmt ins(db_, "INSERT INTO finals(run_id, name, value) VALUES(?,?,?)", path_);
  for (const auto& [name, value] : finals) {
    ins.reset();
    ins.bind(1, r.id).bind(2, name).bind(3, value);
    ins.step();
  }
  Stmt up(db_,
          "UPDATE runs SET status='done', error=NULL, finished_at=?, wall_seconds=?, images_per_second=?, "
          "environment=?, checkpoint=?, params=?, macs=?, method_params=? WHERE id=?",
          path_);
  up.bind(1, now_seconds()).bind(2, r.wall_seconds).bind(3, r.images_per_second).bind(4, r.environment);
  up.bind(5, r.checkpoint).bind(6, r.params).bind(7, r.macs).bind(8, r.method_params).bind(9, r.id);
  up.step();
  if (up.changes() != 1) throw std::runtime_error(path_ + ": run " + r.id + " is not in the store");
  crash_point("store_commit");
  tx.commit();
  return true;
}

bool SqliteStore::fail_run(const std::string& id, const std::string& owner, const std::string& error_json,
                           const std::vector<EpochMetric>& epochs) {
  Transaction tx([this](const std::string& sql) { exec(sql); });
  if (!owner.empty()) {
    Stmt own(db_, "SELECT 1 FROM runs WHERE id=? AND owner=? AND status='running'", path_);
    own.bind(1, id).bind(2, owner);
    if (!own.step()) return false;
  }
  write_epochs(db_, path_, id, epochs);
  Stmt up(db_, "UPDATE runs SET status='failed', error=?, finished_at=? WHERE id=?", path_);
  up.bind(1, error_json).bind(2, now_seconds()).bind(3, id);
  up.step();
  tx.commit();
  return true;
}

void SqliteStore::import_run(const RunRecord& r, const std::vector<EpochMetric>& epochs,
                             const std::map<std::string, double>& finals) {
  Transaction tx([this](const std::string& sql) { exec(sql); });
  Stmt done(db_, "SELECT 1 FROM runs WHERE id=? AND status='done'", path_);
  done.bind(1, r.id);
  if (done.step()) return;  // a finished run is never replaced
  Stmt del(db_, "DELETE FROM runs WHERE id=?", path_);
  del.bind(1, r.id);
  del.step();
  Stmt ins(db_,
           "INSERT INTO runs(id, sweep_id, role, name, method, setting, seed, model, teachers, config, status, error, "
           "owner, heartbeat, started_at, finished_at, wall_seconds, images_per_second, environment, checkpoint, "
           "params, macs, method_params, reference) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
           path_);
  ins.bind(1, r.id).bind(2, r.sweep_id).bind(3, std::string(to_string(r.role))).bind(4, r.name).bind(5, r.method);
  ins.bind(6, r.setting).bind(7, r.seed).bind(8, r.model).bind(9, r.teachers).bind(10, r.config);
  ins.bind(11, std::string(to_string(r.status)));
  if (r.error.empty()) {
    ins.bind_null(12);
  } else {
    ins.bind(12, r.error);
  }
  ins.bind(13, r.owner).bind(14, r.heartbeat).bind(15, r.started_at).bind(16, r.finished_at);
  ins.bind(17, r.wall_seconds).bind(18, r.images_per_second).bind(19, r.environment).bind(20, r.checkpoint);
  ins.bind(21, r.params).bind(22, r.macs).bind(23, r.method_params).bind(24, int64_t{r.reference ? 1 : 0});
  ins.step();
  write_epochs(db_, path_, r.id, epochs);
  Stmt delf(db_, "DELETE FROM finals WHERE run_id=?", path_);
  delf.bind(1, r.id);
  delf.step();
  Stmt insf(db_, "INSERT INTO finals(run_id, name, value) VALUES(?,?,?)", path_);
  for (const auto& [name, value] : finals) {
    insf.reset();
    insf.bind(1, r.id).bind(2, name).bind(3, value);
    insf.step();
  }
  tx.commit();
}

void SqliteStore::reset_run(const std::string& id) {
  Stmt up(db_, "UPDATE runs SET status='pending', owner=NULL, heartbeat=NULL, error=NULL WHERE id=? AND status!='done'",
          path_);
  up.bind(1, id);
  up.step();
}

std::optional<RunRecord> SqliteStore::run(const std::string& id) const {
  Stmt s(db_, "SELECT " + run_columns(reference_column_) + " FROM runs WHERE id=?", path_);
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return read_run(s);
}

std::vector<RunRecord> SqliteStore::runs(const std::string& sweep_id) const {
  std::string sql = "SELECT " + run_columns(reference_column_) + " FROM runs";
  if (!sweep_id.empty()) sql += " WHERE sweep_id=?";
  sql += " ORDER BY rowid";
  Stmt s(db_, sql, path_);
  if (!sweep_id.empty()) s.bind(1, sweep_id);
  std::vector<RunRecord> out;
  while (s.step()) out.push_back(read_run(s));
  return out;
}

std::vector<EpochMetric> SqliteStore::epochs(const std::string& run_id) const {
  Stmt s(db_, "SELECT stage, epoch, name, value FROM epochs WHERE run_id=? ORDER BY rowid", path_);
  s.bind(1, run_id);
  std::vector<EpochMetric> out;
  while (s.step()) out.push_back({s.text(0), s.integer(1), s.text(2), s.real(3)});
  return out;
}

std::map<std::string, double> SqliteStore::finals(const std::string& run_id) const {
  Stmt s(db_, "SELECT name, value FROM finals WHERE run_id=?", path_);
  s.bind(1, run_id);
  std::map<std::string, double> out;
  while (s.step()) out[s.text(0)] = s.real(1);
  return out;
}

std::vector<SweepRecord> SqliteStore::sweeps() const {
  Stmt s(db_, "SELECT id, name, config, environment, created_at FROM sweeps ORDER BY created_at", path_);
  std::vector<SweepRecord> out;
  while (s.step()) out.push_back({s.text(0), s.text(1), s.text(2), s.text(3), s.real(4)});
  return out;
}

}  // namespace kd
