#include "methods/losses.h"

#include <stdexcept>
#include <string>

namespace F = torch::nn::functional;

namespace kd::losses {

torch::Tensor soft_kl_to_probs(const torch::Tensor& student_logits, const torch::Tensor& teacher_probs, double T,
                               const torch::Tensor& sample_weights) {
  auto log_ps = torch::log_softmax(student_logits / T, 1);
  // KL(p_t || p_s) per sample = sum_c p_t (log p_t - log p_s); xlogy gives 0 for p_t = 0.
  auto per_sample = (torch::xlogy(teacher_probs, teacher_probs) - teacher_probs * log_ps).sum(1);
  if (sample_weights.defined()) per_sample = per_sample * sample_weights;
  return per_sample.mean() * (T * T);
}

torch::Tensor soft_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double T) {
  return soft_kl_to_probs(student_logits, torch::softmax(teacher_logits / T, 1), T);
}

std::pair<torch::Tensor, torch::Tensor> pool_to_common_size(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.dim() != 4 || b.dim() != 4)
    throw std::invalid_argument("pool_to_common_size: expected two [B,C,H,W] maps, got " + std::to_string(a.dim()) +
                                "-D and " + std::to_string(b.dim()) + "-D");
  const int64_t h = std::min(a.size(2), b.size(2)), w = std::min(a.size(3), b.size(3));
  auto pool = [&](const torch::Tensor& x) {
    if (x.size(2) == h && x.size(3) == w) return x;
    return F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions({h, w}));
  };
  return {pool(a), pool(b)};
}

torch::Tensor hint_mse(const torch::Tensor& adapted_student, const torch::Tensor& teacher) {
  return (adapted_student - teacher).pow(2).mean();
}

namespace {
// mean_c |A_c|^p, keeping a channel dimension of 1: [B,1,H,W].
torch::Tensor channel_mean_pow(const torch::Tensor& a, double p) {
  return a.abs().pow(p).mean(1, true);
}
torch::Tensor l2_rows(const torch::Tensor& m) {
  return F::normalize(m.flatten(1), F::NormalizeFuncOptions().p(2).dim(1));
}
}  // namespace

torch::Tensor attention_map(const torch::Tensor& feature, double p) {
  return l2_rows(channel_mean_pow(feature, p));
}

torch::Tensor attention_loss(const torch::Tensor& fs, const torch::Tensor& ft, double p, AttentionResize resize) {
  if (resize == AttentionResize::Pool) {
    auto [s, t] = pool_to_common_size(fs, ft);
    return (attention_map(s, p) - attention_map(t, p)).pow(2).mean();
  }
  auto as = channel_mean_pow(fs, p);
  auto at = channel_mean_pow(ft, p);
  if (as.size(2) != at.size(2) || as.size(3) != at.size(3))
    as = F::interpolate(as, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{at.size(2), at.size(3)})
                                .mode(torch::kBilinear)
                                .align_corners(false));
  return (l2_rows(as) - l2_rows(at)).pow(2).mean();
}

torch::Tensor mix_teacher_probs(const std::vector<torch::Tensor>& teacher_logits, const std::vector<double>& weights,
                                double T) {
  if (teacher_logits.empty() || teacher_logits.size() != weights.size())
    throw std::invalid_argument("mix_teacher_probs: " + std::to_string(teacher_logits.size()) + " teachers, " +
                                std::to_string(weights.size()) + " weights");
  torch::Tensor p;
  for (size_t k = 0; k < teacher_logits.size(); ++k) {
    auto pk = torch::softmax(teacher_logits[k] / T, 1) * weights[k];
    p = p.defined() ? p + pk : pk;
  }
  return p;
}

torch::Tensor confidence_weights(const std::vector<torch::Tensor>& teacher_logits, const torch::Tensor& labels) {
  if (teacher_logits.size() < 2)
    throw std::invalid_argument("confidence_weights: needs at least 2 teachers, got " +
                                std::to_string(teacher_logits.size()));
  std::vector<torch::Tensor> ce;
  for (const auto& t : teacher_logits)
    ce.push_back(F::cross_entropy(t, labels, F::CrossEntropyFuncOptions().reduction(torch::kNone)));
  auto L = torch::stack(ce);  // [K,B]
  const auto K = static_cast<double>(teacher_logits.size());
  return (1.0 - torch::softmax(L, 0)) / (K - 1.0);
}

torch::Tensor confidence_kd(const torch::Tensor& student_logits, const std::vector<torch::Tensor>& teacher_logits,
                            const torch::Tensor& labels, double T) {
  auto w = confidence_weights(teacher_logits, labels).detach();  // [K,B]; teachers are fixed targets
  torch::Tensor kd;
  for (size_t k = 0; k < teacher_logits.size(); ++k) {
    auto term =
        soft_kl_to_probs(student_logits, torch::softmax(teacher_logits[k] / T, 1), T, w[static_cast<int64_t>(k)]);
    kd = kd.defined() ? kd + term : term;
  }
  return kd;
}

}  // namespace kd::losses
