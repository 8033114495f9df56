// The Python-method bridge: the one room that knows Python exists (DESIGN.md, "Methods in Python").
//
// It sits above methods/ and below harness/. It has two parts:
//   plugins.h/.cpp        linked into kdbench: loads plugin files, registers their methods in the MethodRegistry
//                         as if native, and loads the Python part on first use;
//   python_bridge.cpp     the Python part, a shared module (libkd_python.so) that kdbench opens only when a plugin
//                         is named: it embeds CPython (the venv's interpreter, whose torch wheel kdbench links),
//                         imports the plugin and wraps each of its classes as a kd::Method.
// So kdbench starts, and native methods run, where the Python part or the interpreter is missing; only a config
// that names a plugin needs them, and it gets one clear error when they are not there.
//
// This header is the interface between the two parts (no Python headers): the module exports
// `kd_python_bridge`, which returns the process's one Bridge.
#pragma once
#include <string>
#include <vector>

#include "methods/method.h"

namespace kd::py {

class Bridge {
 public:
  virtual ~Bridge() = default;
  // Imports the plugin file at `path` (absolute) and returns a MethodInfo (hyperparameters, teachers, factory,
  // validate) for every kdbench.Method subclass it defines. A syntax error, an exception while importing, or a
  // bad declaration throws ConfigError whose key is "file:line" where known.
  virtual std::vector<MethodInfo> load(const std::string& path) = 0;
  // "Python 3.11.7 (<sys.prefix>), torch 2.11.0": what the plugins run in, for run records.
  virtual std::string describe() const = 0;
};

}  // namespace kd::py

// The module's one entry point (C linkage, looked up with dlsym). `python` is the interpreter whose prefix (a venv)
// the embedded interpreter takes; `kdbench_python_dir` holds the `kdbench` package (python/ in the source tree).
// Returns nullptr and sets *error when the interpreter cannot be started or torch not imported.
extern "C" kd::py::Bridge* kd_python_bridge(const char* python, const char* kdbench_python_dir, std::string* error);
