#include "harness/aoti_export.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/errors.h"
#include "base/fsutil.h"
#include "kdbench_zoo_py.h"  // generated from python/kdbench_zoo.py
#include "models/pytorch_io.h"
#include "models/torch_file.h"

namespace kd {

namespace fs = std::filesystem;

namespace {

// The script run by the venv's Python: argv = zoo folder, state dict, model, classes, channels, image
// size, taps (0/1), device, output package.
const char* kExportScript = R"PY(
import os, shutil, sys
zoo_dir, state, name, classes, channels, size, taps, device, out = sys.argv[1:]
sys.path.insert(0, zoo_dir)
import torch
import kdbench_zoo
model = kdbench_zoo.create(name, int(classes), in_channels=int(channels), taps=taps == "1")
model.load_state_dict(torch.load(state), strict=True)
model = model.eval().to(device)
if device == "cpu":
    from torch._inductor import cpp_builder
    compiler = cpp_builder.get_cpp_compiler()
    if not shutil.which(compiler):
        print("AOTInductor has no C++ compiler (%s not found)" % compiler)
        sys.exit(77)
x = torch.randn(2, int(channels), int(size), int(size), device=device)
batch = torch.export.Dim("batch", min=1, max=65536)
with torch.no_grad():
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    torch._inductor.aoti_compile_and_package(ep, package_path=out)
)PY";

std::string tail_lines(const std::string& s, size_t n) {
  size_t pos = s.size();
  for (size_t i = 0; i <= n && pos > 0; ++i) {
    pos = s.rfind('\n', pos - 1);
    if (pos == std::string::npos) return s;
  }
  return s.substr(pos + 1);
}

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

std::string export_python(const std::string& configured) {
  if (!configured.empty()) return configured;
  if (const char* p = std::getenv("KDBENCH_PYTHON"); p && *p) return p;
  return KDBENCH_PYTHON;
}

void export_aoti_package(TapModel& model, const std::string& out, const AotiExportOptions& o) {
  const std::string name = model.arch();
  if (!has_model(name)) throw ConfigError("", "'" + name + "' is not a zoo model; only zoo models can be compiled");
  const bool torchvision = name == "resnet18" || name == "resnet34" || name == "resnet50";
  if (torchvision && o.taps)
    throw ConfigError("", name + " is rebuilt with torchvision's class, whose forward returns the logits only");
  const std::string python = export_python(o.python);
  const fs::path work = fs::temp_directory_path() / ("kdbench-export-" + std::to_string(::getpid()) + "-" +
                                                     std::to_string(reinterpret_cast<uintptr_t>(&model)));
  fs::create_directories(work);
  auto cleanup = [&] { remove_tree(work.string()); };
  try {
    {
      std::ofstream zoo(work / "kdbench_zoo.py");
      zoo << kdbench_zoo_py();
      std::ofstream script(work / "export.py");
      script << kExportScript;
    }
    write_torch_state_dict(model_state_dict(model), (work / "state.pt").string());
    write_atomically(
        out,
        [&](const std::string& tmp) {
          // aoti_compile_and_package wants a .pt2 name.
          const std::string pkg = (work / "model.pt2").string();
          const std::string cmd = quoted(python) + " " + quoted((work / "export.py").string()) + " " +
                                  quoted(work.string()) + " " + quoted((work / "state.pt").string()) + " " +
                                  quoted(name) + " " + std::to_string(o.num_classes) + " " +
                                  std::to_string(o.in_channels) + " " + std::to_string(o.image_size) + " " +
                                  (o.taps ? "1" : "0") + " " + quoted(o.device) + " " + quoted(pkg) + " 2>&1";
          FILE* pipe = ::popen(cmd.c_str(), "r");
          if (!pipe) throw DataError(out, "cannot run " + python);
          std::string output;
          std::array<char, 4096> buf{};
          size_t n;
          while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) output.append(buf.data(), n);
          const int status = ::pclose(pipe);
          const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
          if (code == 127) throw DataError(out, "python interpreter not found: " + python + " (set KDBENCH_PYTHON)");
          if (code != 0)
            throw DataError(out, "compiling with torch.export + AOTInductor failed (" + python + ", exit code " +
                                     std::to_string(code) + "):\n" + tail_lines(output, 12));
          fs::copy_file(pkg, tmp, fs::copy_options::overwrite_existing);
        },
        "export");
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
}

}  // namespace kd
