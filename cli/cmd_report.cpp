// `kdbench report DIR`: the report of a sweep folder's store.
#include <filesystem>
#include <iostream>
#include <memory>

#include "base/errors.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "reports/report.h"
#include "store/store.h"
#include "store/sweep_layout.h"

namespace kd {

int cmd_report(const std::string& where, const std::string& out_dir) {
  auto store = open_store(store_location_of(where), /*read_only=*/true);
  if (out_dir.empty() && is_store_url(where))
    throw ConfigError("--output", "a report of a store URL needs a folder to go to (-o DIR)");
  std::string out = out_dir.empty() ? SweepLayout(where).report() : out_dir;
  ReportSummary s = write_report(*store, out);
  log::info("report: {} files in {} (open {}/index.html)", s.files.size(), out, out);
  return 0;
}

}  // namespace kd

namespace kd::cli {
namespace {
struct ReportArgs {
  std::string dir, store, output;
};
}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND("report", "Write tables and figures from a sweep's results store", 40,
                    [](CLI::App& sub) -> kd::cli::CommandRun {
                      auto a = std::make_shared<kd::cli::ReportArgs>();
                      sub.add_option("dir", a->dir, "Sweep output folder, or a postgresql:// store URL");
                      sub.add_option("--store", a->store, "Results store URL (env KDBENCH_STORE)");
                      sub.add_option("-o,--output", a->output, "Report folder (default: DIR/report)");
                      return [a] { return kd::cmd_report(kd::cli::where_of(a->dir, a->store), a->output); };
                    });
