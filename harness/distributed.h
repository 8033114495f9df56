// Data-parallel training of one run across processes with LibTorch's c10d: Gloo on the CPU, NCCL on CUDA.
// Every process (replica) trains the same runs on its share of each global batch; gradients are all-reduced
// (harness/step.h: ReplicaSync); batch norm as PyTorch's DistributedDataParallel does by default.
//
// Where the processes come from:
//   kdbench sweep CONFIG --nproc N      kdbench starts N processes on this machine (rendezvous on 127.0.0.1)
//   srun kdbench sweep CONFIG           Slurm starts them on many machines (SLURM_PROCID, SLURM_NTASKS,
//                                       SLURM_LOCALID; MASTER_ADDR / MASTER_PORT set by the job script)
//   torchrun-style variables            RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
// Rank 0 does everything a sweep does alone (store, claims, checkpoints, report); the other ranks follow the
// groups rank 0 trains, which it announces through the rendezvous store.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness/step.h"

namespace kd {

struct ReplicaEnv {
  int rank = 0, size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// The replica this process is, from the environment (KDBENCH_RANK/KDBENCH_WORLD_SIZE that --nproc sets, else
// RANK/WORLD_SIZE, else SLURM_PROCID/SLURM_NTASKS when SLURM_NTASKS > 1 and MASTER_ADDR is set); nullopt for
// a lone process. Throws ConfigError naming the variable for a malformed value.
std::optional<ReplicaEnv> replica_env_from_environment();

// One process of a data-parallel group: the rendezvous (a TCPStore served by rank 0) and a process group
// (Gloo, or NCCL when `device` is CUDA).
class DataParallel final : public ReplicaSync {
 public:
  DataParallel(const ReplicaEnv& env, torch::Device device);
  ~DataParallel() override;
  int rank() const override { return env_.rank; }
  int size() const override { return env_.size; }
  void broadcast_from_first(const std::vector<torch::Tensor>& tensors) override;
  bool average_gradients(const std::vector<torch::Tensor>& params, int64_t local_images, bool ok) override;
  void sum(std::vector<double>& values) override;
  const char* backend() const;

  // Messages from rank 0 to the others through the rendezvous store (rank 0 announces each group it trains).
  void publish(const std::string& key, const std::string& value);
  // Waits (without a time limit: rank 0 may wait long for other workers) until `key` is published.
  std::string receive(const std::string& key);
  // The end of the group's work: every replica calls it; rank 0 (which serves the rendezvous store) returns
  // once all the others have, so none is left talking to a store that is gone.
  void leave();

 private:
  struct Impl;
  ReplicaEnv env_;
  torch::Device device_;
  std::unique_ptr<Impl> impl_;
};

// `kdbench sweep ... --nproc N`: runs this same command line (less --nproc) as N processes on this machine,
// each a replica (KDBENCH_RANK, KDBENCH_WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT), with
// `threads_each` torch threads unless the command line names --threads. Returns the first non-zero exit code
// (the other processes are then stopped), else 0.
int run_local_replicas(int nproc, int threads_each);

}  // namespace kd
