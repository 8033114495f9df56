// The report's tables, built in the table model (reports/table.h) from the aggregated data and the runs:
//   comparison  (a) each method's best setting per pair, with teacher and reference rows
//   settings    (b) every setting, mean ± std over seeds and n
//   runs        (c) every run with its status
//   failed      failed runs with their error records
//   ranks       mean ranks across data sets and teacher-student pairs, with Friedman's test and Nemenyi's
//               critical difference (an empty-note table when there is one block)
#pragma once
#include <map>
#include <string>
#include <vector>

#include "reports/aggregate.h"
#include "reports/table.h"
#include "store/store.h"

namespace kd {

// The store's runs in store order, found by id, and the page's links to their rows.
class RunIndex {
 public:
  explicit RunIndex(std::vector<RunRecord> runs);
  const std::vector<RunRecord>& runs() const { return runs_; }
  const RunRecord* find(const std::string& id) const;
  // "s0" (or "s3 (failed)") linking to the run's row in the runs table; "" for an unknown id.
  std::string seed_link(const std::string& id) const;
  // seed_link of each id, space-separated.
  std::string seed_links(const std::vector<std::string>& ids) const;

 private:
  std::vector<RunRecord> runs_;
  std::map<std::string, size_t> index_;
};

struct ReportTables {
  Table comparison, settings, runs, failed, ranks;
};
ReportTables report_tables(const ResultsStore& store, const ReportData& d, const RunIndex& runs);

Table comparison_table(const ReportData& d, const RunIndex& runs);
Table settings_table(const ReportData& d, const RunIndex& runs);
Table runs_table(const ResultsStore& store, const RunIndex& runs);
Table failed_table(const RunIndex& runs);
Table ranks_table(const ReportData& d);

// The fields of a failed run's error record (JSON {epoch, step, term, message}; other text is the message).
struct RunError {
  std::string epoch = "-", step = "-", term = "-", message = "-";
};
RunError parse_run_error(const std::string& error);

}  // namespace kd
