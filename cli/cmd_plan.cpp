// `kdbench plan CONFIG`: validate a sweep config; list its runs and which are done.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include "cli/command.h"
#include "cli/commands.h"
#include "harness/plan.h"
#include "harness/runner.h"
#include "store/store.h"
#include "store/sweep_layout.h"

namespace fs = std::filesystem;

namespace kd::cli {
namespace {

int cmd_plan(const std::string& config, const std::string& output, const std::string& store_flag) {
  SweepConfig cfg = load_sweep_config(config);
  Plan plan = plan_sweep(cfg);
  SweepOptions opts;
  opts.output = output;
  opts.store = store_from_environment(store_flag);
  const std::string out = sweep_output_dir(cfg, opts);
  const std::string location = sweep_store_location(cfg, opts);
  std::map<std::string, std::string> status;
  if (is_store_url(location) || fs::exists(location)) {
    auto store = open_store(location, /*read_only=*/true);
    for (const auto& r : store->runs()) status[r.id] = to_string(r.status);
  }
  int done = 0;
  std::cout << fmt::format("sweep '{}' ({}): {} runs, output {}, store {}\n", cfg.name, plan.sweep_id.substr(0, 12),
                           plan.runs.size(), out, redact_store_url(location));
  std::cout << fmt::format("{:<12} {:<9} {:<8} {:<14} {:<12} {:>4}  {}\n", "run", "role", "status", "name", "model",
                           "seed", "setting");
  for (const auto& r : plan.runs) {
    std::string s = status.count(r.id) ? status[r.id] : "new";
    done += s == "done";
    std::cout << fmt::format("{:<12} {:<9} {:<8} {:<14} {:<12} {:>4}  {}\n", r.id.substr(0, 12), to_string(r.role), s,
                             r.name, r.model.empty() && r.teacher ? r.teacher->obtain : r.model, r.seed,
                             r.setting.dump());
  }
  std::cout << fmt::format("{} of {} runs done\n", done, plan.runs.size());
  return 0;
}

struct PlanArgs {
  std::string config, output, store;
};

}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND("plan", "Validate a sweep config and list its runs and what is done", 20,
                    [](CLI::App& sub) -> kd::cli::CommandRun {
                      auto a = std::make_shared<kd::cli::PlanArgs>();
                      sub.add_option("config", a->config, "Sweep config (JSON)")->required();
                      sub.add_option("-o,--output", a->output, "Output folder to check for finished runs");
                      sub.add_option("--store", a->store, "Results store URL to check (env KDBENCH_STORE)");
                      return [a] { return kd::cli::cmd_plan(a->config, a->output, a->store); };
                    });
