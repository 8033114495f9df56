// The peers' names for models and features, as kdbench's zoo names and taps (for tests that read tables made from
// the peers' own code: tests/data/reference/protocol/).
#pragma once
#include <map>
#include <string>

#include "base/taps.h"

namespace kd::test {

// kdbench's zoo name of a model as a peer names it: RepDistiller's and mdistiller's model_dict ("MobileNetV2",
// "ShuffleV1"), DIST's "cifar_<name>" ("cifar_mobile_half"), ReviewKD's "wrn-40-2" and "shufflev1".
inline std::string zoo_name(std::string peer) {
  if (peer.rfind("cifar_", 0) == 0) peer = peer.substr(6);
  static const std::map<std::string, std::string> renamed{
      {"MobileNetV2", "mobilenetv2"}, {"mobile_half", "mobilenetv2"}, {"ShuffleV1", "shufflenetv1"},
      {"ShuffleV2", "shufflenetv2"},  {"shufflev1", "shufflenetv1"},  {"shufflev2", "shufflenetv2"}};
  if (auto it = renamed.find(peer); it != renamed.end()) return it->second;
  for (auto& c : peer)
    if (c == '-') c = '_';
  return peer;
}

// RepDistiller's feat[k] of its `n` features (model(x, is_feat=True, preact=...)) as the zoo model's tap: feat[0]
// is the stem, feat[n-1] the pooled features, feat[1..n-2] the stage outputs. WRN's stage outputs are the residual
// sums (raw_blockK); with preact=True they are the maps before the stage's last ReLU (preact_blockK), for models
// that have one (RepDistiller's MobileNetV2 ignores preact: its stages end in a linear projection, blockK, which the
// zoo's preact_blockK equals). `taps` are the
// zoo model's taps. tests/test_harness_footprint.cpp checks every shape against RepDistiller's.
inline std::string tap_of_feat(const std::string& zoo_model, size_t k, size_t n, bool preact, const TapShapes& taps) {
  if (k == 0) return "stem";
  if (k + 1 == n) return "pool";
  const std::string K = std::to_string(k);
  if (preact && zoo_model != "mobilenetv2" && taps.count("preact_block" + K)) return "preact_block" + K;
  return zoo_model.rfind("wrn", 0) == 0 ? "raw_block" + K : "block" + K;
}

}  // namespace kd::test
