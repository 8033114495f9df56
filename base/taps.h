// Feature taps: what a model fills during its forward pass and what a method reads. Every room that
// passes features around (models, methods, harness) speaks in these types.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace kd {

// tap name -> tensor, filled during forward. Standard names (every zoo model has them):
//   "stem"            output of the stem (first conv/bn/relu)
//   "block1".."blockN" output of each stage (after its final activation)
//   "preact_block1".."preact_blockN" the same stage output before its final activation
//                     (equal to blockN for models whose stages end without one)
//   "raw_block1".."raw_blockN" (pre-activation networks, WRN) the stage's residual sum itself, before the batch
//                     norm whose output is preact_blockK
//   "pool"            globally pooled, flattened features fed to the classifier
//   "logits"          classifier output
using TapMap = std::unordered_map<std::string, torch::Tensor>;

// Shapes of taps (each the full tensor shape, batch dimension included), from one dry forward pass.
using TapShapes = std::map<std::string, std::vector<int64_t>>;

}  // namespace kd
