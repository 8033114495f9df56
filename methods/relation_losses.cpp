#include "methods/relation_losses.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "methods/losses.h"

namespace F = torch::nn::functional;

namespace kd::losses {

namespace {
void check_batch(const char* what, const torch::Tensor& s, const torch::Tensor& t, int64_t min_batch) {
  if (s.dim() < 2 || t.dim() < 2 || s.size(0) != t.size(0))
    throw std::invalid_argument(std::string(what) +
                                ": expected student and teacher features [B, ...] of one batch, got " +
                                std::to_string(s.dim()) + "-D and " + std::to_string(t.dim()) + "-D tensors");
  if (s.size(0) < min_batch)
    throw std::invalid_argument(std::string(what) + ": needs a batch of at least " + std::to_string(min_batch) +
                                " samples, got " + std::to_string(s.size(0)));
}

torch::Tensor l2_normalize(const torch::Tensor& x, int64_t dim) {
  return F::normalize(x, F::NormalizeFuncOptions().p(2).dim(dim));  // x / max(||x||, 1e-12)
}

torch::Tensor eye_like(int64_t n, const torch::Tensor& like) {
  return torch::eye(n, torch::TensorOptions().dtype(torch::kBool).device(like.device()));
}

// Pairwise Euclidean distances with RepDistiller's RKDLoss.pdist: clamp at 1e-12 before the square root,
// the diagonal set to 0 after it.
torch::Tensor pairwise_distances(const torch::Tensor& e) {
  auto sq = e.pow(2).sum(1);
  auto d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e.matmul(e.t())).clamp_min(1e-12);
  return d2.sqrt().masked_fill(eye_like(e.size(0), e), 0.0);
}

// Distances divided by their mean over the entries > 0 (the off-diagonal pairs).
torch::Tensor normalised_pdist(const torch::Tensor& e) {
  auto d = pairwise_distances(e);
  return d / d.masked_select(d > 0).mean();
}

// angle[a, b, c] = <u_ab, u_ac>, u_ab = normalise(e_b - e_a): [B^3] flattened.
torch::Tensor angles(const torch::Tensor& e) {
  auto u = l2_normalize(e.unsqueeze(0) - e.unsqueeze(1), 2);  // [B, B, D], u[a][b] = e_b - e_a
  return torch::bmm(u, u.transpose(1, 2)).reshape({-1});
}

torch::Tensor huber(const torch::Tensor& a, const torch::Tensor& b) {
  return F::smooth_l1_loss(a, b, F::SmoothL1LossFuncOptions().reduction(torch::kNone));
}

// (x^T x + 1) / 2 of the rows of x normalised as PKT's reference does: x / (||x|| + eps), NaN -> 0.
torch::Tensor cosine_kernel(const torch::Tensor& f, double eps) {
  auto x = f / (f.pow(2).sum(1, true).sqrt() + eps);
  x = torch::where(torch::isnan(x), torch::zeros_like(x), x);
  return (x.matmul(x.t()) + 1.0) / 2.0;
}

// psi_ij = sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! (f_i . f_j)^p of L2-normalised rows.
torch::Tensor taylor_rbf_correlation(const torch::Tensor& f, double gamma, int64_t order) {
  auto n = l2_normalize(f.flatten(1), 1);
  auto dot = n.matmul(n.t());
  auto psi = torch::zeros_like(dot);
  double coef = std::exp(-2.0 * gamma);  // p = 0
  auto power = torch::ones_like(dot);
  for (int64_t p = 0; p <= order; ++p) {
    psi = psi + coef * power;
    power = power * dot;
    coef *= 2.0 * gamma / static_cast<double>(p + 1);
  }
  return psi;
}
}  // namespace

torch::Tensor similarity_preserving(const torch::Tensor& fs, const torch::Tensor& ft) {
  check_batch("sp", fs, ft, 1);
  const auto B = fs.size(0);
  auto qs = fs.reshape({B, -1}), qt = ft.reshape({B, -1});
  auto gs = l2_normalize(qs.matmul(qs.t()), 1);
  auto gt = l2_normalize(qt.matmul(qt.t()), 1);
  return (gt - gs).pow(2).sum() / static_cast<double>(B * B);
}

