#include "methods/feature_losses.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace F = torch::nn::functional;

namespace kd::losses {

namespace {
void require_map(const torch::Tensor& t, const char* fn) {
  if (t.dim() != 4)
    throw std::invalid_argument(std::string(fn) + ": expected a [B,C,H,W] map, got " + std::to_string(t.dim()) + "-D");
}
torch::Tensor pool_to(const torch::Tensor& x, int64_t h) {
  return F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions({h, h}));
}
}  // namespace

std::pair<torch::Tensor, torch::Tensor> pool_larger_height(const torch::Tensor& a, const torch::Tensor& b) {
  require_map(a, "pool_larger_height");
  require_map(b, "pool_larger_height");
  if (a.size(2) > b.size(2)) return {pool_to(a, b.size(2)), b};
  if (a.size(2) < b.size(2)) return {a, pool_to(b, a.size(2))};
  return {a, b};
}

// ---- VID ----------------------------------------------------------------------------------------------------
torch::Tensor vid_variance(const torch::Tensor& log_scale, double eps) {
  return torch::log(1.0 + torch::exp(log_scale)) + eps;
}

torch::Tensor vid_nll(const torch::Tensor& mu, const torch::Tensor& target, const torch::Tensor& variance,
                      bool per_sample_sum) {
  auto var = variance.view({1, -1, 1, 1});
  auto nll = 0.5 * ((mu - target).pow(2) / var + torch::log(var));
  if (per_sample_sum) return nll.sum() / mu.size(0);
  return nll.mean();
}

// ---- AB -----------------------------------------------------------------------------------------------------
torch::Tensor ab_alternative_l2(const torch::Tensor& s, const torch::Tensor& t, double m) {
  auto neg = ((s > -m) & (t <= 0)).to(s.scalar_type());
  auto pos = ((s <= m) & (t > 0)).to(s.scalar_type());
  return ((s + m).pow(2) * neg + (s - m).pow(2) * pos).sum();
}

torch::Tensor ab_loss(const std::vector<torch::Tensor>& sources, const std::vector<torch::Tensor>& targets,
                      double margin) {
  if (sources.size() != targets.size() || sources.empty())
    throw std::invalid_argument("ab_loss: needs as many targets as sources (and at least one)");
  const auto n = static_cast<int>(sources.size());
  const double batch = static_cast<double>(sources[0].size(0));
  torch::Tensor total;
  for (int i = 0; i < n; ++i) {
    const double w = std::pow(2.0, i - n + 1);
    auto l = w * ab_alternative_l2(sources[i], targets[i], margin) / batch / 1000 * 3;
    total = total.defined() ? total + l : l;
  }
  return total;
}

// ---- FSP ----------------------------------------------------------------------------------------------------
torch::Tensor fsp_matrix(const torch::Tensor& bottom, const torch::Tensor& top) {
  auto [b, t] = pool_larger_height(bottom, top);
  const int64_t B = b.size(0);
  // [B, C_top, HW] x [B, HW, C_bottom] / HW = [B, C_top, C_bottom]
  auto bf = b.reshape({B, b.size(1), -1});
  auto tf = t.reshape({B, t.size(1), -1});
  return torch::bmm(tf, bf.transpose(1, 2)) / static_cast<double>(bf.size(2));
}

torch::Tensor fsp_loss(const std::vector<torch::Tensor>& student, const std::vector<torch::Tensor>& teacher,
                       bool paper_sum) {
  if (student.size() != teacher.size() || student.size() < 2)
    throw std::invalid_argument("fsp_loss: needs the same number (at least 2) of student and teacher maps");
  torch::Tensor total;
  for (size_t i = 0; i + 1 < student.size(); ++i) {
    auto d = (fsp_matrix(student[i], student[i + 1]) - fsp_matrix(teacher[i], teacher[i + 1])).pow(2);
    auto l = paper_sum ? d.sum() / d.size(0) : d.mean();
    total = total.defined() ? total + l : l;
  }
  return total;
}

// ---- FT -----------------------------------------------------------------------------------------------------
torch::Tensor ft_factor(const torch::Tensor& f, double p1) {
  return F::normalize(f.pow(p1).mean(1).reshape({f.size(0), -1}), F::NormalizeFuncOptions().p(2).dim(1));
}

