// Report aggregation on small hand-made stores (values computed by hand in the comments), every table
// format, atomic writes, failed-run visibility, and the HTML page in headless Chromium (figures decode; at
// 1280 px the page needs no sideways scrolling and a click on a header sorts).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "base/fsutil.h"
#include "reports/report.h"
#include "reports/stats.h"
#include "store/store.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Run {
  std::string id, role, name, method, setting = "{}";
  int seed = 0;
  double val = 0, test = 0;
  std::string teachers = "[]", model = "cnn_tiny";
  int64_t method_params = 0, params = 1000, macs = 5000;
  std::string checkpoint = "";  // as stored ("" = none)
};

void add_done(kd::ResultsStore& s, const Run& x) {
  kd::RunRecord r;
  r.id = x.id;
  r.sweep_id = "sw";
  r.role = kd::parse_role(x.role);
  r.reference = x.role == "student" && x.method == "baseline";  // the fixtures' reference method
  r.name = x.name;
  r.method = x.method;
  r.setting = x.setting;
  r.seed = x.seed;
  r.model = x.model;
  r.teachers = x.teachers;
  r.method_params = x.method_params;
  r.params = x.params;
  r.macs = x.macs;
  r.checkpoint = x.checkpoint;
  r.environment = R"({"device":"cpu","host":"box","libtorch":"2.11.0"})";
  s.add_run(r);
  ASSERT_TRUE(s.claim_run(x.id, "h:1", 60));
  s.finish_run(r,
               {{"main", 0, "val.top1", x.val - 5},
                {"main", 1, "val.top1", x.val},
                {"main", 0, "loss.ce", 1.0},
                {"main", 1, "loss.ce", 0.5},
                {"main", 0, "loss.total", 1.0},
                {"main", 1, "loss.total", 0.5}},
               {{"final.val.top1", x.val}, {"final.test.top1", x.test}, {"bestval.test.top1", x.test + 0.5}});
}

void add_failed(kd::ResultsStore& s, const std::string& id, const std::string& name, const std::string& setting,
                int seed, const std::string& teachers) {
  kd::RunRecord f;
  f.id = id;
  f.sweep_id = "sw";
  f.role = kd::RunRole::Student;
  f.name = name;
  f.method = name;
  f.setting = setting;
  f.seed = seed;
  f.model = "cnn_tiny";
  f.teachers = teachers;
  s.add_run(f);
  ASSERT_TRUE(s.claim_run(id, "h:1", 60));
  s.fail_run(id, "", R"({"epoch":1,"step":4,"term":"kd","message":"loss is NaN"})", {});
}

// Teacher 'big' (test 90). Student cnn_tiny, seeds 0..2:
//   baseline                 val {71,73,75}  test {70,72,74}   (mean 72, s 2)
//   logit_kd T=4             val {80,80,80}  test {75,77,79}   (mean 77, s 2)  <- best on VALIDATION
//   logit_kd T=8             val {79,79,79}  test {85,85,86}   (better on TEST: must not be picked) + 1 failed run
//   attention beta=1000      val {81,81,81}  test {60,61,62}   <- tie on validation, comes first: picked
//   attention beta=100       val {80,81,82}  test {90,90,90}      (mean val 81 too)
// bestval.test.top1 is always test + 0.5.
std::string make_store(const std::string& dir) {
  std::string db = dir + "/results.db";
  kd::SqliteStore s(db);
  s.put_sweep("sw", "hand", R"({"name":"hand","seeds":[0,1,2]})", R"({"libtorch":"2.11.0","threads":2})");
  add_done(s, {"t", "teacher", "big", "baseline", "{}", 0, 91, 90, "[]", "cnn_large", 0, 9000, 90000});
  const double base_val[] = {71, 73, 75}, base_test[] = {70, 72, 74}, a_test[] = {75, 77, 79}, b_test[] = {85, 85, 86},
               c_test[] = {60, 61, 62}, d_val[] = {80, 81, 82};
  for (int k = 0; k < 3; ++k) {
    std::string sd = std::to_string(k);
    add_done(s, {"b" + sd, "student", "baseline", "baseline", "{}", k, base_val[k], base_test[k]});
  }
  for (int k = 0; k < 3; ++k) {
    std::string sd = std::to_string(k);
    add_done(s, {"a" + sd, "student", "logit_kd", "logit_kd", R"({"temperature":4})", k, 80, a_test[k], R"(["t"])"});
    add_done(s, {"x" + sd, "student", "logit_kd", "logit_kd", R"({"temperature":8})", k, 79, b_test[k], R"(["t"])"});
  }
  add_failed(s, "x3", "logit_kd", R"({"temperature":8})", 3, R"(["t"])");
  for (int k = 0; k < 3; ++k) {
    std::string sd = std::to_string(k);
    add_done(s, {"c" + sd, "student", "attention", "attention", R"({"beta":1000})", k, 81, c_test[k], R"(["t"])",
                 "cnn_tiny", 1234});
    add_done(s, {"d" + sd, "student", "attention", "attention", R"({"beta":100})", k, d_val[k], 90, R"(["t"])",
                 "cnn_tiny", 1234});
  }
  return db;
}

kd::ReportOptions no_figures() {
  kd::ReportOptions o;
  o.figures = false;
  return o;
}

const kd::MethodRow& row_of(const kd::ReportData& d, const std::string& label, const std::string& teachers = "big") {
  for (const auto& r : d.rows)
    if (r.best.label == label && (r.best.reference || r.best.teachers == teachers)) return r;
  throw std::runtime_error("no row " + label);
}