RkdTerms rkd(const torch::Tensor& fs, const torch::Tensor& ft, Form form) {
  check_batch("rkd", fs, ft, form == Form::Paper ? 3 : 2);
  const auto B = fs.size(0);
  auto s = fs.reshape({B, -1}), t = ft.reshape({B, -1});
  torch::Tensor td, ta;
  {
    torch::NoGradGuard no_grad;
    td = normalised_pdist(t);
    ta = angles(t);
  }
  auto hd = huber(normalised_pdist(s), td);  // [B, B]
  auto ha = huber(angles(s), ta);            // [B^3]
  if (form == Form::Reference) return {hd.mean(), ha.mean()};
  auto off = eye_like(B, s).logical_not();
  auto distinct = off.unsqueeze(2) & off.unsqueeze(1) & off.unsqueeze(0);  // a != b, a != c, b != c
  return {hd.masked_select(off).mean(), ha.masked_select(distinct.reshape({-1})).mean()};
}

torch::Tensor pkt(const torch::Tensor& fs, const torch::Tensor& ft, Form form) {
  check_batch("pkt", fs, ft, form == Form::Paper ? 2 : 1);
  const auto B = fs.size(0);
  auto s = fs.reshape({B, -1}), t = ft.reshape({B, -1});
  if (form == Form::Reference) {
    constexpr double eps = 1e-7;
    auto ks = cosine_kernel(s, eps), kt = cosine_kernel(t, eps);
    auto ps = ks / ks.sum(1, true), pt = kt / kt.sum(1, true);
    return (pt * torch::log((pt + eps) / (ps + eps))).mean();
  }
  auto off = eye_like(B, s).logical_not();
  auto cond = [&](const torch::Tensor& f) {
    auto k = cosine_kernel(f, 0.0).masked_fill(off.logical_not(), 0.0);
    return k / k.sum(1, true);
  };
  auto ps = cond(s).masked_select(off), pt = cond(t).masked_select(off);
  return (torch::xlogy(pt, pt) - pt * torch::log(ps)).sum();
}

torch::Tensor nst(const torch::Tensor& fs, const torch::Tensor& ft) {
  check_batch("nst", fs, ft, 1);
  auto [s, t] = pool_to_common_size(fs, ft);
  s = l2_normalize(s.flatten(2), 2);  // [B, C_s, HW]
  t = l2_normalize(t.flatten(2), 2);
  auto poly = [](const torch::Tensor& a, const torch::Tensor& b) { return torch::bmm(a, b.transpose(1, 2)).pow(2); };
  return poly(t, t).mean().detach() + poly(s, s).mean() - 2.0 * poly(s, t).mean();
}

torch::Tensor correlation_congruence(const torch::Tensor& fs, const torch::Tensor& ft) {
  check_batch("cc", fs, ft, 2);
  if (fs.sizes() != ft.sizes())
    throw std::invalid_argument("cc: student and teacher embeddings must have one shape, got " +
                                std::to_string(fs.numel()) + " and " + std::to_string(ft.numel()) + " elements");
  auto delta = (fs - ft).abs().flatten(1);
  const auto B = delta.size(0);
  return (delta.narrow(0, 0, B - 1) * delta.narrow(0, 1, B - 1)).sum(1).mean();
}

torch::Tensor correlation_congruence_paper(const torch::Tensor& fs, const torch::Tensor& ft, double gamma,
                                           int64_t order) {
  check_batch("cc", fs, ft, 1);
  const auto B = static_cast<double>(fs.size(0));
  auto ps = taylor_rbf_correlation(fs, gamma, order), pt = taylor_rbf_correlation(ft, gamma, order);
  return (pt - ps).pow(2).sum() / (B * B);
}

}  // namespace kd::losses
