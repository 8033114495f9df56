// `kdbench report DIR`: the report of a sweep folder's store.
#include <filesystem>
#include <iostream>

#include "harness/log.h"
#include "harness/runs_export.h"
#include "harness/store.h"
#include "reports/report.h"

namespace kd {

int cmd_report(const std::string& dir, const std::string& out_dir) {
  ResultsStore store(store_path_in(dir), /*read_only=*/true);
  std::string out = out_dir.empty() ? (std::filesystem::path(dir) / "report").string() : out_dir;
  ReportSummary s = write_report(store, out);
  log::info("report: {} files in {} (open {}/index.html)", s.files.size(), out, out);
  return 0;
}

}  // namespace kd
