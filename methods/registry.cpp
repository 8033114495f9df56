#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "base/errors.h"
#include "methods/method.h"

namespace kd {

// ---- MethodInfo builder ----------------------------------------------------------------------
namespace {
std::string join_key(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}
std::string type_name(const nlohmann::json& j) {
  if (j.is_boolean()) return "a boolean";
  if (j.is_number_integer() || j.is_number_unsigned()) return "an integer";
  if (j.is_number()) return "a number";
  if (j.is_string()) return "a string";
  if (j.is_array()) return "an array";
  if (j.is_object()) return "an object";
  return "null";
}
}  // namespace

const ParamSpec* MethodInfo::find(const std::string& param) const {
  for (const auto& p : params)
    if (p.name == param) return &p;
  return nullptr;
}

// ---- registry --------------------------------------------------------------------------------
MethodRegistry& MethodRegistry::instance() {
  static MethodRegistry registry;  // function-local: no static-initialisation-order problem
  return registry;
}

void MethodRegistry::add(MethodInfo info) {
  if (info.name.empty()) throw std::logic_error("a method registered with an empty name");
  if (methods_.count(info.name)) throw std::logic_error("method '" + info.name + "' is registered twice");
  if (!info.factory || !info.validate)
    throw std::logic_error("method '" + info.name + "' was declared without MethodInfo::of<Class>");
  if (info.reference)
    for (const auto& [other, m] : methods_)
      if (m.reference)
        throw std::logic_error("methods '" + other + "' and '" + info.name + "' both declare themselves the reference");
  std::string name = info.name;
  methods_.emplace(name, std::move(info));
}

const MethodInfo* MethodRegistry::find(const std::string& name) const {
  auto it = methods_.find(name);
  return it == methods_.end() ? nullptr : &it->second;
}

const MethodInfo& MethodRegistry::get(const std::string& name, const std::string& key_path) const {
  const MethodInfo* m = find(name);
  if (!m) throw ConfigError(key_path, "unknown method '" + name + "' (known: " + join_names(names()) + ")");
  return *m;
}

const MethodInfo& MethodRegistry::reference() const {
  for (const auto& [name, m] : methods_)
    if (m.reference) return m;
  throw std::logic_error("no registered method declares itself the reference student");
}

std::vector<std::string> MethodRegistry::names() const {
  std::vector<std::string> v;
  for (const auto& [k, _] : methods_) v.push_back(k);
  return v;
}

MethodParams MethodRegistry::resolve(const std::string& name, const nlohmann::json& values,
                                     const std::string& key_path) const {
  const MethodInfo& info = get(name, key_path);
  if (!values.is_object())
    throw ConfigError(key_path, "expected an object of hyperparameters, got " + type_name(values));
  nlohmann::json out = nlohmann::json::object();
  std::vector<std::string> known;
  for (const auto& p : info.params) known.push_back(p.name);
  for (auto it = values.begin(); it != values.end(); ++it)
    if (!info.find(it.key()))
      throw ConfigError(join_key(key_path, it.key()), "unknown hyperparameter '" + it.key() + "' for method '" + name +
                                                          "' (known: " + (known.empty() ? "none" : join_names(known)) +
                                                          ")");
  using K = ParamSpec::Kind;
  for (const auto& p : info.params) {
    std::string path = join_key(key_path, p.name);
    if (!values.contains(p.name)) {
      if (!p.omitted_at_default) out[p.name] = p.default_value;
      continue;
    }
    const auto& v = values.at(p.name);
    switch (p.kind) {
      case K::Number:
      case K::Integer: {
        if (!v.is_number() || v.is_boolean())
          throw ConfigError(path, std::string("expected ") + (p.kind == K::Number ? "a number" : "an integer") +
                                      ", got " + type_name(v));
        double d = v.get<double>();
        if (p.kind == K::Integer && std::floor(d) != d)
          throw ConfigError(path, "expected an integer, got " + format_number(d));
        if (!std::isfinite(d) || d < p.min || d > p.max)
          throw ConfigError(path, "value " + format_number(d) + " is out of range [" + format_number(p.min) + ", " +
                                      format_number(p.max) + "]");
        out[p.name] = p.kind == K::Integer ? nlohmann::json(static_cast<int64_t>(d)) : nlohmann::json(d);
        break;
      }
      case K::Bool:
        if (!v.is_boolean()) throw ConfigError(path, "expected true or false, got " + type_name(v));
        out[p.name] = v;
        break;
      case K::String: {
        if (!v.is_string()) throw ConfigError(path, "expected a string, got " + type_name(v));
        auto s = v.get<std::string>();
        if (!p.choices.empty() && std::find(p.choices.begin(), p.choices.end(), s) == p.choices.end())
          throw ConfigError(path, "'" + s + "' is not one of: " + join_names(p.choices));
        out[p.name] = s;
        break;
      }
      case K::StringList: {
        if (!v.is_array()) throw ConfigError(path, "expected an array of strings, got " + type_name(v));
        for (size_t i = 0; i < v.size(); ++i)
          if (!v[i].is_string())
            throw ConfigError(path + "[" + std::to_string(i) + "]", "expected a string, got " + type_name(v[i]));
        out[p.name] = v;
        break;
      }
      case K::Json:
        out[p.name] = v;
        break;
    }
    if (p.omitted_at_default && out[p.name] == p.default_value) out.erase(p.name);
  }
  MethodParams params(out);
  // Let the method check relations between values (e.g. list lengths) now, not mid-sweep.
  try {
    info.validate(out);
  } catch (const ConfigError& e) {
    throw ConfigError(e.key_path().empty() ? key_path : join_key(key_path, e.key_path()), e.message());
  }
  return params;
}

std::unique_ptr<Method> MethodRegistry::create(const std::string& name, const MethodParams& params) const {
  return get(name).factory(params.all());
}

}  // namespace kd
