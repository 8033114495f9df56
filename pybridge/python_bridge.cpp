// The Python part of the bridge (pybridge/bridge.h): built as the shared module libkd_python.so, opened by
// pybridge/plugins.cpp only when a plugin is named.
//
// What it owns:
//   - the embedded interpreter: CPython started once with the venv's prefix (the interpreter whose torch wheel
//     kdbench links, checked before torch is imported), the `kdbench` package on its path, and the GIL released
//     at once: every call into Python takes it and lets it go (PyTorch's operators release it while they compute,
//     so two lockstep lanes stepping Python methods still use two cores);
//   - PyMethod: a kd::Method forwarding each call to the plugin object through kdbench/_bridge.py; tensors cross as
//     the same TensorImpl (torch's pybind11 casters), so the graph Python builds is the one kdbench's backward runs;
//   - ModuleMirror: the plugin's torch.nn.Module seen as a torch::nn::Module holding the SAME parameter and buffer
//     tensors, so the harness's optimizer, checkpoint, device moves and train/eval switches act on them.
// Python objects are only touched with the GIL held; the C++ handles of Python objects (PyRef) take it to let go.
#include <c10/core/CPUAllocator.h>
#include <dlfcn.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/errors.h"
#include "methods/method.h"
#include "pybridge/bridge.h"

namespace py = pybind11;
namespace fs = std::filesystem;

namespace kd::py {
namespace {

// A reference to a Python object that C++ code may copy and drop on any thread: the last owner takes the GIL to
// release it.
class PyRef {
 public:
  explicit PyRef(::py::object o) : obj_(new ::py::object(std::move(o))) {}
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() {
    if (!Py_IsInitialized()) return;  // never the case: the interpreter lives as long as the process
    ::py::gil_scoped_acquire gil;
    delete obj_;
  }
  const ::py::object& get() const { return *obj_; }

 private:
  ::py::object* obj_;
};
using PyRefPtr = std::shared_ptr<PyRef>;

// kdbench/_bridge.py, imported once (never released: the interpreter is never finalised).
::py::object& bridge_module() {
  static ::py::object* m = nullptr;
  if (!m) m = new ::py::object(::py::module_::import("kdbench._bridge"));
  return *m;
}

// "TypeError: ... (at plugin.py:12 in compute)": the current Python exception, for messages. GIL held.
std::string exception_text(::py::error_already_set& e, const std::string& path) {
  try {
    ::py::object tb = e.trace() ? ::py::reinterpret_borrow<::py::object>(e.trace()) : ::py::none();
    return bridge_module().attr("format_exception")(e.value(), path, tb).cast<std::string>();
  } catch (...) {
    return e.what();
  }
}

// The plugin's module as a torch::nn::Module over the same tensors: its parameters and buffers are registered at
// the level they belong to (so names match the module's state_dict), its children as mirrors of their own.
class ModuleMirror : public torch::nn::Module {
 public:
  ModuleMirror(const ::py::object& module, bool root) : root_(root) {
    if (root) module_ = std::make_shared<PyRef>(module);
    for (auto item : module.attr("named_parameters")(::py::arg("recurse") = false)) {
      auto t = item.cast<::py::tuple>();
      auto p = t[1].cast<at::Tensor>();
      register_parameter(t[0].cast<std::string>(), p, p.requires_grad());
    }
    for (auto item : module.attr("named_buffers")(::py::arg("recurse") = false)) {
      auto t = item.cast<::py::tuple>();
      if (!t[1].is_none()) register_buffer(t[0].cast<std::string>(), t[1].cast<at::Tensor>());
    }
    for (auto item : module.attr("named_children")()) {
      auto t = item.cast<::py::tuple>();
      register_module(t[0].cast<std::string>(), std::make_shared<ModuleMirror>(t[1].cast<::py::object>(), false));
    }
  }
  // The harness switches the method's module between train and eval with the student; the Python module's own
  // flags (dropout, batch norm) follow.
  void train(bool on = true) override {
    torch::nn::Module::train(on);
    if (!root_) return;
    ::py::gil_scoped_acquire gil;
    module_->get().attr("train")(on);
  }

