// `kdbench slurm CONFIG --workers N`: writes (and with --submit submits through sbatch) a Slurm array job whose
// tasks are workers of one sweep on one PostgreSQL store; each knows its index from SLURM_ARRAY_TASK_ID.
#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

#include "base/errors.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "harness/plan.h"
#include "harness/runner.h"
#include "store/store.h"

namespace fs = std::filesystem;

namespace kd {

std::string worker_store_url(const SweepConfig& cfg, const std::string& flag) {
  std::string url = store_from_environment(flag);
  if (url.empty()) url = cfg.store;
  if (!is_store_url(url))
    throw ConfigError("--store",
                      "workers on many machines share a PostgreSQL store: give --store "
                      "postgresql://user@host:port/db (or KDBENCH_STORE, or the config's \"store\")");
  if (redact_store_url(url) != url)
    throw ConfigError("--store",
                      "holds a password, which would be written into the job file: give it to the "
                      "workers in PGPASSWORD or ~/.pgpass instead");
  return url;
}

std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

}  // namespace kd

namespace kd::cli {
namespace {

struct SlurmArgs {
  std::string config, store, partition, gres, time, mem, output, script, account;
  int workers = 0, cpus = 0;
  bool submit = false;
};

std::string slurm_script(const SlurmArgs& a, const SweepConfig& cfg, const std::string& url) {
  const std::string out = fs::absolute(a.output.empty() ? cfg.output : a.output).string();
  const std::string bin = fs::read_symlink("/proc/self/exe").string();
  std::string s = "#!/bin/bash\n";
  s += fmt::format("# A Slurm array of {} kdbench workers on one sweep, written by `kdbench slurm`.\n", a.workers);
  s += "# Each task claims runs from the shared PostgreSQL store until none is left; a task that dies leaves\n";
  s += "# its run to be claimed again once its heartbeat is stale. Resubmit this file to resume.\n";
  s += fmt::format("#SBATCH --job-name=kdbench-{}\n", cfg.name);
  s += fmt::format("#SBATCH --array=0-{}\n", a.workers - 1);
  s += fmt::format("#SBATCH --output={}/slurm/%x-%A_%a.out\n", out);
  if (!a.partition.empty()) s += "#SBATCH --partition=" + a.partition + "\n";
  if (!a.account.empty()) s += "#SBATCH --account=" + a.account + "\n";
  if (!a.gres.empty()) s += "#SBATCH --gres=" + a.gres + "\n";
  if (!a.time.empty()) s += "#SBATCH --time=" + a.time + "\n";
  if (a.cpus > 0) s += fmt::format("#SBATCH --cpus-per-task={}\n", a.cpus);
  if (!a.mem.empty()) s += "#SBATCH --mem=" + a.mem + "\n";
  s += "#SBATCH --ntasks=1\n";
  s += "set -euo pipefail\n";
  s += "# The store's password is not in this file: it comes from PGPASSWORD or ~/.pgpass on the nodes.\n";
  s += "export KDBENCH_STORE=" + shell_quote(url) + "\n";
  s += fmt::format("# Teacher checkpoints go to the config's cache_dir ({}), which every node must share.\n",
                   cfg.cache_dir);
  s += "exec " + shell_quote(bin) + " sweep " + shell_quote(fs::absolute(a.config).string()) + " --output " +
       shell_quote(out) + " --worker-index \"$SLURM_ARRAY_TASK_ID\"";
  if (a.cpus > 0) s += fmt::format(" --threads {}", a.cpus);
  s += "\n";
  return s;
}

int cmd_slurm(const SlurmArgs& a) {
  SweepConfig cfg = load_sweep_config(a.config);
  const std::string url = worker_store_url(cfg, a.store);
  const std::string out = fs::absolute(a.output.empty() ? cfg.output : a.output).string();
  const std::string script = a.script.empty() ? out + "/slurm/kdbench-" + cfg.name + ".sbatch" : a.script;
  fs::create_directories(out + "/slurm");
  write_text_atomically(script, slurm_script(a, cfg, url), "job script");
  ::chmod(script.c_str(), 0755);
  std::cout << script << "\n";
  if (!a.submit) {
    log::info("wrote {}; submit it with: sbatch {}", script, script);
    return 0;
  }
  const std::string cmd = "sbatch " + shell_quote(script);
  log::info("submitting: {}", cmd);
  int rc = std::system(cmd.c_str());
  if (rc != 0) throw std::runtime_error("sbatch failed (exit status " + std::to_string(rc) + ") for " + script);
  return 0;
}

}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND(
    "slurm", "Write (and --submit) a Slurm array job of sweep workers on one PostgreSQL store", 45,
    [](CLI::App& sub) -> kd::cli::CommandRun {
      auto a = std::make_shared<kd::cli::SlurmArgs>();
      sub.add_option("config", a->config, "Sweep config (JSON)")->required();
      sub.add_option("--workers", a->workers, "Array tasks (workers)")->required()->check(CLI::Range(1, 100000));
      sub.add_option("--store", a->store, "postgresql://user@host:port/db (no password; env KDBENCH_STORE)");
      sub.add_option("--partition", a->partition, "Slurm partition");
      sub.add_option("--account", a->account, "Slurm account");
      sub.add_option("--gres", a->gres, "Generic resources per task, e.g. gpu:1");
      sub.add_option("--time", a->time, "Time limit per task, e.g. 04:00:00");
      sub.add_option("--cpus-per-task", a->cpus, "CPUs per task (also the workers' torch threads)");
      sub.add_option("--mem", a->mem, "Memory per task, e.g. 16G");
      sub.add_option("-o,--output", a->output, "The sweep's output folder (default: the config's)");
      sub.add_option("--script", a->script, "Where the job file goes (default OUTPUT/slurm/kdbench-NAME.sbatch)");
      sub.add_flag("--submit", a->submit, "Submit it with sbatch");
      return [a] { return kd::cli::cmd_slurm(*a); };
    });
