// `kdbench plan CONFIG`: validate a sweep config; list its runs and which are done.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "base/errors.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "harness/method_footprint.h"
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
  // The methods' own parameters and buffers (e.g. CRD's memory bank), measured on the data set's geometry; once
  // per distinct (method, settings, student, teachers), as seeds share them.
  std::optional<DataSplits> data;
  std::string no_data;
  try {
    data = open_dataset(cfg.dataset, "dataset");
  } catch (const DataError& e) {
    no_data = e.what();
  }
  std::map<std::string, std::optional<MethodFootprint>> footprints;
  auto footprint_of = [&](const RunSpec& r) -> std::optional<MethodFootprint> {
    if (!data) return std::nullopt;
    std::string key = r.method + r.params.dump() + r.model;
    for (const auto& t : r.teacher_ids) key += "|" + (plan.find(t) ? plan.find(t)->model : t);
    if (!footprints.count(key)) footprints[key] = method_footprint(r, plan, *data);
    return footprints[key];
  };
  auto mib = [](int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); };
  auto size = [](int64_t bytes) {
    if (bytes < 1024) return fmt::format("{} B", bytes);
    if (bytes < 1024 * 1024) return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / 1024.0);
    return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  };
  int done = 0;
  int64_t total_bytes = 0, largest = 0;
  std::string largest_run;
  std::cout << fmt::format("sweep '{}' ({}): {} runs, output {}, store {}\n", cfg.name, plan.sweep_id.substr(0, 12),
                           plan.runs.size(), out, redact_store_url(location));
  std::cout << fmt::format("{:<12} {:<9} {:<8} {:<14} {:<12} {:>4} {:>12} {:>10}  {}\n", "run", "role", "status",
                           "name", "model", "seed", "method par.", "buffers", "setting");
  for (const auto& r : plan.runs) {
    std::string s = status.count(r.id) ? status[r.id] : "new";
    done += s == "done";
    std::string params = "-", buffers = "-";
    if (auto f = footprint_of(r)) {
      params = std::to_string(f->parameters);
      buffers = size(f->buffer_bytes);
      total_bytes += f->bytes;
      if (f->bytes > largest) {
        largest = f->bytes;
        largest_run = r.name + " (" + r.model + ")";
      }
    }
    std::cout << fmt::format("{:<12} {:<9} {:<8} {:<14} {:<12} {:>4} {:>12} {:>10}  {}\n", r.id.substr(0, 12),
                             to_string(r.role), s, r.name, r.model.empty() && r.teacher ? r.teacher->obtain : r.model,
                             r.seed, params, buffers, r.setting.dump());
  }
  std::cout << fmt::format("{} of {} runs done\n", done, plan.runs.size());
  if (data) {
    std::cout << fmt::format(
        "methods' own modules (parameters and buffers such as memory banks): {:.1f} MiB over all runs, at most "
        "{:.1f} MiB for one run{}; a lockstep group holds those of its runs while it trains\n",
        mib(total_bytes), mib(largest), largest_run.empty() ? "" : " (" + largest_run + ")");
  } else {
    std::cout << "methods' own parameters and buffers: not measured, the data set is not there (" << no_data << ")\n";
  }
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
