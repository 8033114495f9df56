// Reports: comparison tables, figures and a self-contained HTML page, from the results store only.
//
// The parts, each in its own file:
//   aggregate.h      the store read into ReportData (the aggregation rules are written there)
//   table.h          the table model: columns (alignment, sorting, bold-best, key, wrap) and rows of cells
//   writers.h        one writer per format behind TableWriter: Markdown, CSV, LaTeX, HTML (part, page)
//   report_tables.h  the comparison, every-setting, runs and failed tables
//   report_json.h    report.json (read by figures.py)
//   figures.h        figures.py and what it made
//   page.h           index.html
#pragma once
#include <string>
#include <vector>

#include "reports/aggregate.h"
#include "reports/format.h"
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

struct ReportSummary {
  std::vector<std::string> files;  // every file written (tables, report.json, index.html; figures)
  std::string figures_note;        // why figures were skipped, or "" when they were made
};

// Writes into `out_dir` (created if needed), each file through a temporary name and a rename:
//   comparison.{md,csv,tex,html}  (a) each method's best setting per pair, with teacher and reference rows
//   settings.{md,csv,tex,html}    (b) every setting, mean ± std over seeds and n
//   runs.{md,csv,tex}             (c) every run with its status
//   failed.{md,csv,tex}           failed runs with their error records
//   ranks.{md,csv,tex}            mean ranks across data sets and pairs, Friedman, Nemenyi (reports/ranks.h)
//   report.json                   all aggregated data (read by reports/figures.py)
//   *.pdf/*.svg/*.png, figures.json  figures (unless python/matplotlib is missing: one warning)
//   index.html                    everything above on one page that opens from disk, no network
// Throws std::runtime_error naming the file when one cannot be written.
ReportSummary write_report(const ResultsStore& store, const std::string& out_dir, const ReportOptions& opts = {});

}  // namespace kd
