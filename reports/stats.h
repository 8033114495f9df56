// Statistics for reports (torch-free): mean, sample standard deviation, the Student t
// distribution (through the regularised incomplete beta function), 95% confidence intervals and
// Welch's unequal-variance t-test.
#pragma once
#include <cstddef>
#include <optional>
#include <vector>

namespace kd::stats {

double mean(const std::vector<double>& x);
// Median (the mean of the two middle values for an even count); NaN for an empty sample.
double median(std::vector<double> x);
// Sample standard deviation (n - 1); nullopt for n < 2 (undefined, never shown as 0).
std::optional<double> stddev(const std::vector<double>& x);

// Regularised incomplete beta I_x(a, b).
double incomplete_beta(double a, double b, double x);
// CDF of Student's t with `dof` degrees of freedom (dof may be fractional, as in Welch's test).
double t_cdf(double t, double dof);
// Quantile: the t with t_cdf(t, dof) = p.
double t_quantile(double p, double dof);

// Half-width of the two-sided confidence interval of the mean (t_{1-(1-level)/2, n-1} * s / sqrt(n));
// nullopt for n < 2.
std::optional<double> ci_half_width(const std::vector<double>& x, double level = 0.95);

struct WelchResult {
  double t = 0, dof = 0, p = 1;  // two-sided p
};
// Welch's t-test of mean(a) - mean(b); nullopt when either side has fewer than 2 values or both
// variances are 0.
std::optional<WelchResult> welch_t_test(const std::vector<double>& a, const std::vector<double>& b);

// Everything a table shows about one sample: n, mean, sample std and the 95% CI half-width
// (std and ci are nullopt for n < 2; mean is NaN for n = 0).
struct Summary {
  size_t n = 0;
  double mean = 0;
  std::optional<double> std, ci95;
};
Summary summarize(const std::vector<double>& x);

}  // namespace kd::stats
