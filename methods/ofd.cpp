// ofd: a comprehensive overhaul of feature distillation (Heo, Kim, Yun, Park, Kwak & Choi, ICCV 2019, Sec. 3,
// Eq. 1-10). The reference is the authors' clovaai/overhaul-distillation @ 76344a8, CIFAR-100/distiller.py
// (get_margin_from_BN, build_feature_connector, distillation_loss, Distiller) and train_with_distillation.py:
//   taps: the PRE-ReLU outputs of the stages (the zoo's preact_blockK; OFD's extract_feature(preReLU=True));
//   connector per tap: 1x1 conv C_s -> C_t (no bias, N(0, sqrt(2 / C_t))) + BN (1, 0), trained with the student;
//   margin per teacher channel, fixed when the run is prepared, from the batch norm that produces the teacher tap
//     (TapModel::tap_norm; OFD's get_bn_before_relu): s = |gamma|, m = beta, margin = m - s phi(m/s) / Phi(-m/s)
//     (= E[x | x < 0] for x ~ N(m, s^2)) when Phi(-m/s) > 0.001, else -3 s   (losses::ofd_margin);
//   d_i = sum over every element of (r_i(s_i) - max(t_i, margin))^2 where r > max(t, margin) or max(t, margin) > 0
//     (partial L2, losses::ofd_partial_l2);
//   ofd = sum_i d_i / 2^(n - i - 1) / B (n taps, i 0-based: the deepest weighs 1), and the trainer adds
//     loss_distill.sum() / batch_size / 1000 to CE: beta = 1e-3 reproduces it (ImageNet: 1e-4);
// Terms: ce (1 - alpha), ofd (beta), kd (alpha, only when alpha > 0; OFD's runs use none). Single stage.
// Paper vs reference (the default follows the reference):
//   1. the margin's fallback -3|gamma| when Phi(-beta/|gamma|) <= 0.001, and |gamma| as the standard deviation,
//      are the code's;
//   2. the per-stage weights 1/2^(n-i-1) and the 1/(B * 1000) scale are the code's;
//   3. the code's mask (s > t') | (t' > 0) after clamping t' = max(t, m) is the paper's partial L2;
//   4. the reference runs the TEACHER in train mode (batch statistics, running averages updated, and WRN's
//      preact BNs applied a second time); kdbench's teachers are shared and always run in eval mode, so its
//      pre-ReLU teacher features use the running statistics;
//   5. the margin is computed once (the teacher is frozen) and never recomputed, as in the reference;
//   6. OFD's CIFAR recipe (200 epochs, lr 0.1 / 10 / 100 at 100 and 150 with the optimizer re-created) is a
//      recipe, not part of the method: configs/cifar100.json runs it in RepDistiller's recipe.
// Without the teacher's modules (kdbench loss computes from tensors alone) the margins are those of a batch norm
// at its initial weights (gamma 1, beta 0): -sqrt(2 / pi) for every channel.
#include "base/errors.h"
#include "methods/common_terms.h"
#include "methods/feature_losses.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class OFD final : public Method {
 public:
  struct Options {
    PairedTaps taps{{"preact_block1", "preact_block2", "preact_block3"},
                    {"preact_block1", "preact_block2", "preact_block3"}};
    double beta = 1e-3;
    KdTerm kd;
  };
  static MethodInfo info() {
    return MethodInfo::of<OFD>("ofd",
                               "Heo et al. 2019 (ICCV): pre-ReLU feature distillation with a margin from the "
                               "teacher's batch-norm statistics and a partial L2 distance")
        .cite(
            "Heo et al. 2019 (ICCV), Sec. 3 Eq. 1-10; reference clovaai/overhaul-distillation CIFAR-100/distiller.py "
            "@ 76344a8")
        .teachers(1, 1)
        .paired_taps(&Options::taps, "student pre-ReLU maps, paired in order with teacher_taps",
                     "teacher pre-ReLU maps, each produced by a batch norm")
        .number("beta", &Options::beta, 0.0, 1e6, "weight of the ofd term (per-sample sum; CIFAR 1e-3, ImageNet 1e-4)")
        .kd_term(&Options::kd);
  }
  explicit OFD(const Options& o) : o_(o) {}

  std::vector<std::string> student_taps() const override { return with_logits(o_.taps.student); }
  std::vector<std::string> teacher_taps(int) const override { return with_logits(o_.taps.teacher); }

  void prepare(const PrepareContext& ctx) override {
    module_ = std::make_shared<torch::nn::Module>("OFD");
    connectors_ = module_->register_module("connectors", torch::nn::ModuleList());
    margins_.clear();
    for (size_t i = 0; i < o_.taps.student.size(); ++i) {
      const auto& s = ctx.student.at(o_.taps.student[i]);
      const auto& t = ctx.teachers.at(0).at(o_.taps.teacher[i]);
      if (s.size() != 4 || t.size() != 4 || s[2] != t[2] || s[3] != t[3])
        throw ConfigError("student_taps", "OFD needs 4-D maps of the same spatial size ('" + o_.taps.student[i] +
                                              "' / '" + o_.taps.teacher[i] + "')");
      auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(s[1], t[1], 1).bias(false));
      {
        torch::NoGradGuard ng;
        conv->weight.normal_(0, std::sqrt(2.0 / static_cast<double>(t[1])));
      }
      connectors_->push_back(torch::nn::Sequential(conv, torch::nn::BatchNorm2d(t[1])));
      margins_.push_back(module_->register_buffer("margin" + std::to_string(i + 1),
                                                  teacher_margin(ctx, o_.taps.teacher[i], t[1]).view({1, -1, 1, 1})));
    }
    module_->to(ctx.device);
  }
  std::shared_ptr<torch::nn::Module> module() override { return module_; }

  LossTerms compute(const MethodInput& in) override {
    const auto n = static_cast<int>(o_.taps.student.size());
    torch::Tensor total;
    for (int i = 0; i < n; ++i) {
      auto source = connectors_[static_cast<size_t>(i)]->as<torch::nn::SequentialImpl>()->forward(
          in.student.at(o_.taps.student[static_cast<size_t>(i)]));
      auto d = losses::ofd_partial_l2(source, in.teachers.at(0)->at(o_.taps.teacher[static_cast<size_t>(i)]),
                                      margins_[static_cast<size_t>(i)]) /
               std::pow(2.0, n - i - 1);
      total = total.defined() ? total + d : d;
    }
    return ce_own_kd(in, {{"ofd", total / static_cast<double>(in.labels.size(0)), o_.beta}}, o_.kd);
  }

 private:
  // The margin of teacher tap `tap` from the batch norm the teacher names for it (see the header).
  static torch::Tensor teacher_margin(const PrepareContext& ctx, const std::string& tap, int64_t channels) {
    if (ctx.teacher_modules.empty()) return losses::ofd_margin(torch::ones({channels}), torch::zeros({channels}));
    const auto& norms =
        ctx.teacher_tap_norms.size() > 0 ? ctx.teacher_tap_norms[0] : std::map<std::string, std::string>{};
    auto it = norms.find(tap);
    if (it == norms.end())
      throw ConfigError("teacher_taps", "OFD reads its margin from the batch norm that produces teacher tap '" + tap +
                                            "', and the teacher names none for it (use pre-ReLU taps preact_blockK "
                                            "of a zoo model other than shufflenetv2)");
    auto modules = ctx.teacher_modules[0]->named_modules();
    auto* bn = modules.contains(it->second) ? modules[it->second]->as<torch::nn::BatchNorm2dImpl>() : nullptr;
    if (!bn || bn->weight.size(0) != channels)
      throw std::logic_error("OFD: the teacher's module '" + it->second + "' for tap '" + tap +
                             "' is not a batch norm of " + std::to_string(channels) + " channels");
    return losses::ofd_margin(bn->weight, bn->bias);
  }

  Options o_;
  std::shared_ptr<torch::nn::Module> module_;
  torch::nn::ModuleList connectors_{nullptr};
  std::vector<torch::Tensor> margins_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::OFD);
