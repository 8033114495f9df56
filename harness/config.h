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

// The training recipe of a run (students) or of a teacher.
struct Recipe {
  int64_t epochs = 3;
  int64_t batch_size = 128;
  int64_t eval_batch_size = 256;  // evaluation batches (larger ones are slower on a CPU: cache misses)
  std::string optimizer = "sgd";  // sgd | adamw
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  double beta1 = 0.9, beta2 = 0.999;  // adamw
  std::string schedule = "cosine";    // constant | step | multistep | cosine
  std::vector<int64_t> milestones;    // multistep (epochs)
  int64_t step_size = 30;             // step (epochs)
  double gamma = 0.1;                 // step / multistep decay
  double warmup_epochs = 0;           // linear warm-up from lr/10... to lr (fraction of epochs allowed)
  double min_lr = 0;                  // cosine floor
  double grad_clip = 0;               // max global L2 norm; 0 = off
  json to_json() const;
};
// Parses a "recipe" object over `base` (keys not given keep base's values).
Recipe parse_recipe(const json& j, const std::string& path, const Recipe& base = Recipe{});

}  // namespace kd
