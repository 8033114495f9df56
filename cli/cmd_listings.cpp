// `kdbench methods`, `kdbench models`, `kdbench datasets`: what kdbench knows.
#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>
#include <memory>

#include "cli/command.h"
#include "datasets/dataset.h"
#include "methods/method.h"
#include "models/model.h"

namespace kd::cli {
namespace {

using json = nlohmann::json;

std::string param_range(const ParamSpec& p) {
  using K = ParamSpec::Kind;
  switch (p.kind) {
    case K::Number:
      return fmt::format("number in [{}, {}]", p.min, p.max);
    case K::Integer:
      return fmt::format("integer in [{}, {}]", p.min, p.max);
    case K::Bool:
      return "true|false";
    case K::String: {
      if (p.choices.empty()) return "string";
      std::string s;
      for (const auto& c : p.choices) s += (s.empty() ? "" : "|") + c;
      return s;
    }
    case K::StringList:
      return "list of strings";
    case K::Json:
      return "JSON";
  }
  return "";
}

int cmd_methods() {
  auto& reg = MethodRegistry::instance();
  for (const auto& name : reg.names()) {
    const auto& info = reg.get(name);
    std::cout << name << "  —  " << info.description << "\n";
    if (info.reference)
      std::cout << "    the reference student: gains are measured against it; teachers train with it\n";
    if (!info.citation.empty()) std::cout << "    source: " << info.citation << "\n";
    if (!info.source_path.empty())
      std::cout << "    Python plugin: " << info.source_path << " (sha256 " << info.source_sha256.substr(0, 16) << "...)\n";
    std::cout << "    teachers: " << info.min_teachers;
    if (info.max_teachers != info.min_teachers) std::cout << " to " << info.max_teachers;
    std::cout << "\n";
    auto method = reg.create(name, reg.resolve(name, json::object(), name));
    std::string st;
    for (const auto& t : method->student_taps()) st += (st.empty() ? "" : ", ") + t;
    std::cout << "    student taps (defaults): " << st << "\n";
    for (int t = 0; t < info.max_teachers && t < 2; ++t) {
      std::string tt;
      for (const auto& x : method->teacher_taps(t)) tt += (tt.empty() ? "" : ", ") + x;
      if (!tt.empty()) std::cout << "    teacher " << t << " taps (defaults): " << tt << "\n";
    }
    for (const auto& p : info.params)
      std::cout << fmt::format("    {:<18} default {:<24} {:<28} {}\n", p.name, p.default_value.dump(), param_range(p),
                               p.doc);
    std::cout << "\n";
  }
  return 0;
}

int cmd_models(int input_size) {
  std::cout << fmt::format("{:<14} {:>12} {:>14} {:>6}  {}\n", "model", "params", "MACs", "input", "description");
  for (const auto& m : list_models()) {
    int size = input_size > 0 ? input_size : m.default_image_size;
    int channels = m.default_image_size == 28 ? 1 : 3;
    int classes = m.default_image_size == 224 ? 1000 : (m.default_image_size == 28 ? 10 : 100);
    auto model = create_model({m.name, classes, channels, size});
    std::cout << fmt::format("{:<14} {:>12} {:>14} {:>3}x{:<3} {} ({} classes)\n", m.name, count_parameters(*model),
                             count_macs(*model, channels, size), size, size, m.description, classes);
  }
  return 0;
}

int cmd_datasets() {
  for (const auto& d : list_datasets())
    std::cout << fmt::format("{:<14} {:<9} {}\n    {}\n", d.name, d.found ? "found" : "not found", d.location,
                             d.description);
  return 0;
}

}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND("methods", "List the registered distillation methods and their hyperparameters", 50,
                    [](CLI::App&) -> kd::cli::CommandRun { return [] { return kd::cli::cmd_methods(); }; });
KD_REGISTER_COMMAND("models", "List the model zoo: parameters and MACs", 51, [](CLI::App& sub) -> kd::cli::CommandRun {
  auto input_size = std::make_shared<int>(0);
  sub.add_option("--input-size", *input_size, "Input height/width for MACs (default: each model's own)");
  return [input_size] { return kd::cli::cmd_models(*input_size); };
});
KD_REGISTER_COMMAND("datasets", "List the data sets kdbench knows and where their files are", 52,
                    [](CLI::App&) -> kd::cli::CommandRun { return [] { return kd::cli::cmd_datasets(); }; });