TEST(Report, AggregationMatchesHandValues) {
  std::string dir = kd::test::make_temp_dir("report");
  kd::SqliteStore store(make_store(dir), true);
  kd::ReportData d = kd::aggregate(store);
  ASSERT_EQ(d.rows.size(), 3u);
  EXPECT_EQ(d.rows[0].best.method, "baseline") << "the reference row first";
  EXPECT_TRUE(d.rows[0].best.reference);
  EXPECT_FALSE(d.rows[0].gain.has_value());

  const kd::MethodRow& kd_row = row_of(d, "logit_kd");
  EXPECT_EQ(kd_row.best.setting, R"({"temperature":4})") << "best setting must be chosen on validation, not test";
  EXPECT_EQ(kd_row.settings, 2);
  EXPECT_EQ(kd_row.failed, 1) << "the failed run of the other setting is counted in the method's row";
  EXPECT_EQ(kd_row.best.failed, 0);
  EXPECT_NEAR(kd::stats::mean(kd_row.best.test), 77.0, 1e-12);
  EXPECT_NEAR(*kd::stats::stddev(kd_row.best.test), 2.0, 1e-12);
  EXPECT_NEAR(kd::stats::mean(kd_row.best.bestval_test), 77.5, 1e-12);
  // CI: t_{0.975,2} * 2 / sqrt 3 = 4.302653 * 1.1547005 = 4.968276
  EXPECT_NEAR(*kd::stats::ci_half_width(kd_row.best.test), 4.968276, 1e-5);
  EXPECT_NEAR(*kd_row.gain, 5.0, 1e-12);  // 77 - 72
  EXPECT_NEAR(*kd_row.teacher_top1, 90.0, 1e-12);
  EXPECT_NEAR(*kd_row.gap_closed, 5.0 / (90 - 72) * 100, 1e-9);  // 27.78 %
  // Same seeds as the reference, so paired by seed; but the difference is 5 on every seed (no spread): the
  // paired t-test is undefined and no comparison is claimed (n/a), rather than a p of 0 or Welch's.
  EXPECT_FALSE(kd_row.comparison.has_value());
  // Two settings: T=4 is best on validation on every seed (80 > 79), so on every resample of the seeds.
  ASSERT_TRUE(kd_row.stability.has_value());
  EXPECT_DOUBLE_EQ(*kd_row.stability, 1.0);

  const kd::MethodRow& at = row_of(d, "attention");
  EXPECT_EQ(at.best.setting, R"({"beta":1000})") << "a tie on validation keeps the setting that comes first";
  EXPECT_EQ(at.best.method_params, 1234);
  EXPECT_NEAR(*at.gain, -11.0, 1e-12);                  // 61 - 72
  EXPECT_NEAR(*at.gap_closed, -11.0 / 18 * 100, 1e-9);  // -61.1 %
  // Paired by seed: differences {-10, -11, -12}: mean -11, sd 1, t = -11 sqrt 3 = -19.0525589, 2 dof; closed form
  // for 2 dof: p = 1 - |t| / sqrt(2 + t^2) = 0.0027434894 (= scipy.stats.ttest_rel). Interval: t_{0.975,2} / sqrt 3
  // = 4.3026527 / 1.7320508 = 2.4841377. The only comparison with a p in its family: Holm leaves it as it is.
  ASSERT_TRUE(at.comparison.has_value());
  const kd::Comparison& c = *at.comparison;
  EXPECT_TRUE(c.paired);
  EXPECT_NEAR(c.difference, -11.0, 1e-12);
  EXPECT_NEAR(c.sd, 1.0, 1e-12);
  EXPECT_NEAR(c.t, -11 * std::sqrt(3.0), 1e-9);
  EXPECT_NEAR(c.p, 1 - std::sqrt(363.0 / 365.0), 1e-12);
  EXPECT_NEAR(c.ci95, 2.484137711750331, 1e-9);
  EXPECT_EQ(c.family, 1u);
  EXPECT_DOUBLE_EQ(c.p_holm, c.p);
  EXPECT_EQ(c.verdict(), -1) << "worse than the student alone";
  // The detectable difference is proportional to the std: scipy's 4.243256614609442 for sd 1.3 and 3 pairs
  // (tests/data/reference/stats.json, designs[1]) / 1.3.
  ASSERT_TRUE(c.detectable.has_value());
  EXPECT_NEAR(*c.detectable, 4.243256614609442 / 1.3, 1e-9);
  // Stability: beta=1000 (val 81 on every seed) against beta=100 (val 80, 81, 82 on seeds 0, 1, 2): on a resample
  // of 3 seeds, beta=100 wins when its mean is above 81, i.e. when the drawn deviations (-1, 0, +1) sum above 0:
  // 10 of the 27 equally likely draws, so beta=1000 stays best with probability 17/27 = 0.630. 2000 resamples
  // estimate it within 0.011 (one std); 0.05 is 4.6 of them.
  ASSERT_TRUE(at.stability.has_value());
  EXPECT_NEAR(*at.stability, 17.0 / 27.0, 0.05);
  EXPECT_NEAR(*d.settings[4].chosen_share, 10.0 / 27.0, 0.05);
  EXPECT_DOUBLE_EQ(*at.stability + *d.settings[4].chosen_share, 1.0);
  EXPECT_DOUBLE_EQ(*kd::aggregate(store).rows[2].stability, *at.stability) << "the bootstrap is seeded: same shares";
  EXPECT_DOUBLE_EQ(d.teacher_top1.at("big"), 90.0);
  ASSERT_EQ(d.settings.size(), 5u);
  EXPECT_EQ(d.settings[2].failed, 1);  // logit_kd T=8
  EXPECT_EQ(d.settings[2].test.size(), 3u);
}

