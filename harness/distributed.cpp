#include "harness/distributed.h"

// ProcessGroupGloo.hpp declares its class only under USE_C10D_GLOO; the wheel's libtorch_cpu is built with
// Gloo and exports it (the CUDA path's Torch config defines the macro itself; the CPU path does not).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(KDBENCH_WITH_CUDA) && defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

#include "base/errors.h"
#include "base/log.h"

namespace kd {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, int lo) {
  std::string v = *env(name);
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (*end != '\0' || x < lo)
    throw ConfigError(name, "expected an integer >= " + std::to_string(lo) + ", got '" + v + "'");
  return static_cast<int>(x);
}

constexpr auto kCollectiveTimeout = std::chrono::minutes(30);

}  // namespace

std::optional<ReplicaEnv> replica_env_from_environment() {
  ReplicaEnv e;
  if (env("KDBENCH_WORLD_SIZE")) {
    e.size = env_int("KDBENCH_WORLD_SIZE", 1);
    e.rank = env_int("KDBENCH_RANK", 0);
    e.local_rank = env("KDBENCH_LOCAL_RANK") ? env_int("KDBENCH_LOCAL_RANK", 0) : e.rank;
  } else if (env("WORLD_SIZE") && env("RANK")) {
    e.size = env_int("WORLD_SIZE", 1);
    e.rank = env_int("RANK", 0);
    e.local_rank = env("LOCAL_RANK") ? env_int("LOCAL_RANK", 0) : 0;
  } else if (env("SLURM_NTASKS") && env("SLURM_PROCID") && env("MASTER_ADDR")) {
    e.size = env_int("SLURM_NTASKS", 1);
    e.rank = env_int("SLURM_PROCID", 0);
    e.local_rank = env("SLURM_LOCALID") ? env_int("SLURM_LOCALID", 0) : 0;
  } else {
    return std::nullopt;
  }
  if (e.size <= 1) return std::nullopt;
  if (e.rank >= e.size) throw ConfigError("RANK", "rank " + std::to_string(e.rank) + " of " + std::to_string(e.size));
  if (auto a = env("MASTER_ADDR")) e.master_addr = *a;
  if (env("MASTER_PORT")) e.master_port = env_int("MASTER_PORT", 1);
  return e;
}

struct DataParallel::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::Backend> group;
  std::string backend;
};

DataParallel::DataParallel(const ReplicaEnv& env, torch::Device device)
    : env_(env), device_(device), impl_(std::make_unique<Impl>()) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = env.rank == 0;
  so.numWorkers = env.size;
  so.waitWorkers = true;
  so.timeout = std::chrono::minutes(10);
  impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
#if defined(KDBENCH_WITH_CUDA) && defined(USE_C10D_NCCL)
  if (device.is_cuda()) {
    auto no = c10d::ProcessGroupNCCL::Options::create();
    no->timeout = kCollectiveTimeout;
    impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.size, no);
    impl_->backend = "nccl";
  }
#endif
  if (!impl_->group) {
    if (device.is_cuda())
      throw ConfigError("device", "data-parallel training on CUDA needs NCCL, which this build does not have");
    auto go = c10d::ProcessGroupGloo::Options::create(kCollectiveTimeout);
    // Loopback rendezvous: talk over loopback; otherwise the interface GLOO_SOCKET_IFNAME names, or the one
    // this host's name resolves to.
    if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else if (auto ifname = kd::env("GLOO_SOCKET_IFNAME")) {
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(*ifname));
    } else {
      go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.size, go);
    impl_->backend = "gloo";
  }
  log::info("data-parallel: replica {} of {} ({} over {}:{})", env.rank, env.size, impl_->backend, env.master_addr,
            env.master_port);
}

DataParallel::~DataParallel() = default;

const char* DataParallel::backend() const {
  return impl_->backend.c_str();
}

void DataParallel::broadcast_from_first(const std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return;
  // One flat buffer, one collective.
  std::vector<torch::Tensor> flat_parts;
  for (const auto& t : tensors) flat_parts.push_back(t.detach().reshape({-1}).to(torch::kFloat64));
  std::vector<torch::Tensor> buf{torch::cat(flat_parts)};
  c10d::BroadcastOptions bo;
  bo.rootRank = 0;
  impl_->group->broadcast(buf, bo)->wait();
  torch::NoGradGuard ng;
  int64_t at = 0;
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    t.detach().copy_(buf[0].narrow(0, at, n).view(t.sizes()).to(t.scalar_type()));
    at += n;
  }
}

