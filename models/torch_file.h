// The files PyTorch's torch.save writes, read and written without Python: state dicts in (teachers from
// RepDistiller, mdistiller, torchvision and the like) and out (students for PyTorch users).
//
// LibTorch has torch::pickle_load / torch::pickle_save, but neither fits: pickle_load turns the
// collections.OrderedDict that every state_dict() is into None and then fails ("Expected GenericDict but
// got None"), and it reads only the zip format (torch >= 1.6), not the legacy format older checkpoints
// use; pickle_save tags its dicts with torch.jit._pickle.restore_type_tag, which torch.load's default
// weights_only=True refuses. So kdbench reads the pickle stream itself: a small interpreter of the
// opcodes torch.save emits (protocols 2 to 5) that builds tensors from the file's storages and keeps
// everything else as inert values. It never calls or imports anything a file names; an object it does
// not know (a numpy scalar, an argparse.Namespace in a checkpoint) becomes an opaque value, so such
// entries beside the weights are skipped, not fatal. A file may come from someone else: what it can make the
// reader do is bounded by its size (limits on values, nesting, stack, memo and inflated bytes: torch_file.cpp).
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace kd {

// Tensor names -> tensors in the order of the file (or of a model's parameters and buffers).
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

// Reads the state dict in a torch.save file. `key` selects where it is: "" = the saved object itself,
// "model" = saved_object["model"] (RepDistiller and mdistiller checkpoints), "a.b" = saved["a"]["b"].
// Entries of the state dict that are not tensors are skipped. Throws DataError naming `path` for a
// missing, truncated or corrupt file, one past a limit of the reader (naming the limit), a missing key
// (listing the keys there are) or an object that holds no tensors (listing its keys: which "key" to give).
StateDict read_torch_state_dict(const std::string& path, const std::string& key);

// Writes `state` as torch.save(OrderedDict(state)) does (zip format, protocol 2), so that
// `model.load_state_dict(torch.load(path))` works with torch.load's default weights_only=True. Tensors
// are written contiguous, on the CPU, each with its own storage. Atomic (base/fsutil.h); throws
// DataError naming `path` when it cannot be written.
void write_torch_state_dict(const StateDict& state, const std::string& path);

}  // namespace kd
