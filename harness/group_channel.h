// The data-parallel protocol of a sweep: rank 0 (the leader) claims and records runs; every other replica (a
// follower) trains the same lockstep groups on its share of each batch. Rank 0 announces each group it trains (its
// run ids, and where the checkpoints of the runs they learn from are), then the end; the followers receive the
// announcements in order (harness/distributed.h carries them through the rendezvous store).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/distributed.h"

namespace kd {

struct AnnouncedGroup {
  std::vector<std::string> runs;                 // run ids, in training order
  std::map<std::string, std::string> teachers;   // teacher/assistant run id -> its checkpoint ("" = from its file)
};

class GroupChannel {
 public:
  explicit GroupChannel(DataParallel& replicas) : replicas_(replicas) {}
  // Rank 0: the next group, before it trains it.
  void announce(const AnnouncedGroup& group);
  // Rank 0: no more groups (then leaves the replica group).
  void end();
  // A follower: the next group rank 0 announced (waits for it), or nullopt after the end.
  std::optional<AnnouncedGroup> next();

 private:
  DataParallel& replicas_;
  int sent_ = 0, received_ = 0;
};

}  // namespace kd