TEST(Report, PairsAreSeparateRowsAndGapUsesTheirTeacher) {
  std::string dir = kd::test::make_temp_dir("report");
  std::string db = make_store(dir);
  {
    kd::SqliteStore s(db);
    add_done(s, {"t2", "teacher", "huge", "baseline", "{}", 0, 96, 95, "[]", "cnn_huge", 0, 20000, 200000});
    const double e_test[] = {79, 80, 81};
    for (int k = 0; k < 3; ++k)
      add_done(s, {"e" + std::to_string(k), "student", "logit_kd", "logit_kd", R"({"temperature":4})", k, 82, e_test[k],
                   R"(["t2"])"});
  }
  kd::SqliteStore store(db, true);
  kd::ReportData d = kd::aggregate(store);
  ASSERT_EQ(d.rows.size(), 4u) << "logit_kd from 'big' and from 'huge' are two teacher-student pairs";
  const kd::MethodRow& a = row_of(d, "logit_kd", "big");
  const kd::MethodRow& b = row_of(d, "logit_kd", "huge");
  EXPECT_EQ(a.best.test.size(), 3u);
  EXPECT_EQ(b.best.test.size(), 3u);
  EXPECT_EQ(b.settings, 1);
  // gain = 80 - 72 = 8; gap = 8 / (95 - 72) = 34.78 %
  EXPECT_NEAR(*b.gain, 8.0, 1e-12);
  EXPECT_NEAR(*b.gap_closed, 8.0 / 23 * 100, 1e-9);
  EXPECT_NEAR(*a.gap_closed, 5.0 / 18 * 100, 1e-9);
}

