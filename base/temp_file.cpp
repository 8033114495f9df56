#include "base/temp_file.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "base/fsutil.h"

namespace kd {

namespace {

constexpr size_t kRandomChars = 12;  // 62^12 names: about 71 bits

std::string random_token() {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char bytes[kRandomChars];
  size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::string("no random bytes from the kernel: ") + std::strerror(errno));
    got += static_cast<size_t>(n);
  }
  std::string t;
  for (unsigned char b : bytes) t += alphabet[b % 62];
  return t;
}

std::string prefix_of(const std::string& final_path) {
  return final_path + ".tmp." + std::to_string(::getpid()) + "." + this_host() + ".";
}

// Makes a new entry with `make` (which fails with EEXIST when the name is taken) under a fresh random name.
template <typename Make>
std::string create_new(const std::string& final_path, const char* what, Make make) {
  const std::string prefix = prefix_of(final_path);
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string path = prefix + random_token();
    if (make(path)) return path;
    if (errno != EEXIST)
      throw std::runtime_error(final_path + ": cannot create a temporary " + what +
                               " beside it: " + std::strerror(errno));
  }
  throw std::runtime_error(final_path + ": cannot create a temporary " + what + " beside it (every name was taken)");
}

}  // namespace

std::string create_temporary_file(const std::string& final_path) {
  return create_new(final_path, "file", [](const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) return false;
    ::close(fd);
    return true;
  });
}

std::string create_temporary_folder(const std::string& final_path) {
  return create_new(final_path, "folder", [](const std::string& path) { return ::mkdir(path.c_str(), 0700) == 0; });
}

bool is_stale_temporary(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos) return false;
  char* stop = nullptr;
  const long pid = std::strtol(name.c_str() + at + 5, &stop, 10);
  if (!stop || stop == name.c_str() + at + 5 || *stop != '.') return false;
  const std::string rest(stop + 1), host = this_host();
  bool ours = rest == host;  // as kdbench named them before
  if (!ours && rest.size() == host.size() + 1 + kRandomChars && rest.compare(0, host.size(), host) == 0 &&
      rest[host.size()] == '.') {
    ours = true;
    for (size_t i = host.size() + 1; i < rest.size(); ++i)
      ours = ours && std::isalnum(static_cast<unsigned char>(rest[i]));
  }
  return ours && pid != ::getpid() && !process_alive(pid);
}

}  // namespace kd
