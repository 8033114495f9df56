// kdbench's statistics against scipy.stats on fixed inputs. The expected values and their provenance (scipy
// and numpy versions, the function each case called, and, where scipy has no function, the definition the
// generator computed from scipy primitives) are in tests/data/reference/stats.json, written by
// tests/data/reference/generators/gen_stats.py. Relative tolerance 1e-9 everywhere (kdbench's own
// numerics: continued fractions and series to ~1e-14, Gauss-Legendre quadrature for the studentized range).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "reports/power.h"
#include "reports/stats.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using namespace kd::stats;

const json& reference() {
  static const json j = [] {
    const std::string path = kd::test::source_dir() + "/tests/data/reference/stats.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot open");
    return json::parse(in);
  }();
  return j;
}

std::vector<double> doubles(const json& a) {
  return a.get<std::vector<double>>();
}

constexpr double kRel = 1e-9;

// |actual - expected| <= rel * |expected| (an absolute 1e-15 floor for expected values at 0).
#define EXPECT_REL(actual, expected, what)                              \
  do {                                                                  \
    const double e_ = (expected), a_ = (actual);                        \
    EXPECT_LE(std::fabs(a_ - e_), std::max(kRel* std::fabs(e_), 1e-15)) \
        << (what) << ": kdbench " << a_ << ", scipy " << e_;            \
  } while (0)

TEST(StatsReference, ProvenanceIsRecorded) {
  const auto& p = reference().at("provenance");
  EXPECT_FALSE(p.at("scipy").get<std::string>().empty());
  EXPECT_NE(p.at("generator").get<std::string>().find("gen_stats.py"), std::string::npos);
}

TEST(StatsReference, StudentTQuantilesAndCdf) {
  for (const auto& c : reference().at("t_ppf").at("cases"))
    EXPECT_REL(t_quantile(c["p"], c["df"]), c["value"].get<double>(), c.dump());
  for (const auto& c : reference().at("t_cdf").at("cases"))
    EXPECT_REL(t_cdf(c["x"], c["df"]), c["value"].get<double>(), c.dump());
}

TEST(StatsReference, ChiSquareSurvival) {
  for (const auto& c : reference().at("chi2_sf").at("cases"))
    EXPECT_REL(chi2_sf(c["x"], c["df"]), c["value"].get<double>(), c.dump());
}

TEST(StatsReference, WelchTTest) {
  for (const auto& c : reference().at("welch").at("cases")) {
    auto r = welch_t_test(doubles(c["a"]), doubles(c["b"]));
    ASSERT_TRUE(r.has_value()) << c.dump();
    EXPECT_REL(r->t, c["t"].get<double>(), c.dump());
    EXPECT_REL(r->dof, c["df"].get<double>(), c.dump());
    EXPECT_REL(r->p, c["p"].get<double>(), c.dump());
    EXPECT_REL(r->ci95, c["ci95_half_width"].get<double>(), c.dump());
  }
}

TEST(StatsReference, PairedTTest) {
  for (const auto& c : reference().at("paired").at("cases")) {
    auto r = paired_t_test(doubles(c["a"]), doubles(c["b"]));
    ASSERT_TRUE(r.has_value()) << c.dump();
    EXPECT_REL(r->t, c["t"].get<double>(), c.dump());
    EXPECT_REL(r->dof, c["df"].get<double>(), c.dump());
    EXPECT_REL(r->p, c["p"].get<double>(), c.dump());
    EXPECT_REL(r->diff, c["mean_difference"].get<double>(), c.dump());
    EXPECT_REL(r->sd, c["sd_difference"].get<double>(), c.dump());
    EXPECT_REL(r->ci95, c["ci95_half_width"].get<double>(), c.dump());
    EXPECT_EQ(r->n, c["a"].size());
  }
  // No test where it is undefined: unequal lengths, one pair, every difference the same.
  EXPECT_FALSE(paired_t_test({1, 2, 3}, {1, 2}).has_value());
  EXPECT_FALSE(paired_t_test({1}, {0}).has_value());
  EXPECT_FALSE(paired_t_test({2, 3, 4}, {1, 2, 3}).has_value());
  // The same difference up to rounding is no spread either: 75.15 - 72.05, 76.35 - 73.25 and 74.95 - 71.85 are
  // 3.1 give or take 1e-14 in doubles (std 8.2e-15).
  EXPECT_FALSE(paired_t_test({75.15, 76.35, 74.95}, {72.05, 73.25, 71.85}).has_value());
}

