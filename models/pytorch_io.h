// Models to and from PyTorch: state dicts (torch.save files) loaded into zoo models under PyTorch's
// names, a model's state dict for export, and teachers compiled with torch.export + AOTInductor.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/json_reader.h"
#include "models/model.h"
#include "models/torch_file.h"

namespace kd {

// How a checkpoint's tensor names become the zoo model's. The zoo's CIFAR models use RepDistiller's
// names and resnet18/34/50 torchvision's, so their checkpoints need no map. A map is JSON:
//   {"rename": {"head.weight": "fc.weight", ...},          exact names, applied first
//    "prefix": {"module.": "", "backbone.": "", "aux.": null}}
// A prefix rule replaces the longest matching prefix; a prefix mapped to null drops those tensors (a
// distiller's teacher or an auxiliary head saved beside the weights).
struct NameMap {
  std::map<std::string, std::string> rename;
  std::vector<std::pair<std::string, std::optional<std::string>>> prefix;  // longest first
  bool empty() const { return rename.empty() && prefix.empty(); }
  // The zoo name of a checkpoint's tensor, or nullopt when a rule drops it.
  std::optional<std::string> apply(const std::string& name) const;
  // Reads a map; throws ConfigError naming `key_path` (and the bad key) for anything malformed.
  static NameMap from_json(const json& j, const std::string& key_path);
  json to_json() const;
};

// Copies `state` (a checkpoint's tensors, renamed by `map`) into m's parameters and buffers, all or
// nothing: when any tensor the model has is missing, any tensor of the checkpoint has no place in the
// model or any shape differs, ONE DataError naming `path` lists every such name (missing, unexpected,
// mis-shaped with both shapes) and the model is unchanged. Missing "*.num_batches_tracked" buffers are
// allowed (PyTorch before 0.4.1 did not save them; PyTorch itself accepts such files) and set to 0.
void load_state_dict(TapModel& m, const StateDict& state, const NameMap& map, const std::string& path);

// m's parameters and buffers under PyTorch's state_dict() names and order (module by module, each
// module's parameters, then its buffers).
StateDict model_state_dict(torch::nn::Module& m);

// A zoo model (plain, not fused) whose shape and weights come from a kdbench checkpoint (save_model):
// its architecture is recorded there, its input channels and classes are read from the first
// convolution and the classifier. Throws DataError naming `path`.
ModelPtr load_model_checkpoint(const std::string& path);

// A teacher compiled from Python with torch.export and AOTInductor
// (torch._inductor.aoti_compile_and_package, a .pt2 package), run by LibTorch's AOTIModelPackageLoader.
// Its outputs name taps as load_torchscript_model's do: a single tensor is "logits"; a tuple or list is
// named by `tap_outputs` in order; a dict names its own (its keys, read from the package's output
// spec), and `tap_outputs` lists the ones expected. "logits" must be among them. The package runs on the
// device it was compiled for (cpu or cuda): moving the model elsewhere throws DataError. It is frozen:
// its weights are constants of the compiled code; the wrapper holds copies of them (batch-norm statistics
// as buffers, the rest as parameters) so that count_parameters sees them.
ModelPtr load_exported_model(const std::string& path, const std::vector<std::string>& tap_outputs);

// The keys of a package's dict output, in output order, from its output spec (the pytree TreeSpec that
// torch.utils._pytree.treespec_dumps writes: [1, {"type": "builtins.dict", "context": "[\"logits\", ...]",
// "children_spec": [...]}]); empty when it returns a tensor, a tuple or a list. Throws DataError naming
// `path` for a dict of nested containers or non-string keys.
std::vector<std::string> exported_output_keys(const std::string& out_spec, const std::string& path);

}  // namespace kd
