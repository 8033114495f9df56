// fitnets: Romero et al. 2015 ("FitNets: Hints for Thin Deep Nets", ICLR, Sec. 2.2 and 2.3). The reference for
// the regressor and the one-stage form is RepDistiller's FitNet, the code behind the FitNet row of its CIFAR-100
// table (HobbitLong/RepDistiller @ b84f547c5db6a35318d4671d7d5c4de74c822403: train_student.py --distill hint
// builds models/util.py ConvReg(feat_s[hint_layer].shape, feat_t[hint_layer].shape), hint_layer 2; the loss is
// distiller_zoo/FitNet.py HintLoss = nn.MSELoss; scripts/run_cifar_distill.sh runs it with -a 0 -b 100).
// A regressor r maps the student's guided layer v_g to the teacher's hint layer u_h:
//   conv_reg   (default): RepDistiller's ConvReg (methods/conv_reg.h): a conv WITH bias chosen by the maps'
//                         sizes (3x3 stride 2 when the student's map is twice the teacher's, a 4x4 stride-2
//                         transposed conv when half, else a conv whose kernel shrinks the student's map to the
//                         teacher's: 1x1 when equal), then BatchNorm and a ReLU. Parameters named as the
//                         reference's ("conv.weight", "conv.bias", "bn.*").
//   conv1x1_bn:           a 1x1 conv (no bias) + BatchNorm, C_s -> C_t channels, no ReLU; when the sizes differ,
//                         the LARGER of r(v_g) and u_h is adaptive-average-pooled to the smaller one's size
//                         (losses::pool_to_common_size), no interpolation (kdbench's regressor before the
//                         reference one; kept for comparison with earlier runs).
//   linear:               a fully connected layer from the flattened v_g to the flattened u_h (the paper's
//                         fully connected alternative; many parameters, for small taps).
// hint = mean((r(v_g) - u_h)^2) over every element = (2 / N) * batch-mean of the paper's Eq. 3
// L_HT = 1/2 ||u_h - r(v_g)||^2, N = elements of u_h per example (see losses::hint_mse).
//   one_stage: terms ce (1 - alpha), kd (alpha; omitted when alpha = 0), hint (beta), trained jointly. RepDistiller's
//              table: one_stage, alpha 0 (CE at weight 1, no KD), beta 100, taps block2 / block2 (its hint_layer 2).
//   two_stage: stage "hint" trains only the student's layers up to its guided layer (and r) on the hint
//              alone (paper Sec. 2.3, Fig. 1 (b)) for hint_epochs; stage "kd" then trains the whole
//              student with ce (1 - alpha) + kd (alpha), the paper's KD stage (Fig. 1 (c), Eq. 2).
// Paper vs reference: the paper's convolutional regressor has no BN or ReLU and its kernel always shrinks the
// student's map (its students' maps are never smaller); the reference adds BN and ReLU and a transposed conv for a
// student map of half the teacher's size. The defaults of mode, alpha and beta are not RepDistiller's (two_stage,
// 0.9 and 1); configs/cifar100.json sets RepDistiller's.
#include "base/errors.h"
#include "methods/conv_reg.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class FitNets final : public Method {
 public:
  struct Options {
    std::string mode = "two_stage";
    std::string student_tap = "block2";
    std::string teacher_tap = "block2";
    std::string regressor = "conv_reg";
    int64_t hint_epochs = 1;
    double beta = 1.0;
    double temperature = 4.0;
    double alpha = 0.9;
  };
  static MethodInfo info() {
    return MethodInfo::of<FitNets>("fitnets",
                                   "Romero et al. 2015: hint from a teacher layer through a learned regressor; "
                                   "one-stage or two-stage")
        .cite(
            "Romero et al. 2015, Sec. 2.2 (Eq. 3, hint loss) and 2.3 (stage-wise training); reference RepDistiller "
            "models/util.py ConvReg, distiller_zoo/FitNet.py HintLoss @ b84f547")
        .teachers(1, 1)
        .string("mode", &Options::mode, {"one_stage", "two_stage"}, "two_stage: hint pre-training then KD")
        .string("student_tap", &Options::student_tap, {}, "student guided layer")
        .string("teacher_tap", &Options::teacher_tap, {}, "teacher hint layer")
        .string("regressor", &Options::regressor, {"conv_reg", "conv1x1_bn", "linear"},
                "conv_reg: RepDistiller's ConvReg (conv with bias chosen by the maps' sizes, BN, ReLU); "
                "conv1x1_bn: 1x1 conv + BN, the larger map pooled to the smaller; linear: on flattened features")
        .integer("hint_epochs", &Options::hint_epochs, 1, 10000, "two_stage: epochs of stage 1")
        .number("beta", &Options::beta, 0.0, 1e6, "one_stage: weight of the hint term")
        .number("temperature", &Options::temperature, 0.05, 100.0, "KD temperature T")
        .number("alpha", &Options::alpha, 0.0, 1.0, "weight of the KD term; CE gets 1 - alpha");
  }
  explicit FitNets(const Options& o)
      : two_stage_(o.mode == "two_stage"),
        s_tap_(o.student_tap),
        t_tap_(o.teacher_tap),
        regressor_kind_(o.regressor),
        hint_epochs_(o.hint_epochs),
        beta_(o.beta),
        T_(o.temperature),
        alpha_(o.alpha) {}

  std::vector<std::string> student_taps() const override { return {"logits", s_tap_}; }
  std::vector<std::string> teacher_taps(int) const override { return {"logits", t_tap_}; }

  void prepare(const PrepareContext& ctx) override {
    const auto& ss = ctx.student.at(s_tap_);
    const auto& ts = ctx.teachers.at(0).at(t_tap_);
    regressor_ = std::make_shared<torch::nn::Module>("FitNetsRegressor");
    const std::string what = "'" + s_tap_ + "' / '" + t_tap_ + "'";
    if (regressor_kind_ == "linear") {
      int64_t in = 1, out = 1;
      for (size_t i = 1; i < ss.size(); ++i) in *= ss[i];
      for (size_t i = 1; i < ts.size(); ++i) out *= ts[i];
      lin_ = regressor_->register_module("linear", torch::nn::Linear(in, out));
    } else if (regressor_kind_ == "conv_reg") {
      // The regressor's own parameters sit at the top level ("conv.weight", ...), as in RepDistiller's regress_s.
      conv_reg_ = ConvReg(ss, ts, /*use_relu=*/true, "student_tap", what);
      regressor_ = conv_reg_.ptr();
    } else {
      if (ss.size() != 4 || ts.size() != 4)
        throw ConfigError("student_tap", "conv1x1_bn regressor needs 4-D feature maps (" + what + ")");
      conv_ =
          regressor_->register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(ss[1], ts[1], 1).bias(false)));
      bn_ = regressor_->register_module("bn", torch::nn::BatchNorm2d(ts[1]));
    }
    regressor_->to(ctx.device);
  }
  std::shared_ptr<torch::nn::Module> module() override { return regressor_; }

  std::vector<StageSpec> stages() const override {
    if (!two_stage_) return {StageSpec{}};
    return {StageSpec{"hint", static_cast<int>(hint_epochs_), s_tap_}, StageSpec{"kd", 0, ""}};
  }

  torch::Tensor hint(const MethodInput& in) {
    auto v = in.student.at(s_tap_);
    auto u = in.teachers.at(0)->at(t_tap_);
    if (lin_) return losses::hint_mse(lin_(v.flatten(1)), u.flatten(1));
    if (conv_reg_) return losses::hint_mse(conv_reg_(v), u);
    auto [r, t] = losses::pool_to_common_size(bn_(conv_(v)), u);
    return losses::hint_mse(r, t);
  }

  LossTerms compute(const MethodInput& in) override {
    if (two_stage_ && in.stage == 0) return {{"hint", hint(in), 1.0}};
    const auto& s = in.student.at("logits");
    LossTerms terms{{"ce", torch::cross_entropy_loss(s, in.labels), 1.0 - alpha_}};
    if (alpha_ > 0) terms.push_back({"kd", losses::soft_kl(s, in.teachers.at(0)->at("logits"), T_), alpha_});
    if (!two_stage_) terms.push_back({"hint", hint(in), beta_});
    return terms;
  }

 private:
  bool two_stage_;
  std::string s_tap_, t_tap_;
  std::string regressor_kind_;
  int64_t hint_epochs_;
  double beta_, T_, alpha_;
  std::shared_ptr<torch::nn::Module> regressor_;
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  torch::nn::Linear lin_{nullptr};
  ConvReg conv_reg_{nullptr};
};

}  // namespace kd
KD_REGISTER_METHOD(kd::FitNets);
