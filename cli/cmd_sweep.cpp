// `kdbench sweep CONFIG`: run (or resume) a sweep, then write its report.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <thread>

#include "base/errors.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "harness/distributed.h"
#include "harness/plan.h"
#include "harness/runner.h"
#include "store/store.h"
#include "store/sweep_layout.h"

namespace kd::cli {
namespace {

struct SweepArgs {
  std::string config, shard;
  int nproc = 1;
  SweepOptions opts;
  bool no_report = false;
};

// The worker index: --worker-index, else a Slurm array task's or a Kubernetes Indexed Job's index.
int worker_index_from_environment(int flag) {
  if (flag >= 0) return flag;
  for (const char* var : {"SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"})
    if (const char* v = std::getenv(var); v && *v) {
      char* end = nullptr;
      long i = std::strtol(v, &end, 10);
      if (*end != '\0' || i < 0) throw ConfigError(var, std::string("expected a worker index, got '") + v + "'");
      return static_cast<int>(i);
    }
  return -1;
}

int cmd_sweep(SweepArgs a) {
  SweepConfig cfg = load_sweep_config(a.config);
  if (a.nproc > 1 && !replica_env_from_environment()) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return run_local_replicas(a.nproc, std::max(1, cores / a.nproc));
  }
  a.opts.store = store_from_environment(a.opts.store);
  a.opts.worker_index = worker_index_from_environment(a.opts.worker_index);
  if (!a.shard.empty()) a.opts.shard = parse_shard(a.shard, "--shard");
  if (a.opts.stale_seconds <= a.opts.heartbeat_seconds)
    throw ConfigError("--stale-seconds", "must be longer than --heartbeat-seconds");
  SweepSummary s = run_sweep(cfg, a.opts);
  if (s.follower) return 0;  // rank 0 of the data-parallel group records, counts and reports
  log::info("sweep '{}': {} runs, {} done ({} trained now, {} already done), {} failed; results in {}", cfg.name,
            s.total, s.done, s.trained, s.skipped, s.failed, s.output_dir);
  // One worker of many (or one shard) does not write the report: its share is not the sweep.
  const bool share = a.opts.worker_index >= 0 || a.opts.shard.count > 1;
  if (!a.no_report && cfg.report && !share) {
    const std::string location = sweep_store_location(cfg, a.opts);
    cmd_report(is_store_url(location) ? location : s.output_dir,
               is_store_url(location) ? SweepLayout(s.output_dir).report() : "");
  }
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
      sub.add_option("--store", a->opts.store,
                     "Results store: postgresql://user@host:port/db, shared by workers on many machines (default: "
                     "the config's \"store\", env KDBENCH_STORE, else OUTPUT/results.db)");
      sub.add_option("--worker-index", a->opts.worker_index,
                     "This worker's index (default: SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)")
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--heartbeat-seconds", a->opts.heartbeat_seconds, "How often a worker renews its claims")
          ->check(CLI::Range(0.1, 3600.0));
      sub.add_option("--stale-seconds", a->opts.stale_seconds,
                     "A running run whose worker has not heartbeated for this long is claimed again")
          ->check(CLI::Range(1.0, 86400.0));
      sub.add_option("--nproc", a->nproc,
                     "Train every run data-parallel over N processes on this machine (c10d: Gloo on CPU, NCCL "
                     "on CUDA); across machines start the processes with srun instead")
          ->check(CLI::Range(1, 1024));
      sub.add_option("--shard", a->shard, "Run only static share i of n (i/n), no database needed; see kdbench merge");
      return [a] { return kd::cli::cmd_sweep(*a); };
    });
