// Report aggregation on a small hand-made store, every table format, and the HTML page in Chromium.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/store.h"
#include "reports/report.h"
#include "reports/stats.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void add_done(kd::ResultsStore& s, const std::string& id, const std::string& role, const std::string& name,
              const std::string& method, const std::string& setting, int seed, double val, double test,
              const std::string& teachers = "[]") {
  kd::RunRecord r;
  r.id = id;
  r.sweep_id = "sw";
  r.role = role;
  r.name = name;
  r.method = method;
  r.setting = setting;
  r.seed = seed;
  r.model = role == "teacher" ? "cnn_large" : "cnn_tiny";
  r.teachers = teachers;
  s.add_run(r);
  ASSERT_TRUE(s.claim_run(id, "h:1", 60));
  s.finish_run(r, {{"main", 0, "val.top1", val - 5}, {"main", 1, "val.top1", val}, {"main", 0, "loss.ce", 1.0},
                   {"main", 1, "loss.ce", 0.5}, {"main", 0, "loss.total", 1.0}, {"main", 1, "loss.total", 0.5}},
               {{"final.val.top1", val}, {"final.test.top1", test}, {"bestval.test.top1", test}});
}

// Baseline: test {70,72,74}. logit_kd setting A: val 80 (best on validation), test {76,77,78};
// setting B: val 79, test {85,85,86} (better on TEST — must not be picked); one failed run in B.
std::string make_store(const std::string& dir) {
  std::string db = dir + "/results.db";
  kd::ResultsStore s(db);
  s.put_sweep("sw", "hand", R"({"name":"hand"})", R"({"libtorch":"2.11.0","threads":2})");
  add_done(s, "t", "teacher", "big", "baseline", "{}", 0, 91, 90);
  const double base_test[] = {70, 72, 74}, a_test[] = {76, 77, 78}, b_test[] = {85, 85, 86};
  for (int seed = 0; seed < 3; ++seed) {
    add_done(s, "b" + std::to_string(seed), "student", "baseline", "baseline", "{}", seed, 71 + 2 * seed,
             base_test[seed]);
    add_done(s, "a" + std::to_string(seed), "student", "logit_kd", "logit_kd", R"({"temperature":4})", seed, 80,
             a_test[seed], R"(["t"])");
    add_done(s, "x" + std::to_string(seed), "student", "logit_kd", "logit_kd", R"({"temperature":8})", seed, 79,
             b_test[seed], R"(["t"])");
  }
  kd::RunRecord f;
  f.id = "x3";
  f.sweep_id = "sw";
  f.role = "student";
  f.name = "logit_kd";
  f.method = "logit_kd";
  f.setting = R"({"temperature":8})";
  f.seed = 3;
  f.model = "cnn_tiny";
  f.teachers = R"(["t"])";
  s.add_run(f);
  EXPECT_TRUE(s.claim_run("x3", "h:1", 60));
  s.fail_run("x3", R"({"epoch":1,"step":4,"term":"kd","message":"loss is NaN"})", {});
  return db;
}

TEST(Report, AggregationMatchesHandValues) {
  std::string dir = kd::test::make_temp_dir("report");
  kd::ResultsStore store(make_store(dir), true);
  kd::ReportData d = kd::aggregate(store);
  ASSERT_EQ(d.rows.size(), 2u);
  EXPECT_EQ(d.rows[0].best.method, "baseline");
  const kd::MethodRow& kd_row = d.rows[1];
  EXPECT_EQ(kd_row.best.setting, R"({"temperature":4})") << "best setting must be chosen on validation, not test";
  EXPECT_EQ(kd_row.settings, 2);
  EXPECT_EQ(kd_row.best.failed, 1) << "the failed run of the other setting is counted in the method's row";
  EXPECT_NEAR(kd::stats::mean(kd_row.best.test), 77.0, 1e-12);
  EXPECT_NEAR(*kd::stats::stddev(kd_row.best.test), 1.0, 1e-12);
  EXPECT_NEAR(*kd_row.gain, 5.0, 1e-12);                      // 77 - 72
  EXPECT_NEAR(*kd_row.gap_closed, 5.0 / (90 - 72) * 100, 1e-9);  // 27.78 %
  // Welch by hand: var 1 and 4, n = 3 each: t = 5 / sqrt(5/3) = 3.8730; dof = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2)
  // = 2.9412; two-sided critical values at ~3 dof: 3.18 (p=.05), 5.84 (p=.01) -> 0.01 < p < 0.05.
  ASSERT_TRUE(kd_row.p_value.has_value());
  EXPECT_GT(*kd_row.p_value, 0.01);
  EXPECT_LT(*kd_row.p_value, 0.05);
  EXPECT_NEAR(*kd_row.p_value, 2 * (1 - kd::stats::t_cdf(5 / std::sqrt(5.0 / 3), 2.9411764705882)), 1e-6);
  EXPECT_DOUBLE_EQ(d.teacher_top1.at("big"), 90.0);
}

