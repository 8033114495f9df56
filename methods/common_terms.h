// What most distillation methods share around their own loss: the logits among the taps they read, and the
// cross-entropy and Hinton KD terms that come with their own terms.
#pragma once

#include <string>
#include <vector>

#include "methods/method.h"

namespace kd {

// `taps` and then "logits" (read by the ce and kd terms).
std::vector<std::string> with_logits(std::vector<std::string> taps);

// ce on the labels (weight 1 - alpha), then the method's own terms as given, then, only when alpha > 0, Hinton's
// kd between the student's and the first teacher's logits at `temperature` (weight alpha; losses::soft_kl, T^2
// and the batch mean included).
LossTerms ce_own_kd(const MethodInput& in, LossTerms own, double alpha, double temperature);
// The same with the KD term declared as a piece (MethodInfo::kd_term).
inline LossTerms ce_own_kd(const MethodInput& in, LossTerms own, const KdTerm& kd) {
  return ce_own_kd(in, std::move(own), kd.alpha, kd.temperature);
}

}  // namespace kd
