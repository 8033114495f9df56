// The report's comparisons with the student alone, end to end from a results store, against scipy: the
// store holds the per-seed test top-1 of tests/data/reference/stats.json's "report_case" (three methods with
// the reference's seeds, one with a seed more), and every number of the comparison (which test, p, the Holm-
// corrected p, the difference's interval, the detectable difference, the seeds needed) must equal what
// gen_stats.py computed with scipy.stats on those values. Also: the tables say the same, and two data sets in
// one store are two students with their own references and blocks.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "reports/report.h"
#include "store/store.h"
#include "test_util.h"

namespace {

using nlohmann::json;

json report_case() {
  std::ifstream in(kd::test::source_dir() + "/tests/data/reference/stats.json");
  return json::parse(in).at("report_case");
}

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void add_student(kd::ResultsStore& s, const std::string& id, const std::string& method, int64_t seed, double test,
                 const std::string& dataset = "", const std::string& label = "",
                 const std::string& model = "cnn_tiny") {
  kd::RunRecord r;
  r.id = id;
  r.sweep_id = "sw";
  r.role = kd::RunRole::Student;
  r.reference = method == "baseline";
  r.name = label.empty() ? method : label;
  r.method = method;
  r.seed = seed;
  r.model = model;
  r.teachers = method == "baseline" ? "[]" : R"(["t"])";
  if (!dataset.empty()) r.config = json{{"dataset", {{"name", dataset}}}}.dump();
  s.add_run(r);
  ASSERT_TRUE(s.claim_run(id, "h:1", 60));
  s.finish_run(r, {}, {{"final.val.top1", test + 1}, {"final.test.top1", test}, {"bestval.test.top1", test}});
}

// The report case's store: a teacher 't', the reference 'baseline' and the four methods.
std::string make_case_store(const std::string& dir, const json& rc) {
  std::string db = dir + "/results.db";
  kd::SqliteStore s(db);
  s.put_sweep("sw", "case", R"({"name":"case"})", "{}");
  kd::RunRecord t;
  t.id = "t";
  t.sweep_id = "sw";
  t.role = kd::RunRole::Teacher;
  t.name = "big";
  t.model = "cnn_large";
  s.add_run(t);
  EXPECT_TRUE(s.claim_run("t", "h:1", 60));
  s.finish_run(t, {}, {{"final.test.top1", 90.0}});
  auto add = [&](const std::string& method, const json& m) {
    for (size_t i = 0; i < m["test"].size(); ++i)
      add_student(s, method + std::to_string(i), method, m["seeds"][i].get<int64_t>(), m["test"][i].get<double>());
  };
  add("baseline", rc["reference"]);
  for (const auto& [name, m] : rc["methods"].items()) add(name, m);
  return db;
}

const kd::MethodRow& row_of(const kd::ReportData& d, const std::string& label) {
  for (const auto& r : d.rows)
    if (r.best.label == label) return r;
  throw std::runtime_error("no row " + label);
}

TEST(ReportComparisons, PairedWelchHolmPowerMatchScipy) {
  const json rc = report_case();
  std::string dir = kd::test::make_temp_dir("compare");
  kd::SqliteStore store(make_case_store(dir, rc), true);
  const kd::ReportData d = kd::aggregate(store);
  ASSERT_EQ(d.rows.size(), 5u);
  EXPECT_FALSE(d.rows[0].comparison.has_value()) << "the reference is not compared with itself";
  for (const auto& [name, m] : rc["methods"].items()) {
    SCOPED_TRACE(name);
    const auto& row = row_of(d, name);
    ASSERT_TRUE(row.comparison.has_value());
    const kd::Comparison& c = *row.comparison;
    EXPECT_EQ(c.paired, m["kind"] == "paired") << "paired where the seed sets match, Welch where they do not";
    auto rel = [](double a, double e) { return std::fabs(a - e) <= 1e-9 * std::fabs(e); };
    EXPECT_PRED2(rel, c.p, m["p"].get<double>());
    EXPECT_PRED2(rel, c.p_holm, m["p_holm"].get<double>());
    EXPECT_EQ(c.family, 4u);
    EXPECT_PRED2(rel, c.difference, m["difference"].get<double>());
    EXPECT_PRED2(rel, c.ci95, m["ci95_half_width"].get<double>());
    EXPECT_PRED2(rel, c.sd, m["sd"].get<double>());
    ASSERT_TRUE(c.detectable.has_value());
    EXPECT_PRED2(rel, *c.detectable, m["detectable_difference"].get<double>());
    ASSERT_TRUE(c.seeds_needed.has_value());
    EXPECT_EQ(*c.seeds_needed, m["seeds_needed"].get<size_t>());
    // The verdict uses the corrected p: fitnets, attention and dkd have raw p above 0.05 anyway; logit_kd's
    // corrected p (0.0298) is still below it.
    EXPECT_EQ(c.verdict(), m["p_holm"].get<double>() < 0.05 ? 1 : 0);
  }

  kd::ReportOptions o;
  o.figures = false;
  kd::write_report(store, dir + "/report", o);
  const std::string md = slurp(dir + "/report/comparison.md");
  // Header, then the rows' comparison cells: gain with its interval, gap closed, p with its test, Holm p, verdict,
  // detectable difference, seeds needed, seeds (logit_kd's gain and gap are the group's largest: bold).
  EXPECT_NE(md.find("| Gain (95% CI) | Gap closed | p (test) | p (Holm) | Verdict | Detectable difference | "
                    "Seeds needed | Seeds |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| **+2.03 ± 0.76** | **10.4%** | 0.00744 (paired) | 0.0298 | better | 1.00 | 3 | 3 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| +0.92 ± 1.60 | 4.7% | 0.187 (Welch) | 0.412 | n.s. | 2.04 | 12 | 4 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| -0.87 ± 2.41 | -4.4% | 0.262 (paired) | 0.412 | n.s. | 3.17 | 12 | 3 |"), std::string::npos)
      << md;
  auto rj = json::parse(slurp(dir + "/report/report.json"));
  json lk;
  for (const auto& r : rj["rows"])
    if (r["label"] == "logit_kd") lk = r["comparison"];
  EXPECT_EQ(lk["test"], "paired");
  EXPECT_EQ(lk["verdict"], "better");
  EXPECT_EQ(rj["ranks"], nullptr) << "one student, one teacher: no ranks across blocks";
  EXPECT_NE(slurp(dir + "/report/ranks.md").find("No ranks"), std::string::npos);
}

// Two data sets in one store: the same method names, seeds and model are two students, each compared with its
// own reference, and two blocks for the ranks.
TEST(ReportComparisons, TwoDataSetsAreTwoStudents) {
  std::string dir = kd::test::make_temp_dir("compare");
  std::string db = dir + "/results.db";
  {
    kd::SqliteStore s(db);
    s.put_sweep("sw", "two", "{}", "{}");
    kd::RunRecord t;
    t.id = "t";
    t.sweep_id = "sw";
    t.role = kd::RunRole::Teacher;
    t.name = "big";
    s.add_run(t);
    ASSERT_TRUE(s.claim_run("t", "h:1", 60));
    s.finish_run(t, {}, {{"final.test.top1", 95.0}});
    const double base[] = {70, 71, 72}, kd[] = {74, 74.5, 76}, at[] = {71, 71.2, 72.6};
    for (const char* ds : {"mnist", "cifar10"})
      for (int k = 0; k < 3; ++k) {
        const double shift = std::string(ds) == "mnist" ? 20 : 0;
        add_student(s, std::string(ds) + "b" + std::to_string(k), "baseline", k, base[k] + shift, ds);
        add_student(s, std::string(ds) + "k" + std::to_string(k), "logit_kd", k, kd[k] + shift, ds);
        add_student(s, std::string(ds) + "a" + std::to_string(k), "attention", k, at[k] + shift, ds);
      }
  }
  kd::SqliteStore store(db, true);
  const kd::ReportData d = kd::aggregate(store);
  EXPECT_TRUE(d.several_datasets);
  ASSERT_EQ(d.rows.size(), 6u);
  for (const auto& r : d.rows) {
    EXPECT_EQ(r.best.test.size(), 3u) << "a data set's runs are never mixed with the other's";
    if (r.best.reference) continue;
    ASSERT_TRUE(r.comparison.has_value());
    EXPECT_TRUE(r.comparison->paired);
    EXPECT_EQ(r.comparison->family, 2u) << "Holm over one data set's methods";
  }
  EXPECT_EQ(kd::student_text(d, d.rows[0].best), "cnn_tiny (mnist)");
  ASSERT_TRUE(d.ranks.has_value());
  EXPECT_EQ(d.ranks->blocks, (std::vector<std::string>{"cnn_tiny <- big (mnist)", "cnn_tiny <- big (cifar10)"}));
  EXPECT_EQ(d.ranks->treatments, (std::vector<std::string>{"logit_kd", "attention", "baseline"}));
  EXPECT_EQ(d.ranks->mean_ranks, (std::vector<double>{1, 2, 3}));
}

// A config that labels each pair's entry of a method differently (as configs/cifar100.json does,
// kd_resnet32x4_resnet8x4) and its reference differently per student (baseline, baseline_lr0.01): methods
// are matched across the blocks by registry name; an entry of a method that already has one in its block
// keeps its label and, being in one block only, is left out of the ranks.
TEST(ReportComparisons, PerPairLabelsAreMatchedByMethod) {
  std::string dir = kd::test::make_temp_dir("compare");
  std::string db = dir + "/results.db";
  {
    kd::SqliteStore s(db);
    s.put_sweep("sw", "pairs", "{}", "{}");
    kd::RunRecord t;
    t.id = "t";
    t.sweep_id = "sw";
    t.role = kd::RunRole::Teacher;
    t.name = "big";
    s.add_run(t);
    ASSERT_TRUE(s.claim_run("t", "h:1", 60));
    s.finish_run(t, {}, {{"final.test.top1", 95.0}});
    for (int k = 0; k < 3; ++k) {
      const std::string sd = std::to_string(k);
      add_student(s, "b1" + sd, "baseline", k, 70 + k, "", "baseline", "s1");
      add_student(s, "k1" + sd, "logit_kd", k, 73 + k * 1.1, "", "kd_big_s1", "s1");
      add_student(s, "l1" + sd, "logit_kd", k, 74 + k * 0.9, "", "kd_ls_big_s1", "s1");
      add_student(s, "a1" + sd, "attention", k, 71 + k * 1.2, "", "attention", "s1");
      add_student(s, "b2" + sd, "baseline", k, 60 + k, "", "baseline_lr0.01", "s2");
      add_student(s, "k2" + sd, "logit_kd", k, 64 + k * 0.8, "", "kd_big_s2", "s2");
      add_student(s, "a2" + sd, "attention", k, 62 + k * 1.3, "", "attention", "s2");
    }
  }
  kd::SqliteStore store(db, true);
  const kd::ReportData d = kd::aggregate(store);
  ASSERT_TRUE(d.ranks.has_value());
  EXPECT_EQ(d.ranks->blocks, (std::vector<std::string>{"s1 <- big", "s2 <- big"}));
  // Block means: s1 logit_kd 74.1, attention 72.2, baseline 71; s2 logit_kd 64.8, attention 63.3, baseline 61.
  EXPECT_EQ(d.ranks->treatments, (std::vector<std::string>{"logit_kd", "attention", "baseline"}));
  EXPECT_EQ(d.ranks->mean_ranks, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(d.ranks->left_out, (std::vector<std::string>{"kd_ls_big_s1 (in 1 of 2 blocks)"}));
  ASSERT_EQ(d.ranks->values.size(), 3u);
  EXPECT_NEAR(d.ranks->values[0][0], 74.1, 1e-9) << "logit_kd in s1 is kd_big_s1, the method's first entry";
}

}  // namespace
