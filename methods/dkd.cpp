// dkd: Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu & Liang, CVPR 2022, Sec. 3, Eq. 1-7, Alg. 1).
// KD splits into target-class KD (TCKD: the binary true-class / other-classes distributions) and
// non-target-class KD (NCKD: the distribution over the other classes); DKD weights them freely:
//   L = CE(s, y) + w(epoch) * (alpha * TCKD + beta * NCKD),  w(epoch) = min(epoch / warmup_epochs, 1)
// with the 1-BASED epoch (0.05 in the first epoch of a 20-epoch warm-up, 1 from the 20th on). Terms: ce (1),
// tckd (w * alpha), nckd (w * beta); formulas in losses::dkd (methods/logit_losses.h).
// Reference: megvii-research/mdistiller a08d46f, mdistiller/distillers/DKD.py (`dkd_loss`, `DKD.forward_train`
// with engine/trainer.py's epoch), whose CIFAR-100 defaults (engine/cfg.py) are the defaults here:
// CE_WEIGHT 1, ALPHA 1, BETA 8, T 4, WARMUP 20 (per-pair BETA in configs/cifar100/dkd/*.yaml: 2 for
// res56->res20 and res110->res32, 6 for vgg13->mv2/vgg8 and wrn40_2->wrn16_2/wrn40_1, 8 otherwise; ImageNet:
// T 1, WARMUP 1, BETA 0.5 (r34->r18) or 2 (r50->mv1)).
// Paper vs reference (every default follows the reference; none of the differences changes a value except at
// extremes, so there is no `form` option):
//   1. the reference scales both terms by T^2 and divides by T inside the softmaxes; the paper's Eq. 1-7 are
//      written without a temperature (its Alg. 1 pseudo-code is the reference, with T);
//   2. the reference removes the true class from NCKD by subtracting 1000 from its logit (after /T) instead
//      of renormalising over j != t: equal up to underflow, i.e. unless (z_gt - z_other) / T > ~900 (fp32);
//   3. TCKD takes the log of summed probabilities (no log-softmax, no epsilon): inf if a sum underflows to 0;
//   4. the batch reduction is a sum divided by B (the paper's equations are per sample);
//   5. the warm-up is a step per epoch on the 1-based epoch (mdistiller passes the epoch to every iteration),
//      not a per-iteration ramp; with warmup_epochs 1 (ImageNet) the weight is 1 throughout.
// Logit standardisation (Sun et al., CVPR 2024), `logit_standardization: true`: both logit sets z-scored
// (losses::standardize_logits) before dkd_loss, `temperature` the base temperature. Reference: sunshangquan/
// logit-standardization-KD f6e5aa5 DKD.py `dkd_loss(..., logit_stand=True)`: --logit-stand --base-temp 2
// --kd-weight 9 multiplies ALPHA and BETA by 9 (alpha 9, beta 72 for res32x4->res8x4), CE 1, WARMUP 20.
// standardization_form: reference (Bessel std + 1e-7) | paper (population std, no eps), as in logit_kd.
// Checked against mdistiller's and the LS authors' own values: tests/test_methods_reference.cpp
// (tests/data/reference/dkd.json, logit_standardization.json).
#include "methods/logit_losses.h"
#include "methods/method.h"

namespace kd {

class DKD final : public Method {
 public:
  struct Options {
    double alpha = 1.0;
    double beta = 8.0;
    double temperature = 4.0;
    int64_t warmup_epochs = 20;
    bool logit_standardization = false;
    Form standardization_form = Form::Reference;
  };
  static MethodInfo info() {
    return MethodInfo::of<DKD>("dkd",
                               "Zhao et al. 2022: CE + min(epoch/warmup, 1) * (alpha * TCKD + beta * NCKD) "
                               "(mdistiller's dkd_loss); optionally on standardised logits (Sun et al. 2024)")
        .cite(
            "Zhao et al., CVPR 2022, Sec. 3 (Eq. 1-7) and Alg. 1; reference mdistiller DKD.py dkd_loss and "
            "DKD.forward_train. Logit standardisation: Sun et al., CVPR 2024; reference "
            "sunshangquan/logit-standardization-KD DKD.py")
        .teachers(1, 1)
        .number("alpha", &Options::alpha, 0.0, 1e4, "weight of TCKD (the paper's alpha; CE keeps weight 1)")
        .number("beta", &Options::beta, 0.0, 1e4, "weight of NCKD (the paper's beta)")
        .number("temperature", &Options::temperature, 0.05, 100.0,
                "softmax temperature T (the base temperature with logit_standardization)")
        .integer("warmup_epochs", &Options::warmup_epochs, 0, 100000,
                 "TCKD and NCKD weighted by min(epoch / warmup_epochs, 1), epoch 1-based (0 or 1: no warm-up)")
        .boolean("logit_standardization", &Options::logit_standardization,
                 "z-score both logit sets per sample before DKD (Sun et al. 2024)")
        .form("standardization_form", &Options::standardization_form,
              "reference: (z - mean) / (1e-7 + Bessel std) as the authors' code; paper: population std, no eps");
  }
  explicit DKD(const Options& o)
      : alpha_(o.alpha),
        beta_(o.beta),
        T_(o.temperature),
        warmup_(o.warmup_epochs),
        standardize_(o.logit_standardization),
        form_(o.standardization_form) {}
  std::vector<std::string> teacher_taps(int) const override { return {"logits"}; }

  // mdistiller's min(epoch / WARMUP, 1.0) with its 1-based epoch; MethodInput.epoch is 0-based.
  double warmup_factor(int64_t epoch) const {
    if (warmup_ <= 1) return 1.0;
    return std::min(static_cast<double>(epoch + 1) / static_cast<double>(warmup_), 1.0);
  }

  LossTerms compute(const MethodInput& in) override {
    const auto& s = in.student.at("logits");
    const auto& t = in.teachers.at(0)->at("logits");
    auto terms = standardize_ ? losses::dkd(losses::standardize_logits(s, form_), losses::standardize_logits(t, form_),
                                            in.labels, T_)
                              : losses::dkd(s, t, in.labels, T_);
    const double w = warmup_factor(in.epoch);
    return {{"ce", torch::cross_entropy_loss(s, in.labels), 1.0},
            {"tckd", terms.tckd, w * alpha_},
            {"nckd", terms.nckd, w * beta_}};
  }

 private:
  double alpha_, beta_, T_;
  int64_t warmup_;
  bool standardize_;
  losses::StandardizationForm form_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::DKD);
