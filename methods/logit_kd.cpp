// logit_kd: Hinton, Vinyals & Dean 2015 ("Distilling the Knowledge in a Neural Network", Sec. 2):
//   L = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y),
// the KL summed over classes and averaged over the batch.
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class LogitKD final : public Method {
 public:
  struct Options {
    double temperature = 4.0;
    double alpha = 0.9;
  };
  static MethodInfo info() {
    return MethodInfo::of<LogitKD>("logit_kd",
                                   "Hinton et al. 2015: alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE")
        .cite("Hinton, Vinyals & Dean 2015, Sec. 2 (T^2 scaling: end of Sec. 2)")
        .teachers(1, 1)
        .number("temperature", &Options::temperature, 0.05, 100.0, "softmax temperature T")
        .number("alpha", &Options::alpha, 0.0, 1.0, "weight of the KD term; CE gets 1 - alpha");
  }
  explicit LogitKD(const Options& o) : T_(o.temperature), alpha_(o.alpha) {}
  std::vector<std::string> teacher_taps(int) const override { return {"logits"}; }
  LossTerms compute(const MethodInput& in) override {
    const auto& s = in.student.at("logits");
    return {{"ce", torch::cross_entropy_loss(s, in.labels), 1.0 - alpha_},
            {"kd", losses::soft_kl(s, in.teachers.at(0)->at("logits"), T_), alpha_}};
  }

 private:
  double T_, alpha_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::LogitKD);
