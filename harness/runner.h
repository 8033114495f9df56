// The sweep runner: plans a sweep, records it in the results store, obtains the teachers once,
// trains every pending run in lockstep groups per seed, and resumes where a killed sweep stopped.
#pragma once
#include <cstdint>
#include <string>

#include "harness/plan.h"

namespace kd {

struct SweepOptions {
  std::string output;         // overrides the config's output folder
  std::string device;         // overrides the config's device ("" = config)
  int64_t threads = -1;       // overrides the config's threads (-1 = config)
  bool retry_failed = false;  // put failed runs back to pending first
  int workers = 1;            // loader worker threads
};

struct SweepSummary {
  std::string output_dir;
  int total = 0, done = 0, failed = 0, skipped = 0, trained = 0;
};

// Runs (or resumes) a sweep. Throws ConfigError/DataError for bad input before anything trains.
SweepSummary run_sweep(const SweepConfig& cfg, const SweepOptions& opts);

// The resolved output folder of a sweep.
std::string sweep_output_dir(const SweepConfig& cfg, const SweepOptions& opts);

// JSON describing software and hardware: libtorch version, device, threads, git commit, host, cpu.
std::string environment_json(const std::string& device, int64_t threads);

// The process identity written as a run's owner: "<host>:<pid>".
std::string process_owner();

}  // namespace kd