 private:
  bool root_;
  PyRefPtr module_;
};

::py::tuple shape_tuple(const std::vector<int64_t>& shape) {
  ::py::tuple t(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t[i] = shape[i];
  return t;
}

::py::dict tap_dict(const TapMap& taps) {
  ::py::dict d;
  for (const auto& [name, tensor] : taps) d[::py::str(name)] = ::py::cast(tensor);
  return d;
}

class PyMethod : public Method {
 public:
  PyMethod(PyRefPtr obj, std::string name, std::string path)
      : obj_(std::move(obj)), name_(std::move(name)), path_(std::move(path)) {}

  std::vector<std::string> student_taps() const override {
    ::py::gil_scoped_acquire gil;
    return call_locked("student_taps()", [&] { return bridge_module().attr("student_taps")(obj_->get()); })
        .cast<std::vector<std::string>>();
  }
  std::vector<std::string> teacher_taps(int i) const override {
    ::py::gil_scoped_acquire gil;
    return call_locked("teacher_taps()", [&] { return bridge_module().attr("teacher_taps")(obj_->get(), i); })
        .cast<std::vector<std::string>>();
  }
  std::vector<StageSpec> stages() const override {
    ::py::gil_scoped_acquire gil;
    auto text = call_locked("stages()", [&] { return bridge_module().attr("stages")(obj_->get()); }).cast<std::string>();
    std::vector<StageSpec> out;
    for (const auto& s : nlohmann::json::parse(text)) {
      StageSpec st;
      st.name = s.at("name").get<std::string>();
      st.epochs = s.at("epochs").get<int>();
      st.train_until_tap = s.at("train_until_tap").get<std::string>();
      st.train_student = s.at("train_student").get<bool>();
      st.train_modules = s.at("train_modules").get<std::vector<std::string>>();
      st.eval_modules = s.at("eval_modules").get<std::vector<std::string>>();
      st.lr = s.at("lr").get<double>();
      out.push_back(std::move(st));
    }
    return out;
  }
  void prepare(const PrepareContext& ctx) override {
    ::py::gil_scoped_acquire gil;
    ::py::dict student;
    for (const auto& [tap, shape] : ctx.student) student[::py::str(tap)] = shape_tuple(shape);
    ::py::list teachers;
    for (const auto& shapes : ctx.teachers) {
      ::py::dict d;
      for (const auto& [tap, shape] : shapes) d[::py::str(tap)] = shape_tuple(shape);
      teachers.append(d);
    }
    ::py::object labels = ctx.train_labels.defined() ? ::py::cast(ctx.train_labels) : ::py::none();
    ::py::object m = call_locked("prepare()", [&] {
      return bridge_module().attr("prepare")(obj_->get(), student, teachers, ctx.device.str(), ctx.train_size,
                                             ctx.num_classes, labels);
    });
    module_ = m.is_none() ? nullptr : std::make_shared<ModuleMirror>(m, true);
  }
  std::shared_ptr<torch::nn::Module> module() override { return module_; }
  LossTerms compute(const MethodInput& in) override {
    ::py::gil_scoped_acquire gil;
    ::py::list teachers;
    for (const auto* t : in.teachers) teachers.append(tap_dict(*t));
    ::py::object r = call_locked("compute()", [&] {
      return bridge_module().attr("compute")(obj_->get(), tap_dict(in.student), teachers, in.labels, in.indices,
                                             in.stage, in.epoch, in.stage_epoch, in.step, in.steps_per_epoch);
    });
    LossTerms terms;
    for (auto item : r) {
      auto t = item.cast<::py::tuple>();
      terms.push_back(LossTerm{t[0].cast<std::string>(), t[1].cast<at::Tensor>(), t[2].cast<double>()});
    }
    return terms;
  }
  // Python code is never captured in a CUDA graph (DESIGN.md: graph capture of Python code is a later question).
  bool graph_safe() const override { return false; }

 private:
  // Runs fn with the GIL held; a Python exception becomes a MethodError naming the method, the call and the
  // plugin's file:line (the trainer fails that run only).
  template <class Fn>
  ::py::object call_locked(const char* what, Fn fn) const {
    try {
      return fn();
    } catch (::py::error_already_set& e) {
      throw MethodError("Python method '" + name_ + "', " + what + ": " + exception_text(e, path_));
    } catch (const ::py::cast_error& e) {
      throw MethodError("Python method '" + name_ + "', " + what + ": unexpected result (" + e.what() + ")");
    }
  }

  PyRefPtr obj_;
  std::string name_, path_;
  std::shared_ptr<ModuleMirror> module_;
};

ParamSpec param_from_json(const nlohmann::json& p) {
  using K = ParamSpec::Kind;
  static const std::map<std::string, K> kinds{{"number", K::Number}, {"integer", K::Integer}, {"bool", K::Bool},
                                              {"string", K::String}, {"strings", K::StringList}, {"json", K::Json}};
  ParamSpec s;
  s.name = p.at("name").get<std::string>();
  s.kind = kinds.at(p.at("kind").get<std::string>());
  s.default_value = p.at("default");
  s.doc = p.at("doc").get<std::string>();
  s.choices = p.at("choices").get<std::vector<std::string>>();
  if (p.contains("min")) {
    s.min = p.at("min").get<double>();
    s.max = p.at("max").get<double>();
  }
  return s;
}

class PythonBridge : public Bridge {
 public:
  std::vector<MethodInfo> load(const std::string& path) override {
    ::py::gil_scoped_acquire gil;
    ::py::object found;
    try {
      found = bridge_module().attr("load_plugin")(path);
    } catch (::py::error_already_set& e) {
      if (e.matches(bridge_module().attr("PluginError")))
        throw ConfigError(e.value().attr("where").cast<std::string>(), e.value().attr("message").cast<std::string>());
      throw ConfigError(path, exception_text(e, path));
    }
    std::vector<MethodInfo> out;
    for (auto item : found) {
      auto t = item.cast<::py::tuple>();
      auto cls = std::make_shared<PyRef>(t[0].cast<::py::object>());
      auto decl = nlohmann::json::parse(t[1].cast<std::string>());
      const std::string name = decl.at("name").get<std::string>();
      MethodInfo info = MethodInfo::declared(name, decl.at("description").get<std::string>());
      info.cite(decl.at("citation").get<std::string>());
      info.teachers(decl.at("min_teachers").get<int>(), decl.at("max_teachers").get<int>());
      for (const auto& p : decl.at("params")) info.param(param_from_json(p));
      info.factory = [cls, name, path](const nlohmann::json& values) -> std::unique_ptr<Method> {
        ::py::gil_scoped_acquire g;
        try {
          auto obj = std::make_shared<PyRef>(bridge_module().attr("create")(cls->get(), values.dump()));
          return std::make_unique<PyMethod>(obj, name, path);
        } catch (::py::error_already_set& e) {
          throw ConfigError(path, "method '" + name + "': " + exception_text(e, path));
        }
      };
      info.validate = [cls, path](const nlohmann::json& values) {
        ::py::gil_scoped_acquire g;
        ::py::object r;
        try {
          r = bridge_module().attr("validate")(cls->get(), values.dump());
        } catch (::py::error_already_set& e) {
          throw ConfigError("", exception_text(e, path));
        }
        if (!r.is_none()) {
          auto t = r.cast<::py::tuple>();
          throw ConfigError(t[0].cast<std::string>(), t[1].cast<std::string>());
        }
      };
      out.push_back(std::move(info));
    }
    return out;
  }
  std::string describe() const override { return description_; }
  std::string description_;
};

// The directory of the shared library that holds `symbol` (e.g. LibTorch's libc10.so), "" if unknown.
std::string library_dir_of(const void* symbol) {
  Dl_info info{};
  if (dladdr(symbol, &info) == 0 || !info.dli_fname) return "";
  std::error_code ec;
  auto p = fs::canonical(info.dli_fname, ec);
  return ec ? "" : p.parent_path().string();
}

PythonBridge* start(const std::string& python, const std::string& kdbench_dir, std::string& error) {
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;  // kdbench's own SIGINT/SIGTERM handling stays
  config.parse_argv = 0;
  config.user_site_directory = 0;
  // The venv's interpreter as the program: CPython reads its pyvenv.cfg and takes the venv's prefix (so its
  // site-packages with torch), as `venv/bin/python` itself does.
  PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, python.c_str());
  if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(st)) {
    error = std::string("the Python interpreter did not start (") + (st.err_msg ? st.err_msg : "unknown error") +
            ") with " + python;
    return nullptr;
  }
  auto* bridge = new PythonBridge();
  {
    // Py_InitializeFromConfig left this thread holding the GIL.
    try {
      ::py::module_::import("sys").attr("path").attr("insert")(0, kdbench_dir);
      // The torch the venv would import must be the one kdbench is linked with (else two LibTorch copies).
      ::py::object spec = ::py::module_::import("importlib.util").attr("find_spec")("torch");
      if (spec.is_none()) {
        error = "the interpreter " + python + " has no torch (its venv is not the one scripts/setup made)";
        return nullptr;
      }
      std::string torch_lib = (fs::path(spec.attr("origin").cast<std::string>()).parent_path() / "lib").string();
      std::error_code ec;
      auto want = library_dir_of(reinterpret_cast<const void*>(&c10::GetCPUAllocator));
      auto have = fs::canonical(torch_lib, ec);
      if (!want.empty() && (ec || have.string() != want)) {
        error = "the interpreter " + python + " imports torch from " + torch_lib + ", but kdbench is linked with " +
                want + " (use the venv kdbench was built with: KDBENCH_PYTHON)";
        return nullptr;
      }
      ::py::module_::import("torch");
      bridge->description_ = bridge_module().attr("describe")().cast<std::string>();
    } catch (::py::error_already_set& e) {
      error = std::string("the embedded interpreter could not import torch and the kdbench package from ") +
              kdbench_dir + ": " + e.what();
      return nullptr;
    }
  }
  PyEval_SaveThread();  // from now on, every call into Python takes the GIL and lets it go
  return bridge;
}

}  // namespace
}  // namespace kd::py

extern "C" __attribute__((visibility("default"))) kd::py::Bridge* kd_python_bridge(const char* python,
                                                                                  const char* kdbench_python_dir,
                                                                                  std::string* error) {
  static std::mutex mu;
  static kd::py::Bridge* bridge = nullptr;
  static std::string first_error;
  std::lock_guard<std::mutex> lock(mu);
  if (!bridge && first_error.empty()) {
    bridge = kd::py::start(python, kdbench_python_dir, first_error);
    if (!bridge && first_error.empty()) first_error = "the embedded interpreter did not start";
  }
  if (!bridge && error) *error = first_error;
  return bridge;
}
