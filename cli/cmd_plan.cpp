// `kdbench plan CONFIG`: validate a sweep config; list its runs and which are done. With
// --target-difference D: the seeds each comparison with the student alone would need to detect a difference
// of D, from the finished sweep's spread.
#include <fmt/format.h>

#include <cmath>
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
#include "reports/aggregate.h"
#include "reports/power.h"
#include "store/store.h"
#include "store/sweep_layout.h"

namespace fs = std::filesystem;

namespace kd::cli {
namespace {

// For every method compared with the student alone in the finished store: the seeds a true difference of
// `target` points of test top-1 needs (two-sided kAlpha, power kPower), from the observed std of the paired
// differences (or the pooled std where the seed sets differ), beside what the sweep's seeds detect now.
int print_seeds_for_difference(const SweepConfig& cfg, const Plan& plan, const std::string& location, double target) {
  if (!is_store_url(location) && !fs::exists(location))
    throw DataError(location, "no results store: run the sweep first (--target-difference reads its spread)");
  auto store = open_store(location, /*read_only=*/true);
  const ReportData d = aggregate(*store);
  std::cout << fmt::format(
      "sweep '{}' ({}): seeds needed to detect a difference of {} points of test top-1 (two-sided alpha {}, "
      "power {}), from the spread in {}\n",
      cfg.name, plan.sweep_id.substr(0, 12), format_number(target), kAlpha, kPower, redact_store_url(location));
  const char* row_format = "{:<14} {:<24} {:<7} {:>5} {:>8} {:>11} {:>9}\n";
  std::cout << fmt::format(fmt::runtime(row_format), "student", "method", "test", "seeds", "std", "detectable",
                           "needed");
  int shown = 0;
  for (const auto& row : d.rows) {
    if (!row.comparison) continue;
    const Comparison& c = *row.comparison;
    const stats::PowerDesign design{c.paired, c.sd};
    auto needed = stats::seeds_needed(design, target, kAlpha, kPower, kMaxSeeds);
    std::cout << fmt::format(fmt::runtime(row_format), student_text(d, row.best), method_text(row.best),
                             c.paired ? "paired" : "Welch", c.n, fmt::format("{:.3f}", c.sd),
                             c.detectable ? fmt::format("{:.2f}", *c.detectable) : "n/a",
                             needed ? std::to_string(*needed) : "> " + std::to_string(kMaxSeeds));
    ++shown;
  }
  if (shown == 0)
    throw DataError(location,
                    "no finished comparison with the student alone (each side needs 2 or more seeds); run the sweep "
                    "first");
  std::cout << "std: of the per-seed differences (paired), or pooled (Welch: the seed sets differ, and seeds are "
               "per side); detectable: the smallest difference the sweep's seeds detect so\n";
  return 0;
}

int cmd_plan(const std::string& config, const std::string& output, const std::string& store_flag,
             std::optional<double> target_difference) {
  SweepConfig cfg = load_sweep_config(config);
  Plan plan = plan_sweep(cfg);
  SweepOptions opts;
  opts.output = output;
  opts.store = store_from_environment(store_flag);
  const std::string out = sweep_output_dir(cfg, opts);
  const std::string location = sweep_store_location(cfg, opts);
  if (target_difference) {
    if (!(*target_difference > 0) || !std::isfinite(*target_difference))
      throw ConfigError("--target-difference",
                        "expected a positive number of points of test top-1, got " + format_number(*target_difference));
    return print_seeds_for_difference(cfg, plan, location, *target_difference);
  }
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
  double target_difference = 0;
  CLI::Option* target_option = nullptr;  // counts whether --target-difference was given
};

}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND("plan", "Validate a sweep config and list its runs and what is done", 20,
                    [](CLI::App& sub) -> kd::cli::CommandRun {
                      auto a = std::make_shared<kd::cli::PlanArgs>();
                      sub.add_option("config", a->config, "Sweep config (JSON)")->required();
                      sub.add_option("-o,--output", a->output, "Output folder to check for finished runs");
                      sub.add_option("--store", a->store, "Results store URL to check (env KDBENCH_STORE)");
                      a->target_option =
                          sub.add_option("--target-difference", a->target_difference,
                                         "Print the seeds each comparison with the student alone needs to detect this "
                                         "difference (points of test top-1), from the finished sweep's spread");
                      return [a] {
                        return kd::cli::cmd_plan(
                            a->config, a->output, a->store,
                            a->target_option->count() ? std::optional<double>(a->target_difference) : std::nullopt);
                      };
                    });
