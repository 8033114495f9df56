// ab: activation boundaries (Heo et al., "Knowledge Transfer via Distillation of Activation Boundaries Formed by
// Hidden Neurons", AAAI 2019, Sec. 3, Eq. 5-6, and its initialisation scheme, Sec. 3.3). The reference is
// RepDistiller's distiller_zoo/AB.py (ABLoss), models/util.py (Connector, ConvReg) and helper/pretrain.py (init),
// the code of RepDistiller's CIFAR-100 table (HobbitLong/RepDistiller @ b84f547, --distill abound):
//   stage "init" (init_epochs, RepDistiller 30): connector r_i(s_i) on each PRE-ReLU student map, and
//     ab = sum_i 2^(i-n+1) sum( (r+m)^2 [r > -m, t <= 0] + (r-m)^2 [r <= m, t > 0] ) / B / 1000 * 3
//   (losses::ab_loss, margin m = 1) against the teacher's pre-ReLU maps; it trains the connectors and the
//   student up to its last tap (RepDistiller: model_s.get_feat_modules(), everything but the classifier), with
//   the recipe's optimizer (RepDistiller: SGD, its lr 0.05 constant for 30 epochs, momentum 0.9, wd 5e-4);
//   stage "main" (the recipe's epochs): ce (1 - alpha) + kd (alpha, only when alpha > 0). RepDistiller's loops.py
//   sets loss_kd = 0 for abound and its script passes -a 0, so the main stage is cross-entropy alone (240 epochs);
//   the connectors are no longer used: they neither train nor leave eval mode (StageSpec::eval_modules), as in
//   RepDistiller (in module_list, not trainable_list; loops.py module_list[1].eval()).
// Connector r_i, by shapes (ConvReg with use_relu=False): identity when channels and height agree; else a conv
// (with bias) + BN: 3x3 stride 2 pad 1 when s_H = 2 t_H, 4x4 stride-2 transposed conv when 2 s_H = t_H,
// a (1+s_H-t_H) x (1+s_W-t_W) conv when s_H >= t_H (1x1 when equal); a smaller student map otherwise is an error.
// Paper vs reference (the default follows the reference):
//   1. the code's piecewise form equals the paper's ||rho(T) . ReLU(m - r(S))^2 + (1 - rho(T)) . ReLU(m + r(S))^2||_1;
//   2. the scale factors 2^(i-n+1) per layer, 1/B and 3/1000 are the code's (they only scale the init stage);
//   3. the connector is RepDistiller's ConvReg + BN without ReLU, chosen by shape as above;
//   4. layers: RepDistiller's preact feat[1:-1] (3 stage outputs for ResNet/WRN/ShuffleNet, 4 for VGG/MobileNetV2;
//      for WRN the preact features are the next stage's BN outputs, the zoo's preact_blockK).
//   5. the init stage trains every student parameter upstream of the last tap; for a WRN student that includes
//      the final BN (whose output is preact_block3), which RepDistiller's get_feat_modules() leaves out of the
//      init optimizer (so there it gets gradients but is not stepped).
//   beta weighs the init-stage term (1 in the reference); it has no role in the main stage.
#include "base/errors.h"
#include "methods/common_terms.h"
#include "methods/conv_reg.h"
#include "methods/feature_losses.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class AB final : public Method {
 public:
  struct Options {
    PairedTaps taps{{"preact_block1", "preact_block2", "preact_block3"},
                    {"preact_block1", "preact_block2", "preact_block3"}};
    double margin = 1.0;
    int64_t init_epochs = 30;
    double init_lr = 0.0;
    double beta = 1.0;
    KdTerm kd;
  };
  static MethodInfo info() {
    return MethodInfo::of<AB>("ab",
                              "Heo et al. 2019: initialise the student so its pre-ReLU activation boundaries match "
                              "the teacher's (margin loss through connectors), then train on the labels")
        .cite(
            "Heo et al. 2019 (AAAI), Sec. 3 Eq. 5-6; reference RepDistiller distiller_zoo/AB.py, models/util.py, "
            "helper/pretrain.py @ b84f547")
        .teachers(1, 1)
        .paired_taps(&Options::taps, "student pre-ReLU maps, paired in order with teacher_taps",
                     "teacher pre-ReLU maps")
        .number("margin", &Options::margin, 0.0, 100.0, "margin m of the activation-boundary loss")
        .integer("init_epochs", &Options::init_epochs, 1, 10000, "epochs of the initialisation stage (RepDistiller 30)")
        .number("init_lr", &Options::init_lr, 0.0, 10.0,
                "base lr of the initialisation stage; 0 = the recipe's (RepDistiller: its lr, 0.05)")
        .number("beta", &Options::beta, 0.0, 1e6, "weight of the ab term in the initialisation stage")
        .kd_term(&Options::kd, "main stage: ");
  }
  explicit AB(const Options& o) : o_(o) {}

  std::vector<std::string> student_taps() const override { return with_logits(o_.taps.student); }
  std::vector<std::string> teacher_taps(int) const override { return with_logits(o_.taps.teacher); }

  void prepare(const PrepareContext& ctx) override {
    module_ = std::make_shared<torch::nn::Module>("ABConnector");
    connectors_ = module_->register_module("connectors", torch::nn::ModuleList());
    for (size_t i = 0; i < o_.taps.student.size(); ++i) {
      const auto& s = ctx.student.at(o_.taps.student[i]);
      const auto& t = ctx.teachers.at(0).at(o_.taps.teacher[i]);
      if (s.size() != 4 || t.size() != 4)
        throw ConfigError("student_taps",
                          "AB needs 4-D feature maps ('" + o_.taps.student[i] + "' / '" + o_.taps.teacher[i] + "')");
      if (s[1] == t[1] && s[2] == t[2]) {
        connectors_->push_back(torch::nn::Identity());
      } else {
        connectors_->push_back(ConvReg(s, t, /*use_relu=*/false, "student_taps", "'" + o_.taps.student[i] + "'"));
      }
    }
    module_->to(ctx.device);
  }
  std::shared_ptr<torch::nn::Module> module() override { return module_; }

  std::vector<StageSpec> stages() const override {
    StageSpec init{"init", static_cast<int>(o_.init_epochs), o_.taps.student.back()};
    init.lr = o_.init_lr;
    // RepDistiller trains the connectors in the init stage only (helper/pretrain.py); train_student.py then puts
    // them in module_list, not trainable_list, and loops.py sets module_list[1].eval().
    StageSpec main{"main"};
    main.eval_modules = {"connectors"};
    return {init, main};
  }

  LossTerms compute(const MethodInput& in) override {
    if (in.stage == 0) {
      std::vector<torch::Tensor> s, t;
      for (size_t i = 0; i < o_.taps.student.size(); ++i) {
        s.push_back(connectors_[i]->as<torch::nn::Identity>()
                        ? in.student.at(o_.taps.student[i])
                        : connectors_[i]->as<ConvRegImpl>()->forward(in.student.at(o_.taps.student[i])));
        t.push_back(in.teachers.at(0)->at(o_.taps.teacher[i]));
      }
      return {{"ab", losses::ab_loss(s, t, o_.margin), o_.beta}};
    }
    return ce_own_kd(in, {}, o_.kd);
  }

 private:
  Options o_;
  std::shared_ptr<torch::nn::Module> module_;
  torch::nn::ModuleList connectors_{nullptr};
};

}  // namespace kd
KD_REGISTER_METHOD(kd::AB);
