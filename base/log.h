// The one logger (header-only, so every room can use it): timestamped lines on stderr.
// fmt comes from LibTorch's bundled copy, used header-only (FMT_HEADER_ONLY is set for all targets);
// Debian's spdlog cannot be used because it needs fmt 9 and LibTorch's fmt headers shadow it.
#pragma once
#include <fmt/format.h>

#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace kd::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

inline Level& threshold() {
  static Level level = Level::Info;
  return level;
}
inline void set_level(Level l) {
  threshold() = l;
}

inline void write(Level l, const std::string& msg) {
  if (l < threshold()) return;
  static std::mutex mu;
  static const char* names[] = {"debug", "info", "warning", "error"};
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char ts[16];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "[%s] %s: %s\n", ts, names[static_cast<int>(l)], msg.c_str());
  std::fflush(stderr);
}

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... a) {
  write(Level::Debug, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... a) {
  write(Level::Info, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... a) {
  write(Level::Warn, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... a) {
  write(Level::Error, fmt::format(f, std::forward<Args>(a)...));
}

}  // namespace kd::log
