#include "methods/logit_losses.h"

#include <stdexcept>
#include <string>

namespace kd::losses {

namespace {
void check_logits(const char* what, const torch::Tensor& s, const torch::Tensor& t) {
  if (s.dim() != 2 || t.dim() != 2 || s.sizes() != t.sizes())
    throw std::invalid_argument(std::string(what) + ": expected student and teacher logits of one shape [B, C], got " +
                                std::to_string(s.dim()) + "-D and " + std::to_string(t.dim()) + "-D tensors of " +
                                std::to_string(s.numel()) + " and " + std::to_string(t.numel()) + " elements");
}

// sum over all elements of KL(target || exp(log_input)) pointwise: target (log target - log_input), 0 where
// target = 0 (as torch's kl_div with reduction sum).
torch::Tensor kl_sum(const torch::Tensor& log_input, const torch::Tensor& target) {
  return (torch::xlogy(target, target) - target * log_input).sum();
}

// Pearson correlation of each row of a with the same row of b, eps added to the product of the norms.
torch::Tensor pearson_rows(const torch::Tensor& a, const torch::Tensor& b) {
  auto ac = a - a.mean(1, true);
  auto bc = b - b.mean(1, true);
  return (ac * bc).sum(1) / (ac.norm(2, 1) * bc.norm(2, 1) + 1e-8);
}
}  // namespace

torch::Tensor standardize_logits(const torch::Tensor& z, StandardizationForm form) {
  auto centred = z - z.mean(-1, true);
  if (form == StandardizationForm::Reference) return centred / (z.std(-1, /*unbiased=*/true, true) + 1e-7);
  return centred / z.std(-1, /*unbiased=*/false, true);
}

DkdTerms dkd(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& labels, double T) {
  check_logits("dkd", s, t);
  const double B = static_cast<double>(s.size(0));
  auto gt = torch::zeros_like(s).scatter_(1, labels.reshape({-1, 1}), 1.0);
  auto other = 1.0 - gt;
  auto ps = torch::softmax(s / T, 1), pt = torch::softmax(t / T, 1);
  auto binary = [&](const torch::Tensor& p) {
    return torch::cat({(p * gt).sum(1, true), (p * other).sum(1, true)}, 1);
  };
  DkdTerms out;
  out.tckd = kl_sum(torch::log(binary(ps)), binary(pt)) * (T * T) / B;
  auto qt = torch::softmax(t / T - 1000.0 * gt, 1);
  auto log_qs = torch::log_softmax(s / T - 1000.0 * gt, 1);
  out.nckd = kl_sum(log_qs, qt) * (T * T) / B;
  return out;
}

DistTerms dist(const torch::Tensor& s, const torch::Tensor& t, double tau) {
  check_logits("dist", s, t);
  auto ys = torch::softmax(s / tau, 1), yt = torch::softmax(t / tau, 1);
  DistTerms out;
  out.inter = (1.0 - pearson_rows(ys, yt).mean()) * (tau * tau);
  out.intra = (1.0 - pearson_rows(ys.t(), yt.t()).mean()) * (tau * tau);
  return out;
}

}  // namespace kd::losses
