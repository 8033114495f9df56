// multi_teacher: distillation from K >= 2 teachers. Terms: ce (1 - alpha), kd (alpha), feat (beta, when > 0).
//   average:    p = (1/K) sum_k softmax(t_k / T); kd = T^2 * KL(p || softmax(s / T)), batch mean
//               (You et al. 2017, "Learning from Multiple Teacher Networks").
//   weighted:   p = sum_k w_k softmax(t_k / T) with fixed w = teacher_weights / sum(teacher_weights).
//   confidence: CA-MKD (Zhang, Chen & Wang 2022, Sec. 2.1, Eq. 1-3): per sample b,
//               w_k[b] = (1 - softmax_k(CE(t_k[b], y_b))) / (K - 1) and the teachers' KL terms (not their
//               targets) are combined: kd = T^2 * (1/B) sum_b sum_k w_k[b] KL(softmax(t_k[b]/T) || softmax(s[b]/T)).
//               (The authors' code also divides by K, a constant factor on alpha; not applied here.)
//   feat:       MSE between a 1x1-conv + BN regressor of the student's `student_tap` and teacher
//               `feature_teacher`'s `teacher_tap`, the larger map average-pooled to the smaller's size.
//               (CA-MKD's own intermediate term weighs every teacher's feature; this is a single-teacher hint.)
#include <cmath>

