// Files that are never seen half-written, and the fault hooks the crash-safety tests use. Torch-free.
#pragma once
#include <functional>
#include <string>

namespace kd {

// Writes `path` atomically: `write` fills a new temporary file beside it (base/temp_file.h), which is flushed
// to disk and renamed over `path`, so readers (and a crash at any moment) see either the old
// file or the complete new one. Any failure removes the temporary file and throws std::runtime_error
// naming `path` and the cause ("no space left on device" when the file system is full). `what` names
// the kind of file for the fault hooks ("checkpoint", "report", ...).
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write,
                      const char* what = "file");
// The same for a text.
void write_text_atomically(const std::string& path, const std::string& text, const char* what = "file");

// Removes temporary files ("*.tmp.<pid>.<host>[.<random>]") that processes of this host now gone left in `dir`
// (not recursive); other hosts' temporaries in a shared folder are left alone.
void remove_stale_temporaries(const std::string& dir);

// This machine's host name.
std::string this_host();

// A 64-bit FNV-1a digest of a file's bytes as 16 hex digits (to check a shared checkpoint on load). Throws
// std::runtime_error naming the file if it cannot be read.
std::string file_digest(const std::string& path);

// Removes `path` and everything under it (nothing if it does not exist); never follows symbolic links.
// Use it instead of std::filesystem::remove_all: libtorch.so exports its own copy of remove_all, which the
// dynamic linker binds in its place and which crashes on a non-empty folder (a call through a null pointer).
// Returns false (and leaves what it could not remove) on an error.
bool remove_tree(const std::string& path);

// Whether process `pid` on this host is running (a zombie, killed but not reaped, is not).
bool process_alive(long pid);

// Fault hooks for tests, both off unless their environment variable is set:
//   KDBENCH_CRASH_AT="<point>:<n>"    the n-th time this process reaches <point> it kills itself (SIGKILL);
//   KDBENCH_FAIL_WRITE="<point>:<n>"  the n-th write at <point> fails as if the disk were full.
// Points: "train_step", "store_commit", "write.<what>" (between writing a temporary file and renaming it).
void crash_point(const std::string& point);
bool injected_write_failure(const std::string& point);

}  // namespace kd
