// CRD's parts (methods/crd.cpp): the sampler of contrast indices and the head that embeds, scores against the
// memory banks, updates them and returns the loss. RepDistiller @ b84f547: crd/criterion.py (CRDLoss, Embed,
// ContrastLoss), crd/memory.py (ContrastMemory), dataset/cifar100.py (CIFAR100InstanceSample). Separate from the
// method so that tests can give the head the reference's own contrast indices.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace kd::crd {

// Draws [B, K+1] contrast indices: column 0 the positive, columns 1..K the negatives, from its own random stream.
//   exact:   positive = the sample itself; negatives uniform over the samples of the OTHER classes, K distinct ones
//            when there are at least K (numpy.random.choice(..., replace=False)), else with replacement;
//   relax:   positive = a uniformly drawn sample of the same class (possibly itself); negatives as exact;
//   uniform: negatives uniform over all samples with replacement (the positive's index may recur).
// Without labels (undefined), every sample is its own class.
class ContrastSampler {
 public:
  void reset(const torch::Tensor& train_labels, int64_t n_data, uint64_t seed);
  torch::Tensor draw(const torch::Tensor& indices, int64_t K, const std::string& mode);  // int64, CPU

 private:
  int64_t below(int64_t n);  // uniform in [0, n)
  int64_t n_ = 0;
  std::mt19937_64 rng_;
  std::vector<int64_t> labels_, order_, start_, count_;  // order_: indices sorted by class; class c's block
  std::vector<uint8_t> taken_;
};

// CRDLoss with its state; parameters and buffers named as RepDistiller's state dict: embed_s.linear.{weight,bias},
// embed_t.linear.*, contrast.params ([K, T, Z_s, Z_t, momentum]; Z < 0 until the first batch sets it),
// contrast.memory_v1 (the student's bank), contrast.memory_v2 (the teacher's).
struct CRDHeadImpl : torch::nn::Module {
  CRDHeadImpl(int64_t s_dim, int64_t t_dim, int64_t feat_dim, int64_t n_data, int64_t nce_k, double nce_t,
              double nce_m);
  struct Out {
    torch::Tensor loss;          // ContrastLoss(student scores) + ContrastLoss(teacher scores), a scalar
    torch::Tensor v_s, v_t;      // the embeddings [B, feat_dim]
    torch::Tensor out_s, out_t;  // the scores [B, K+1]: student vs the teacher's bank, teacher vs the student's
  };
  // f_s [B, s_dim], f_t [B, t_dim], indices [B] (rows to update), contrast_idx [B, K+1]. Updates the banks.
  Out forward(const torch::Tensor& f_s, const torch::Tensor& f_t, const torch::Tensor& indices,
              const torch::Tensor& contrast_idx);
  int64_t n_data, nce_k, feat_dim;
  double nce_t, nce_m;
  torch::nn::Linear embed_s{nullptr}, embed_t{nullptr};
  torch::Tensor params, memory_v1, memory_v2;
};
TORCH_MODULE(CRDHead);

}  // namespace kd::crd
