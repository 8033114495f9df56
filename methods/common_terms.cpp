#include "methods/common_terms.h"

#include "methods/losses.h"

namespace kd {

std::vector<std::string> with_logits(std::vector<std::string> taps) {
  taps.push_back("logits");
  return taps;
}

LossTerms ce_own_kd(const MethodInput& in, LossTerms own, double alpha, double temperature) {
  const auto& logits = in.student.at("logits");
  LossTerms terms{{"ce", torch::cross_entropy_loss(logits, in.labels), 1.0 - alpha}};
  for (auto& t : own) terms.push_back(std::move(t));
  if (alpha > 0) terms.push_back({"kd", losses::soft_kl(logits, in.teachers.at(0)->at("logits"), temperature), alpha});
  return terms;
}

}  // namespace kd
