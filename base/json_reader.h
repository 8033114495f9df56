// Sweep configuration: JSON parsing with line/column errors, and a validating reader that names
// every bad key by its path and rejects unknown keys.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kd {

using json = nlohmann::json;

// Parses JSON text; a syntax error throws ConfigError("<file>:<line>:<column>", ...).
json parse_json_text(const std::string& text, const std::string& file_name);
// Reads and parses a file; a missing file throws ConfigError naming it.
json load_json_file(const std::string& path);

// Reads keys of one JSON object, checking types and ranges; finish() rejects keys never read.
class ObjectReader {
 public:
  ObjectReader(const json& j, std::string path);  // throws if j is not an object
  bool has(const std::string& key) const;
  std::string path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const json& raw(const std::string& key);  // marks as read; throws if missing
  double number(const std::string& key, std::optional<double> def, double lo, double hi);
  int64_t integer(const std::string& key, std::optional<int64_t> def, int64_t lo, int64_t hi);
  bool boolean(const std::string& key, std::optional<bool> def);
  std::string string(const std::string& key, std::optional<std::string> def,
                     const std::vector<std::string>& choices = {});
  std::vector<std::string> strings(const std::string& key, std::optional<std::vector<std::string>> def);
  std::vector<int64_t> integers(const std::string& key, std::optional<std::vector<int64_t>> def, int64_t lo,
                                int64_t hi);
  // Rejects unknown keys: ConfigError("<path>.<key>", "unknown key (expected one of: ...)").
  void finish() const;

 private:
  const json& j_;
  std::string path_;
  mutable std::set<std::string> read_;
};

// JSON type name for messages ("a number", "a string", ...).
std::string json_type_name(const json& j);

}  // namespace kd