torch::Tensor ft_loss(const torch::Tensor& factor_s, const torch::Tensor& factor_t, double p1, double p2, bool paper) {
  auto [s, t] = pool_larger_height(factor_s, factor_t);
  if (paper) {
    auto vs = F::normalize(s.reshape({s.size(0), -1}), F::NormalizeFuncOptions().p(2).dim(1));
    auto vt = F::normalize(t.reshape({t.size(0), -1}), F::NormalizeFuncOptions().p(2).dim(1));
    return (vs - vt).abs().pow(p2).sum(1).pow(1.0 / p2).mean();
  }
  auto d = ft_factor(s, p1) - ft_factor(t, p1);
  return p2 == 1.0 ? d.abs().mean() : d.pow(p2).mean();
}

// ---- CRD ----------------------------------------------------------------------------------------------------
torch::Tensor crd_contrast_loss(const torch::Tensor& scores, int64_t n_data) {
  constexpr double kEps = 1e-7;
  const int64_t B = scores.size(0);
  const double m = static_cast<double>(scores.size(1) - 1);
  const double mPn = m / static_cast<double>(n_data);
  auto pos = scores.select(1, 0);
  auto neg = scores.narrow(1, 1, scores.size(1) - 1);
  auto log_d1 = torch::log(pos / (pos + (mPn + kEps)));
  auto log_d0 = torch::log(mPn / (neg + (mPn + kEps)));
  return -(log_d1.sum() + log_d0.sum()) / static_cast<double>(B);
}

torch::Tensor crd_l2_normalize(const torch::Tensor& x) {
  return x / x.pow(2).sum(1, true).pow(0.5);
}

// ---- ReviewKD -----------------------------------------------------------------------------------------------
torch::Tensor hcl_level(const torch::Tensor& fs, const torch::Tensor& ft) {
  require_map(fs, "hcl");
  const int64_t h = fs.size(2);
  auto loss = F::mse_loss(fs, ft);
  double cnt = 1.0, tot = 1.0;
  for (int64_t l : {4, 2, 1}) {
    if (l >= h) continue;
    cnt /= 2.0;
    loss = loss + F::mse_loss(pool_to(fs, l), pool_to(ft, l)) * cnt;
    tot += cnt;
  }
  return loss / tot;
}

torch::Tensor hcl(const std::vector<torch::Tensor>& fs, const std::vector<torch::Tensor>& ft) {
  if (fs.size() != ft.size() || fs.empty()) throw std::invalid_argument("hcl: needs as many teacher as student maps");
  torch::Tensor total;
  for (size_t i = 0; i < fs.size(); ++i) {
    auto l = hcl_level(fs[i], ft[i]);
    total = total.defined() ? total + l : l;
  }
  return total;
}

// ---- OFD ----------------------------------------------------------------------------------------------------
torch::Tensor ofd_margin(const torch::Tensor& gamma, const torch::Tensor& beta) {
  auto g = gamma.detach().to(torch::kCPU, torch::kDouble).contiguous();
  auto b = beta.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const int64_t C = g.numel();
  std::vector<float> margin(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double s = std::abs(g[c].item<double>()), m = b[c].item<double>();
    const double cdf = 0.5 * std::erfc((m / s) / std::sqrt(2.0));  // Phi(-m/s)
    if (cdf > 0.001) {
      margin[static_cast<size_t>(c)] =
          static_cast<float>(-s * std::exp(-(m / s) * (m / s) / 2) / std::sqrt(2 * M_PI) / cdf + m);
    } else {
      margin[static_cast<size_t>(c)] = static_cast<float>(-3 * s);
    }
  }
  return torch::tensor(margin, torch::kFloat);
}

torch::Tensor ofd_partial_l2(const torch::Tensor& source, const torch::Tensor& target, const torch::Tensor& margin) {
  auto t = torch::max(target, margin.view({1, -1, 1, 1}).to(target.options()));
  auto mask = ((source > t) | (t > 0)).to(source.scalar_type());
  return ((source - t).pow(2) * mask).sum();
}

}  // namespace kd::losses
