// `kdbench loss METHOD --inputs FILE [--params JSON] [--seed N] [--epoch N] [--stage N]`: one method's loss
// terms on tensors saved from Python, so a port can be compared with its PyTorch code on the same inputs.
// FILE is written by torch.save({"student": {tap: tensor}, "teachers": [{tap: tensor}, ...], "labels": tensor,
// "indices": tensor (optional)}, FILE); it is read with LibTorch's unpickler (torch::pickle_load), which reads
// torch.save's zip format. Prints JSON: each term's name, unweighted value and weight, the total
// sum(weight * value), and the gradient of the total with respect to every student tap in the file (zeros for
// taps the method does not use). A method's own modules (regressors, embeddings) are built for the file's tap
// shapes and initialised after torch::manual_seed(--seed), in the student tensors' dtype.
// Errors: bad --params or an unknown method -> exit 2; an unreadable file, missing taps, wrong types or shapes
// -> exit 3, one line naming the file and what is wrong.
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "cli/command.h"
#include "harness/run_builder.h"
#include "methods/method.h"

namespace kd::cli {
namespace {

using json = nlohmann::json;

// The tensors of one file written by torch.save in the layout above.
struct LossInputs {
  TapMap student;
  std::vector<TapMap> teachers;
  torch::Tensor labels, indices;
};

c10::IValue read_pickle(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path, "cannot open the file");
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw DataError(path, "the file is empty (expected a file written by torch.save)");
  try {
    return torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    std::string why = e.what();
    why = why.substr(0, why.find('\n'));
    throw DataError(path, "not a file written by torch.save that LibTorch can read (" + why + ")");
  }
}

// {tap: tensor} at `where` in the file.
TapMap read_taps(const c10::IValue& v, const std::string& path, const std::string& where) {
  if (!v.isGenericDict()) throw DataError(path, where + ": expected a dict {tap name: tensor}, got " + v.tagKind());
  TapMap taps;
  for (const auto& e : v.toGenericDict()) {
    if (!e.key().isString()) throw DataError(path, where + ": a key is a " + e.key().tagKind() + ", not a tap name");
    const std::string name = e.key().toStringRef();
    if (!e.value().isTensor())
      throw DataError(path, where + "[\"" + name + "\"]: expected a tensor, got " + e.value().tagKind());
    auto t = e.value().toTensor();
    if (!t.is_floating_point())
      throw DataError(path, where + "[\"" + name + "\"]: expected a floating-point tensor, got " +
                                std::string(c10::toString(t.scalar_type())));
    taps[name] = t.detach().contiguous();
  }
  return taps;
}

torch::Tensor read_index_tensor(const c10::IValue& v, const std::string& path, const std::string& key) {
  if (!v.isTensor()) throw DataError(path, key + ": expected a tensor, got " + v.tagKind());
  auto t = v.toTensor();
  if (t.dim() != 1 || t.is_floating_point() || t.scalar_type() == torch::kBool)
    throw DataError(path, key + ": expected a 1-D integer tensor, got " + std::to_string(t.dim()) + "-D " +
                              std::string(c10::toString(t.scalar_type())));
  return t.to(torch::kLong);
}

LossInputs read_inputs(const std::string& path) {
  c10::IValue root = read_pickle(path);
  if (!root.isGenericDict())
    throw DataError(path, "expected a dict with keys student, teachers, labels (and indices), got " + root.tagKind());
  std::map<std::string, c10::IValue> keys;
  for (const auto& e : root.toGenericDict()) {
    if (!e.key().isString()) throw DataError(path, "a top-level key is a " + e.key().tagKind() + ", not a string");
    const std::string k = e.key().toStringRef();
    if (k != "student" && k != "teachers" && k != "labels" && k != "indices")
      throw DataError(path, "unknown key '" + k + "' (known: student, teachers, labels, indices)");
    keys[k] = e.value();
  }
  for (const char* k : {"student", "teachers", "labels"})
    if (!keys.count(k)) throw DataError(path, std::string("missing key '") + k + "'");
  LossInputs in;
  in.student = read_taps(keys["student"], path, "student");
  if (!keys["teachers"].isList())
    throw DataError(path, "teachers: expected a list of dicts, got " + keys["teachers"].tagKind());
  const auto list = keys["teachers"].toList();
  for (size_t i = 0; i < list.size(); ++i)
    in.teachers.push_back(read_taps(list.get(i), path, "teachers[" + std::to_string(i) + "]"));
  in.labels = read_index_tensor(keys["labels"], path, "labels");
  const int64_t B = in.labels.size(0);
  in.indices = keys.count("indices") ? read_index_tensor(keys["indices"], path, "indices") : torch::arange(B);
  if (in.indices.size(0) != B)
    throw DataError(path,
                    "indices: " + std::to_string(in.indices.size(0)) + " entries for " + std::to_string(B) + " labels");
  auto check_batch = [&](const TapMap& taps, const std::string& where) {
    for (const auto& [name, t] : taps)
      if (t.dim() < 1 || t.size(0) != B)
        throw DataError(path, where + "[\"" + name + "\"]: batch size " +
                                  (t.dim() ? std::to_string(t.size(0)) : "none") + ", but labels has " +
                                  std::to_string(B));
  };
  check_batch(in.student, "student");
  for (size_t i = 0; i < in.teachers.size(); ++i) check_batch(in.teachers[i], "teachers[" + std::to_string(i) + "]");
  return in;
}

TapShapes shapes_of(const TapMap& taps) {
  TapShapes s;
  for (const auto& [k, v] : taps) s[k] = v.sizes().vec();
  return s;
}

void require_taps(const TapMap& have, const std::vector<std::string>& need, const std::string& path,
                  const std::string& where, const std::string& method) {
  for (const auto& t : need)
    if (!have.count(t)) {
      std::vector<std::string> names;
      for (const auto& [k, _] : have) names.push_back(k);
      std::sort(names.begin(), names.end());
      throw DataError(path, where + ": method '" + method + "' needs tap '" + t +
                                "' (the file has: " + (names.empty() ? "none" : join_names(names)) + ")");
    }
}

json tensor_to_json(const torch::Tensor& t) {
  auto d = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  if (d.dim() == 0) return d.item<double>();
  json a = json::array();
  for (int64_t i = 0; i < d.size(0); ++i) a.push_back(tensor_to_json(d[i]));
  return a;
}

struct LossArgs {
  std::string method, inputs, params = "{}";
  int64_t seed = 0, epoch = 0;
  int stage = 0;
};

int cmd_loss(const LossArgs& a) {
  auto& reg = MethodRegistry::instance();
  json values;
  try {
    values = json::parse(a.params);
  } catch (const json::parse_error& e) {
    throw ConfigError("--params", std::string("not valid JSON: ") + e.what());
  }
  const MethodInfo& info = reg.get(a.method, "method");
  MethodParams params = reg.resolve(a.method, values, "--params");
  const auto stages = reg.create(a.method, params)->stages();  // its declaration, for --stage
  if (a.stage < 0 || a.stage >= static_cast<int>(stages.size()))
    throw ConfigError("--stage",
                      "method '" + a.method + "' has " + std::to_string(stages.size()) + " stage(s), 0-based");

  LossInputs in = read_inputs(a.inputs);
  const int n_teachers = static_cast<int>(in.teachers.size());
  if (n_teachers < info.min_teachers || n_teachers > info.max_teachers)
    throw DataError(a.inputs,
                    "teachers: " + std::to_string(n_teachers) + " given; method '" + a.method + "' takes " +
                        std::to_string(info.min_teachers) +
                        (info.max_teachers != info.min_teachers ? " to " + std::to_string(info.max_teachers) : ""));
  require_taps(in.student, {"logits"}, a.inputs, "student", a.method);
  const auto& logits = in.student.at("logits");
  if (logits.dim() != 2)
    throw DataError(a.inputs, "student[\"logits\"]: expected [B, classes], got " + std::to_string(logits.dim()) + "-D");

  PrepareContext ctx;
  ctx.student = shapes_of(in.student);
  for (const auto& t : in.teachers) ctx.teachers.push_back(shapes_of(t));
  ctx.device = torch::kCPU;
  ctx.num_classes = logits.size(1);
  ctx.train_size = in.indices.numel() ? in.indices.max().item<int64_t>() + 1 : 0;
  LossTerms terms;
  torch::Tensor total;
  try {
    // The method made, its taps checked and prepared as for a run that trains (harness/run_builder.h).
    BuiltMethod built =
        build_method(a.method, params.all(), ctx, static_cast<uint64_t>(a.seed), SideNames{"student", {}}, "--params");
    if (!built.prepare_failure.empty()) throw std::runtime_error(built.prepare_failure);
    if (built.module) built.module->to(logits.scalar_type());
    for (auto& [name, t] : in.student) t.requires_grad_(true);
    std::vector<const TapMap*> teachers;
    for (const auto& t : in.teachers) teachers.push_back(&t);
    MethodInput mi{in.student, teachers, in.labels, in.indices, a.stage, a.epoch, a.epoch, 0, 1};
    terms = built.method->compute(mi);
    for (const auto& t : terms) {
      if (t.value.numel() != 1) throw std::invalid_argument("term '" + t.name + "' is not a scalar");
      auto w = t.value.reshape({}) * t.weight;
      total = total.defined() ? total + w : w;
    }
    if (!total.defined()) throw std::invalid_argument("the method returned no loss terms");
    total.backward();
  } catch (const MissingTap& e) {  // one error naming the file, the side and the taps the file has
    const bool student = e.teacher < 0;
    require_taps(student ? in.student : in.teachers[static_cast<size_t>(e.teacher)], {e.tap}, a.inputs,
                 student ? "student" : "teachers[" + std::to_string(e.teacher) + "]", a.method);
    throw;
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {  // shapes the method cannot use: from its own checks or LibTorch's
    std::string why = e.what();
    why = why.substr(0, why.find('\n'));
    throw DataError(a.inputs, "method '" + a.method + "' cannot use these tensors: " + why);
  }
  // One JSON object, one line per key (one per term and per tap), so that large gradients stay readable.
  std::vector<std::pair<std::string, std::string>> lines{{"method", json(a.method).dump()},
                                                         {"params", params.all().dump()},
                                                         {"seed", json(a.seed).dump()},
                                                         {"epoch", json(a.epoch).dump()},
                                                         {"stage", json(stages[a.stage].name).dump()}};
  std::string term_lines;
  for (size_t i = 0; i < terms.size(); ++i)
    term_lines +=
        (i ? ",\n    " : "\n    ") +
        json{{"name", terms[i].name}, {"value", terms[i].value.item<double>()}, {"weight", terms[i].weight}}.dump();
  lines.emplace_back("terms", "[" + term_lines + "\n  ]");
  lines.emplace_back("total", json(total.item<double>()).dump());
  std::map<std::string, torch::Tensor> sorted(in.student.begin(), in.student.end());
  std::string grad_lines;
  for (const auto& [name, t] : sorted)
    grad_lines += (grad_lines.empty() ? "\n    " : ",\n    ") + json(name).dump() + ": " +
                  tensor_to_json(t.grad().defined() ? t.grad() : torch::zeros_like(t)).dump();
  lines.emplace_back("grad", "{" + grad_lines + "\n  }");
  std::cout << "{\n";
  for (size_t i = 0; i < lines.size(); ++i)
    std::cout << "  " << json(lines[i].first).dump() << ": " << lines[i].second
              << (i + 1 < lines.size() ? ",\n" : "\n");
  std::cout << "}\n";
  return 0;
}

}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND("loss", "Evaluate one method's loss terms and gradients on tensors saved with torch.save", 60,
                    [](CLI::App& sub) -> kd::cli::CommandRun {
                      auto a = std::make_shared<kd::cli::LossArgs>();
                      sub.add_option("method", a->method, "Registered method name (see kdbench methods)")->required();
                      sub.add_option("--inputs", a->inputs,
                                     "torch.save'd dict: student {tap: tensor}, teachers [{tap: tensor}], labels, "
                                     "indices (optional)")
                          ->required();
                      sub.add_option("--params", a->params, "the method's hyperparameters as a JSON object");
                      sub.add_option("--seed", a->seed, "seed for the method's own modules (default 0)");
                      sub.add_option("--epoch", a->epoch,
                                     "0-based epoch the method sees (e.g. DKD's warm-up; default 0)");
                      sub.add_option("--stage", a->stage, "0-based stage of a multi-stage method (default 0)");
                      return [a] { return kd::cli::cmd_loss(*a); };
                    });