bool DataParallel::average_gradients(const std::vector<torch::Tensor>& params, int64_t local_images, bool ok) {
  // [every parameter's gradient x local images (zeros where undefined or not ok) ..., local images, failed]
  std::vector<torch::Tensor> parts;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device_);
  for (const auto& p : params) {
    const auto& g = p.grad();
    parts.push_back(ok && g.defined()
                        ? (g.detach().to(torch::kFloat32) * static_cast<double>(local_images)).reshape({-1})
                        : torch::zeros({p.numel()}, opts));
  }
  parts.push_back(torch::tensor({static_cast<float>(ok ? local_images : 0), ok ? 0.f : 1.f}, opts));
  std::vector<torch::Tensor> buf{torch::cat(parts)};
  impl_->group->allreduce(buf)->wait();
  const int64_t total = buf[0].numel();
  const auto tail = buf[0].narrow(0, total - 2, 2).cpu();
  const double images = tail[0].item<double>();
  if (tail[1].item<double>() > 0 || images <= 0) return false;
  torch::NoGradGuard ng;
  int64_t at = 0;
  for (const auto& p : params) {
    const int64_t n = p.numel();
    auto& g = p.mutable_grad();
    if (g.defined()) g.copy_((buf[0].narrow(0, at, n) / images).view(p.sizes()).to(g.scalar_type()));
    at += n;
  }
  return true;
}

void DataParallel::sum(std::vector<double>& values) {
  if (values.empty()) return;
  std::vector<torch::Tensor> buf{torch::tensor(values, torch::kFloat64).to(device_)};
  impl_->group->allreduce(buf)->wait();
  auto host = buf[0].cpu();
  for (size_t i = 0; i < values.size(); ++i) values[i] = host[static_cast<int64_t>(i)].item<double>();
}

void DataParallel::publish(const std::string& key, const std::string& value) {
  impl_->store->set("kdbench/" + key, std::vector<uint8_t>(value.begin(), value.end()));
}

std::string DataParallel::receive(const std::string& key) {
  const std::string k = "kdbench/" + key;
  while (!impl_->store->check({k})) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto v = impl_->store->get(k);
  return std::string(v.begin(), v.end());
}

void DataParallel::leave() {
  if (env_.rank != 0) {
    publish("left/" + std::to_string(env_.rank), "1");
    return;
  }
  for (int r = 1; r < env_.size; ++r) receive("left/" + std::to_string(r));
}

namespace {

// This process's command line (argv as given).
std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  std::string cur;
  for (char c : all) {
    if (c == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  return args;
}

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("no free TCP port on 127.0.0.1 for the replicas' rendezvous");
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

int run_local_replicas(int nproc, int threads_each) {
  std::vector<std::string> args;
  bool has_threads = false;
  const auto given = own_command_line();
  for (size_t i = 0; i < given.size(); ++i) {
    if (given[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (given[i].rfind("--nproc=", 0) == 0) continue;
    has_threads |= given[i] == "--threads" || given[i].rfind("--threads=", 0) == 0;
    args.push_back(given[i]);
  }
  if (!has_threads) {
    args.push_back("--threads");
    args.push_back(std::to_string(threads_each));
  }
  const std::string port = std::to_string(free_loopback_port());
  log::info("data-parallel: starting {} processes on this machine (rendezvous 127.0.0.1:{})", nproc, port);
  std::vector<pid_t> pids;
  for (int r = 0; r < nproc; ++r) {
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("cannot start data-parallel process " + std::to_string(r));
    if (pid == 0) {
      ::setenv("KDBENCH_RANK", std::to_string(r).c_str(), 1);
      ::setenv("KDBENCH_LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("KDBENCH_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  int result = 0;
  for (size_t left = pids.size(); left > 0; --left) {
    int status = 0;
    pid_t done = ::waitpid(-1, &status, 0);
    if (done < 0) break;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && result == 0) {
      result = code;
      for (pid_t p : pids)
        if (p != done) ::kill(p, SIGTERM);  // the others would wait for it forever
    }
  }
  return result;
}

}  // namespace kd
