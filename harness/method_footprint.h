// What a run's method adds beyond its student, for `kdbench plan`: the parameters and buffers of the method's own
// modules (regressors, embeddings, fusion modules; CRD's memory bank is a buffer of 2 x training samples x 128
// floats). Measured, not guessed: the run is built as the trainer builds it (harness/run_builder.h), on untrained
// zoo models of the data set's geometry, so the plan also checks that every tap the method names exists and that
// its modules can be built for these shapes.
#pragma once
#include <cstdint>
#include <optional>

#include "datasets/dataset.h"
#include "harness/plan.h"

namespace kd {

struct MethodFootprint {
  int64_t parameters = 0;       // trainable elements of the method's module
  int64_t buffer_elements = 0;  // buffer elements (batch-norm statistics, memory banks)
  int64_t buffer_bytes = 0;     // the buffers' memory
  int64_t bytes = 0;            // parameters and buffers, in memory
};

// The footprint of student run `run` of `plan` on `data`; nullopt for runs without a method and for runs with a
// teacher that is not a zoo model (a TorchScript teacher's shapes are known only once it is loaded). Throws
// ConfigError naming the run when the method needs a tap a model lacks or cannot be built for the shapes.
std::optional<MethodFootprint> method_footprint(const RunSpec& run, const Plan& plan, const DataSplits& data);

}  // namespace kd
