// Progress on the terminal: a bar with rate and ETA when stdout is a terminal, plain lines otherwise.
#pragma once
#include <chrono>
#include <mutex>
#include <string>

#include "harness/trainer.h"

namespace kd {

class TerminalProgress : public Progress {
 public:
  explicit TerminalProgress(std::string unit = "img", bool force_plain = false);
  ~TerminalProgress() override;
  void add_work(double units) override;
  void advance(double units, double images) override;
  void note(const std::string& line) override;
  void finish();

 private:
  void draw(bool force);
  std::mutex mu_;
  std::string unit_;
  bool tty_;
  double total_ = 0, done_ = 0, images_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  double last_plain_percent_ = -1;
};

std::string format_duration(double seconds);

}  // namespace kd
