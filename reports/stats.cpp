#include "reports/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace kd::stats {

double mean(const std::vector<double>& x) {
  if (x.empty()) return std::numeric_limits<double>::quiet_NaN();
  double s = 0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}

double median(std::vector<double> x) {
  if (x.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

std::optional<double> stddev(const std::vector<double>& x) {
  if (x.size() < 2) return std::nullopt;
  double m = mean(x), s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return std::sqrt(s / static_cast<double>(x.size() - 1));
}

namespace {
// Continued fraction for I_x(a,b) (modified Lentz's method).
double beta_cf(double a, double b, double x) {
  const double tiny = 1e-300, eps = 1e-15;
  double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < eps) break;
  }
  return h;
}
}  // namespace

double incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  double lbeta = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b);
  double front = std::exp(lbeta + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_cf(a, b, x) / a;
  return 1 - front * beta_cf(b, a, 1 - x) / b;
}

double t_cdf(double t, double dof) {
  if (dof <= 0) throw std::invalid_argument("t_cdf: degrees of freedom must be positive");
  double x = dof / (dof + t * t);
  double tail = 0.5 * incomplete_beta(dof / 2, 0.5, x);  // P(T > |t|)
  return t >= 0 ? 1 - tail : tail;
}

double t_quantile(double p, double dof) {
  if (p <= 0 || p >= 1) throw std::invalid_argument("t_quantile: p must be in (0, 1)");
  double lo = -1e4, hi = 1e4;
  for (int i = 0; i < 300; ++i) {
    double mid = 0.5 * (lo + hi);
    (t_cdf(mid, dof) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

std::optional<double> ci_half_width(const std::vector<double>& x, double level) {
  auto s = stddev(x);
  if (!s) return std::nullopt;
  double n = static_cast<double>(x.size());
  return t_quantile(1 - (1 - level) / 2, n - 1) * *s / std::sqrt(n);
}

std::optional<WelchResult> welch_t_test(const std::vector<double>& a, const std::vector<double>& b) {
  auto sa = stddev(a), sb = stddev(b);
  if (!sa || !sb) return std::nullopt;
  double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size());
  double va = *sa * *sa / na, vb = *sb * *sb / nb;
  if (va + vb <= 0) return std::nullopt;
  WelchResult r;
  r.t = (mean(a) - mean(b)) / std::sqrt(va + vb);
  r.dof = (va + vb) * (va + vb) / (va * va / (na - 1) + vb * vb / (nb - 1));
  r.p = 2 * (1 - t_cdf(std::fabs(r.t), r.dof));
  return r;
}

Summary summarize(const std::vector<double>& x) {
  Summary s;
  s.n = x.size();
  s.mean = mean(x);
  s.std = stddev(x);
  s.ci95 = ci_half_width(x, 0.95);
  return s;
}

}  // namespace kd::stats
