// Reports: comparison tables and figures from the results store only.
//
// Aggregation rules (the ones a reader of a paper needs to trust the numbers):
//  * student runs are grouped by (student model, label, setting); a group's values are over seeds;
//  * each method's best setting is chosen by the mean VALIDATION top-1 (final epoch), never test;
//  * test top-1 is reported as mean ± sample std over seeds, with the 95% t confidence interval;
//  * gain = mean(method) - mean(baseline of the same student); gap closed =
//    (method - baseline) / (teacher - baseline), teacher = the root teacher's test top-1;
//  * p = Welch's t-test of the method's seeds against the baseline's seeds;
//  * failed runs are counted in every row they belong to and listed, never dropped.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "harness/store.h"

namespace kd {

struct ReportOptions {
  std::string python;        // interpreter with matplotlib for figures ("" = KDBENCH_PYTHON / env)
  bool figures = true;       // run reports/figures.py
  std::string figure_script; // default: <source>/reports/figures.py
};

// One (student, label, setting) over its seeds.
struct SettingStats {
  std::string model, label, method, setting;  // setting: JSON
  std::string teachers;                       // display names of the teachers, comma-separated
  std::vector<int64_t> seeds;
  std::vector<double> val, test, bestval_test;  // per done run, in seed order
  int failed = 0;
  int64_t method_params = 0, params = 0, macs = 0;
  std::vector<std::string> run_ids;
};

struct MethodRow {
  SettingStats best;         // best setting by mean validation top-1
  int settings = 0;          // how many settings were compared
  std::optional<double> gain, gap_closed, p_value;
  double teacher_top1 = -1;  // root teacher's test top-1 (-1: none)
};

struct ReportData {
  std::vector<SettingStats> settings;
  std::vector<MethodRow> rows;  // one per (student model, label), baseline first
  std::map<std::string, double> teacher_top1;  // teacher name -> test top-1
  nlohmann::json sweep;         // name, config, environment of the first sweep
};

// Aggregates the store (pure; tests call it on a hand-made store).
ReportData aggregate(const ResultsStore& store);

struct ReportSummary {
  std::vector<std::string> files;
  std::string figures_note;  // why figures were skipped, if they were
};

// Writes tables (Markdown, CSV, LaTeX, HTML), report.json, figures and index.html to out_dir.
// Every file is written to a temporary name and renamed.
ReportSummary write_report(const ResultsStore& store, const std::string& out_dir, const ReportOptions& opts = {});

// Number formatting used by every table: "71.23 ± 0.45" or "71.23 ± n/a" for one seed.
std::string format_mean_std(const std::vector<double>& v);

}  // namespace kd
