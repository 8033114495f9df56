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
}  // namespace kd::test
