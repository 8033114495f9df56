// `kdbench sweep CONFIG`: run (or resume) a sweep, then write its report.
#include <memory>

#include "base/log.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "harness/plan.h"
#include "harness/runner.h"

namespace kd::cli {
namespace {

struct SweepArgs {
  std::string config;
  SweepOptions opts;
  bool no_report = false;
};

int cmd_sweep(const SweepArgs& a) {
  SweepConfig cfg = load_sweep_config(a.config);
  SweepSummary s = run_sweep(cfg, a.opts);
  log::info("sweep '{}': {} runs, {} done ({} trained now, {} already done), {} failed; results in {}", cfg.name,
            s.total, s.done, s.trained, s.skipped, s.failed, s.output_dir);
  if (!a.no_report && cfg.report) cmd_report(s.output_dir, "");
  return s.failed > 0 ? 4 : 0;
}

}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND(
    "sweep", "Run (or resume) a sweep: train teachers once, then every run", 10,
    [](CLI::App& sub) -> kd::cli::CommandRun {
      auto a = std::make_shared<kd::cli::SweepArgs>();
      sub.add_option("config", a->config, "Sweep config (JSON)")->required();
      sub.add_option("-o,--output", a->opts.output, "Output folder (default: the config's \"output\")");
      sub.add_option("--device", a->opts.device, "auto | cpu | cuda (default: the config's)")
          ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
      sub.add_option("--threads", a->opts.threads, "Torch threads (0 = all cores; default: the config's)");
      sub.add_option("--workers", a->opts.workers, "Data-loader worker threads")->check(CLI::Range(1, 64));
      sub.add_flag("--retry-failed", a->opts.retry_failed, "Run failed runs again");
      sub.add_flag("--no-report", a->no_report, "Do not write the report at the end");
      return [a] { return kd::cli::cmd_sweep(*a); };
    });
