#include "reports/format.h"

#include <fmt/format.h>

#include "reports/stats.h"

namespace kd {

using nlohmann::json;

json parse_json_or(const std::string& text, json fallback) {
  if (text.empty()) return fallback;
  try {
    return json::parse(text);
  } catch (...) {
    return fallback;
  }
}

std::string setting_text(const std::string& setting_json) {
  json j = parse_json_or(setting_json, json::object());
  if (!j.is_object() || j.empty()) return "defaults";
  std::string s;
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string v = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
    s += (s.empty() ? "" : ", ") + it.key() + "=" + v;
  }
  return s;
}

std::string fixed(double v, int digits) {
  return fmt::format("{:.{}f}", v, digits);
}

std::string format_mean_std(const std::vector<double>& v) {
  if (v.empty()) return "n/a";
  auto s = stats::stddev(v);
  return fixed(stats::mean(v)) + " ± " + (s ? fixed(*s) : "n/a");
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  return s;
}

std::optional<double> mean_or_none(const std::vector<double>& v) {
  return v.empty() ? std::optional<double>() : stats::mean(v);
}

json json_or_null(const std::optional<double>& v) {
  return v ? json(*v) : json();
}

}  // namespace kd