TEST(Report, TablesInEveryFormat) {
  std::string dir = kd::test::make_temp_dir("report");
  kd::SqliteStore store(make_store(dir), true);
  kd::ReportSummary sum = kd::write_report(store, dir + "/report", no_figures());
  EXPECT_EQ(sum.figures_note, "figures were not requested");
  const std::string out = dir + "/report/";
  for (const char* f : {"comparison.md", "comparison.csv", "comparison.tex", "comparison.html", "settings.md",
                        "settings.csv", "settings.tex", "settings.html", "runs.md", "runs.csv", "runs.tex", "failed.md",
                        "failed.csv", "failed.tex", "report.json", "index.html"})
    EXPECT_TRUE(fs::exists(out + f)) << f;

  // (a) Markdown: best in column bold within the student's rows; n/a, never 0, where undefined (logit_kd's
  // paired differences are 5 on every seed: no test). The attention row's comparison is the paired one
  // computed by hand in AggregationMatchesHandValues; its stability, a bootstrap share near 63%, is checked there.
  std::string md = slurp(out + "comparison.md");
  EXPECT_NE(md.find("| cnn_tiny | logit_kd | big | temperature=4 (of 2) | 100% | 80.00 ± 0.00 | **77.00 ± 2.00** | "
                    "± 4.97 | **77.50 ± 2.00** | **+5.00** | **27.8%** | n/a | n/a | n/a | n/a | n/a | 3 | 0 "
                    "| 1 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| cnn_tiny | attention | big | beta=1000 (of 2) | "), std::string::npos) << md;
  EXPECT_NE(md.find("% | 81.00 ± 0.00 | 61.00 ± 1.00 | ± 2.48 | 61.50 ± 1.00 | -11.00 ± 2.48 | -61.1% | "
                    "0.00274 (paired) | 0.00274 | worse | 3.26 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| cnn_tiny | baseline | - | defaults | - | 73.00 ± 2.00 | 72.00 ± 2.00 | ± 4.97 | 72.50 ± 2.00 "
                    "| - | - | - | - | - | - | - | 3 | 0 | 0 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| cnn_large | teacher big | - | - | - | 91.00 ± n/a | 90.00 ± n/a | n/a |"), std::string::npos)
      << md;

  // (a) LaTeX booktabs: escaped, \pm, bold best, the same number of cells on every row.
  std::string tex = slurp(out + "comparison.tex");
  EXPECT_NE(tex.find("\\toprule"), std::string::npos);
  EXPECT_NE(tex.find("\\bottomrule"), std::string::npos);
  EXPECT_NE(tex.find("\\textbf{77.00 $\\pm$ 2.00}"), std::string::npos) << tex;
  EXPECT_NE(tex.find("logit\\_kd"), std::string::npos) << tex;
  EXPECT_NE(tex.find("\\textbf{27.8\\%}"), std::string::npos) << tex;
  EXPECT_EQ(tex.find("±"), std::string::npos) << "no raw unicode in LaTeX";
  EXPECT_EQ(tex.find("logit_kd"), std::string::npos) << "unescaped underscore";
  {
    std::istringstream lines(tex);
    std::string line;
    int rows = 0, depth = 0;
    while (std::getline(lines, line)) {
      if (line.empty() || line[0] == '%') continue;
      for (size_t i = 0; i < line.size(); ++i) {
        if (line[i] == '\\') {
          ++i;
          continue;
        }  // skip escaped characters
        depth += line[i] == '{' ? 1 : line[i] == '}' ? -1 : 0;
      }
      if (line.size() < 2 || line.compare(line.size() - 2, 2, "\\\\") != 0) continue;
      int amps = 0;
      for (size_t i = 0; i < line.size(); ++i) amps += line[i] == '&' && (i == 0 || line[i - 1] != '\\');
      EXPECT_EQ(amps, 18) << line;  // 19 columns (the HTML-only Runs column is left out)
      ++rows;
    }
    EXPECT_EQ(rows, 1 + 1 + 3) << "header, teacher, three methods";
    EXPECT_EQ(depth, 0) << "braces balance";
  }

  // (b) every setting: CSV with mean ± std, CI and n. T=8: test {85,85,86}: mean 85.33, s 0.577,
  // CI 4.302653 * 0.57735 / 1.73205 = 1.43; bestval {85.5,85.5,86.5}: 85.83.
  std::string csv = slurp(out + "settings.csv");
  // Best in resamples: T=4 is best on validation on every seed, T=8 on none.
  EXPECT_NE(csv.find("cnn_tiny,logit_kd,big,temperature=8,79.00 ± 0.00,85.33 ± 0.58,± 1.43,85.83 ± 0.58,3,1,,0%\n"),
            std::string::npos)
      << csv;
  EXPECT_NE(
      csv.find("cnn_tiny,logit_kd,big,temperature=4,80.00 ± 0.00,77.00 ± 2.00,± 4.97,77.50 ± 2.00,3,0,yes,100%\n"),
      std::string::npos)
      << csv;
  EXPECT_NE(slurp(out + "settings.md").find("| **80.00 ± 0.00** |"), std::string::npos);

  // (c) runs: every run with its status.
  std::string runs = slurp(out + "runs.csv");
  int lines = 0;
  for (char c : runs) lines += c == '\n';
  EXPECT_EQ(lines, 1 + 17) << "header + 17 runs";
  EXPECT_NE(runs.find("x3,student,logit_kd,logit_kd,cnn_tiny,temperature=8,3,failed"), std::string::npos) << runs;

  // report.json carries the aggregated numbers the figures use.
  auto rj = nlohmann::json::parse(slurp(out + "report.json"));
  ASSERT_EQ(rj["rows"].size(), 3u);
  EXPECT_EQ(rj["rows"][1]["setting"]["temperature"], 4);
  EXPECT_NEAR(rj["rows"][1]["test_summary"]["ci95"].get<double>(), 4.968276, 1e-5);
  EXPECT_EQ(rj["rows"][1]["curves"]["metrics"]["val.top1"].size(), 3u);

  std::string html = slurp(out + "index.html");
  for (const char* id : {"table-comparison", "table-failed", "table-settings", "table-runs"})
    EXPECT_NE(html.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  EXPECT_NE(html.find("<a href=\"#row-a0\">s0</a>"), std::string::npos) << "rows link to their runs";
  EXPECT_NE(html.find("<details id=\"run-x3\">"), std::string::npos) << "every run has a details entry";
  EXPECT_NE(html.find("&quot;host&quot;: &quot;box&quot;"), std::string::npos) << "runs.environment is shown";
  EXPECT_NE(html.find("&quot;seeds&quot;"), std::string::npos) << "the sweep config is shown";
  EXPECT_EQ(html.find("http"), std::string::npos) << "the page must not reach the network";
  for (const auto& e : fs::directory_iterator(dir + "/report"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "leftover temporary " << e.path();
}

TEST(Report, FailedRunsAreVisibleEverywhere) {
  std::string dir = kd::test::make_temp_dir("report");
  kd::SqliteStore store(make_store(dir), true);
  kd::write_report(store, dir + "/report", no_figures());
  std::string md = slurp(dir + "/report/failed.md");
  EXPECT_NE(md.find("| x3 | student | logit_kd | cnn_tiny | temperature=8 | 3 | 1 | 4 | kd | loss is NaN |"),
            std::string::npos)
      << md;
  EXPECT_NE(slurp(dir + "/report/failed.csv").find("x3,"), std::string::npos);
  EXPECT_NE(slurp(dir + "/report/runs.md").find("| failed |"), std::string::npos);
  std::string html = slurp(dir + "/report/index.html");
  EXPECT_NE(html.find("<tr id=\"failed-x3\">"), std::string::npos);
  EXPECT_NE(html.find("s3 (failed)"), std::string::npos) << "the failed seed is linked from its setting's row";
  EXPECT_NE(html.find("failed 1;"), std::string::npos) << "run counts by status";
}

TEST(Report, OneSeedShowsNotAvailableNeverZero) {
  std::string dir = kd::test::make_temp_dir("report");
  std::string db = dir + "/results.db";
  {
    kd::SqliteStore s(db);
    s.put_sweep("sw", "one", "{}", "{}");
    add_done(s, {"t", "teacher", "big", "baseline", "{}", 0, 91, 90, "[]", "cnn_large"});
    add_done(s, {"b0", "student", "baseline", "baseline", "{}", 0, 71, 70});
    add_done(s, {"a0", "student", "logit_kd", "logit_kd", R"({"temperature":4})", 0, 80, 76, R"(["t"])"});
  }
  kd::SqliteStore store(db, true);
  kd::write_report(store, dir + "/report", no_figures());
  std::string md = slurp(dir + "/report/comparison.md");
  // gain = 76 - 70 = 6 and gap = 6/20 = 30% are defined; std, CI, the test and its power are not.
  EXPECT_NE(md.find("| cnn_tiny | logit_kd | big | temperature=4 | - | 80.00 ± n/a | **76.00 ± n/a** | n/a | "
                    "**76.50 ± n/a** | **+6.00** | **30.0%** | n/a | n/a | n/a | n/a | n/a | 1 |"),
            std::string::npos)
      << md;
  EXPECT_EQ(md.find("± 0.00"), std::string::npos) << md;
}

TEST(Report, AtomicWrite) {
  std::string dir = kd::test::make_temp_dir("report");
  std::string p = dir + "/table.md";
  kd::write_text_atomically(p, "old");
  kd::write_text_atomically(p, "new contents");
  EXPECT_EQ(slurp(p), "new contents");
  // A path that cannot be replaced (a folder with a file in it): the call throws naming the path, the
  // folder is untouched and no temporary file is left behind.
  fs::create_directories(dir + "/busy");
  kd::test::write_file(dir + "/busy/keep", "x");
  try {
    kd::write_text_atomically(dir + "/busy", "text");
    ADD_FAILURE() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/busy"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(dir + "/busy/keep"), "x");
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  // A report folder that cannot be created is named in the error.
  kd::test::write_file(dir + "/file", "x");
  kd::SqliteStore store(make_store(dir), true);
  EXPECT_THROW(kd::write_report(store, dir + "/file/report", no_figures()), std::runtime_error);
}

TEST(Report, MissingPythonSkipsFiguresWithOneReason) {
  std::string dir = kd::test::make_temp_dir("report");
  kd::SqliteStore store(make_store(dir), true);
  kd::ReportOptions o;
  o.python = dir + "/no-such-python";
  kd::ReportSummary s = kd::write_report(store, dir + "/report", o);
  EXPECT_NE(s.figures_note.find("python interpreter not found"), std::string::npos) << s.figures_note;
  EXPECT_TRUE(fs::exists(dir + "/report/comparison.md")) << "tables are written without figures";
  EXPECT_NE(slurp(dir + "/report/index.html").find("No figures: python interpreter not found"), std::string::npos);
}

TEST(Report, MissingMatplotlibSkipsFiguresWithOneReason) {
  const std::string py = "/usr/bin/python3";
  if (!fs::exists(py)) GTEST_SKIP() << "no system python";
  if (kd::test::run_command(py + " -c 'import matplotlib'").exit_code == 0)
    GTEST_SKIP() << "the system python has matplotlib: nothing to check here";
  std::string dir = kd::test::make_temp_dir("report");
  kd::SqliteStore store(make_store(dir), true);
  kd::ReportOptions o;
  o.python = py;
  kd::ReportSummary s = kd::write_report(store, dir + "/report", o);
  EXPECT_NE(s.figures_note.find("matplotlib is not importable"), std::string::npos) << s.figures_note;
  EXPECT_TRUE(fs::exists(dir + "/report/comparison.tex"));
  EXPECT_FALSE(fs::exists(dir + "/report/figures.json"));
}

// A sweep-shaped store for the figures: two student models, a T x alpha grid for logit_kd, a beta sweep
// for attention, three seeds, several epochs with loss terms.
std::string make_sweep_store(const std::string& dir) {
  std::string db = dir + "/results.db";
  kd::SqliteStore s(db);
  s.put_sweep("sw", "figures", R"({"name":"figures"})", R"({"libtorch":"2.11.0"})");
  add_done(s, {"t", "teacher", "resnet", "baseline", "{}", 0, 93, 92, "[]", "resnet_small", 0, 270000, 40000000});
  int n = 0;
  auto student = [&](const std::string& model, int64_t params, int64_t macs, double base) {
    for (int k = 0; k < 3; ++k) {
      double noise = (k - 1) * 0.6;
      kd::RunRecord r;
      auto add = [&](const std::string& label, const std::string& setting, double acc, const std::string& teachers,
                     std::vector<std::string> terms) {
        r = {};
        r.id = "r" + std::to_string(n++);
        r.sweep_id = "sw";
        r.role = kd::RunRole::Student;
        r.name = label;
        r.method = label;
        r.reference = label == "baseline";
        r.setting = setting;
        r.seed = k;
        r.model = model;
        r.teachers = teachers;
        r.params = params;
        r.macs = macs;
        s.add_run(r);
        ASSERT_TRUE(s.claim_run(r.id, "h:1", 60));
        std::vector<kd::EpochMetric> ep;
        for (int e = 0; e < 6; ++e) {
          double f = 1 - std::exp(-0.7 * (e + 1));
          ep.push_back({"main", e, "val.top1", 20 + (acc - 20) * f + noise});
          double total = 0;
          for (size_t i = 0; i < terms.size(); ++i) {
            double v = (2.0 + i) * std::exp(-0.4 * e) + 0.1;
            ep.push_back({"main", e, "loss." + terms[i], v});
            total += v;
          }
          ep.push_back({"main", e, "loss.total", total});
        }
        // Latency differs by seed (a timing); the report shows its median.
        s.finish_run(r, ep,
                     {{"final.val.top1", acc + noise + 0.3},
                      {"final.test.top1", acc + noise},
                      {"bestval.test.top1", acc + noise + 0.1},
                      {"latency_ms", static_cast<double>(macs) * 1e-7 * (1.0 + 0.1 * k * k)}});
      };
      add("baseline", "{}", base, "[]", {"ce"});
      for (double t : {1.0, 2.0, 4.0, 8.0})
        for (double a : {0.5, 0.9}) {
          double acc = base + 3 - 0.4 * std::pow(std::log2(t) - 2, 2) + (a > 0.7 ? 0.5 : 0);
          add("logit_kd", "{\"temperature\":" + std::to_string(t) + ",\"alpha\":" + std::to_string(a) + "}", acc,
              R"(["t"])", {"ce", "kd"});
        }
      for (double b : {100.0, 1000.0})
        add("attention", "{\"beta\":" + std::to_string(b) + "}", base + (b > 500 ? 1.5 : 0.8), R"(["t"])",
            {"ce", "at"});
    }
  };
  student("cnn_tiny", 30000, 2000000, 84);
  student("cnn_small", 120000, 9000000, 87);
  add_failed(s, "f0", "logit_kd", R"({"temperature":8.0,"alpha":0.9})", 3, R"(["t"])");
  return db;
}

TEST(Report, FiguresAndHtmlInHeadlessChromium) {
  std::string dir = kd::test::make_temp_dir("report");
  kd::SqliteStore store(make_sweep_store(dir), true);
  const std::string out = dir + "/report";
  kd::ReportSummary s = kd::write_report(store, out);
  // Each row carries its student's latency for the cost figure: the median over seeds (factors 1, 1.1, 1.4).
  auto rj = nlohmann::json::parse(slurp(out + "/report.json"));
  for (const auto& row : rj["rows"]) {
    const double macs = row["macs"].get<double>();
    EXPECT_NEAR(row["latency_ms"].get<double>(), macs * 1e-7 * 1.1, 1e-12) << row["model"];
  }
  if (!s.figures_note.empty()) GTEST_SKIP() << "figures unavailable here: " << s.figures_note;
  auto figs = nlohmann::json::parse(slurp(out + "/figures.json"));
  std::set<std::string> names;
  for (const auto& f : figs) names.insert(f["name"].get<std::string>());
  // Two students: ranks across the two blocks. In each, logit_kd (base + 3.5) beats attention (base + 1.5) beats
  // the student alone: mean ranks 1, 2, 3, Friedman as scipy.stats.friedmanchisquare on the same ranks
  // (tests/data/reference/stats.json, friedman[3]: chi2 4, p 0.1353), Nemenyi CD for 3 methods over 2 blocks
  // (nemenyi[1]).
  {
    std::ifstream in(kd::test::source_dir() + "/tests/data/reference/stats.json");
    const auto ref = nlohmann::json::parse(in);
    const auto& ranks = rj["ranks"];
    ASSERT_TRUE(ranks.is_object()) << rj.dump();
    EXPECT_EQ(ranks["blocks"], nlohmann::json({"cnn_tiny <- resnet", "cnn_small <- resnet"}));
    EXPECT_EQ(ranks["methods"], nlohmann::json({"logit_kd", "attention", "baseline"}));
    EXPECT_EQ(ranks["mean_ranks"], nlohmann::json({1.0, 2.0, 3.0}));
    const auto& f = ref["friedman"]["cases"][3];
    EXPECT_NEAR(ranks["friedman"]["chi2"].get<double>(), f["chi2"].get<double>(), 1e-9);
    EXPECT_NEAR(ranks["friedman"]["p"].get<double>(), f["p"].get<double>(), 1e-12);
    const auto& n = ref["nemenyi"]["cases"][1];
    ASSERT_EQ(n["k"], 3);
    ASSERT_EQ(n["n"], 2);
    EXPECT_NEAR(ranks["nemenyi"]["critical_difference"].get<double>(), n["critical_difference"].get<double>(), 1e-9);
  }
  for (const char* f :
       {"accuracy_vs_temperature_cnn_tiny", "accuracy_vs_temperature_cnn_small", "heatmap_logit_kd__cnn_tiny__alpha",
        "training_curves", "loss_terms", "methods_bar", "accuracy_vs_cost", "critical_difference"}) {
    EXPECT_TRUE(names.count(f)) << f;
    for (const char* ext : {".png", ".pdf", ".svg"})
      EXPECT_GT(fs::exists(out + "/" + f + ext) ? fs::file_size(out + "/" + f + ext) : 0u, 1000u) << f << ext;
  }

  if (kd::test::run_command("command -v chromium").exit_code != 0) GTEST_SKIP() << "chromium not installed";
  const std::string chromium =
      "timeout 120 chromium --headless --no-sandbox --disable-gpu --enable-logging=stderr "
      "--v=0 --user-data-dir=" +
      dir + "/chrome ";
  auto console_errors = [](const std::string& log) {
    std::vector<std::string> errs;
    std::istringstream in(log);
    std::string line;
    while (std::getline(in, line))
      if (line.find(":CONSOLE") != std::string::npos || line.find("Uncaught") != std::string::npos ||
          line.find("ERR_FILE_NOT_FOUND") != std::string::npos)
        errs.push_back(line);
    return errs;
  };
  // The check must be able to fail: the same report with one figure file missing is caught.
  fs::copy(out, dir + "/broken", fs::copy_options::recursive);
  fs::remove(dir + "/broken/methods_bar.png");
  auto broken = kd::test::run_command(chromium + "--dump-dom file://" + dir + "/broken/index.html");
  auto errs = console_errors(broken.output);
  ASSERT_EQ(errs.size(), 1u) << broken.output;
  EXPECT_NE(errs[0].find("figure failed to load: methods_bar.png"), std::string::npos) << errs[0];
  EXPECT_NE(broken.output.find("data-loaded=\"no\""), std::string::npos) << broken.output;

  auto r = kd::test::run_command(chromium + "--dump-dom file://" + out + "/index.html");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(console_errors(r.output).empty()) << r.output;
  for (const char* id : {"table-comparison", "table-ranks", "table-failed", "table-settings", "table-runs"})
    EXPECT_NE(r.output.find(std::string("<table id=\"") + id + "\""), std::string::npos) << id;
  EXPECT_NE(r.output.find("<img src=\"critical_difference.png\""), std::string::npos)
      << "the critical-difference diagram is on the page";
  // Every figure is an <img> whose file exists beside the page.
  std::regex img("<img src=\"([^\"]+)\"");
  std::set<std::string> shown;
  for (auto it = std::sregex_iterator(r.output.begin(), r.output.end(), img); it != std::sregex_iterator(); ++it) {
    std::string src = (*it)[1];
    EXPECT_TRUE(fs::exists(out + "/" + src)) << src;
    EXPECT_NE(r.output.find("<img src=\"" + src + "\" alt=\""), std::string::npos);
    shown.insert(fs::path(src).stem().string());
  }
  EXPECT_EQ(shown, names) << "every figure is on the page";
  EXPECT_EQ(r.output.find("data-loaded=\"no\""), std::string::npos) << "a figure did not decode";
  size_t loaded = 0;
  for (size_t p = 0; (p = r.output.find("data-loaded=\"yes\"", p)) != std::string::npos; ++p) ++loaded;
  EXPECT_EQ(loaded, names.size()) << "every figure decoded in the browser";
  // A screenshot proves the images decode and the page lays out.
  r = kd::test::run_command(chromium + "--window-size=1400,3000 --screenshot=" + dir + "/page.png file://" + out +
                            "/index.html");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(console_errors(r.output).empty()) << r.output;
  EXPECT_GT(fs::exists(dir + "/page.png") ? fs::file_size(dir + "/page.png") : 0u, 50000u);
}

// The default sweep's shape (its labels, settings, teacher-assistant chain and checkpoint paths), which
// is what made the comparison table run off a 1400 px window: two teachers, an assistant, seven methods.
std::string make_wide_store(const std::string& dir) {
  std::string db = dir + "/results.db";
  kd::SqliteStore s(db);
  s.put_sweep("sw", "fashion-mnist", R"({"name":"fashion-mnist"})", R"({"libtorch":"2.11.0"})");
  const std::string ckpt = "/root/.cache/kdbench/teachers/3c6524050be5e3411a97ef156f383646.pt";
  add_done(s, {"t", "teacher", "cnn_large", "baseline", "{}", 0, 88, 88.4, "[]", "cnn_large", 0, 70330, 1, ckpt});
  add_done(s, {"w", "teacher", "cnn_wide", "baseline", "{}", 0, 87, 87.2, "[]", "cnn_wide", 0, 80000, 1, ckpt});
  for (int k = 0; k < 3; ++k) {
    const std::string sd = std::to_string(k);
    auto student = [&](const std::string& label, const std::string& method, const std::string& setting, double acc,
                       const std::string& teachers, int64_t extra = 0) {
      // Seed noise shared by the runs of a seed, plus a little of each run's own: the comparisons have
      // paired differences with a spread, so every comparison cell holds a number, as in a real sweep.
      const double n = 0.4 * (k - 1) + 0.07 * static_cast<double>((k * 5 + label.size()) % 4);
      add_done(s, {label + sd, "student", label, method, setting, k, acc + 0.2 + n, acc + n, teachers, "cnn_tiny",
                   extra, 9000, 1, "/root/kdbench/results/fashion-mnist/checkpoints/" + label + sd + "0123456789.pt"});
    };
    add_done(s, {"ta" + sd, "assistant", "cnn_medium", "logit_kd", R"({"alpha":0.9,"temperature":4.0})", k, 80, 80,
                 R"(["t"])", "cnn_medium"});
    student("baseline", "baseline", "{}", 71.85, "[]");
    student("logit_kd", "logit_kd", R"({"alpha":0.9,"temperature":4})", 74.95, R"(["t"])");
    student("fitnets_1stage", "fitnets",
            R"({"beta":10,"mode":"one_stage","student_tap":"block2","teacher_tap":"block2"})", 76.1, R"(["t"])", 640);
    student("fitnets_2stage", "fitnets",
            R"({"hint_epochs":1,"mode":"two_stage","student_tap":"block2","teacher_tap":"block2"})", 76.35, R"(["t"])",
            640);
    student("attention", "attention", R"({"beta":100})", 70.78, R"(["t"])");
    student("multi_teacher", "multi_teacher", R"({"aggregation":"average"})", 75.58, R"(["t","w"])");
    student("progressive", "progressive", R"({"assistants":["cnn_medium"]})", 74.81, "[\"ta" + sd + "\"]");
  }
  add_failed(s, "f0", "attention", R"({"beta":1000})", 3, R"(["t"])");
  return db;
}

// In a 1280 px wide window (headless Chromium), the page needs no sideways scrolling: the comparison
// table (key columns first) fits and its test-accuracy header is inside the viewport, by element bounds.
// Clicking a header sorts: numbers by their values (largest first, then reversed), text by text.
TEST(Report, PageFitsA1280pxWindowAndSortsByHeaderInHeadlessChromium) {
  if (kd::test::run_command("command -v chromium").exit_code != 0) GTEST_SKIP() << "chromium not installed";
  std::string dir = kd::test::make_temp_dir("report");
  kd::SqliteStore store(make_wide_store(dir), true);
  const std::string out = dir + "/report";
  kd::write_report(store, out, no_figures());
  const std::string page = slurp(out + "/index.html");
  // The probe measures after load, then clicks headers, and writes what it saw into <pre id="probe">.
  const std::string probe =
      "<script>window.addEventListener('load',function(){\n"
      "function head(t,x){var h=document.querySelectorAll('#'+t+' thead th');"
      "for(var i=0;i<h.length;i++)if(h[i].textContent===x)return h[i];return null;}\n"
      "function box(e){var b=e.getBoundingClientRect();return {left:b.left,right:b.right};}\n"
      "function col(t,c,text){var r=document.getElementById(t).tBodies[0].rows,v=[];for(var i=0;i<r.length;i++){"
      "var e=r[i].cells[c];v.push(text?e.textContent:(e.hasAttribute('data-value')?"
      "parseFloat(e.getAttribute('data-value')):null));}return v;}\n"
      "var o={innerWidth:window.innerWidth,pageWidth:document.documentElement.scrollWidth,headers:[]};\n"
      "var th=head('table-comparison','Test top-1');o.testHeader=box(th);\n"
      "o.comparison=box(document.getElementById('table-comparison'));\n"
      "var hs=document.querySelectorAll('#table-comparison thead th');"
      "for(var i=0;i<hs.length;i++)o.headers.push(hs[i].textContent);\n"
      "th.click();o.testFirst=col('table-comparison',th.cellIndex);o.testFirstSort=th.getAttribute('aria-sort');\n"
      "th.click();o.testSecond=col('table-comparison',th.cellIndex);\n"
      "var m=head('table-settings','Method');m.click();o.methods=col('table-settings',m.cellIndex,true);\n"
      "var p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify(o);"
      "document.body.appendChild(p);});</script>\n";
  auto with_probe = [&](const std::string& name, const std::string& extra_style) {
    std::string h = page;
    h.insert(h.rfind("</body>"), probe);
    h.insert(h.find("</head>"), extra_style);
    kd::test::write_file(out + "/" + name, h);
    auto r = kd::test::run_command("timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir=" + dir +
                                   "/chrome --window-size=1280,900 --dump-dom file://" + out + "/" + name);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    size_t a = r.output.find("<pre id=\"probe\">"), b = r.output.find("</pre>", a);
    if (a == std::string::npos || b == std::string::npos) {
      ADD_FAILURE() << "the probe did not run: " << r.output;
      return nlohmann::json::object();
    }
    a += std::string("<pre id=\"probe\">").size();
    return nlohmann::json::parse(r.output.substr(a, b - a));
  };

  nlohmann::json o = with_probe("probe.html", "");
  ASSERT_TRUE(o.contains("testHeader")) << o;
  const double width = o["innerWidth"].get<double>();
  EXPECT_EQ(width, 1280) << "the window is 1280 px wide";
  EXPECT_LE(o["pageWidth"].get<double>(), width) << "the page scrolls sideways";
  EXPECT_GE(o["testHeader"]["left"].get<double>(), 0);
  EXPECT_LE(o["testHeader"]["right"].get<double>(), width) << "the test top-1 header is off the right edge";
  EXPECT_LE(o["comparison"]["right"].get<double>(), width) << "the comparison table runs off the right edge";
  const std::vector<std::string> key = {"Student", "Method", "Test top-1", "Gain (95% CI)", "p (Holm)", "Verdict"};
  ASSERT_GE(o["headers"].size(), key.size());
  for (size_t i = 0; i < key.size(); ++i) EXPECT_EQ(o["headers"][i], key[i]) << "key columns first";
  EXPECT_EQ(o["headers"].size(), 20u) << "every column is still there";

  // First click: largest test top-1 first; second: smallest first. Every row is still there.
  EXPECT_EQ(o["testFirstSort"], "descending");
  auto values = [](const nlohmann::json& a) {
    std::vector<double> v;
    for (const auto& x : a)
      if (!x.is_null()) v.push_back(x.get<double>());
    return v;
  };
  std::vector<double> first = values(o["testFirst"]), second = values(o["testSecond"]);
  EXPECT_EQ(first.size(), 2u + 7u) << "two teachers and seven methods, each with a test top-1";
  EXPECT_TRUE(std::is_sorted(first.rbegin(), first.rend())) << o["testFirst"];
  EXPECT_TRUE(std::is_sorted(second.begin(), second.end())) << o["testSecond"];
  EXPECT_DOUBLE_EQ(first.front(), 88.4) << "the strongest teacher first";
  EXPECT_EQ(o["testFirst"].size(), o["testSecond"].size());
  std::vector<std::string> methods;
  for (const auto& m : o["methods"]) methods.push_back(m.get<std::string>());
  EXPECT_EQ(methods.size(), 8u) << "seven methods' settings and the failed attention setting";
  EXPECT_TRUE(std::is_sorted(methods.begin(), methods.end())) << o["methods"];
  EXPECT_EQ(methods.front(), "attention");

  // The check can fail: the same page with its tables forced wide is caught.
  nlohmann::json wide = with_probe("wide.html", "<style>table{min-width:3000px}</style>");
  ASSERT_TRUE(wide.contains("comparison")) << wide;
  EXPECT_GT(wide["comparison"]["right"].get<double>(), width);
}

}  // namespace
