#include "test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

#include "kd_source_dir.h"

namespace fs = std::filesystem;

namespace kd::test {

std::string make_temp_dir(const std::string& tag) {
  static std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(::getpid()));
  fs::path p = fs::temp_directory_path() /
               ("kdbench-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(rng()));
  fs::create_directories(p);
  return p.string();
}

void write_file(const std::string& path, const std::string& bytes) {
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

CommandResult run_command(const std::string& cmd) {
  std::string full = cmd + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + cmd);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int status = ::pclose(pipe);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, out};
}

std::string kdbench_bin() {
  const char* b = std::getenv("KDBENCH_BIN");
  if (b && *b) return b;
  // The test executables live in <build>/tests/, kdbench in <build>/ (ctest sets KDBENCH_BIN as well).
  return (std::filesystem::canonical("/proc/self/exe").parent_path().parent_path() / "kdbench").string();
}

std::string source_dir() {
  const char* s = std::getenv("KDBENCH_SOURCE_DIR");
  return s ? s : KDBENCH_SOURCE_DIR;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("no free port on 127.0.0.1");
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string PostgresServer::bin_dir() {
  std::error_code ec;
  std::string best;
  for (fs::directory_iterator it("/usr/lib/postgresql", ec), end; !ec && it != end; it.increment(ec))
    if (fs::exists(it->path() / "bin/initdb")) best = std::max(best, (it->path() / "bin").string());
  return best;
}

std::string PostgresServer::as_server_user(const std::string& cmd) const {
  if (user_.empty()) return cmd;
  return "runuser -u " + user_ + " -- " + cmd;
}

PostgresServer::PostgresServer() {
  const std::string bin = bin_dir();
  if (bin.empty()) throw std::runtime_error("PostgreSQL's server is not installed (scripts/setup installs it)");
  dir_ = make_temp_dir("postgres");
  if (::geteuid() == 0) {
    user_ = run_command("id -u postgres").exit_code == 0 ? "postgres" : "nobody";
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  }
  write_file(dir_ + "/pw", kPassword);
  if (!user_.empty()) run_command("chown -R " + user_ + " '" + dir_ + "'");
  auto r = run_command(as_server_user(bin + "/initdb -D '" + dir_ + "/data' -U " + kUser +
                                      " --auth=scram-sha-256 --pwfile='" + dir_ + "/pw' -E UTF8 --no-sync"));
  if (r.exit_code != 0) throw std::runtime_error("initdb failed: " + r.output);
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = free_port();
    r = run_command(as_server_user(bin + "/pg_ctl -D '" + dir_ + "/data' -l '" + dir_ +
                                   "/server.log' -w -t 60 -o \"-p " + std::to_string(port_) + " -k '" + dir_ +
                                   "' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200\" start"));
    if (r.exit_code == 0) break;
  }
  if (r.exit_code != 0) {
    std::ifstream log(dir_ + "/server.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    throw std::runtime_error("the PostgreSQL server did not start: " + r.output + "\n" + text);
  }
  create_database("kdbench");
}

PostgresServer::~PostgresServer() {
  if (port_) run_command(as_server_user(bin_dir() + "/pg_ctl -D '" + dir_ + "/data' -m immediate -w stop"));
  // (not fs::remove_all: in a binary linked with LibTorch it can resolve to the wheel's own copy, which crashes)
  run_command("rm -rf '" + dir_ + "'");
}

std::string PostgresServer::url(bool with_password, const std::string& db) const {
  return std::string("postgresql://") + kUser + (with_password ? std::string(":") + kPassword : "") +
         "@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

void PostgresServer::create_database(const std::string& name) const {
  auto r = run_command("PGPASSWORD=" + std::string(kPassword) + " createdb -h 127.0.0.1 -p " + std::to_string(port_) +
                       " -U " + kUser + " " + name);
  if (r.exit_code != 0) throw std::runtime_error("createdb " + name + " failed: " + r.output);
}

std::string PostgresServer::psql(const std::string& sql, const std::string& db) const {
  auto r = run_command("PGPASSWORD=" + std::string(kPassword) + " psql -X -At -h 127.0.0.1 -p " +
                       std::to_string(port_) + " -U " + kUser + " -d " + db + " -v ON_ERROR_STOP=1 -c \"" + sql + "\"");
  if (r.exit_code != 0) throw std::runtime_error("psql failed: " + r.output + " in: " + sql);
  return r.output;
}

}  // namespace kd::test
