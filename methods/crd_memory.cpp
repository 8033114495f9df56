#include "methods/crd_memory.h"

#include <algorithm>
#include <cmath>

#include "methods/feature_losses.h"

namespace kd::crd {

void ContrastSampler::reset(const torch::Tensor& train_labels, int64_t n_data, uint64_t seed) {
  n_ = n_data;
  rng_.seed(seed);
  labels_.clear();
  order_.clear();
  start_.clear();
  count_.clear();
  if (!train_labels.defined()) return;
  auto l = train_labels.to(torch::kCPU, torch::kLong).contiguous();
  labels_.assign(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
  int64_t classes = 0;
  for (auto y : labels_) classes = std::max(classes, y + 1);
  count_.assign(static_cast<size_t>(classes), 0);
  for (auto y : labels_) ++count_[static_cast<size_t>(y)];
  start_.assign(static_cast<size_t>(classes), 0);
  for (size_t c = 1; c < start_.size(); ++c) start_[c] = start_[c - 1] + count_[c - 1];
  order_.resize(labels_.size());
  auto next = start_;
  for (size_t i = 0; i < labels_.size(); ++i)
    order_[static_cast<size_t>(next[static_cast<size_t>(labels_[i])]++)] = static_cast<int64_t>(i);
}

int64_t ContrastSampler::below(int64_t n) {
  // Lemire's multiply-shift: the high 64 bits of a 64 x 64-bit product (bias < n / 2^64, negligible).
  return static_cast<int64_t>((static_cast<unsigned __int128>(rng_()) * static_cast<uint64_t>(n)) >> 64);
}

torch::Tensor ContrastSampler::draw(const torch::Tensor& indices, int64_t K, const std::string& mode) {
  auto idx = indices.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t B = idx.size(0);
  auto out = torch::empty({B, K + 1}, torch::kLong);
  int64_t* o = out.data_ptr<int64_t>();
  const int64_t* batch = idx.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t i = batch[b];
    int64_t* row = o + b * (K + 1);
    if (mode == "uniform") {
      row[0] = i;
      for (int64_t k = 1; k <= K; ++k) row[k] = below(n_);
      continue;
    }
    // Positions [lo, lo + n_c) of the class-sorted order hold the sample's class; the other n_ - n_c positions
    // are its negatives (without labels: the sample alone is its class).
    int64_t lo = i, n_c = 1;
    if (!labels_.empty()) {
      const auto c = static_cast<size_t>(labels_[static_cast<size_t>(i)]);
      lo = start_[c];
      n_c = count_[c];
    }
    auto at = [&](int64_t p) { return labels_.empty() ? p : order_[static_cast<size_t>(p)]; };
    auto negative = [&](int64_t p) { return at(p < lo ? p : p + n_c); };
    row[0] = mode == "relax" ? at(lo + below(n_c)) : i;
    const int64_t M = n_ - n_c;
    if (K > M) {
      for (int64_t k = 1; k <= K; ++k) row[k] = negative(below(M));
      continue;
    }
    // Floyd's algorithm: K distinct positions of M, every K-subset equally likely, K draws.
    taken_.assign(static_cast<size_t>(M), 0);
    for (int64_t j = M - K, k = 1; j < M; ++j, ++k) {
      int64_t p = below(j + 1);
      if (taken_[static_cast<size_t>(p)]) p = j;
      taken_[static_cast<size_t>(p)] = 1;
      row[k] = negative(p);
    }
  }
  return out;
}

CRDHeadImpl::CRDHeadImpl(int64_t s_dim, int64_t t_dim, int64_t dim, int64_t n, int64_t K, double T, double m)
    : n_data(n), nce_k(K), feat_dim(dim), nce_t(T), nce_m(m) {
  // RepDistiller's construction order (embed_s, embed_t, then the banks), so one seed gives its draws.
  auto embed = [&](const char* name, int64_t in) {
    auto e = register_module(name, std::make_shared<torch::nn::Module>("Embed"));
    return e->register_module("linear", torch::nn::Linear(in, dim));
  };
  embed_s = embed("embed_s", s_dim);
  embed_t = embed("embed_t", t_dim);
  auto contrast = register_module("contrast", std::make_shared<torch::nn::Module>("ContrastMemory"));
  const double stdv = 1.0 / std::sqrt(static_cast<double>(dim) / 3.0);
  params = contrast->register_buffer(
      "params", torch::tensor({static_cast<float>(K), static_cast<float>(T), -1.f, -1.f, static_cast<float>(m)}));
  memory_v1 = contrast->register_buffer("memory_v1", torch::rand({n, dim}).mul_(2 * stdv).add_(-stdv));
  memory_v2 = contrast->register_buffer("memory_v2", torch::rand({n, dim}).mul_(2 * stdv).add_(-stdv));
}

CRDHeadImpl::Out CRDHeadImpl::forward(const torch::Tensor& f_s, const torch::Tensor& f_t, const torch::Tensor& indices,
                                      const torch::Tensor& contrast_idx) {
  Out r;
  r.v_s = losses::crd_l2_normalize(embed_s(f_s.flatten(1))).to(memory_v1.dtype());
  r.v_t = losses::crd_l2_normalize(embed_t(f_t.flatten(1))).to(memory_v1.dtype());
  const int64_t B = r.v_s.size(0), K1 = contrast_idx.size(1), D = feat_dim;
  auto idx = contrast_idx.to(memory_v1.device(), torch::kLong).reshape({-1});
  // The student's embedding against the teacher's bank, the teacher's against the student's (ContrastMemory).
  auto w_t = memory_v2.index_select(0, idx).view({B, K1, D});
  r.out_s = torch::exp(torch::bmm(w_t, r.v_s.view({B, D, 1})).squeeze(2) / nce_t);
  auto w_s = memory_v1.index_select(0, idx).view({B, K1, D});
  r.out_t = torch::exp(torch::bmm(w_s, r.v_t.view({B, D, 1})).squeeze(2) / nce_t);
  double z_s = 0, z_t = 0;
  {
    // Z: set once, from the first batch, as mean score x n_data (a float32 value, then a constant).
    torch::NoGradGuard ng;
    if (params[2].item<double>() < 0) params[2] = r.out_s.mean() * static_cast<double>(n_data);
    if (params[3].item<double>() < 0) params[3] = r.out_t.mean() * static_cast<double>(n_data);
    z_s = params[2].item<double>();
    z_t = params[3].item<double>();
  }
  r.out_s = r.out_s / z_s;
  r.out_t = r.out_t / z_t;
  r.loss = losses::crd_contrast_loss(r.out_s, n_data) + losses::crd_contrast_loss(r.out_t, n_data);
  // After scoring: the batch's rows become normalise(m * row + (1 - m) * v).
  torch::NoGradGuard ng;
  auto y = indices.to(memory_v1.device(), torch::kLong);
  for (auto* bank : {&memory_v1, &memory_v2}) {
    const auto& v = bank == &memory_v1 ? r.v_s : r.v_t;
    auto row = bank->index_select(0, y).mul_(nce_m).add_(v.detach() * (1 - nce_m));
    bank->index_copy_(0, y, row / row.pow(2).sum(1, true).pow(0.5));
  }
  return r;
}

}  // namespace kd::crd
