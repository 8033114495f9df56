#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

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
  return b ? b : KDBENCH_BIN_DEFAULT;
}

std::string source_dir() {
  const char* s = std::getenv("KDBENCH_SOURCE_DIR");
  return s ? s : KDBENCH_SOURCE_DIR;
}

}  // namespace kd::test