TEST(StatsReference, HolmByDefinition) {
  for (const auto& c : reference().at("holm").at("cases")) {
    auto got = holm_adjust(doubles(c["p"]));
    auto want = doubles(c["adjusted"]);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_REL(got[i], want[i], c.dump() + " [" + std::to_string(i) + "]");
  }
  EXPECT_TRUE(holm_adjust({}).empty());
}

TEST(StatsReference, FriedmanTest) {
  for (const auto& c : reference().at("friedman").at("cases")) {
    std::vector<std::vector<double>> data;
    for (const auto& b : c["data_by_block"]) data.push_back(doubles(b));
    auto r = friedman_test(data);
    ASSERT_TRUE(r.has_value()) << c.dump();
    EXPECT_EQ(r->blocks, data.size());
    auto ranks = doubles(c["mean_ranks"]);
    ASSERT_EQ(r->mean_ranks.size(), ranks.size());
    for (size_t i = 0; i < ranks.size(); ++i) EXPECT_REL(r->mean_ranks[i], ranks[i], c.dump());
    if (!c.contains("chi2")) continue;  // scipy needs 3 treatments
    EXPECT_REL(r->chi2, c["chi2"].get<double>(), c.dump());
    EXPECT_REL(r->dof, c["df"].get<double>(), c.dump());
    EXPECT_REL(r->p, c["p"].get<double>(), c.dump());
  }
  EXPECT_FALSE(friedman_test({{1, 2, 3}}).has_value()) << "one block";
  EXPECT_FALSE(friedman_test({{1, 1}, {2, 2}}).has_value()) << "every block one tie";
  EXPECT_FALSE(friedman_test({{1, 2}, {1, 2, 3}}).has_value()) << "ragged";
}

TEST(StatsReference, NoncentralTCdf) {
  for (const auto& c : reference().at("nct_cdf").at("cases"))
    EXPECT_REL(noncentral_t_cdf(c["x"], c["df"], c["nc"]), c["value"].get<double>(), c.dump());
}

TEST(StatsReference, PowerOfTheTwoSidedTTest) {
  const double alpha = reference().at("power").at("alpha");
  for (const auto& c : reference().at("power").at("cases"))
    EXPECT_REL(t_test_power(c["nc"], c["df"], alpha), c["value"].get<double>(), c.dump());
}

TEST(StatsReference, DetectableDifferenceAndSeedsNeeded) {
  const auto& d = reference().at("designs");
  const double alpha = d.at("alpha"), power = d.at("power");
  for (const auto& c : d.at("cases")) {
    PowerDesign design{c["design"]["paired"].get<bool>(), c["design"]["sd"].get<double>()};
    const size_t n1 = c["n1"], n2 = c["n2"];
    EXPECT_REL(power_of(design, c["delta"], n1, n2, alpha), c["power"].get<double>(), c.dump());
    auto mdd = detectable_difference(design, n1, n2, alpha, power);
    ASSERT_TRUE(mdd.has_value()) << c.dump();
    EXPECT_REL(*mdd, c["detectable_difference"].get<double>(), c.dump());
    auto n = seeds_needed(design, c["delta"], alpha, power);
    ASSERT_TRUE(n.has_value()) << c.dump();
    EXPECT_EQ(*n, c["seeds_needed"].get<size_t>()) << c.dump();
  }
  // A zero difference is never detected; more than the cap is "not within the cap".
  EXPECT_FALSE(seeds_needed({true, 1.0}, 0.0).has_value());
  EXPECT_FALSE(seeds_needed({true, 1.0}, 0.01, 0.05, 0.8, 100).has_value());
  EXPECT_FALSE(detectable_difference({true, 1.0}, 1, 1).has_value()) << "one seed detects nothing";
  // A noncentrality far past the critical value: power 1 without summing a series of ~nc^2/2 terms.
  EXPECT_EQ(t_test_power(1e9, 1), 1.0);
  EXPECT_EQ(*seeds_needed({true, 1e-9}, 1.0), 2u);
}

TEST(StatsReference, StudentizedRangeAndNemenyi) {
  const double alpha = reference().at("nemenyi").at("alpha");
  for (const auto& c : reference().at("nemenyi").at("cases")) {
    const int k = c["k"];
    const size_t n = c["n"];
    EXPECT_REL(studentized_range_quantile(1 - alpha, k), c["studentized_range_ppf"].get<double>(), c.dump());
    EXPECT_REL(nemenyi_q(k, alpha), c["q_alpha"].get<double>(), c.dump());
    EXPECT_REL(nemenyi_critical_difference(k, n, alpha), c["critical_difference"].get<double>(), c.dump());
  }
}

}  // namespace
