// `kdbench report DIR`: the report of a sweep folder's store.
#include <filesystem>
#include <iostream>

#include "base/log.h"
#include "cli/commands.h"
#include "reports/report.h"
#include "store/store.h"
#include "store/sweep_layout.h"

namespace kd {

int cmd_report(const std::string& dir, const std::string& out_dir) {
  SqliteStore store(store_path_in(dir), /*read_only=*/true);
  std::string out = out_dir.empty() ? SweepLayout(dir).report() : out_dir;
  ReportSummary s = write_report(store, out);
  log::info("report: {} files in {} (open {}/index.html)", s.files.size(), out, out);
  return 0;
}

}  // namespace kd
