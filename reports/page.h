// index.html: the whole report on one page that opens from disk with no network (figures are files
// beside it, by relative path; the sorting and figure self-check scripts are inline).
#pragma once
#include <string>

#include "reports/aggregate.h"
#include "reports/figures.h"
#include "reports/report_tables.h"
#include "store/store.h"

namespace kd {

std::string index_html(const ResultsStore& store, const ReportData& d, const RunIndex& runs, const ReportTables& tables,
                       const FigureSet& figures);

}  // namespace kd
