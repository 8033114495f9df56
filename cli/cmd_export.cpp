// `kdbench export RUN_ID_OR_PREFIX [DIR]`: a finished run's model for PyTorch users. --format pytorch
// (default) writes its state dict as torch.save does, under the names RepDistiller's (CIFAR models) or
// torchvision's (resnet18/34/50) classes have, so `model.load_state_dict(torch.load(FILE))` works;
// --format export compiles it with torch.export + AOTInductor into a .pt2 package (through the venv's
// Python: harness/aoti_export.h says why). A method's own modules (FitNets regressors) are not part of
// the model and are left out.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "base/errors.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "harness/aoti_export.h"
#include "harness/teacher_source.h"
#include "models/pytorch_io.h"
#include "models/torch_file.h"
#include "store/store.h"

namespace fs = std::filesystem;

namespace kd {

namespace {

// The input size a run's data set gives its models (the example input of an export).
int image_size_of(const std::string& config) {
  auto c = json::parse(config.empty() ? "{}" : config, nullptr, false);
  if (c.is_discarded() || !c.contains("dataset") || !c["dataset"].is_object()) return 32;
  const json& d = c["dataset"];
  if (d.contains("image_size") && d["image_size"].is_number_integer()) return d["image_size"].get<int>();
  const std::string name = d.value("name", std::string());
  if (name == "fashion_mnist" || name == "mnist_idx") return 28;
  if (name == "image_folder") return 224;
  return 32;
}

RunRecord find_run(ResultsStore& store, const std::string& prefix, const std::string& dir) {
  std::vector<RunRecord> hits;
  for (auto& r : store.runs())
    if (r.id.rfind(prefix, 0) == 0) hits.push_back(r);
  if (hits.empty())
    throw ConfigError("RUN_ID", "no run in " + dir + " has an id starting with '" + prefix + "' (`kdbench runs " + dir +
                                    "` lists them)");
  if (hits.size() > 1) {
    std::vector<std::string> ids;
    for (size_t i = 0; i < hits.size() && i < 5; ++i)
      ids.push_back(hits[i].id.substr(0, 16) + " (" + hits[i].name + ")");
    throw ConfigError("RUN_ID", "'" + prefix + "' starts " + std::to_string(hits.size()) + " run ids: " +
                                    join_names(ids) + (hits.size() > 5 ? ", ..." : "") + "; give more of it");
  }
  return hits.front();
}

}  // namespace

int cmd_export(const std::string& run_prefix, const std::string& dir, const std::string& out_arg,
               const std::string& format, int image_size, bool taps, const std::string& device,
               const std::string& python) {
  auto store = open_store(store_location_of(dir), /*read_only=*/true);
  RunRecord r = find_run(*store, run_prefix, dir);
  if (r.status != RunStatus::Done)
    throw ConfigError("RUN_ID", "run " + r.id.substr(0, 12) + " (" + r.name + ") is " + to_string(r.status) +
                                    ", not done: only finished runs have a model to export");
  const json config = json::parse(r.config.empty() ? "{}" : r.config, nullptr, false);
  const std::string obtain = config.is_object() ? config.value("obtain", std::string("train")) : "train";
  if (!has_model(r.model) || !teacher_source(obtain, "run " + r.id.substr(0, 12) + ": obtain").kdbench_checkpoint())
    throw ConfigError("RUN_ID", "run " + r.id.substr(0, 12) + " is the teacher '" + r.name + "' loaded from " +
                                    r.checkpoint + " (\"obtain\": \"" + obtain +
                                    "\"): it is a PyTorch file already; kdbench exports the models it trained");
  if (r.checkpoint.empty() || !fs::exists(r.checkpoint))
    throw DataError(r.checkpoint.empty() ? dir : r.checkpoint, "the run's checkpoint is missing");
  ModelPtr model = load_model_checkpoint(r.checkpoint);
  const auto state = model_state_dict(*model);
  std::string out = out_arg;
  if (out.empty()) out = r.name + "-" + r.model + "-" + r.id.substr(0, 12) + (format == "export" ? ".pt2" : ".pt");
  int classes = 0, channels = 0;
  for (auto& p : model->named_parameters()) {
    if (channels == 0 && p.value().dim() == 4) channels = static_cast<int>(p.value().size(1));
    if (p.value().dim() == 2) classes = static_cast<int>(p.value().size(0));
  }
  if (format == "pytorch") {
    write_torch_state_dict(state, out);
    log::info("wrote {}: the state dict of {} (run {}, {} tensors, {} classes)", out, r.model, r.id.substr(0, 12),
              state.size(), classes);
  } else {
    AotiExportOptions o;
    o.python = python;
    o.image_size = image_size > 0 ? image_size : image_size_of(r.config);
    o.in_channels = channels;
    o.num_classes = classes;
    o.taps = taps;
    o.device = device;
    log::info("compiling {} (run {}) with torch.export + AOTInductor for {} inputs of {}x{}x{} (about a minute)",
              r.model, r.id.substr(0, 12), device, channels, o.image_size, o.image_size);
    export_aoti_package(*model, out, o);
    log::info("wrote {}", out);
  }
  std::cout << fs::absolute(out).string() << "\n";
  return 0;
}

}  // namespace kd

namespace kd::cli {
namespace {
struct ExportArgs {
  std::string run, dir = ".", out, format = "pytorch", device = "cpu", python;
  int image_size = 0;
  bool taps = false;
};
}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND(
    "export", "Write a finished run's model for PyTorch: a state dict, or a torch.export package (.pt2)", 45,
    [](CLI::App& sub) -> kd::cli::CommandRun {
      auto a = std::make_shared<kd::cli::ExportArgs>();
      sub.add_option("run", a->run, "Run id or a unique prefix of it (`kdbench runs DIR` lists them)")->required();
      sub.add_option("dir", a->dir, "Sweep output folder (default: the current folder)");
      sub.add_option("-o,--output", a->out, "File to write (default: NAME-MODEL-RUNID.pt or .pt2 here)");
      sub.add_option("--format", a->format, "pytorch (a state dict for torch.load) | export (.pt2 via AOTInductor)")
          ->check(CLI::IsMember({"pytorch", "export"}));
      sub.add_option("--image-size", a->image_size, "export: input height = width (default: the run's data set's)");
      sub.add_flag("--taps", a->taps, "export: return a dict of every tap (kdbench's names) instead of the logits");
      sub.add_option("--device", a->device, "export: compile for cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}));
      sub.add_option("--python", a->python, "export: Python with torch (default: $KDBENCH_PYTHON, else the build's)");
      return [a] {
        return kd::cmd_export(a->run, a->dir, a->out, a->format, a->image_size, a->taps, a->device, a->python);
      };
    });
