#include "harness/heartbeat.h"

#include <chrono>

#include "base/log.h"

namespace kd {

Heartbeat::Heartbeat(std::unique_ptr<ResultsStore> store, std::string owner, double seconds)
    : store_(std::move(store)), owner_(std::move(owner)), seconds_(seconds), thread_([this] { beat(); }) {}

Heartbeat::~Heartbeat() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Heartbeat::set_training(const std::vector<std::string>& run_ids) {
  std::lock_guard<std::mutex> l(mu_);
  training_ = std::set<std::string>(run_ids.begin(), run_ids.end());
}

void Heartbeat::beat() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    cv_.wait_for(l, std::chrono::duration<double>(seconds_));
    if (stop_) break;
    for (const auto& id : training_) {
      try {
        if (!store_->heartbeat(id, owner_) && lost_.insert(id).second)
          log::warn(
              "run {} was claimed by another worker (this one's heartbeat came too late): its result here will not "
              "be recorded",
              id.substr(0, 8));
      } catch (const std::exception& e) {
        log::warn("heartbeat of run {} failed: {}", id.substr(0, 8), e.what());
      }
    }
  }
}

}  // namespace kd
