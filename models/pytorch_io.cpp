// State dicts into and out of zoo models under PyTorch's names, kdbench checkpoints reopened as the
// model they hold, and teachers compiled with AOTInductor (see pytorch_io.h).
#include "models/pytorch_io.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

#include "base/errors.h"

namespace kd {

namespace {

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// At most `limit` names, then "and N more".
std::string some_names(const std::vector<std::string>& v, size_t limit = 12) {
  std::vector<std::string> head(v.begin(), v.begin() + static_cast<long>(std::min(limit, v.size())));
  std::string s = join_names(head);
  if (v.size() > limit) s += ", and " + std::to_string(v.size() - limit) + " more";
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void collect_state(torch::nn::Module& m, const std::string& prefix, StateDict& out) {
  for (auto& p : m.named_parameters(/*recurse=*/false)) out.emplace_back(prefix + p.key(), p.value());
  for (auto& b : m.named_buffers(/*recurse=*/false)) out.emplace_back(prefix + b.key(), b.value());
  for (auto& c : m.named_children()) collect_state(*c.value(), prefix + c.key() + ".", out);
}

}  // namespace

// ------------------------------------------------------------------------------------------ name maps

std::optional<std::string> NameMap::apply(const std::string& name) const {
  auto it = rename.find(name);
  if (it != rename.end()) return it->second;
  for (const auto& [from, to] : prefix) {
    if (name.compare(0, from.size(), from) != 0) continue;
    if (!to) return std::nullopt;
    return *to + name.substr(from.size());
  }
  return name;
}

NameMap NameMap::from_json(const json& j, const std::string& key_path) {
  NameMap m;
  ObjectReader rd(j, key_path);
  if (rd.has("rename")) {
    const json& r = rd.raw("rename");
    if (!r.is_object()) throw ConfigError(rd.path("rename"), "expected an object of old name -> new name");
    for (auto it = r.begin(); it != r.end(); ++it) {
      if (!it.value().is_string())
        throw ConfigError(rd.path("rename") + "." + it.key(), "expected the new name (a string)");
      m.rename[it.key()] = it.value().get<std::string>();
    }
  }
  if (rd.has("prefix")) {
    const json& p = rd.raw("prefix");
    if (!p.is_object())
      throw ConfigError(rd.path("prefix"), "expected an object of old prefix -> new prefix (or null to drop)");
    for (auto it = p.begin(); it != p.end(); ++it) {
      if (it.value().is_null()) {
        m.prefix.emplace_back(it.key(), std::nullopt);
      } else if (it.value().is_string()) {
        m.prefix.emplace_back(it.key(), it.value().get<std::string>());
      } else {
        throw ConfigError(rd.path("prefix") + "." + it.key(), "expected the new prefix (a string) or null to drop");
      }
    }
    std::stable_sort(m.prefix.begin(), m.prefix.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }
  rd.finish();
  return m;
}

json NameMap::to_json() const {
  json j = json::object();
  if (!rename.empty()) j["rename"] = rename;
  if (!prefix.empty()) {
    json p = json::object();
    for (const auto& [from, to] : prefix) p[from] = to ? json(*to) : json();
    j["prefix"] = p;
  }
  return j;
}

// ------------------------------------------------------------------------------------- state dicts

StateDict model_state_dict(torch::nn::Module& m) {
  StateDict out;
  collect_state(m, "", out);
  return out;
}

void load_state_dict(TapModel& m, const StateDict& state, const NameMap& map, const std::string& path) {
  std::map<std::string, torch::Tensor> own;
  for (auto& [name, t] : model_state_dict(m)) own[name] = t;
  std::map<std::string, torch::Tensor> given;
  std::set<std::string> present;  // model names the file has (whatever their shape)
  std::vector<std::string> unexpected, misshaped, duplicate;
  for (const auto& [file_name, t] : state) {
    auto name = map.apply(file_name);
    if (!name) continue;
    const std::string shown = *name == file_name ? "'" + file_name + "'" : "'" + file_name + "' (as '" + *name + "')";
    if (given.count(*name)) {
      duplicate.push_back(shown);
      continue;
    }
    auto it = own.find(*name);
    if (it == own.end()) {
      unexpected.push_back(shown);
      continue;
    }
    present.insert(*name);
    if (t.sizes() != it->second.sizes()) {
      misshaped.push_back(shown + " is " + shape_str(t) + " in the file, " + shape_str(it->second) + " in the model");
      continue;
    }
    given[*name] = t;
  }
  std::vector<std::string> missing;
  for (const auto& [name, t] : own)
    if (!present.count(name) && !ends_with(name, "num_batches_tracked")) missing.push_back("'" + name + "'");
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty() || !duplicate.empty()) {
    std::string msg = "the state dict does not fit the model '" + m.arch() + "':";
    std::string sep = " ";
    if (!missing.empty()) {
      msg += sep + std::to_string(missing.size()) + " missing (" + some_names(missing) + ")";
      sep = "; ";
    }
    if (!unexpected.empty()) {
      msg += sep + std::to_string(unexpected.size()) + " unexpected (" + some_names(unexpected) + ")";
      sep = "; ";
    }
    if (!misshaped.empty()) {
      msg += sep + std::to_string(misshaped.size()) + " mis-shaped (" + some_names(misshaped) + ")";
      sep = "; ";
    }
    if (!duplicate.empty()) msg += sep + "named twice after renaming (" + some_names(duplicate) + ")";
    bool all_prefixed = !state.empty() && map.empty();
    for (const auto& [file_name, t] : state) all_prefixed = all_prefixed && file_name.rfind("module.", 0) == 0;
    if (all_prefixed)
      msg += " (every name starts with 'module.': give \"name_map\": {\"prefix\": {\"module.\": \"\"}})";
    throw DataError(path, msg);
  }
  torch::NoGradGuard ng;
  for (auto& [name, t] : own) {
    auto it = given.find(name);
    if (it != given.end()) {
      t.copy_(it->second);
    } else {
      t.zero_();  // num_batches_tracked of a file that has none
    }
  }
}

ModelPtr load_model_checkpoint(const std::string& path) {
  torch::serialize::InputArchive a;
  try {
    a.load_from(path);
  } catch (const std::exception& e) {
    throw DataError(path, "cannot read model checkpoint: " + first_line(e.what()));
  }
  torch::Tensor arch_t;
  bool has_arch = false;
  try {
    has_arch = a.try_read("kdbench_arch", arch_t);
  } catch (const std::exception&) {
    has_arch = false;
  }
  if (!has_arch || arch_t.dim() != 1 || arch_t.scalar_type() != torch::kInt64)
    throw DataError(path, "not a kdbench model checkpoint (no architecture name)");
  std::string arch;
  for (int64_t i = 0; i < arch_t.size(0); ++i) arch += static_cast<char>(arch_t[i].item<int64_t>());
  if (!has_model(arch)) throw DataError(path, "checkpoint of '" + arch + "', which is not in this kdbench's zoo");
  // The shape of the model: its stem convolution's input channels and its classifier's outputs, read
  // from the checkpoint under the names a default-shaped model of the same architecture has.
  ModelPtr probe = create_model(ModelSpec{arch, 10, 3, 32});
  std::string first_conv, classifier;
  for (const auto& p : probe->named_parameters()) {
    if (first_conv.empty() && p.value().dim() == 4) first_conv = p.key();
    if (p.value().dim() == 2) classifier = p.key();
  }
  auto read = [&](const std::string& dotted) {
    torch::serialize::InputArchive* cur = &a;
    std::vector<torch::serialize::InputArchive> subs;
    subs.reserve(dotted.size());
    std::string rest = dotted;
    for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
      subs.emplace_back();
      if (!cur->try_read(rest.substr(0, dot), subs.back()))
        throw DataError(path, "checkpoint has no module for '" + dotted + "'");
      cur = &subs.back();
    }
    torch::Tensor t;
    if (!cur->try_read(rest, t)) throw DataError(path, "checkpoint has no tensor '" + dotted + "'");
    return t;
  };
  ModelSpec spec{arch, static_cast<int>(read(classifier).size(0)), static_cast<int>(read(first_conv).size(1)), 32};
  ModelPtr m = create_model(spec);
  load_model(*m, path);
  return m;
}

// ---------------------------------------------------------------------------------- compiled teachers

std::vector<std::string> exported_output_keys(const std::string& spec, const std::string& path) {
  std::vector<std::string> keys;
  json j = json::parse(spec, nullptr, false);
  if (j.is_discarded()) throw DataError(path, "the package's output spec is not JSON");
  if (!j.is_array() || j.size() < 2 || !j[1].is_object()) return keys;
  const json& root = j[1];
  const json type = root.value("type", json());
  if (!type.is_string() || (type != "builtins.dict" && type != "collections.OrderedDict")) return keys;
  const json context = root.value("context", json());
  const json ctx = context.is_string() ? json::parse(context.get<std::string>(), nullptr, false) : json();
  if (!ctx.is_array()) throw DataError(path, "the package returns a dict whose keys are not strings");
  for (const auto& k : ctx) {
    if (!k.is_string()) throw DataError(path, "the package returns a dict whose keys are not strings");
    keys.push_back(k.get<std::string>());
  }
  for (const auto& child : root.value("children_spec", json::array()))
    if (child.value("type", json()).is_string())
      throw DataError(path, "the package returns a dict of nested containers; return a flat dict of tensors");
  return keys;
}

namespace {

class ExportedModel : public TapModel {
 public:
  ExportedModel(const std::string& path, std::vector<std::string> taps) : taps_(std::move(taps)), path_(path) {
    try {
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
      auto meta = loader_->get_metadata();
      const std::string key = meta.count("AOTI_DEVICE_KEY") ? meta["AOTI_DEVICE_KEY"] : "cpu";
      device_ = torch::Device(key == "cuda" ? torch::kCUDA : torch::kCPU);
      auto spec = loader_->get_call_spec();
      if (spec.size() == 2) dict_keys_ = exported_output_keys(spec[1], path);
      auto* runner = loader_->get_runner();
      auto fqns = runner->getConstantNamesToOriginalFQNs();
      for (const auto& [name, t] : runner->extract_constants_map(/*use_inactive=*/false)) {
        const std::string fqn = fqns.count(name) && !fqns[name].empty() ? fqns[name] : name;
        const bool buffer =
            ends_with(fqn, "running_mean") || ends_with(fqn, "running_var") || ends_with(fqn, "num_batches_tracked");
        // Copies, so that nothing done to the wrapper's tensors (to_channels_last's set_data) can reach the
        // constants the compiled code reads.
        if (buffer) {
          register_buffer(flat_name(fqn), t.detach().clone());
        } else {
          register_parameter(flat_name(fqn), t.detach().clone(), /*requires_grad=*/false);
        }
      }
    } catch (const DataError&) {
      throw;
    } catch (const std::exception& e) {
      throw DataError(path, "cannot load the AOTInductor package: " + first_line(e.what()));
    }
    if (!dict_keys_.empty())
      for (const auto& t : taps_)
        if (std::find(dict_keys_.begin(), dict_keys_.end(), t) == dict_keys_.end())
          throw DataError(path, "the compiled teacher returns a dict without '" + t +
                                    "' (its keys: " + join_names(dict_keys_) + ")");
  }

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    if (x.device() != device_)
      throw DataError(path_, "the package was compiled for " + device_.str() + " but the input is on " +
                                 x.device().str() + "; compile it for that device");
    std::vector<torch::Tensor> out;
    try {
      torch::NoGradGuard ng;
      out = loader_->run({x.contiguous()});
    } catch (const std::exception& e) {
      std::ostringstream s;
      s << x.sizes();
      throw DataError(path_, "compiled teacher failed on an input of shape " + s.str() +
                                 " (was it exported with a dynamic batch dimension?): " + first_line(e.what()));
    }
    TapMap got;
    if (!dict_keys_.empty()) {
      for (size_t i = 0; i < dict_keys_.size() && i < out.size(); ++i) got[dict_keys_[i]] = out[i];
    } else if (out.size() == 1 && taps_.size() == 1) {
      got["logits"] = out[0];
    } else {
      if (out.size() < taps_.size())
        throw DataError(path_, "the compiled teacher returns " + std::to_string(out.size()) + " outputs but " +
                                   std::to_string(taps_.size()) + " taps are named, so '" + taps_[out.size()] +
                                   "' is missing");
      for (size_t i = 0; i < taps_.size(); ++i) got[taps_[i]] = out[i];
    }
    for (const auto& t : taps_)
      if (!got.count(t)) throw DataError(path_, "the compiled teacher has no output named '" + t + "'");
    if (taps)
      for (const auto& t : taps_) (*taps)[t] = got.at(t);
    return got.at("logits");
  }
  std::vector<std::string> tap_names() const override { return taps_; }
  std::string arch() const override { return "export:" + path_; }
  void to(torch::Device device, torch::Dtype, bool) override { check_device(device); }
  void to(torch::Dtype, bool) override {}
  void to(torch::Device device, bool) override { check_device(device); }

 private:
  void check_device(torch::Device d) const {
    if (d.type() != device_.type())
      throw DataError(path_, "the package was compiled for " + device_.str() + ", not for " + d.str() +
                                 "; compile it on and for the device the sweep uses");
  }
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::vector<std::string> taps_, dict_keys_;
  std::string path_;
  torch::Device device_{torch::kCPU};
};

}  // namespace

ModelPtr load_exported_model(const std::string& path, const std::vector<std::string>& tap_outputs) {
  if (!std::filesystem::exists(path)) throw DataError(path, "compiled teacher package (.pt2) not found");
  if (std::find(tap_outputs.begin(), tap_outputs.end(), "logits") == tap_outputs.end())
    throw DataError(path, "the taps named for this compiled teacher must include 'logits'");
  return std::make_shared<ExportedModel>(path, tap_outputs);
}

}  // namespace kd
