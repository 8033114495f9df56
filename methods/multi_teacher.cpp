// multi_teacher: distillation from K >= 2 teachers.
//   average:    p = (1/K) sum_k softmax(t_k / T)                          (e.g. You et al. 2017)
//   weighted:   p = sum_k w_k softmax(t_k / T), fixed w (normalised to sum 1)
//   confidence: CA-MKD (Zhang, Chen & Wang 2022, Sec. 2.1): per sample, w_k = (1 - softmax_k(CE_k)) / (K-1)
//               with CE_k teacher k's cross-entropy on the true label; the KD term is
//               T^2 * (1/B) sum_b sum_k w_kb KL(softmax(t_kb/T) || softmax(s_b/T)).
//   kd term weight alpha, CE 1 - alpha; optional feature term (beta > 0): MSE between a 1x1-conv+BN
//   regressor of a student tap and the same tap of teacher `feature_teacher`.
#include "harness/errors.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class MultiTeacher final : public Method {
 public:
  static MethodInfo info() {
    return MethodInfo("multi_teacher", "several teachers: average, fixed-weight or confidence-adaptive (CA-MKD) logit aggregation")
        .cite("average: You et al. 2017; confidence: Zhang, Chen & Wang 2022 (CA-MKD), Sec. 2.1")
        .teachers(2, 8)
        .string("aggregation", "average", {"average", "weighted", "confidence"}, "how the teachers are combined")
        .json("teacher_weights", nlohmann::json::array(), "weighted: one non-negative weight per teacher")
        .number("temperature", 4.0, 0.05, 100.0, "softmax temperature T")
        .number("alpha", 0.9, 0.0, 1.0, "weight of the KD term; CE gets 1 - alpha")
        .number("beta", 0.0, 0.0, 1e6, "weight of the feature term (0 = none)")
        .integer("feature_teacher", 0, 0, 7, "teacher whose feature the student matches")
        .string("student_tap", "block2", {}, "student feature tap")
        .string("teacher_tap", "block2", {}, "teacher feature tap");
  }
  explicit MultiTeacher(const MethodParams& p)
      : agg_(p.string("aggregation")),
        T_(p.number("temperature")),
        alpha_(p.number("alpha")),
        beta_(p.number("beta")),
        feature_teacher_(static_cast<int>(p.integer("feature_teacher"))),
        s_tap_(p.string("student_tap")),
        t_tap_(p.string("teacher_tap")) {
    const auto& w = p.json("teacher_weights");
    if (!w.is_array()) throw ConfigError("teacher_weights", "expected an array of numbers");
    for (size_t i = 0; i < w.size(); ++i) {
      if (!w[i].is_number() || w[i].get<double>() < 0)
        throw ConfigError("teacher_weights[" + std::to_string(i) + "]", "expected a non-negative number");
      weights_.push_back(w[i].get<double>());
    }
    if (agg_ == "weighted") {
      double sum = 0;
      for (double x : weights_) sum += x;
      if (weights_.empty() || sum <= 0)
        throw ConfigError("teacher_weights", "aggregation 'weighted' needs one non-negative weight per teacher, not all zero");
      for (double& x : weights_) x /= sum;
    }
  }
  std::vector<std::string> student_taps() const override {
    if (beta_ > 0) return {"logits", s_tap_};
    return {"logits"};
  }
  std::vector<std::string> teacher_taps(int i) const override {
    if (beta_ > 0 && i == feature_teacher_) return {"logits", t_tap_};
    return {"logits"};
  }
  void prepare(const TapShapes& s, const std::vector<TapShapes>& t, torch::Device device) override {
    const int K = static_cast<int>(t.size());
    if (agg_ == "weighted" && static_cast<int>(weights_.size()) != K)
      throw ConfigError("teacher_weights", "has " + std::to_string(weights_.size()) + " weights for " + std::to_string(K) + " teachers");
    if (beta_ > 0) {
      if (feature_teacher_ >= K) throw ConfigError("feature_teacher", "is " + std::to_string(feature_teacher_) + " but there are " + std::to_string(K) + " teachers");
      const auto& ss = s.at(s_tap_);
      const auto& ts = t.at(static_cast<size_t>(feature_teacher_)).at(t_tap_);
      reg_ = std::make_shared<torch::nn::Module>("MultiTeacherRegressor");
      conv_ = reg_->register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(ss[1], ts[1], 1).bias(false)));
      bn_ = reg_->register_module("bn", torch::nn::BatchNorm2d(ts[1]));
      reg_->to(device);
    }
  }
  std::shared_ptr<torch::nn::Module> module() override { return reg_; }

  LossTerms compute(const MethodInput& in) override {
    const auto& s = in.student.at("logits");
    const size_t K = in.teachers.size();
    torch::Tensor kd;
    if (agg_ == "confidence") {
      std::vector<torch::Tensor> tl;
      for (const auto* t : in.teachers) tl.push_back(t->at("logits"));
      auto w = losses::confidence_weights(tl, in.labels);  // [K,B]
      for (size_t k = 0; k < K; ++k) {
        auto term = losses::soft_kl_to_probs(s, torch::softmax(tl[k] / T_, 1), T_, w[static_cast<int64_t>(k)]);
        kd = kd.defined() ? kd + term : term;
      }
    } else {
      torch::Tensor p;
      for (size_t k = 0; k < K; ++k) {
        double wk = agg_ == "weighted" ? weights_[k] : 1.0 / static_cast<double>(K);
        auto pk = torch::softmax(in.teachers[k]->at("logits") / T_, 1) * wk;
        p = p.defined() ? p + pk : pk;
      }
      kd = losses::soft_kl_to_probs(s, p, T_);
    }
    LossTerms terms{{"ce", torch::cross_entropy_loss(s, in.labels), 1.0 - alpha_}, {"kd", kd, alpha_}};
    if (beta_ > 0) {
      auto u = in.teachers.at(static_cast<size_t>(feature_teacher_))->at(t_tap_);
      auto r = losses::align_spatial(bn_(conv_(in.student.at(s_tap_))), u.size(2), u.size(3));
      terms.push_back({"feat", losses::hint_mse(r, u), beta_});
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
