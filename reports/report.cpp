#include "reports/report.h"

#include <filesystem>

#include "base/fsutil.h"
#include "reports/figures.h"
#include "reports/page.h"
#include "reports/report_json.h"
#include "reports/report_tables.h"
#include "reports/writers.h"

namespace fs = std::filesystem;

namespace kd {

namespace {

void prepare_folder(const std::string& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir))
    throw std::runtime_error(out_dir + ": cannot create the report folder" + (ec ? ": " + ec.message() : ""));
  remove_stale_temporaries(out_dir);
  remove_stale_temporaries((fs::path(out_dir) / "figures").string());
}

}  // namespace

ReportSummary write_report(const ResultsStore& store, const std::string& out_dir, const ReportOptions& opts) {
  prepare_folder(out_dir);
  ReportSummary summary;
  auto write = [&](const std::string& name, const std::string& text) {
    std::string path = (fs::path(out_dir) / name).string();
    write_text_atomically(path, text, "report");
    summary.files.push_back(path);
  };

  const ReportData d = aggregate(store);
  const RunIndex runs(store.runs());
  const ReportTables tables = report_tables(store, d, runs);
  // The comparison and every-setting tables also get a page of their own; runs and failed live in index.html.
  for (const Table* t : {&tables.comparison, &tables.settings, &tables.runs, &tables.failed, &tables.ranks}) {
    const bool own_page = t == &tables.comparison || t == &tables.settings;
    for (const auto& writer : file_writers(own_page)) write(t->name + writer->extension(), writer->write(*t));
  }
  write("report.json", report_json(store, d, runs.runs()).dump(1));

  FigureSet figures = make_figures(opts, out_dir);
  summary.figures_note = figures.note;
  summary.files.insert(summary.files.end(), figures.files.begin(), figures.files.end());
  write("index.html", index_html(store, d, runs, tables, figures));
  return summary;
}

}  // namespace kd
