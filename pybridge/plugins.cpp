// Loads Python method plugins: opens the bridge module (libkd_python.so) on first use and registers each
// plugin's methods in the MethodRegistry with the file and its digest (pybridge/bridge.h).
#include "pybridge/plugins.h"

#include <dlfcn.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "base/errors.h"
#include "base/log.h"
#include "kd_source_dir.h"
#include "methods/method.h"
#include "pybridge/bridge.h"

namespace fs = std::filesystem;

namespace kd::py {
namespace {

std::mutex& mutex() {
  static std::mutex m;
  return m;
}

std::string sha256_of_file(const std::string& path, const std::string& key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(key, "cannot read plugin file " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof buf);
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf, static_cast<size_t>(in.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &n);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string executable_dir() {
  std::error_code ec;
  auto p = fs::canonical("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

// Where the bridge module is: $KDBENCH_PYTHON_BRIDGE, else beside the executable (build/kdbench), else one folder
// up (the test executables in build/tests/).
std::string find_module(std::vector<std::string>& tried) {
  if (const char* e = std::getenv("KDBENCH_PYTHON_BRIDGE"); e && *e) {
    tried.push_back(e);
    return e;
  }
  const fs::path dir = executable_dir();
  for (const auto& p : {dir / "libkd_python.so", dir.parent_path() / "libkd_python.so"}) {
    tried.push_back(p.string());
    if (fs::exists(p)) return p.string();
  }
  return "";
}

std::string interpreter() {
  if (const char* p = std::getenv("KDBENCH_PYTHON"); p && *p) return p;
  return KDBENCH_PYTHON;
}

std::string kdbench_python_dir() {
  if (const char* s = std::getenv("KDBENCH_SOURCE_DIR"); s && *s) return std::string(s) + "/python";
  return std::string(KDBENCH_SOURCE_DIR) + "/python";
}

// The process's bridge: opened and started once. A failure is remembered and given again, word for word, to every
// later caller (kdbench says it once per command).
Bridge& bridge(const std::string& key) {
  static Bridge* b = nullptr;
  static std::string failure;
  if (b) return *b;
  if (failure.empty()) {
#ifndef KDBENCH_PYTHON_METHODS
    failure =
        "Python methods are not available: this kdbench was built without them (CMake found no Python "
        "development files for the venv's interpreter; scripts/setup installs python3.11-dev). Native methods work.";
#else
    std::vector<std::string> tried;
    std::string path = find_module(tried);
    void* handle = path.empty() ? nullptr : dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
      failure = path.empty() ? "Python methods are not available: the bridge module libkd_python.so was not found (looked at " +
                                   join_names(tried) + "; build it with scripts/setup, or set KDBENCH_PYTHON_BRIDGE)"
                             : "Python methods are not available: " + std::string(dlerror()) +
                                   " (the bridge needs the venv's Python library; run scripts/setup)";
    } else {
      using Entry = Bridge* (*)(const char*, const char*, std::string*);
      auto entry = reinterpret_cast<Entry>(dlsym(handle, "kd_python_bridge"));
      std::string error;
      const std::string python = interpreter(), dir = kdbench_python_dir();
      if (!entry) {
        failure = "Python methods are not available: " + path + " has no kd_python_bridge entry (rebuild kdbench)";
      } else if (!fs::exists(python)) {
        failure = "Python methods are not available: the venv's interpreter " + python +
                  " is missing (run scripts/setup, or set KDBENCH_PYTHON to the venv's python)";
      } else if (!(b = entry(python.c_str(), dir.c_str(), &error))) {
        failure = "Python methods are not available: " + error;
      } else {
        log::debug("Python methods run in {}", b->describe());
        return *b;
      }
    }
#endif
  }
  throw ConfigError(key, failure);
}

std::map<std::string, std::string>& loaded() {  // absolute path -> digest
  static std::map<std::string, std::string> m;
  return m;
}

}  // namespace

void load_plugins(const std::vector<std::string>& files, const std::string& base_dir, const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex());
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string item_key = files.size() == 1 && key.rfind("--", 0) == 0 ? key : key + "[" + std::to_string(i) + "]";
    fs::path p = files[i];
    if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
    std::error_code ec;
    fs::path abs = fs::weakly_canonical(fs::absolute(p), ec);
    if (ec || !fs::is_regular_file(abs))
      throw ConfigError(item_key, "plugin file " + p.string() + " does not exist");
    if (loaded().count(abs.string())) continue;
    const std::string digest = sha256_of_file(abs.string(), item_key);
    std::vector<MethodInfo> methods = bridge(item_key).load(abs.string());
    auto& reg = MethodRegistry::instance();
    for (const auto& m : methods) {
      if (const MethodInfo* other = reg.find(m.name))
        throw ConfigError(abs.string(), "method '" + m.name + "' is already registered (" +
                                            (other->source_path.empty() ? std::string("a native method")
                                                                        : "by " + other->source_path) +
                                            "); give the Python class another `name`");
    }
    for (auto& m : methods) {
      m.source_file = files[i];
      m.source_path = abs.string();
      m.source_sha256 = digest;
      reg.add(std::move(m));
    }
    loaded()[abs.string()] = digest;
  }
}

std::string python_environment() {
  std::lock_guard<std::mutex> lock(mutex());
  if (loaded().empty()) return "";
  try {
    return bridge("").describe();
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace kd::py
