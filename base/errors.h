// Errors a user can cause. Each names what and where; the CLI prints what() and exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kd {

// For messages: a number as C++ streams print it (0.5, 1e+06), and names joined by ", ".
inline std::string format_number(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}
inline std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

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

// A method's own code failed while computing one run's loss (e.g. an exception raised in a Python method's
// compute): that run fails with this message (the Python exception's type, message and file:line); the sweep
// goes on. The message names what failed and where; the trainer adds the run, epoch and step.
class MethodError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The first line of an error message (LibTorch's carry a C++ backtrace after it).
inline std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace kd
