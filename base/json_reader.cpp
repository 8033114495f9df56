#include "base/json_reader.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "base/errors.h"

namespace kd {

namespace {

// Checks what nlohmann's parser accepts but kdbench cannot use, with the position of the offence:
//  - nesting deeper than kMaxJsonDepth: the parser is iterative, but copying, comparing and dumping a
//    value recurse once per level, and a config nested 100000 levels deep (200 KB of brackets)
//    overflowed the stack. No config needs more than a handful of levels;
//  - a NUL character (the escape \u0000) in a string: names, keys and paths become C strings and
//    error messages, which it would cut short.
constexpr int kMaxJsonDepth = 100;

void check_json_text(const std::string& text, const std::string& file_name) {
  int depth = 0;
  bool in_string = false;
  size_t line = 1, col = 1;
  auto fail = [&](const std::string& what) {
    throw ConfigError(file_name + ":" + std::to_string(line) + ":" + std::to_string(col), "malformed JSON: " + what);
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      if (ch == '"') {
        in_string = false;
      } else if (ch == '\\' && i + 1 < text.size()) {
        if (text.compare(i + 1, 5, "u0000") == 0) fail("a string contains a NUL character (\\u0000)");
        ++i;  // the escaped character (never a newline in valid JSON)
        ++col;
      }
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > kMaxJsonDepth) fail("nested more than " + std::to_string(kMaxJsonDepth) + " levels deep");
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
    if (ch == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
}
}  // namespace

std::string json_type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

json parse_json_text(const std::string& text, const std::string& file_name) {
  check_json_text(text, file_name);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // e.byte is 1-based offset of the error; convert to line:column.
    size_t byte = e.byte == 0 ? 0 : e.byte - 1;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    std::string what = e.what();
    auto pos = what.find("syntax error");
    if (pos != std::string::npos) what = what.substr(pos);
    throw ConfigError(file_name + ":" + std::to_string(line) + ":" + std::to_string(col), "malformed JSON: " + what);
  } catch (const json::exception& e) {
    // The parser also throws out_of_range (406: a number too large for a double, e.g. 1e999), which
    // carries no position; its message quotes the offending token.
    std::string what = e.what();
    auto pos = what.find("] ");
    if (pos != std::string::npos) what = what.substr(pos + 2);
    throw ConfigError(file_name, "malformed JSON: " + what);
  }
}

json load_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, "cannot read config file (missing or not readable)");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_json_text(ss.str(), path);
}

ObjectReader::ObjectReader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
  if (!j_.is_object()) throw ConfigError(path_, "expected an object, got " + json_type_name(j_));
}

bool ObjectReader::has(const std::string& key) const {
  return j_.contains(key);
}

const json& ObjectReader::raw(const std::string& key) {
  if (!j_.contains(key)) throw ConfigError(path(key), "required key is missing");
  read_.insert(key);
  return j_.at(key);
}

double ObjectReader::number(const std::string& key, std::optional<double> def, double lo, double hi) {
  if (!has(key)) {
    if (!def)
      throw ConfigError(path(key), "required key is missing (expected a number in [" + format_number(lo) + ", " +
                                       format_number(hi) + "])");
    read_.insert(key);
    return *def;
  }
  const json& v = raw(key);
  if (!v.is_number()) throw ConfigError(path(key), "expected a number, got " + json_type_name(v));
  double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    throw ConfigError(path(key), "value " + format_number(d) + " is out of range [" + format_number(lo) + ", " +
                                     format_number(hi) + "]");
  return d;
}

int64_t ObjectReader::integer(const std::string& key, std::optional<int64_t> def, int64_t lo, int64_t hi) {
  if (!has(key)) {
    if (!def) throw ConfigError(path(key), "required key is missing (expected an integer)");
    read_.insert(key);
    return *def;
  }
  const json& v = raw(key);
  if (!v.is_number() || (v.is_number_float() && std::floor(v.get<double>()) != v.get<double>()))
    throw ConfigError(path(key), "expected an integer, got " + json_type_name(v));
  double d = v.get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    throw ConfigError(path(key), "value " + format_number(d) + " is out of range [" + std::to_string(lo) + ", " +
                                     std::to_string(hi) + "]");
  return static_cast<int64_t>(d);
}

bool ObjectReader::boolean(const std::string& key, std::optional<bool> def) {
  if (!has(key)) {
    if (!def) throw ConfigError(path(key), "required key is missing (expected true or false)");
    read_.insert(key);
    return *def;
  }
  const json& v = raw(key);
  if (!v.is_boolean()) throw ConfigError(path(key), "expected true or false, got " + json_type_name(v));
  return v.get<bool>();
}

std::string ObjectReader::string(const std::string& key, std::optional<std::string> def,
                                 const std::vector<std::string>& choices) {
  std::string s;
  if (!has(key)) {
    if (!def)
      throw ConfigError(path(key), "required key is missing (expected a string" +
                                       (choices.empty() ? std::string() : ": one of " + join_names(choices)) + ")");
    read_.insert(key);
    return *def;
  }
  const json& v = raw(key);
  if (!v.is_string()) throw ConfigError(path(key), "expected a string, got " + json_type_name(v));
  s = v.get<std::string>();
  if (!choices.empty() && std::find(choices.begin(), choices.end(), s) == choices.end())
    throw ConfigError(path(key), "'" + s + "' is not one of: " + join_names(choices));
  return s;
}

std::vector<std::string> ObjectReader::strings(const std::string& key, std::optional<std::vector<std::string>> def) {
  if (!has(key)) {
    if (!def) throw ConfigError(path(key), "required key is missing (expected an array of strings)");
    read_.insert(key);
    return *def;
  }
  const json& v = raw(key);
  if (v.is_string()) return {v.get<std::string>()};
  if (!v.is_array()) throw ConfigError(path(key), "expected an array of strings, got " + json_type_name(v));
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string())
      throw ConfigError(path(key) + "[" + std::to_string(i) + "]", "expected a string, got " + json_type_name(v[i]));
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

std::vector<int64_t> ObjectReader::integers(const std::string& key, std::optional<std::vector<int64_t>> def, int64_t lo,
                                            int64_t hi) {
  if (!has(key)) {
    if (!def) throw ConfigError(path(key), "required key is missing (expected an array of integers)");
    read_.insert(key);
    return *def;
  }
  const json& v = raw(key);
  json arr = v.is_array() ? v : json::array({v});
  std::vector<int64_t> out;
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& e = arr[i];
    std::string p = path(key) + (v.is_array() ? "[" + std::to_string(i) + "]" : "");
    if (!e.is_number() || (e.is_number_float() && std::floor(e.get<double>()) != e.get<double>()))
      throw ConfigError(p, "expected an integer, got " + json_type_name(e));
    double d = e.get<double>();
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
      throw ConfigError(
          p, "value " + format_number(d) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

void ObjectReader::finish() const {
  std::vector<std::string> unknown;
  for (auto it = j_.begin(); it != j_.end(); ++it)
    if (!read_.count(it.key())) unknown.push_back(it.key());
  if (unknown.empty()) return;
  std::vector<std::string> known(read_.begin(), read_.end());
  throw ConfigError(path(unknown.front()), "unknown key (expected one of: " + join_names(known) + ")");
}

}  // namespace kd
