// Figures: reports/figures.py run on report.json (matplotlib), and the list of what it made.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kd {

struct ReportOptions;

struct FigureSet {
  std::vector<nlohmann::json> figures;  // [{name, caption}] from figures.json, each with its PNG present
  std::vector<std::string> files;       // NAME.pdf, NAME.svg, NAME.png of each, in out_dir
  std::string note;                     // why there are no figures ("" when they were made)
};

// Removes a previous figures.json, runs figures.py on out_dir/report.json when opts.figures, and reads
// what it made. A missing interpreter, matplotlib or script gives a note (and one warning), never an error.
FigureSet make_figures(const ReportOptions& opts, const std::string& out_dir);

}  // namespace kd
