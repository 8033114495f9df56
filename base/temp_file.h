// Temporary files and folders that nobody else can plant or redirect: each is created new (open with O_CREAT |
// O_EXCL | O_NOFOLLOW; mkdir for a folder) under the name of the file it becomes, plus ".tmp.<pid>.<host>.<12
// random letters and digits>" from the kernel's random source. A link someone planted under a name kdbench might
// use is never followed, and a name cannot be guessed ahead; pid and host stay in the name so that
// remove_stale_temporaries (base/fsutil.h) knows a dead process's leftovers. Torch-free.
#pragma once
#include <string>

namespace kd {

// Creates the temporary file for `final_path` (empty; mode 0666 less the umask, as a new file gets) and returns
// its path. Throws std::runtime_error naming `final_path` and the cause.
std::string create_temporary_file(const std::string& final_path);

// Creates the temporary folder for `final_path` (mode 0700) and returns its path; throws as above.
std::string create_temporary_folder(const std::string& final_path);

// Whether the file name `name` (no folder) is a temporary left by a process of this host that is gone:
// "<x>.tmp.<pid>.<host>.<random>", or "<x>.tmp.<pid>.<host>" as kdbench named them before.
bool is_stale_temporary(const std::string& name);

}  // namespace kd
