#include "harness/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace kd {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  auto t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

TerminalProgress::TerminalProgress(std::string unit, bool force_plain)
    : unit_(std::move(unit)), tty_(!force_plain && ::isatty(STDOUT_FILENO)) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

TerminalProgress::~TerminalProgress() {
  finish();
}

void TerminalProgress::add_work(double units) {
  std::lock_guard<std::mutex> l(mu_);
  total_ += units;
}

void TerminalProgress::advance(double units, double images) {
  std::lock_guard<std::mutex> l(mu_);
  done_ += units;
  images_ += images;
  draw(false);
}

void TerminalProgress::note(const std::string& line) {
  std::lock_guard<std::mutex> l(mu_);
  if (tty_) std::fputs("\r\033[2K", stdout);
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  draw(true);
  std::fflush(stdout);
}

void TerminalProgress::draw(bool force) {
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  double frac = total_ > 0 ? std::min(1.0, done_ / total_) : 0;
  double rate = elapsed > 0 ? images_ / elapsed : 0;
  double eta = done_ > 0 && elapsed > 0 ? (total_ - done_) / (done_ / elapsed) : NAN;
  if (tty_) {
    if (!force && since < 0.2) return;
    last_draw_ = now;
    const int width = 30;
    int filled = static_cast<int>(frac * width);
    std::string bar(static_cast<size_t>(filled), '#');
    bar += std::string(static_cast<size_t>(width - filled), '.');
    std::printf("\r\033[2K[%s] %5.1f%%  %.0f %s/s  elapsed %s  ETA %s", bar.c_str(), frac * 100, rate, unit_.c_str(),
                format_duration(elapsed).c_str(), format_duration(eta).c_str());
    std::fflush(stdout);
  } else {
    // Plain mode: a line every 5% of the work.
    double pct = std::floor(frac * 20) * 5;
    if (pct > last_plain_percent_ && done_ > 0) {
      last_plain_percent_ = pct;
      std::printf("progress %.0f%%  %.0f %s/s  elapsed %s  ETA %s\n", pct, rate, unit_.c_str(),
                  format_duration(elapsed).c_str(), format_duration(eta).c_str());
      std::fflush(stdout);
    }
  }
}

void TerminalProgress::finish() {
  std::lock_guard<std::mutex> l(mu_);
  if (tty_ && total_ > 0) {
    draw(true);
    std::fputc('\n', stdout);
    total_ = 0;
  }
}

}  // namespace kd
