#include "harness/sweep_device.h"

#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "base/errors.h"
#include "git_commit.h"  // generated at build time (cmake/git_commit.cmake)
#include "harness/runner.h"
#include "pybridge/plugins.h"

namespace kd {

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown";
}

}  // namespace

SweepDevice set_up_sweep_device(const SweepConfig& cfg, const SweepOptions& opts) {
  SweepDevice d;
  d.name = opts.device.empty() ? cfg.device : opts.device;
  int64_t threads = opts.threads >= 0 ? opts.threads : cfg.threads;
  if (threads <= 0) threads = static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(static_cast<int>(threads));
  d.threads = static_cast<int>(threads);
  if (d.name == "auto") d.name = torch::cuda::is_available() ? "cuda" : "cpu";
  if (d.name == "cuda" && !torch::cuda::is_available())
    throw ConfigError("device", "CUDA was asked for but no CUDA device is available");
  d.device = d.name == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (d.device.is_cuda()) at::globalContext().setBenchmarkCuDNN(cfg.cudnn_benchmark);
  if (cfg.cuda_graphs == "on" && !d.device.is_cuda())
    throw ConfigError("cuda_graphs", "'on' needs a CUDA device (this sweep runs on the CPU); use auto or off");
  d.cuda_graphs = cfg.cuda_graphs == "on" || (cfg.cuda_graphs == "auto" && d.device.is_cuda());
  json env = json::parse(environment_json(d.name, threads));
  env["cuda_graphs"] = d.cuda_graphs;
  d.environment = env.dump();
  return d;
}

std::string host_name() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string process_owner() {
  return host_name() + ":" + std::to_string(::getpid());
}

std::string environment_json(const std::string& device, int64_t threads) {
  json env{{"kdbench", "0.1.0"},
           {"libtorch", TORCH_VERSION},
           {"torch_wheel", KDBENCH_TORCH_VERSION},
           {"git_commit", KDBENCH_GIT_COMMIT},
           {"device", device},
           {"threads", threads},
           {"host", host_name()},
           {"cpu", cpu_model()},
           {"cores", std::thread::hardware_concurrency()},
           {"cuda_available", torch::cuda::is_available()},
           {"cuda_devices", torch::cuda::device_count()}};
  // Where Python methods ran: the interpreter (the venv) and its torch (absent when the sweep has no plugin).
  if (std::string python = py::python_environment(); !python.empty()) env["python"] = python;
#ifdef KDBENCH_WITH_CUDA
  env["build"] = "cuda";
#else
  env["build"] = "cpu";
#endif
  return env.dump();
}

}  // namespace kd
