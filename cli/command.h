// The commands of kdbench. Each command is one cli/cmd_<name>.cpp ending with KD_REGISTER_COMMAND, as a
// method is one methods/<name>.cpp: main.cpp lists no command by hand. A command's `setup` adds its options
// and arguments to its CLI11 subcommand (binding them to variables it owns) and returns the function that
// runs it, which returns the exit code (0 success, 2 config error, 3 data error, 4 a sweep with failed runs).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace kd::cli {

using CommandRun = std::function<int()>;

struct Command {
  std::string name;
  std::string description;
  int order = 0;  // position in --help (lower first)
  std::function<CommandRun(CLI::App& sub)> setup;
};

// What a reading command (runs, report) reads: DIR, else --store, else KDBENCH_STORE. Throws ConfigError
// when none is given.
std::string where_of(const std::string& dir, const std::string& store_flag);

// Every registered command, in help order. A duplicate name throws at start-up.
std::vector<Command>& commands();
void add_command(Command c);

namespace detail {
struct CommandRegistrar {
  explicit CommandRegistrar(Command c) { add_command(std::move(c)); }
};
}  // namespace detail

}  // namespace kd::cli

#define KD_COMMAND_CONCAT_INNER(a, b) a##b
#define KD_COMMAND_CONCAT(a, b) KD_COMMAND_CONCAT_INNER(a, b)
// KD_REGISTER_COMMAND("name", "description", order, setup) at the end of cli/cmd_<name>.cpp.
#define KD_REGISTER_COMMAND(name, description, order, setup)          \
  static const ::kd::cli::detail::CommandRegistrar KD_COMMAND_CONCAT( \
      kd_command_registrar_, __COUNTER__)(::kd::cli::Command{name, description, order, setup})
