// kdbench: the command-line interface.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "base/errors.h"
#include "base/log.h"
#include "cli/commands.h"
#include "datasets/dataset.h"
#include "harness/plan.h"
#include "harness/runner.h"
#include "methods/method.h"
#include "models/model.h"
#include "store/store.h"
#include "store/sweep_layout.h"

namespace fs = std::filesystem;
using kd::json;

namespace {

std::string param_range(const kd::ParamSpec& p) {
  using K = kd::ParamSpec::Kind;
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
  auto& reg = kd::MethodRegistry::instance();
  for (const auto& name : reg.names()) {
    const auto& info = reg.get(name);
    std::cout << name << "  —  " << info.description << "\n";
    if (info.reference)
      std::cout << "    the reference student: gains are measured against it; teachers train with it\n";
    if (!info.citation.empty()) std::cout << "    source: " << info.citation << "\n";
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
  for (const auto& m : kd::list_models()) {
    int size = input_size > 0 ? input_size : m.default_image_size;
    int channels = m.default_image_size == 28 ? 1 : 3;
    int classes = m.default_image_size == 224 ? 1000 : (m.default_image_size == 28 ? 10 : 100);
    auto model = kd::create_model({m.name, classes, channels, size});
    std::cout << fmt::format("{:<14} {:>12} {:>14} {:>3}x{:<3} {} ({} classes)\n", m.name, kd::count_parameters(*model),
                             kd::count_macs(*model, channels, size), size, size, m.description, classes);
  }
  return 0;
}

int cmd_datasets() {
  for (const auto& d : kd::list_datasets())
    std::cout << fmt::format("{:<14} {:<9} {}\n    {}\n", d.name, d.found ? "found" : "not found", d.location,
                             d.description);
  return 0;
}

int cmd_plan(const std::string& config, const std::string& output) {
  kd::SweepConfig cfg = kd::load_sweep_config(config);
  kd::Plan plan = kd::plan_sweep(cfg);
  std::string out = output.empty() ? cfg.output : output;
  std::map<std::string, std::string> status;
  const std::string db = kd::SweepLayout(out).store();
  if (fs::exists(db)) {
    kd::SqliteStore store(db, /*read_only=*/true);
    for (const auto& r : store.runs()) status[r.id] = kd::to_string(r.status);
  }
  int done = 0;
  std::cout << fmt::format("sweep '{}' ({}): {} runs, output {}\n", cfg.name, plan.sweep_id.substr(0, 12),
                           plan.runs.size(), out);
  std::cout << fmt::format("{:<12} {:<9} {:<8} {:<14} {:<12} {:>4}  {}\n", "run", "role", "status", "name", "model",
                           "seed", "setting");
  for (const auto& r : plan.runs) {
    std::string s = status.count(r.id) ? status[r.id] : "new";
    done += s == "done";
    std::cout << fmt::format("{:<12} {:<9} {:<8} {:<14} {:<12} {:>4}  {}\n", r.id.substr(0, 12), kd::to_string(r.role),
                             s, r.name, r.model.empty() ? "torchscript" : r.model, r.seed, r.setting.dump());
  }
  std::cout << fmt::format("{} of {} runs done\n", done, plan.runs.size());
  return 0;
}

// An unknown subcommand fails with the list of known ones, whatever flags follow it (CLI11 would
// otherwise act on a following --help and print the main help with exit code 0).
int reject_unknown_subcommand(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return -1;
  std::vector<std::string> known;
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    known.push_back(sub->get_name());
    if (sub->get_name() == argv[1]) return -1;
  }
  std::cerr << "kdbench: unknown command '" << argv[1] << "' (known: " << kd::join_names(known)
            << "); see kdbench --help\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kdbench: knowledge-distillation methods compared on equal footing"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("kdbench 0.1.0 (libtorch ") + KDBENCH_TORCH_VERSION + ")");

  auto* sweep = app.add_subcommand("sweep", "Run (or resume) a sweep: train teachers once, then every run");
  std::string config, output, device, format = "table", out_file;
  int64_t threads = -1;
  int workers = 1;
  bool retry_failed = false, no_report = false;
  sweep->add_option("config", config, "Sweep config (JSON)")->required();
  sweep->add_option("-o,--output", output, "Output folder (default: the config's \"output\")");
  sweep->add_option("--device", device, "auto | cpu | cuda (default: the config's)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sweep->add_option("--threads", threads, "Torch threads (0 = all cores; default: the config's)");
  sweep->add_option("--workers", workers, "Data-loader worker threads")->check(CLI::Range(1, 64));
  sweep->add_flag("--retry-failed", retry_failed, "Run failed runs again");
  sweep->add_flag("--no-report", no_report, "Do not write the report at the end");

  auto* plan = app.add_subcommand("plan", "Validate a sweep config and list its runs and what is done");
  plan->add_option("config", config, "Sweep config (JSON)")->required();
  plan->add_option("-o,--output", output, "Output folder to check for finished runs");

  auto* runs = app.add_subcommand("runs", "List the runs in a sweep folder; export them as CSV or JSON Lines");
  std::string dir;
  runs->add_option("dir", dir, "Sweep output folder")->required();
  runs->add_option("--format", format, "table | csv | jsonl")->check(CLI::IsMember({"table", "csv", "jsonl"}));
  runs->add_option("-o,--output", out_file, "Write to this file instead of stdout (atomically)");

  auto* report = app.add_subcommand("report", "Write tables and figures from a sweep's results store");
  report->add_option("dir", dir, "Sweep output folder")->required();
  report->add_option("-o,--output", output, "Report folder (default: DIR/report)");

  int input_size = 0;
  app.add_subcommand("methods", "List the registered distillation methods and their hyperparameters");
  auto* models = app.add_subcommand("models", "List the model zoo: parameters and MACs");
  models->add_option("--input-size", input_size, "Input height/width for MACs (default: each model's own)");
  app.add_subcommand("datasets", "List the data sets kdbench knows and where their files are");

  if (int rc = reject_unknown_subcommand(app, argc, argv); rc >= 0) return rc;
  CLI11_PARSE(app, argc, argv);
  try {
    if (app.got_subcommand("methods")) return cmd_methods();
    if (app.got_subcommand("models")) return cmd_models(input_size);
    if (app.got_subcommand("datasets")) return cmd_datasets();
    if (app.got_subcommand("plan")) return cmd_plan(config, output);
    if (app.got_subcommand("runs")) return kd::cmd_runs(dir, format, out_file);
    if (app.got_subcommand("report")) return kd::cmd_report(dir, output);
    if (app.got_subcommand("sweep")) {
      kd::SweepConfig cfg = kd::load_sweep_config(config);
      kd::SweepOptions opts;
      opts.output = output;
      opts.device = device;
      opts.threads = threads;
      opts.retry_failed = retry_failed;
      opts.workers = workers;
      kd::SweepSummary s = kd::run_sweep(cfg, opts);
      kd::log::info("sweep '{}': {} runs, {} done ({} trained now, {} already done), {} failed; results in {}",
                    cfg.name, s.total, s.done, s.trained, s.skipped, s.failed, s.output_dir);
      if (!no_report && cfg.report) kd::cmd_report(s.output_dir, "");
      return s.failed > 0 ? 4 : 0;
    }
  } catch (const kd::ConfigError& e) {
    std::cerr << "kdbench: config error: " << e.what() << "\n";
    return 2;
  } catch (const kd::DataError& e) {
    std::cerr << "kdbench: data error: " << e.what() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "kdbench: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
