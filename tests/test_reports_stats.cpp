// Statistics against textbook / hand-computed values.
#include <gtest/gtest.h>

#include <cmath>

#include "reports/stats.h"

namespace {

using namespace kd::stats;

TEST(Stats, MeanAndSampleStd) {
  // {2,4,4,4,5,5,7,9}: mean 5, sum of squares 32, sample variance 32/7.
  std::vector<double> x{2, 4, 4, 4, 5, 5, 7, 9};
  EXPECT_DOUBLE_EQ(mean(x), 5.0);
  EXPECT_NEAR(*stddev(x), std::sqrt(32.0 / 7.0), 1e-12);
  EXPECT_FALSE(stddev({3.0}).has_value()) << "one seed has no spread: undefined, not 0";
}

TEST(Stats, MedianOddEvenEmpty) {
  EXPECT_DOUBLE_EQ(kd::stats::median({3.0, 1.0, 2.0}), 2.0);
  EXPECT_DOUBLE_EQ(kd::stats::median({4.0, 1.0, 3.0, 2.0}), 2.5);
  EXPECT_DOUBLE_EQ(kd::stats::median({7.0}), 7.0);
  EXPECT_TRUE(std::isnan(kd::stats::median({})));
}

TEST(Stats, StudentTQuantilesFromTables) {
  // Two-sided 95% critical values (standard t tables).
  EXPECT_NEAR(t_quantile(0.975, 1), 12.706205, 1e-5);
  EXPECT_NEAR(t_quantile(0.975, 2), 4.302653, 1e-5);
  EXPECT_NEAR(t_quantile(0.975, 4), 2.776445, 1e-5);
  EXPECT_NEAR(t_quantile(0.975, 30), 2.042272, 1e-5);
  EXPECT_NEAR(t_cdf(0, 5), 0.5, 1e-12);
  // t with 1 dof is Cauchy: CDF(1) = 3/4.
  EXPECT_NEAR(t_cdf(1, 1), 0.75, 1e-10);
  // I_x(1,1) = x; I_x(a,1) = x^a.
  EXPECT_NEAR(incomplete_beta(1, 1, 0.3), 0.3, 1e-12);
  EXPECT_NEAR(incomplete_beta(3, 1, 0.5), 0.125, 1e-12);
}

TEST(Stats, ConfidenceIntervalByHand) {
  // x = {1,2,3}: mean 2, s = 1, n = 3 -> half-width = t_{0.975,2} / sqrt(3) = 4.302653 / 1.7320508
  EXPECT_NEAR(*ci_half_width({1, 2, 3}), 4.302653 / std::sqrt(3.0), 1e-5);
  EXPECT_FALSE(ci_half_width({1}).has_value());
}

TEST(Stats, WelchByHand) {
  // a = {1,2,3,4}: mean 2.5, var 5/3; b = {2,4,6,8,10}: mean 6, var 10.
  // se^2 = (5/3)/4 + 10/5 = 0.4166667 + 2 = 2.4166667; t = -3.5 / 1.5545632 = -2.2514363
  // dof = 2.4166667^2 / ((0.4166667^2)/3 + (2^2)/4) = 5.8402778 / (0.0578704 + 1) = 5.5207877
  auto r = welch_t_test({1, 2, 3, 4}, {2, 4, 6, 8, 10});
  ASSERT_TRUE(r.has_value());
  EXPECT_NEAR(r->t, -2.2514363, 1e-6);
  EXPECT_NEAR(r->dof, 5.5207877, 1e-6);
  // two-sided p for |t| = 2.2515 at 5.52 dof, between the 0.05 (2.50) and 0.1 (1.96) critical values
  EXPECT_GT(r->p, 0.05);
  EXPECT_LT(r->p, 0.10);
  EXPECT_NEAR(r->p, 2 * (1 - t_cdf(2.2514363, 5.5207877)), 1e-6);
  // Identical samples: t = 0, p = 1. Too few values: no test.
  auto same = welch_t_test({1, 2, 3}, {1, 2, 3});
  EXPECT_NEAR(same->p, 1.0, 1e-12);
  EXPECT_FALSE(welch_t_test({1}, {1, 2}).has_value());
}

TEST(Stats, StudentTCdfClosedForms) {
  // nu = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)); F(1) = 1/2 + 1/(2 sqrt 3) = 0.7886751.
  EXPECT_NEAR(t_cdf(1, 2), 0.5 + 1 / (2 * std::sqrt(3.0)), 1e-10);
  EXPECT_NEAR(t_cdf(-3, 2), 0.5 - 3 / (2 * std::sqrt(11.0)), 1e-10);
  // nu = 4: F(t) = 1/2 + (3/8) u (1 - u^2/12) with u = t / sqrt(1 + t^2/4) ... written out for t = 2:
  // 1 + 4/4 = 2, u = 2/sqrt2 = 1.4142136, 1 - 2/12 = 0.8333333 -> F = 0.5 + 0.375 * 1.4142136 * 0.8333333 = 0.9419417
  EXPECT_NEAR(t_cdf(2, 4), 0.9419417, 1e-7);
  // Symmetry and the quantile as the CDF's inverse at a fractional dof.
  EXPECT_NEAR(t_cdf(-1.3, 7.5) + t_cdf(1.3, 7.5), 1.0, 1e-12);
  EXPECT_NEAR(t_cdf(t_quantile(0.9, 3.7), 3.7), 0.9, 1e-9);
}

TEST(Stats, WelchExactPValueAtTwoDof) {
  // a = {0,2}, b = {10,12}: var 2 each, se^2 = 1 + 1 = 2, t = -10/sqrt2 = -7.0710678,
  // dof = 2^2 / (1/1 + 1/1) = 2 exactly; two-sided p = 1 - |t|/sqrt(2 + t^2) = 1 - sqrt(50/52) = 0.0194193.
  auto r = welch_t_test({0, 2}, {10, 12});
  ASSERT_TRUE(r.has_value());
  EXPECT_NEAR(r->t, -7.0710678, 1e-6);
  EXPECT_NEAR(r->dof, 2.0, 1e-12);
  EXPECT_NEAR(r->p, 1 - std::sqrt(50.0 / 52.0), 1e-9);
}

TEST(Stats, WelchTextbookExample) {
  // Wikipedia, "Welch's t-test", example 3 (unequal variances, n = 15 each): t = -2.46, dof = 24.99, p = 0.021.
  std::vector<double> a1{27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4};
  std::vector<double> a2{27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4};
  auto r = welch_t_test(a1, a2);
  ASSERT_TRUE(r.has_value());
  EXPECT_NEAR(r->t, -2.46, 0.005);
  EXPECT_NEAR(r->dof, 24.99, 0.005);
  EXPECT_NEAR(r->p, 0.021, 0.0005);
}

TEST(Stats, SummaryOfOneValueHasNoSpread) {
  auto one = summarize({71.5});
  EXPECT_EQ(one.n, 1u);
  EXPECT_DOUBLE_EQ(one.mean, 71.5);
  EXPECT_FALSE(one.std.has_value());
  EXPECT_FALSE(one.ci95.has_value());
  // {70,72,74}: mean 72, s = 2, CI = 4.302653 * 2 / sqrt 3 = 4.968276.
  auto three = summarize({70, 72, 74});
  EXPECT_NEAR(*three.std, 2.0, 1e-12);
  EXPECT_NEAR(*three.ci95, 4.968276, 1e-5);
  EXPECT_TRUE(std::isnan(summarize({}).mean));
}

}  // namespace
