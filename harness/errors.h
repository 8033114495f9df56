// Errors a user can cause. Each names what and where; the CLI prints what() and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>

namespace kd {

// A bad configuration value. `key_path` is the JSON path, e.g. "methods[2].temperature".
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string key_path, const std::string& what)
      : std::runtime_error(key_path.empty() ? what : key_path + ": " + what),
        key_path_(std::move(key_path)),
        message_(what) {}
  const std::string& key_path() const { return key_path_; }
  // What is wrong, without the key path.
  const std::string& message() const { return message_; }

 private:
  std::string key_path_, message_;
};

// A missing, truncated or corrupt data file. `file` is the path; the message names the record or byte.
class DataError : public std::runtime_error {
 public:
  DataError(std::string file, const std::string& what)
      : std::runtime_error(file + ": " + what), file_(std::move(file)) {}
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

// A numeric fault during training (NaN/inf loss or gradient).
class NumericError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace kd
