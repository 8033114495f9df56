#include "reports/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace kd::stats {

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

double incomplete_gamma_q(double a, double x) {
  if (a <= 0) throw std::invalid_argument("incomplete_gamma_q: a must be positive");
  if (x <= 0) return 1;
  const double eps = 1e-16, tiny = 1e-300;
  const double front = std::exp(-x + a * std::log(x) - std::lgamma(a));
  if (x < a + 1) {  // series for P(a, x), Q = 1 - P
    double ap = a, del = 1 / a, sum = del;
    for (int n = 0; n < 100000; ++n) {
      ap += 1;
      del *= x / ap;
      sum += del;
      if (std::fabs(del) < std::fabs(sum) * eps) break;
    }
    return 1 - sum * front;
  }
  // continued fraction for Q(a, x) (modified Lentz's method)
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 100000; ++i) {
    double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < eps) break;
  }
  return front * h;
}

double normal_cdf(double z) {
  return 0.5 * std::erfc(-z / std::sqrt(2.0));
}

namespace {
// P(T > |t|) for Student's t.
double t_upper_tail_of_abs(double t, double dof) {
  if (dof <= 0) throw std::invalid_argument("t distribution: degrees of freedom must be positive");
  if (std::isinf(t)) return 0;
  return 0.5 * incomplete_beta(dof / 2, 0.5, dof / (dof + t * t));
}
}  // namespace

double t_cdf(double t, double dof) {
  double tail = t_upper_tail_of_abs(t, dof);
  return t >= 0 ? 1 - tail : tail;
}

double t_two_sided_p(double t, double dof) {
  return std::min(1.0, 2 * t_upper_tail_of_abs(t, dof));
}

double chi2_sf(double x, double dof) {
  return incomplete_gamma_q(dof / 2, x / 2);
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
  r.diff = mean(a) - mean(b);
  r.t = r.diff / std::sqrt(va + vb);
  r.dof = (va + vb) * (va + vb) / (va * va / (na - 1) + vb * vb / (nb - 1));
  r.p = t_two_sided_p(r.t, r.dof);
  r.ci95 = t_quantile(0.975, r.dof) * std::sqrt(va + vb);
  return r;
}

std::optional<PairedResult> paired_t_test(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2) return std::nullopt;
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  auto sd = stddev(d);
  // No spread: every difference the same, up to rounding (below 1e-12 of the values' magnitude).
  double scale = 1;
  for (size_t i = 0; i < a.size(); ++i) scale = std::max({scale, std::fabs(a[i]), std::fabs(b[i])});
  if (!sd || *sd <= 1e-12 * scale) return std::nullopt;
  PairedResult r;
  r.n = d.size();
  const double n = static_cast<double>(r.n), se = *sd / std::sqrt(n);
  r.diff = mean(d);
  r.sd = *sd;
  r.dof = n - 1;
  r.t = r.diff / se;
  r.p = t_two_sided_p(r.t, r.dof);
  r.ci95 = t_quantile(0.975, r.dof) * se;
  return r;
}

std::vector<double> holm_adjust(const std::vector<double>& p) {
  const size_t m = p.size();
  std::vector<size_t> order(m);
  for (size_t i = 0; i < m; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return p[x] < p[y]; });
  std::vector<double> adjusted(m);
  double running = 0;
  for (size_t i = 0; i < m; ++i) {
    running = std::max(running, std::min(1.0, static_cast<double>(m - i) * p[order[i]]));
    adjusted[order[i]] = running;
  }
  return adjusted;
}

