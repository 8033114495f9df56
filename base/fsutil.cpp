#include "base/fsutil.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "base/temp_file.h"

namespace fs = std::filesystem;

namespace kd {

namespace {

// Counts how often each point was reached; true when `env` names this point and this is its n-th time.
bool hook_fires(const char* env, const std::string& point) {
  const char* spec = std::getenv(env);
  if (!spec || !*spec) return false;
  std::string s(spec);
  auto colon = s.rfind(':');
  if (s.substr(0, colon) != point) return false;
  long n = colon == std::string::npos ? 1 : std::strtol(s.c_str() + colon + 1, nullptr, 10);
  static std::mutex mu;
  static std::map<std::string, long> counts;
  std::lock_guard<std::mutex> l(mu);
  return ++counts[std::string(env) + "|" + point] == n;
}

// Why a write into `dir` may have failed, from the file system's own figures.
std::string disk_hint(const fs::path& dir) {
  struct statvfs st {};
  if (::statvfs(dir.empty() ? "." : dir.c_str(), &st) == 0) {
    if (st.f_flag & ST_RDONLY) return "read-only file system";
    if (st.f_bavail == 0) return "no space left on device";
  }
  if (::access(dir.empty() ? "." : dir.c_str(), W_OK) != 0) return "folder not writable";
  return "";
}

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

bool process_alive(long pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return errno != ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return true;
  return text[close + 2] != 'Z' && text[close + 2] != 'X';
}

void crash_point(const std::string& point) {
  if (hook_fires("KDBENCH_CRASH_AT", point)) ::kill(::getpid(), SIGKILL);
}

bool injected_write_failure(const std::string& point) {
  return hook_fires("KDBENCH_FAIL_WRITE", point);
}

void write_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write,
                      const char* what) {
  fs::path p(path);
  fs::path dir = p.parent_path();
  std::error_code ec;
  if (!dir.empty()) fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error(path + ": cannot create the folder " + dir.string() + ": " + ec.message());
  const std::string point = std::string("write.") + what;
  std::string tmp;
  try {
    // Created new under an unpredictable name (base/temp_file.h); `write` fills it, and it must still be that
    // file, not a link or another file put in its place, when it is renamed over `path`.
    tmp = create_temporary_file(path);
    struct stat created {};
    if (::lstat(tmp.c_str(), &created) != 0) throw std::runtime_error("the temporary file is gone");
    if (injected_write_failure(point)) throw std::runtime_error("write failed: No space left on device (injected)");
    write(tmp);
    struct stat written {};
    if (::lstat(tmp.c_str(), &written) != 0 || !S_ISREG(written.st_mode) || written.st_dev != created.st_dev ||
        written.st_ino != created.st_ino)
      throw std::runtime_error("the temporary file " + tmp + " was replaced while it was written");
    fsync_path(tmp, false);
  } catch (const std::exception& e) {
    if (!tmp.empty()) fs::remove(tmp, ec);
    std::string hint = disk_hint(dir);
    throw std::runtime_error(path + ": cannot write the " + what + " file: " + e.what() +
                             (hint.empty() ? "" : " (" + hint + ")"));
  }
  crash_point(point);
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ec2;
    fs::remove(tmp, ec2);
    throw std::runtime_error(path + ": cannot replace the file: " + ec.message());
  }
  if (!dir.empty()) fsync_path(dir.string(), true);
}

void write_text_atomically(const std::string& path, const std::string& text, const char* what) {
  write_atomically(
      path,
      [&](const std::string& tmp) {
        std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
        if (!o) throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
        o << text;
        o.flush();
        if (!o) throw std::runtime_error("write of " + std::to_string(text.size()) + " bytes failed");
      },
      what);
}

std::string this_host() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

namespace {
int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path) == 0 ? 0 : -1;
}
}  // namespace

bool remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  return ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    // Only this host's: in a folder that several machines share, another host's pid means nothing here.
    if (is_stale_temporary(it->path().filename().string())) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
}

std::string file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot read: " + std::strerror(errno));
  uint64_t h = 0xcbf29ce484222325ULL;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<size_t>(in.gcount());
    for (size_t i = 0; i < got; ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 0x100000001b3ULL;
    }
  }
  if (in.bad()) throw std::runtime_error(path + ": read error: " + std::strerror(errno));
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

}  // namespace kd
