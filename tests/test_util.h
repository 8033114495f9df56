// Small helpers shared by the test suites.
#pragma once
#include <string>

namespace kd::test {
// A fresh empty directory under the system temp dir, unique per call.
std::string make_temp_dir(const std::string& tag);
// Writes bytes to a file (creating parent dirs).
void write_file(const std::string& path, const std::string& bytes);
// Runs a shell command, returns {exit code, combined stdout+stderr}.
struct CommandResult {
  int exit_code;
  std::string output;
};
CommandResult run_command(const std::string& cmd);
// Path of the kdbench CLI under test (from $KDBENCH_BIN).
std::string kdbench_bin();
std::string source_dir();

// A real PostgreSQL server (Debian's postgresql-15) for one test suite: initdb into a temporary folder,
// password authentication (user `kd`, password kPassword) on a free port of 127.0.0.1, a database `kdbench`;
// stopped and removed when it goes. initdb refuses to run as root: as root the server runs as the
// unprivileged user `postgres` (made by Debian's package) or else `nobody`.
class PostgresServer {
 public:
  static constexpr const char* kUser = "kd";
  static constexpr const char* kPassword = "pw-s3cret-9f2";
  // Where initdb is; "" when PostgreSQL's server binaries are not installed.
  static std::string bin_dir();
  PostgresServer();  // throws std::runtime_error with the server's log if it does not start
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;
  int port() const { return port_; }
  // postgresql://kd[:password]@127.0.0.1:PORT/DB
  std::string url(bool with_password = true, const std::string& db = "kdbench") const;
  // A new empty database (name) on this server.
  void create_database(const std::string& name) const;
  // psql -At -c SQL on `db`: the rows, '|'-separated; throws with psql's output if it fails.
  std::string psql(const std::string& sql, const std::string& db = "kdbench") const;

 private:
  std::string as_server_user(const std::string& cmd) const;
  std::string dir_, user_;
  int port_ = 0;
};

// A TCP port of 127.0.0.1 nothing listens on now.
int free_port();
}  // namespace kd::test