std::optional<FriedmanResult> friedman_test(const std::vector<std::vector<double>>& data) {
  const size_t n = data.size();
  if (n < 2) return std::nullopt;
  const size_t k = data[0].size();
  if (k < 2) return std::nullopt;
  std::vector<double> rank_sums(k, 0.0);
  double ties = 0;
  for (const auto& block : data) {
    if (block.size() != k) return std::nullopt;
    std::vector<size_t> order(k);
    for (size_t i = 0; i < k; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return block[x] > block[y]; });
    for (size_t i = 0; i < k;) {  // a run of equal values [i, j) shares the mean of ranks i+1 .. j
      size_t j = i + 1;
      while (j < k && block[order[j]] == block[order[i]]) ++j;
      const double shared = 0.5 * static_cast<double>(i + 1 + j), t = static_cast<double>(j - i);
      for (size_t q = i; q < j; ++q) rank_sums[order[q]] += shared;
      ties += t * (t * t - 1);
      i = j;
    }
  }
  const double nk = static_cast<double>(k), nn = static_cast<double>(n);
  const double correction = 1 - ties / (nk * (nk * nk - 1) * nn);
  if (correction <= 0) return std::nullopt;
  double ss = 0;
  for (double r : rank_sums) ss += r * r;
  FriedmanResult f;
  f.blocks = n;
  f.treatments = k;
  for (double r : rank_sums) f.mean_ranks.push_back(r / nn);
  f.chi2 = (12.0 / (nk * nn * (nk + 1)) * ss - 3 * nn * (nk + 1)) / correction;
  f.dof = nk - 1;
  f.p = chi2_sf(f.chi2, f.dof);
  return f;
}

namespace {
// Gauss-Legendre nodes and weights on [-1, 1] (Newton's method on the Legendre polynomial).
struct GaussLegendre {
  std::vector<double> x, w;
  explicit GaussLegendre(int n) : x(static_cast<size_t>(n)), w(static_cast<size_t>(n)) {
    const double pi = std::acos(-1.0);
    for (int i = 0; i < n; ++i) {
      double z = std::cos(pi * (i + 0.75) / (n + 0.5)), dp = 0;
      for (int it = 0; it < 100; ++it) {
        double p0 = 1, p1 = 0;
        for (int j = 1; j <= n; ++j) {
          double p2 = p1;
          p1 = p0;
          p0 = ((2.0 * j - 1) * z * p1 - (j - 1.0) * p2) / j;
        }
        dp = n * (z * p0 - p1) / (z * z - 1);
        double dz = p0 / dp;
        z -= dz;
        if (std::fabs(dz) < 1e-16) break;
      }
      x[static_cast<size_t>(i)] = z;
      w[static_cast<size_t>(i)] = 2 / ((1 - z * z) * dp * dp);
    }
  }
};
}  // namespace

double studentized_range_cdf(double q, int k) {
  if (k < 2) throw std::invalid_argument("studentized range: needs at least 2 groups");
  if (q <= 0) return 0;
  static const GaussLegendre gl(20);
  const double inv_sqrt_2pi = 1 / std::sqrt(2 * std::acos(-1.0));
  // The integrand is below phi(z), so [-10, 10] holds all of it but 1e-23; panels of width 0.5.
  const double lo = -10, hi = 10, width = 0.5;
  const int panels = static_cast<int>(std::ceil((hi - lo) / width));
  double sum = 0;
  for (int i = 0; i < panels; ++i) {
    const double a = lo + i * width, half = width / 2, mid = a + half;
    for (size_t j = 0; j < gl.x.size(); ++j) {
      const double z = mid + half * gl.x[j];
      const double inner = normal_cdf(z) - normal_cdf(z - q);
      sum += gl.w[j] * half * inv_sqrt_2pi * std::exp(-0.5 * z * z) * std::pow(inner, k - 1);
    }
  }
  return std::min(1.0, k * sum);
}

double studentized_range_quantile(double p, int k) {
  if (p <= 0 || p >= 1) throw std::invalid_argument("studentized range quantile: p must be in (0, 1)");
  double lo = 0, hi = 1;
  while (studentized_range_cdf(hi, k) < p) hi *= 2;
  for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; ++i) {
    double mid = 0.5 * (lo + hi);
    (studentized_range_cdf(mid, k) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double nemenyi_q(int k, double alpha) {
  return studentized_range_quantile(1 - alpha, k) / std::sqrt(2.0);
}

double nemenyi_critical_difference(int k, size_t n, double alpha) {
  if (n == 0) throw std::invalid_argument("Nemenyi critical difference: needs at least one block");
  return nemenyi_q(k, alpha) * std::sqrt(k * (k + 1.0) / (6.0 * static_cast<double>(n)));
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
