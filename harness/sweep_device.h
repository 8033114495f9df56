// Where a sweep runs: its device (auto -> CUDA when there is one), its torch threads, whether its steps are
// CUDA graphs, and the environment record stored with the sweep and every run (software, hardware, commit).
// The only file that includes the generated commit header (so it alone recompiles when the commit changes).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "harness/plan.h"

namespace kd {

struct SweepOptions;  // harness/runner.h

struct SweepDevice {
  std::string name;  // "cpu" or "cuda"
  torch::Device device = torch::kCPU;
  int threads = 1;           // torch threads for the whole process (a group's lanes share them)
  bool cuda_graphs = false;  // the static step, captured and replayed
  std::string environment;   // JSON: environment_json of the above, with cuda_graphs
};

// Resolves the config's device, threads and CUDA graphs against the options and the machine, sets torch's
// threads and cuDNN's benchmark mode. Throws ConfigError for CUDA asked for where there is none.
SweepDevice set_up_sweep_device(const SweepConfig& cfg, const SweepOptions& opts);

// JSON describing software and hardware: libtorch version, device, threads, git commit, host, cpu.
std::string environment_json(const std::string& device, int64_t threads);

// This machine's host name.
std::string host_name();

// The process identity written as a run's owner: "<host>:<pid>".
std::string process_owner();

}  // namespace kd
