#include "reports/power.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "reports/stats.h"

namespace kd::stats {

namespace {

// F(t; dof, nc) for t >= 0 (Lenth 1989): Phi(-nc) + 1/2 sum_j [p_j I_x(j + 1/2, dof/2) + q_j I_x(j + 1, dof/2)],
// x = t^2 / (t^2 + dof), p_j = e^-L L^j / j!, q_j = nc e^-L L^j / (sqrt 2 Gamma(j + 3/2)), L = nc^2 / 2.
double noncentral_t_cdf_nonnegative(double t, double dof, double nc) {
  const double base = normal_cdf(-nc);
  if (t <= 0) return base;
  const double x = t * t / (t * t + dof), lambda = nc * nc / 2, half_dof = dof / 2;
  if (lambda == 0) return std::min(1.0, base + 0.5 * incomplete_beta(0.5, half_dof, x));
  const double log_lambda = std::log(lambda), q_scale = nc / std::sqrt(2.0);
  // Term j, and how much weight it carries (for stopping: I_x <= 1, so the rest is below the weights).
  auto term = [&](double j, double& weight) {
    const double log_w = -lambda + j * log_lambda;
    const double p = std::exp(log_w - std::lgamma(j + 1)), q = q_scale * std::exp(log_w - std::lgamma(j + 1.5));
    weight = p + std::fabs(q);
    return p * incomplete_beta(j + 0.5, half_dof, x) + q * incomplete_beta(j + 1, half_dof, x);
  };
  const double peak = std::floor(lambda), tol = 1e-18;
  double sum = 0, weight = 0;
  for (double j = peak; j < peak + 1e6; ++j) {  // from the largest term up
    sum += term(j, weight);
    if (weight < tol && j > peak + 1) break;
  }
  for (double j = peak - 1; j >= 0; --j) {  // and down
    sum += term(j, weight);
    if (weight < tol) break;
  }
  return std::clamp(base + 0.5 * sum, 0.0, 1.0);
}

}  // namespace

double noncentral_t_cdf(double t, double dof, double nc) {
  if (!(dof > 0)) throw std::invalid_argument("noncentral t: degrees of freedom must be positive");
  if (t >= 0) return noncentral_t_cdf_nonnegative(t, dof, nc);
  return 1 - noncentral_t_cdf_nonnegative(-t, dof, -nc);
}

double t_test_power(double nc, double dof, double alpha) {
  const double tc = t_quantile(1 - alpha / 2, dof);
  // |nc| >= 40 (tc + 1): T = (Z + nc) / sqrt(V / dof) stays inside [-tc, tc] only if |Z| > 20 or V / dof > 1600,
  // together below 1e-88: the power is 1 in double precision (and the series would need ~sqrt(nc^2 / 2) terms).
  if (std::fabs(nc) >= 40 * (tc + 1)) return 1.0;
  return (1 - noncentral_t_cdf(tc, dof, nc)) + noncentral_t_cdf(-tc, dof, nc);
}

double power_of(const PowerDesign& d, double delta, size_t n1, size_t n2, double alpha) {
  const double a = static_cast<double>(n1), b = static_cast<double>(n2);
  if (d.paired) return t_test_power(delta / d.sd * std::sqrt(a), a - 1, alpha);
  return t_test_power(delta / (d.sd * std::sqrt(1 / a + 1 / b)), a + b - 2, alpha);
}

std::optional<double> detectable_difference(const PowerDesign& d, size_t n1, size_t n2, double alpha, double power) {
  if (!(d.sd > 0) || n1 < 2 || (!d.paired && n2 < 2)) return std::nullopt;
  // The power grows with the difference: bracket the target, then bisect (in units of sd).
  auto at = [&](double effect) { return power_of(d, effect * d.sd, n1, n2, alpha); };
  double lo = 0, hi = 1;
  while (at(hi) < power) {
    lo = hi;
    hi *= 2;
    if (hi > 1e12) return std::nullopt;
  }
  for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (at(mid) < power ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi) * d.sd;
}

std::optional<size_t> seeds_needed(const PowerDesign& d, double delta, double alpha, double power, size_t max_seeds) {
  if (!(d.sd > 0) || delta == 0 || !std::isfinite(delta)) return std::nullopt;
  auto enough = [&](size_t n) { return power_of(d, std::fabs(delta), n, n, alpha) >= power; };
  size_t lo = 1, hi = 2;  // enough(lo) is false (one seed tests nothing); find hi with enough(hi)
  while (!enough(hi)) {
    if (hi >= max_seeds) return std::nullopt;
    lo = hi;
    hi = std::min(max_seeds, hi * 2);
  }
  while (hi - lo > 1) {
    const size_t mid = lo + (hi - lo) / 2;
    (enough(mid) ? hi : lo) = mid;
  }
  return hi;
}

std::optional<double> pooled_sd(const std::vector<double>& a, const std::vector<double>& b) {
  auto sa = stddev(a), sb = stddev(b);
  if (!sa || !sb) return std::nullopt;
  const double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size());
  return std::sqrt(((na - 1) * *sa * *sa + (nb - 1) * *sb * *sb) / (na + nb - 2));
}

}  // namespace kd::stats
