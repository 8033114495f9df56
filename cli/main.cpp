// kdbench: the command-line interface. The commands register themselves (cli/command.h); this file
// parses the command line, runs the one that was named, and turns errors into one line and an exit code.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>

#include "base/errors.h"
#include "cli/command.h"
#include "pybridge/plugins.h"
#include "cli/commands.h"

namespace kd::cli {

std::vector<Command>& commands() {
  static std::vector<Command> all;  // function-local: no static-initialisation-order problem
  return all;
}

void add_command(Command c) {
  auto& all = commands();
  for (const auto& x : all)
    if (x.name == c.name) throw std::logic_error("command '" + c.name + "' is registered twice");
  all.push_back(std::move(c));
  std::stable_sort(all.begin(), all.end(), [](const Command& a, const Command& b) { return a.order < b.order; });
}

std::string where_of(const std::string& dir, const std::string& store_flag) {
  refuse_password_on_command_line(dir, "dir");
  refuse_password_on_command_line(store_flag, "--store");
  if (!dir.empty()) return dir;
  if (!store_flag.empty()) return store_flag;
  if (const char* env = std::getenv("KDBENCH_STORE"); env && *env) return env;
  throw kd::ConfigError("dir", "name a sweep folder, or a store with --store URL (or KDBENCH_STORE)");
}

}  // namespace kd::cli

namespace {

// An unknown subcommand fails with the list of known ones, whatever flags follow it (CLI11 would
// otherwise act on a following --help and print the main help with exit code 0).
int reject_unknown_subcommand(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return -1;
  std::vector<std::string> known;
  for (const auto& c : kd::cli::commands()) {
    known.push_back(c.name);
    if (c.name == argv[1]) return -1;
  }
  std::cerr << "kdbench: unknown command '" << argv[1] << "' (known: " << kd::join_names(known)
            << "); see kdbench --help\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kdbench: knowledge-distillation methods compared on equal footing"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("kdbench 0.1.0 (libtorch ") + KDBENCH_TORCH_VERSION + ")");
  std::map<std::string, kd::cli::CommandRun> runs;
  // The commands that read methods take Python method files (pybridge/): their methods are registered before the
  // command runs, as a config's "plugins" are. (Cluster jobs run `kdbench sweep CONFIG` on other machines: there the
  // config's "plugins" key is what names them.)
  static const std::set<std::string> kTakePlugins{"sweep", "plan", "methods", "loss"};
  std::vector<std::string> plugins;
  for (const auto& c : kd::cli::commands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    runs[c.name] = c.setup(*sub);
    if (kTakePlugins.count(c.name))
      sub->add_option("--plugin", plugins, "A Python method file (repeatable); see README, \"Write a method in Python\"");
  }

  if (int rc = reject_unknown_subcommand(argc, argv); rc >= 0) return rc;
  CLI11_PARSE(app, argc, argv);
  try {
    if (!plugins.empty()) kd::py::load_plugins(plugins, "", "--plugin");
    for (const auto* sub : app.get_subcommands()) return runs.at(sub->get_name())();
  } catch (const kd::ConfigError& e) {
    std::cerr << "kdbench: config error: " << e.what() << "\n";
    return 2;
  } catch (const kd::DataError& e) {
    std::cerr << "kdbench: data error: " << e.what() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "kdbench: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
