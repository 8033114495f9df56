// Reports: comparison tables, figures and a self-contained HTML page, from the results store only.
//
// Aggregation rules (the ones a reader of a paper needs to trust the numbers):
//  * student runs (role 'student') are grouped by (teacher-student pair, method entry, setting), where
//    the pair is the student model plus the run's teachers; a group's values are over its seeds;
//  * per group: mean, sample std (n-1) and 95% Student-t CI of final.test.top1, final.val.top1 and
//    bestval.test.top1 (n = 1: std and CI are "n/a", never 0);
//  * each method's best setting is the one with the highest mean final.val.top1 (VALIDATION only, never
//    test); ties keep the setting that comes first in the sweep (the store's run order);
//  * gain = mean test(method) - mean test(baseline of the same student model);
//    gap closed = (method - baseline) / (teacher - baseline), teacher = final.test.top1 of the
//    strongest 'teacher' run the method distils from (through teacher-assistant chains);
//  * p = two-sided Welch's t-test of the method's seeds against the baseline's seeds;
//  * failed runs are counted in every row they belong to and listed in a table of their own.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace kd {

struct ReportOptions {
  // Interpreter with matplotlib for the figures. "" = $KDBENCH_PYTHON, else the build's venv python.
  std::string python;
  // reports/figures.py. "" = $KDBENCH_SOURCE_DIR/reports/figures.py, else the source tree's.
  std::string figure_script;
  // false: tables and index.html only (figures_note says so).
  bool figures = true;
};

// One (pair, method entry, setting) over its seeds.
struct SettingStats {
  std::string model, label, method, setting;  // label: the sweep's name for the method entry; setting: JSON
  bool reference = false;                     // the reference method's runs (the from-scratch student)
  std::vector<std::string> teacher_ids;       // the runs its first run distils from (teachers or assistants)
  std::string teachers;  // who it distils from, by identity: "big", "big, wide", "big -> TA cnn_medium" ("" = none)
  std::vector<int64_t> seeds;                   // of the done runs, in store order
  std::vector<double> val, test, bestval_test;  // final.val.top1, final.test.top1, bestval.test.top1
  int failed = 0, incomplete = 0;               // runs failed / still pending or running
  int64_t method_params = 0, params = 0, macs = 0;
  std::vector<double> latency_ms;         // batch-1 inference latency recorded by each done run
  std::vector<std::string> run_ids;       // every run of the group, any status
  std::vector<std::string> done_run_ids;  // parallel to seeds
};

struct MethodRow {
  SettingStats best;                                // best setting by mean validation top-1
  size_t best_index = 0;                            // into ReportData::settings
  int settings = 0;                                 // how many settings were compared
  int failed = 0, incomplete = 0;                   // over every setting of the method
  std::optional<double> gain, gap_closed, p_value;  // gap_closed in percent
  std::optional<double> teacher_top1;               // the teacher the gap is measured to
};

struct TeacherStats {
  std::string run_id, name, model, status;
  std::optional<double> test, val;
  int64_t params = 0, macs = 0;
};

struct ReportData {
  std::vector<SettingStats> settings;          // in store order of first appearance
  std::vector<MethodRow> rows;                 // per student model (first appearance): baseline first, then sweep order
  std::vector<TeacherStats> teachers;          // role 'teacher' runs
  std::map<std::string, double> teacher_top1;  // teacher name -> final.test.top1 (done teachers)
  nlohmann::json sweeps = nlohmann::json::array();  // [{id, name, config, environment}]
};

// Aggregates the store (pure: reads only; tests call it on a hand-made store).
ReportData aggregate(const ResultsStore& store);

struct ReportSummary {
  std::vector<std::string> files;  // every file written (tables, report.json, index.html; figures)
  std::string figures_note;        // why figures were skipped, or "" when they were made
};

// Writes into `out_dir` (created if needed), each file through a temporary name and a rename:
//   comparison.{md,csv,tex,html}  (a) each method's best setting per pair, with teacher and baseline rows
//   settings.{md,csv,tex}         (b) every setting, mean ± std over seeds and n
//   runs.{md,csv,tex}             (c) every run with its status
//   failed.{md,csv,tex}           failed runs with their error records
//   report.json                   all aggregated data (read by reports/figures.py)
//   *.pdf/*.svg/*.png, figures.json  figures (unless python/matplotlib is missing: one warning)
//   index.html                    everything above on one page that opens from disk, no network
// Throws std::runtime_error naming the file when one cannot be written.
ReportSummary write_report(const ResultsStore& store, const std::string& out_dir, const ReportOptions& opts = {});

// Number formatting used by every table: "71.23 ± 0.45", "71.23 ± n/a" for one seed, "n/a" for none.
std::string format_mean_std(const std::vector<double>& v);

}  // namespace kd