TEST(Report, TablesInEveryFormat) {
  std::string dir = kd::test::make_temp_dir("report");
  kd::ResultsStore store(make_store(dir), true);
  kd::ReportOptions o;
  o.figures = false;
  kd::write_report(store, dir + "/report", o);
  std::string md = slurp(dir + "/report/comparison.md");
  EXPECT_NE(md.find("| cnn_tiny | logit_kd | big | temperature=4 | **77.00 ± 1.00** | ± 2.48 | **+5.00** | **27.8%**"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("72.00 ± 2.00"), std::string::npos) << md;
  std::string tex = slurp(dir + "/report/comparison.tex");
  EXPECT_NE(tex.find("\\toprule"), std::string::npos);
  EXPECT_NE(tex.find("\\textbf{77.00 $\\pm$ 1.00}"), std::string::npos) << tex;
  EXPECT_NE(tex.find("logit\\_kd"), std::string::npos) << tex;
  std::string csv = slurp(dir + "/report/settings.csv");
  EXPECT_NE(csv.find("cnn_tiny,logit_kd,temperature=8,79.00 ± 0.00,85.33 ± 0.58"), std::string::npos) << csv;
  std::string runs = slurp(dir + "/report/runs.csv");
  EXPECT_NE(runs.find("failed"), std::string::npos);
  EXPECT_NE(runs.find("loss is NaN"), std::string::npos) << "failed runs are listed with their error";
  std::string html = slurp(dir + "/report/index.html");
  for (const char* id : {"table-comparison", "table-settings", "table-runs"})
    EXPECT_NE(html.find(id), std::string::npos) << id;
  EXPECT_EQ(html.find("http"), std::string::npos) << "the page must not reach the network";
  for (const auto& e : fs::directory_iterator(dir + "/report"))
    EXPECT_EQ(e.path().extension(), e.path().extension() == ".tmp" ? ".never" : e.path().extension())
        << "leftover temporary file " << e.path();
}

TEST(Report, FiguresAndHtmlInHeadlessChromium) {
  std::string dir = kd::test::make_temp_dir("report");
  kd::ResultsStore store(make_store(dir), true);
  kd::ReportSummary s = kd::write_report(store, dir + "/report");
  if (!s.figures_note.empty()) GTEST_SKIP() << "figures unavailable here: " << s.figures_note;
  for (const char* f : {"methods_bar.png", "methods_bar.pdf", "methods_bar.svg", "training_curves.png"})
    EXPECT_TRUE(fs::exists(dir + "/report/" + f)) << f;
  if (kd::test::run_command("command -v chromium").exit_code != 0) GTEST_SKIP() << "chromium not installed";
  auto r = kd::test::run_command("timeout 120 chromium --headless --no-sandbox --disable-gpu --enable-logging=stderr "
                                 "--v=0 --dump-dom file://" + dir + "/report/index.html");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* id : {"table-comparison", "table-settings", "table-runs"})
    EXPECT_NE(r.output.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  EXPECT_NE(r.output.find("<img src=\"methods_bar.png\""), std::string::npos);
  EXPECT_EQ(r.output.find("Uncaught"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("ERR_FILE_NOT_FOUND"), std::string::npos) << r.output;
  // A screenshot proves the images decode and the page lays out.
  r = kd::test::run_command("cd " + dir + " && timeout 120 chromium --headless --no-sandbox --disable-gpu "
                            "--window-size=1400,2400 --screenshot=" + dir + "/page.png file://" + dir +
                            "/report/index.html");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GT(fs::file_size(dir + "/page.png"), 20000u);
}

}  // namespace
