// The heartbeat of a sweep worker: a thread that renews, every few seconds, the claims of the runs this process
// trains, on its own store connection, so that other workers (on a shared store) see them alive and claim them
// again only when the heartbeat stops (harness/runner.h: stale_seconds). A run whose claim another worker took
// meanwhile is reported once: its result here will not be recorded (the store refuses it).
#pragma once
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace kd {

class Heartbeat {
 public:
  // Starts the thread; `store` is its own connection.
  Heartbeat(std::unique_ptr<ResultsStore> store, std::string owner, double seconds);
  ~Heartbeat();  // stops and joins the thread
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;
  // The runs this process trains now (none between groups).
  void set_training(const std::vector<std::string>& run_ids);

 private:
  void beat();
  std::unique_ptr<ResultsStore> store_;
  const std::string owner_;
  const double seconds_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::set<std::string> training_, lost_;  // runs this process trains now; of those, runs claimed by another
  std::thread thread_;
};

}  // namespace kd
