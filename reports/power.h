// The power of t-tests (through the noncentral t distribution), the smallest difference a comparison can
// detect and the number of seeds a difference needs. Torch-free; checked against scipy.stats.nct and
// scipy.stats.t on fixed inputs (tests/data/reference/stats.json).
//
// Two designs, as the report's comparisons use them:
//  * paired: n seeds, each a (method, reference) pair; the test is on the n differences, whose standard
//    deviation is `sd`: noncentrality delta / sd * sqrt(n), n - 1 degrees of freedom;
//  * two samples (Welch's rows: the seed sets differ): n1 and n2 values with a pooled standard deviation
//    `sd`: noncentrality delta / (sd sqrt(1/n1 + 1/n2)), n1 + n2 - 2 degrees of freedom (the pooled test,
//    the usual planning approximation for Welch's).
#pragma once
#include <cstddef>
#include <optional>
#include <vector>

namespace kd::stats {

// CDF of the noncentral t distribution with `dof` degrees of freedom and noncentrality `nc`
// (scipy.stats.nct.cdf): the Poisson-weighted series of incomplete beta functions (Lenth 1989, AS 243),
// summed outward from its largest term.
double noncentral_t_cdf(double t, double dof, double nc);

// Power of the two-sided t-test of level alpha whose statistic has `dof` degrees of freedom and, under the
// alternative, noncentrality `nc`: P(T > t_c) + P(T < -t_c), t_c = t_{1 - alpha/2, dof}.
double t_test_power(double nc, double dof, double alpha = 0.05);

struct PowerDesign {
  bool paired = true;
  double sd = 0;  // of the differences (paired) or the pooled within-group std (two samples)
};

// The power of the design to detect a true difference `delta` with n1 (and, two samples, n2) seeds.
double power_of(const PowerDesign& d, double delta, size_t n1, size_t n2, double alpha = 0.05);

// The smallest |difference| the design detects with probability `power` at level alpha with n1 (n2) seeds;
// nullopt when sd is not positive or there are too few seeds (paired: 2, two samples: 2 + 2).
std::optional<double> detectable_difference(const PowerDesign& d, size_t n1, size_t n2, double alpha = 0.05,
                                            double power = 0.8);

// The smallest number of seeds (paired: pairs; two samples: per side) with which the design detects
// `delta` with probability `power` at level alpha; nullopt when more than max_seeds are needed (a zero
// difference is never detected) or sd is not positive.
std::optional<size_t> seeds_needed(const PowerDesign& d, double delta, double alpha = 0.05, double power = 0.8,
                                   size_t max_seeds = 10000);

// The pooled within-group standard deviation of two samples (each of at least 2 values).
std::optional<double> pooled_sd(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace kd::stats
