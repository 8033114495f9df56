// baseline: cross-entropy from labels only (the from-scratch student; also trains teachers).
#include "methods/method.h"

namespace kd {

class Baseline final : public Method {
 public:
  static MethodInfo info() {
    return MethodInfo("baseline", "cross-entropy from the labels only (the student trained from scratch)")
        .cite("standard supervised training")
        .teachers(0, 0);
  }
  explicit Baseline(const MethodParams&) {}
  LossTerms compute(const MethodInput& in) override {
    return {{"ce", torch::cross_entropy_loss(in.student.at("logits"), in.labels), 1.0}};
  }
};

}  // namespace kd
KD_REGISTER_METHOD(kd::Baseline);
