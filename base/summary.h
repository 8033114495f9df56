// Summaries of a sample that every layer uses (the harness's latency, the reports' tables): mean, median and
// the sample standard deviation. The inferential statistics are reports/stats.h.
#pragma once
#include <optional>
#include <vector>

namespace kd::stats {

// Mean; NaN for an empty sample.
double mean(const std::vector<double>& x);
// Median (the mean of the two middle values for an even count); NaN for an empty sample.
double median(std::vector<double> x);
// Sample standard deviation (n - 1); nullopt for n < 2 (undefined, never shown as 0).
std::optional<double> stddev(const std::vector<double>& x);

}  // namespace kd::stats
