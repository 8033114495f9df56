#include "methods/losses.h"

namespace F = torch::nn::functional;

namespace kd::losses {

torch::Tensor soft_kl_to_probs(const torch::Tensor& student_logits, const torch::Tensor& teacher_probs, double T,
                               const torch::Tensor& sample_weights) {
  auto log_ps = torch::log_softmax(student_logits / T, 1);
  // KL(p_t || p_s) per sample = sum_c p_t (log p_t - log p_s); 0 * log 0 taken as 0.
  auto pt = teacher_probs;
  auto log_pt = torch::log(pt.clamp_min(1e-30));
  auto per_sample = (pt * (log_pt - log_ps)).sum(1);
  if (sample_weights.defined()) per_sample = per_sample * sample_weights;
  return per_sample.mean() * (T * T);
}

torch::Tensor soft_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double T) {
  return soft_kl_to_probs(student_logits, torch::softmax(teacher_logits / T, 1), T);
}

torch::Tensor align_spatial(const torch::Tensor& x, int64_t h, int64_t w) {
  if (x.size(2) == h && x.size(3) == w) return x;
  if (x.size(2) >= h && x.size(3) >= w)
    return F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions({h, w}));
  return F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false));
}

torch::Tensor hint_mse(const torch::Tensor& adapted_student, const torch::Tensor& teacher) {
  return (adapted_student - teacher).pow(2).mean();
}

torch::Tensor attention_map(const torch::Tensor& feature, double p) {
  auto a = feature.abs().pow(p).mean(1);  // [B,H,W]
  return F::normalize(a.flatten(1), F::NormalizeFuncOptions().p(2).dim(1));
}

torch::Tensor attention_loss(const torch::Tensor& fs, const torch::Tensor& ft, double p) {
  auto as = fs.abs().pow(p).mean(1, /*keepdim=*/true);  // [B,1,H,W]
  auto at = ft.abs().pow(p).mean(1, true);
  if (as.size(2) != at.size(2) || as.size(3) != at.size(3))
    as = F::interpolate(as, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{at.size(2), at.size(3)})
                                .mode(torch::kBilinear)
                                .align_corners(false));
  auto qs = F::normalize(as.flatten(1), F::NormalizeFuncOptions().p(2).dim(1));
  auto qt = F::normalize(at.flatten(1), F::NormalizeFuncOptions().p(2).dim(1));
  return (qs - qt).pow(2).mean();
}

torch::Tensor confidence_weights(const std::vector<torch::Tensor>& teacher_logits, const torch::Tensor& labels) {
  std::vector<torch::Tensor> ce;
  for (const auto& t : teacher_logits)
    ce.push_back(F::cross_entropy(t, labels, F::CrossEntropyFuncOptions().reduction(torch::kNone)));
  auto L = torch::stack(ce);  // [K,B]
  const auto K = static_cast<double>(teacher_logits.size());
  return (1.0 - torch::softmax(L, 0)) / (K - 1.0);
}

}  // namespace kd::losses
