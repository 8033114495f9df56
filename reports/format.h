// Text and number formatting shared by the report's tables, report.json and the page.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace kd {

// The JSON in `text`, or `fallback` when it is empty or not JSON (stored text is shown, never rejected).
nlohmann::json parse_json_or(const std::string& text, nlohmann::json fallback);

// A setting as a reader writes it: "alpha=0.9, temperature=4" (keys sorted); "defaults" when empty.
std::string setting_text(const std::string& setting_json);

// Fixed-point with `digits` decimals: fixed(71.234) = "71.23".
std::string fixed(double v, int digits = 2);

// Number formatting used by every table: "71.23 ± 0.45", "71.23 ± n/a" for one seed, "n/a" for none.
std::string format_mean_std(const std::vector<double>& v);

// `s` with every `from` replaced by `to`.
std::string replace_all(std::string s, const std::string& from, const std::string& to);

// The mean, or nothing for an empty sample.
std::optional<double> mean_or_none(const std::vector<double>& v);

// null for nothing, else the number.
nlohmann::json json_or_null(const std::optional<double>& v);

}  // namespace kd
