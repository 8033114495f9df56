// report.json: everything aggregated (read by reports/figures.py and anyone else).
#pragma once
#include <nlohmann/json.hpp>

#include "reports/aggregate.h"
#include "store/store.h"

namespace kd {

// {title, sweeps, teachers, settings (each with "selected"), rows (each with its comparison numbers and the
// training curves of its best setting), failed, status_counts}.
nlohmann::json report_json(const ResultsStore& store, const ReportData& d, const std::vector<RunRecord>& runs);

}  // namespace kd
