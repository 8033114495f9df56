// Internal to the trainer: what it writes down about a run. Each epoch: the means of its loss terms, its training
// accuracy, its validation metrics (agreement with its first teacher too), the learning rate, its own and the
// group's timings, and its best epoch on validation (in the last stage only); at its end, its finals (test metrics
// with the final weights and with the best-on-validation weights) and its checkpoint (the student, and beside it
// the method's own modules).
#pragma once
#include <cstdint>

#include "datasets/dataset.h"
#include "harness/run_state.h"
#include "harness/step.h"
#include "harness/trainer.h"

namespace kd {

// Timings of one epoch of the group, recorded with every run.
struct EpochTimes {
  double teacher = 0;    // the shared teacher forward passes
  double data_wait = 0;  // the training thread waiting for the loader
  double train = 0;      // the group's wall time training
  double eval = 0;       // the group's validation pass
};

// What record_epoch reads besides the run: the data, the epoch's length, where progress goes, the replicas.
struct RecordSite {
  const DataSplits& data;
  int64_t steps_per_epoch;
  Progress* progress;     // null: no progress lines
  ReplicaSync* replicas;  // null: one process
};

// Whether the data have a validation split (dataset.val_fraction 0: none, so no best epoch).
inline bool has_validation(const DataSplits& data) {
  return data.val && data.val->size() > 0;
}

// The epoch's metrics of run `rs` (its accumulators summed over the replicas first), and its best epoch so far.
// Uses and clears rs.val_logits (the epoch's validation logits).
void record_epoch(RunState& rs, int64_t epoch, const EpochTimes& times, double group_runs, const RecordSite& site);

// A run's last epoch is over: its finals from rs.test_logits and rs.bestval_test_logits (then cleared), its
// speed, its checkpoint where its member names one; the outcome is ok.
void record_outcome(RunState& rs, const DataSplits& data);

}  // namespace kd
