// Statistics for reports (torch-free): mean, sample standard deviation, the Student t, normal, chi-square
// and studentized-range distributions, 95% confidence intervals, Welch's and the paired t-test, the
// Holm-Bonferroni correction and Friedman's test with the Nemenyi critical difference (Demsar 2006).
// Each is checked against scipy.stats on fixed inputs (tests/data/reference/stats.json).
#pragma once
#include <cstddef>
#include <optional>
#include <vector>

#include "base/summary.h"

namespace kd::stats {

// mean, median and stddev: base/summary.h.

// Regularised incomplete beta I_x(a, b).
double incomplete_beta(double a, double b, double x);
// Regularised upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a).
double incomplete_gamma_q(double a, double x);
// CDF of the standard normal distribution.
double normal_cdf(double z);
// CDF of Student's t with `dof` degrees of freedom (dof may be fractional, as in Welch's test).
double t_cdf(double t, double dof);
// Two-sided p of a t statistic: P(|T| >= |t|), computed from the tail (no 1 - cdf cancellation).
double t_two_sided_p(double t, double dof);
// Survival function of the chi-square distribution: P(X >= x) with `dof` degrees of freedom.
double chi2_sf(double x, double dof);
// Quantile: the t with t_cdf(t, dof) = p.
double t_quantile(double p, double dof);

// Half-width of the two-sided confidence interval of the mean (t_{1-(1-level)/2, n-1} * s / sqrt(n));
// nullopt for n < 2.
std::optional<double> ci_half_width(const std::vector<double>& x, double level = 0.95);

struct WelchResult {
  double t = 0, dof = 0, p = 1;  // two-sided p
  double diff = 0;               // mean(a) - mean(b)
  double ci95 = 0;               // half-width of its 95% interval: t_{0.975, dof} * standard error
};
// Welch's t-test of mean(a) - mean(b); nullopt when either side has fewer than 2 values or both
// variances are 0.
std::optional<WelchResult> welch_t_test(const std::vector<double>& a, const std::vector<double>& b);

struct PairedResult {
  size_t n = 0;           // pairs
  double diff = 0;        // mean of a[i] - b[i]
  double sd = 0;          // sample std of the differences
  double t = 0, dof = 0;  // t = diff / (sd / sqrt n), dof = n - 1
  double p = 1;           // two-sided
  double ci95 = 0;        // half-width of the 95% interval of the mean difference
};
// The paired t-test of a[i] - b[i] (scipy.stats.ttest_rel); nullopt when the sizes differ, there are fewer
// than 2 pairs, or every difference is the same (sd 0, or below 1e-12 of the values' magnitude: rounding; no t).
std::optional<PairedResult> paired_t_test(const std::vector<double>& a, const std::vector<double>& b);

// Holm-Bonferroni adjusted p-values, in the order given: sorted ascending, the i-th smallest (0-based) is
// multiplied by (m - i), made non-decreasing along that order and capped at 1. A p below alpha after the
// adjustment is a finding at family-wise error rate alpha over the m comparisons.
std::vector<double> holm_adjust(const std::vector<double>& p);

// Friedman's test of k treatments over n blocks (scipy.stats.friedmanchisquare, with its tie correction).
struct FriedmanResult {
  size_t blocks = 0, treatments = 0;
  std::vector<double> mean_ranks;  // per treatment; rank 1 = the largest value of a block, ties share the mean
  double chi2 = 0, dof = 0, p = 1;
};
// data[b][t] is treatment t's value in block b (higher is better). nullopt for fewer than 2 blocks or 2
// treatments, rows of unequal length, or when every block is one tie (no statistic).
std::optional<FriedmanResult> friedman_test(const std::vector<std::vector<double>>& data);

// CDF and quantile of the studentized range of k independent standard normal values (infinite degrees of
// freedom): P(Q <= q) = k * integral phi(z) (Phi(z) - Phi(z - q))^(k-1) dz.
double studentized_range_cdf(double q, int k);
double studentized_range_quantile(double p, int k);
// Nemenyi's critical difference of mean ranks (Demsar 2006, eq. 5): two treatments whose mean ranks over
// n blocks differ by at least q_alpha * sqrt(k (k + 1) / (6 n)) differ at level alpha, where q_alpha is the
// studentized range's 1 - alpha quantile for k treatments divided by sqrt 2 (Demsar's Table 5a).
double nemenyi_q(int k, double alpha = 0.05);
double nemenyi_critical_difference(int k, size_t n, double alpha = 0.05);

// Everything a table shows about one sample: n, mean, sample std and the 95% CI half-width
// (std and ci are nullopt for n < 2; mean is NaN for n = 0).
struct Summary {
  size_t n = 0;
  double mean = 0;
  std::optional<double> std, ci95;
};
Summary summarize(const std::vector<double>& x);

}  // namespace kd::stats
