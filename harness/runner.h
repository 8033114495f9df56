// The sweep runner: plans a sweep, records it in the results store, obtains the teachers once,
// trains every pending run in lockstep groups per seed, and resumes where a killed sweep stopped.
// runner.cpp holds the claim loop; its parts are sweep_device (where it runs, the environment record),
// heartbeat (claims kept alive), group_channel (data-parallel leader and followers), sweep_models (the models runs
// learn from, the teacher cache, evaluation, latency) and trainer (a lockstep group).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "harness/plan.h"

namespace kd {

// A static share of a sweep (`--shard i/n`): no database needed; `kdbench merge` combines the shards' stores.
struct ShardSpec {
  int index = 0, count = 1;
};
// Parses "i/n" (0 <= i < n). Throws ConfigError naming `key`.
ShardSpec parse_shard(const std::string& text, const std::string& key);

struct SweepOptions {
  std::string output;         // overrides the config's output folder
  std::string device;         // overrides the config's device ("" = config)
  int64_t threads = -1;       // overrides the config's threads (-1 = config)
  bool retry_failed = false;  // put failed runs back to pending first
  int workers = 1;            // loader worker threads
  // The results store: "" = the config's "store", else <output>/results.db; or a postgresql:// URL.
  std::string store;
  int worker_index = -1;          // this worker's index in an array job (for logs and the environment record)
  double heartbeat_seconds = 30;  // how often a worker renews its claims while it trains
  double stale_seconds = 300;     // a running run whose heartbeat is older than this is claimed again
  double poll_seconds = 2;        // how often a worker with nothing to claim looks again
  ShardSpec shard;                // this process's static share of the runs
};

struct SweepSummary {
  std::string output_dir;
  int total = 0, done = 0, failed = 0, skipped = 0, trained = 0;
  bool follower = false;  // a data-parallel replica other than rank 0 (rank 0 records and reports)
};

// Runs (or resumes) a sweep: claims runs (a lockstep group at a time) until every run of its shard is done or
// failed, waiting for runs other workers on the same store are training when nothing else can start. Throws
// ConfigError/DataError for bad input before anything trains.
SweepSummary run_sweep(const SweepConfig& cfg, const SweepOptions& opts);

// The resolved output folder of a sweep.
std::string sweep_output_dir(const SweepConfig& cfg, const SweepOptions& opts);
// The resolved results store of a sweep: --store, else the config's "store", else <output>/results.db.
std::string sweep_store_location(const SweepConfig& cfg, const SweepOptions& opts);

// The runs of `plan` in static share `shard`: its students (a contiguous block of them ordered by seed, so a
// shard's runs still train in lockstep) and every run they learn from (teachers, assistants).
std::vector<const RunSpec*> shard_runs(const Plan& plan, const ShardSpec& shard);

}  // namespace kd
