// baseline: cross-entropy from labels only. It declares itself the reference student: reports measure
// every method's gain against it, and the harness trains teachers with it.
#include "methods/method.h"

namespace kd {

class Baseline final : public Method {
 public:
  struct Options {};
  static MethodInfo info() {
    return MethodInfo::of<Baseline>("baseline", "cross-entropy from the labels only (the student trained from scratch)")
        .cite("standard supervised training")
        .teachers(0, 0)
        .reference_student();
  }
  explicit Baseline(const Options&) {}
  LossTerms compute(const MethodInput& in) override {
    return {{"ce", torch::cross_entropy_loss(in.student.at("logits"), in.labels), 1.0}};
  }
};

}  // namespace kd
KD_REGISTER_METHOD(kd::Baseline);
