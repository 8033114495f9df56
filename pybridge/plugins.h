// Loading Python method plugins (see pybridge/bridge.h): the part of the bridge kdbench itself links.
#pragma once
#include <string>
#include <vector>

namespace kd::py {

// Loads each plugin file and registers its methods in the MethodRegistry under their names, as if native.
// `files[i]` is resolved against `base_dir` when relative ("" = the working folder); `key` names where the list
// came from for messages ("plugins" in a config, "--plugin" on the command line). Loading the same file again is
// a no-op; a method name that is already registered (natively or by another file) is a ConfigError naming the file.
// A plugin that cannot be loaded is a ConfigError naming "file:line"; a kdbench without the Python part, or a
// venv it cannot start, is a ConfigError saying so (native methods are unaffected).
void load_plugins(const std::vector<std::string>& files, const std::string& base_dir, const std::string& key);

// The interpreter and torch the plugins run in ("" when no plugin was loaded), for run records.
std::string python_environment();

}  // namespace kd::py