#include "base/errors.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class MultiTeacher final : public Method {
 public:
  struct Options {
    std::string aggregation = "average";
    nlohmann::json teacher_weights = nlohmann::json::array();
    double temperature = 4.0;
    double alpha = 0.9;
    double beta = 0.0;
    int64_t feature_teacher = 0;
    std::string student_tap = "block2";
    std::string teacher_tap = "block2";
    // The weights normalised to sum 1 (throws ConfigError naming the bad entry).
    std::vector<double> normalised_weights() const {
      std::vector<double> w;
      if (!teacher_weights.is_array())
        throw ConfigError("teacher_weights", "expected an array of numbers, one per teacher");
      for (size_t i = 0; i < teacher_weights.size(); ++i) {
        const auto& v = teacher_weights[i];
        if (!v.is_number() || v.get<double>() < 0 || !std::isfinite(v.get<double>()))
          throw ConfigError("teacher_weights[" + std::to_string(i) + "]", "expected a non-negative number");
        w.push_back(v.get<double>());
      }
      if (aggregation != "weighted") return w;
      // The number of teachers is checked against the run's teachers in prepare(); here, what the
      // declaration allows (2 to 8 teachers).
      if (w.size() < 2 || w.size() > 8)
        throw ConfigError("teacher_weights", "aggregation 'weighted' needs one weight per teacher (2 to 8), got " +
                                                 std::to_string(w.size()));
      double sum = 0;
      for (double x : w) sum += x;
      if (sum <= 0) throw ConfigError("teacher_weights", "the weights are all zero");
      for (double& x : w) x /= sum;
      return w;
    }
    void validate() const { normalised_weights(); }
  };
  static MethodInfo info() {
    return MethodInfo::of<MultiTeacher>(
               "multi_teacher",
               "several teachers: average, fixed-weight or confidence-adaptive (CA-MKD) logit aggregation")
        .cite("average: You et al. 2017 (KDD); confidence: Zhang, Chen & Wang 2022 (CA-MKD, ICASSP), Sec. 2.1, Eq. 1-3")
        .teachers(2, 8)
        .string("aggregation", &Options::aggregation, {"average", "weighted", "confidence"},
                "how the teachers are combined")
        .json("teacher_weights", &Options::teacher_weights, "weighted: one non-negative weight per teacher")
        .number("temperature", &Options::temperature, 0.05, 100.0, "softmax temperature T")
        .number("alpha", &Options::alpha, 0.0, 1.0, "weight of the KD term; CE gets 1 - alpha")
        .number("beta", &Options::beta, 0.0, 1e6, "weight of the feature term (0 = none)")
        .integer("feature_teacher", &Options::feature_teacher, 0, 7, "teacher whose feature the student matches")
        .string("student_tap", &Options::student_tap, {}, "student feature tap")
        .string("teacher_tap", &Options::teacher_tap, {}, "teacher feature tap");
  }
  explicit MultiTeacher(const Options& o)
      : agg_(o.aggregation),
        weights_(o.normalised_weights()),
        T_(o.temperature),
        alpha_(o.alpha),
        beta_(o.beta),
        feature_teacher_(static_cast<int>(o.feature_teacher)),
        s_tap_(o.student_tap),
        t_tap_(o.teacher_tap) {}
  std::vector<std::string> student_taps() const override {
    if (beta_ > 0) return {"logits", s_tap_};
    return {"logits"};
  }
  std::vector<std::string> teacher_taps(int i) const override {
    if (beta_ > 0 && i == feature_teacher_) return {"logits", t_tap_};
    return {"logits"};
  }
  void prepare(const PrepareContext& ctx) override {
    const auto& s = ctx.student;
    const auto& t = ctx.teachers;
    const int K = static_cast<int>(t.size());
    if (agg_ == "weighted" && static_cast<int>(weights_.size()) != K)
      throw ConfigError("teacher_weights",
                        "has " + std::to_string(weights_.size()) + " weights for " + std::to_string(K) + " teachers");
    if (beta_ > 0) {
      if (feature_teacher_ >= K)
        throw ConfigError("feature_teacher", "is " + std::to_string(feature_teacher_) + " but there are " +
                                                 std::to_string(K) + " teachers");
      const auto& ss = s.at(s_tap_);
      const auto& ts = t.at(static_cast<size_t>(feature_teacher_)).at(t_tap_);
      if (ss.size() != 4 || ts.size() != 4)
        throw ConfigError("student_tap",
                          "the feature term needs 4-D feature maps ('" + s_tap_ + "' / '" + t_tap_ + "')");
      reg_ = std::make_shared<torch::nn::Module>("MultiTeacherRegressor");
      conv_ = reg_->register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(ss[1], ts[1], 1).bias(false)));
      bn_ = reg_->register_module("bn", torch::nn::BatchNorm2d(ts[1]));
      reg_->to(ctx.device);
    }
  }
  std::shared_ptr<torch::nn::Module> module() override { return reg_; }

  LossTerms compute(const MethodInput& in) override {
    const auto& s = in.student.at("logits");
    const size_t K = in.teachers.size();
    std::vector<torch::Tensor> tl;
    for (const auto* t : in.teachers) tl.push_back(t->at("logits"));
    torch::Tensor kd;
    if (agg_ == "confidence") {
      kd = losses::confidence_kd(s, tl, in.labels, T_);
    } else {
      if (agg_ == "weighted" && weights_.size() != K)
        throw ConfigError("teacher_weights",
                          "has " + std::to_string(weights_.size()) + " weights for " + std::to_string(K) + " teachers");
      std::vector<double> w = agg_ == "weighted" ? weights_ : std::vector<double>(K, 1.0 / static_cast<double>(K));
      kd = losses::soft_kl_to_probs(s, losses::mix_teacher_probs(tl, w, T_), T_);
    }
    LossTerms terms{{"ce", torch::cross_entropy_loss(s, in.labels), 1.0 - alpha_}, {"kd", kd, alpha_}};
    if (beta_ > 0) {
      auto u = in.teachers.at(static_cast<size_t>(feature_teacher_))->at(t_tap_);
      auto [r, t] = losses::pool_to_common_size(bn_(conv_(in.student.at(s_tap_))), u);
      terms.push_back({"feat", losses::hint_mse(r, t), beta_});
    }
    return terms;
  }

 private:
  std::string agg_;
  std::vector<double> weights_;
  double T_, alpha_, beta_;
  int feature_teacher_;
  std::string s_tap_, t_tap_;
  std::shared_ptr<torch::nn::Module> reg_;
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
};

}  // namespace kd
KD_REGISTER_METHOD(kd::MultiTeacher);
