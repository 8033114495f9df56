// Zoo models compiled for PyTorch users and for kdbench itself: a torch.export + AOTInductor package
// (.pt2). torch.export traces Python code and AOTInductor is driven from Python, so LibTorch cannot make a
// .pt2 from a C++ module; kdbench writes the model's state dict (torch.save format), rebuilds the model in
// Python from python/kdbench_zoo.py (kdbench's zoo in PyTorch, same names; torchvision's class for
// resnet18/34/50), loads the weights with load_state_dict(strict=True), exports it with a dynamic batch
// dimension and compiles the package, all with the venv's Python.
#pragma once
#include <string>

#include "models/model.h"

namespace kd {

struct AotiExportOptions {
  std::string python;   // interpreter with torch (and torchvision); "" = $KDBENCH_PYTHON, else the build's
  int image_size = 32;  // H = W of the example input (spatial sizes are fixed in the package)
  int in_channels = 3;
  int num_classes = 10;
  bool taps = false;           // return a dict of every tap (kdbench's names) instead of the logits
  std::string device = "cpu";  // cpu | cuda: what the package is compiled for
};

// The interpreter AotiExportOptions::python resolves to.
std::string export_python(const std::string& configured);

// Compiles `model` (a plain zoo model, `model.arch()` its zoo name) into the package `out` (written
// atomically). Throws ConfigError for a model Python cannot rebuild, DataError naming `out` when Python
// fails (its last output lines in the message; exit code 77 of the script = AOTInductor found no C++
// compiler).
void export_aoti_package(TapModel& model, const std::string& out, const AotiExportOptions& o);

}  // namespace kd
