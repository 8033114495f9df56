// `kdbench slurm CONFIG --workers N`: writes (and with --submit submits through sbatch) a Slurm array job whose
// tasks are workers of one sweep on one PostgreSQL store; each knows its index from SLURM_ARRAY_TASK_ID.
#include <fmt/format.h>
#include <sys/stat.h>

#include <cctype>
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
#include "store/store_url.h"

namespace fs = std::filesystem;

namespace kd {

std::string worker_store_url(const SweepConfig& cfg, const std::string& flag) {
  std::string url = store_from_environment(flag);  // (a password in --store is refused there)
  const std::string key = !flag.empty() ? "--store" : !url.empty() ? "KDBENCH_STORE" : "store";
  if (url.empty()) url = cfg.store;
  if (!is_store_url(url))
    throw ConfigError("--store",
                      "workers on many machines share a PostgreSQL store: give --store "
                      "postgresql://user@host:port/db (or KDBENCH_STORE, or the config's \"store\")");
  refuse_password_in_store_url(url, key,
                               "it would be written into the job file: give it to the workers in PGPASSWORD or "
                               "~/.pgpass instead");
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

// A path written into a job file may hold any character but a control character: a newline would end an #SBATCH
// line or a comment, and no quoting survives it. (Everything else is shell-quoted, which sbatch reads too.)
void check_job_file_text(const std::string& value, const std::string& key) {
  for (unsigned char c : value)
    if (c < 0x20 || c == 0x7f)
      throw ConfigError(key, "holds a control character (a newline, a tab...), which a job file cannot carry");
}

// The value of an #SBATCH option (a partition, an account, gres, a time, memory): letters, digits and . _ : , = + / -.
void check_slurm_value(const std::string& value, const std::string& key) {
  for (unsigned char c : value)
    if (!std::isalnum(c) && std::string("._:,=+/-").find(static_cast<char>(c)) == std::string::npos)
      throw ConfigError(key,
                        "may hold only letters, digits and . _ : , = + / - (it goes into an #SBATCH line of the "
                        "job file)");
}

struct SlurmArgs {
  std::string config, store, partition, gres, time, mem, output, script, account;
  int workers = 0, cpus = 0;
  bool submit = false;
};

// The job file. The sweep's name is of a safe set (harness/plan.cpp), option values are checked, paths are
// shell-quoted (in the #SBATCH lines too: sbatch reads quotes as a shell does) and hold no control character.
std::string slurm_script(const SlurmArgs& a, const SweepConfig& cfg, const std::string& url) {
  const std::string out = fs::absolute(a.output.empty() ? cfg.output : a.output).string();
  const std::string bin = fs::read_symlink("/proc/self/exe").string();
  const std::string config = fs::absolute(a.config).string();
  check_job_file_text(out, a.output.empty() ? "output" : "--output");
  check_job_file_text(cfg.cache_dir, "cache_dir");
  check_job_file_text(config, "config");
  check_job_file_text(bin, "kdbench's own path");
  for (const auto& [value, key] : {std::pair{a.partition, "--partition"}, std::pair{a.account, "--account"},
                                   std::pair{a.gres, "--gres"}, std::pair{a.time, "--time"}, std::pair{a.mem, "--mem"}})
    check_slurm_value(value, key);
  std::string s = "#!/bin/bash\n";
  s += fmt::format("# A Slurm array of {} kdbench workers on one sweep, written by `kdbench slurm`.\n", a.workers);
  s += "# Each task claims runs from the shared PostgreSQL store until none is left; a task that dies leaves\n";
  s += "# its run to be claimed again once its heartbeat is stale. Resubmit this file to resume.\n";
  s += fmt::format("#SBATCH --job-name=kdbench-{}\n", cfg.name);
  s += fmt::format("#SBATCH --array=0-{}\n", a.workers - 1);
  s += "#SBATCH --output=" + shell_quote(out + "/slurm/%x-%A_%a.out") + "\n";
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
  s += "# Teacher checkpoints go to the config's cache_dir (" + shell_quote(cfg.cache_dir) +
       "), which every node must share.\n";
  s += "exec " + shell_quote(bin) + " sweep " + shell_quote(config) + " --output " + shell_quote(out) +
       " --worker-index \"$SLURM_ARRAY_TASK_ID\"";
  if (a.cpus > 0) s += fmt::format(" --threads {}", a.cpus);
  s += "\n";
  return s;
}

int cmd_slurm(const SlurmArgs& a) {
  SweepConfig cfg = load_sweep_config(a.config);
  const std::string url = worker_store_url(cfg, a.store);
  const std::string out = fs::absolute(a.output.empty() ? cfg.output : a.output).string();
  const std::string script = a.script.empty() ? out + "/slurm/kdbench-" + cfg.name + ".sbatch" : a.script;
  const std::string text = slurm_script(a, cfg, url);  // (checks everything it writes before anything is written)
  fs::create_directories(out + "/slurm");
  write_text_atomically(script, text, "job script");
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
