// fsp: flow of solution procedure (Yim et al., "A Gift from Knowledge Distillation: Fast Optimization, Network
// Minimization and Transfer Learning", CVPR 2017, Sec. 3.2-3.3, Eq. 1-2). The reference is RepDistiller's
// distiller_zoo/FSP.py (FSP) with helper/pretrain.py (init), the code of RepDistiller's CIFAR-100 table
// (HobbitLong/RepDistiller @ b84f547, --distill fsp):
//   G(bottom, top)[b, j, i] = mean_{h,w} top[b, j, h, w] bottom[b, i, h, w] for consecutive taps (g_k, g_k+1), the
//   map with the larger height average-pooled to the smaller (losses::fsp_matrix);
//   fsp = sum_k mean_{B, C_top, C_bottom} (G_s,k - G_t,k)^2                     (losses::fsp_loss)
//   stage "init" (init_epochs, RepDistiller 30): fsp alone, training the student up to its last tap
//     (RepDistiller: model_s.get_feat_modules(); SGD lr 0.05 constant, momentum 0.9, wd 5e-4);
//   stage "main" (the recipe's epochs): ce (1 - alpha) + kd (alpha, only when alpha > 0). RepDistiller's loops.py
//     sets loss_kd = 0 for fsp (its script's -b 50 has no effect), so the main stage is cross-entropy alone.
// FSP needs the same channel counts on both sides at every tap (RepDistiller raises 'num of channels not equal
// (error in FSP)'; its README lists FSP as N/A for wrn-40-2 -> wrn-40-1 and for every cross-architecture pair).
// Paper vs reference (the default follows the reference):
//   1. reduction: the code's mean over the matrix entries and the batch divides each pair by C_top*C_bottom; the
//      paper's (1/N) sum_x ||G_T - G_S||^2 sums the entries. Option reduction = "mean" | "sum" (paper);
//   2. the pairs are consecutive taps (RepDistiller's feat[:-1]: the stem and every stage output), not the input
//      and output of each section as in the paper, so sections of different resolution meet and the larger map
//      is pooled;
//   3. all pair weights lambda = 1.
#include "base/errors.h"
#include "methods/common_terms.h"
#include "methods/feature_losses.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class FSP final : public Method {
 public:
  struct Options {
    PairedTaps taps{{"stem", "block1", "block2", "block3"}, {"stem", "block1", "block2", "block3"}};
    int64_t init_epochs = 30;
    double init_lr = 0.0;
    double beta = 1.0;
    KdTerm kd;
    std::string reduction = "mean";
  };
  static MethodInfo info() {
    return MethodInfo::of<FSP>("fsp",
                               "Yim et al. 2017: initialise the student to match the teacher's FSP (Gram) matrices "
                               "between consecutive layers, then train on the labels")
        .cite(
            "Yim et al. 2017, Sec. 3.2-3.3 Eq. 1-2; reference RepDistiller distiller_zoo/FSP.py, helper/pretrain.py "
            "@ b84f547")
        .teachers(1, 1)
        .paired_taps(&Options::taps, "student maps; consecutive ones form the FSP pairs",
                     "teacher maps (same channel counts as the student's)", /*min_pairs=*/2)
        .integer("init_epochs", &Options::init_epochs, 1, 10000, "epochs of the initialisation stage (RepDistiller 30)")
        .number("init_lr", &Options::init_lr, 0.0, 10.0,
                "base lr of the initialisation stage; 0 = the recipe's (RepDistiller: its lr, 0.05)")
        .number("beta", &Options::beta, 0.0, 1e6, "weight of the fsp term in the initialisation stage")
        .kd_term(&Options::kd, "main stage: ")
        .string("reduction", &Options::reduction, {"mean", "sum"},
                "mean: over matrix entries and batch (reference); sum: squared Frobenius norm, batch mean (paper)");
  }
  explicit FSP(const Options& o) : o_(o) {}

  std::vector<std::string> student_taps() const override { return with_logits(o_.taps.student); }
  std::vector<std::string> teacher_taps(int) const override { return with_logits(o_.taps.teacher); }

  void prepare(const PrepareContext& ctx) override {
    for (size_t i = 0; i < o_.taps.student.size(); ++i) {
      const auto& s = ctx.student.at(o_.taps.student[i]);
      const auto& t = ctx.teachers.at(0).at(o_.taps.teacher[i]);
      if (s.size() != 4 || t.size() != 4)
        throw ConfigError("student_taps",
                          "FSP needs 4-D feature maps ('" + o_.taps.student[i] + "' / '" + o_.taps.teacher[i] + "')");
      if (s[1] != t[1])
        throw ConfigError("teacher_taps",
                          "FSP needs equal channel counts on both sides (RepDistiller: 'num of "
                          "channels not equal'): student tap '" +
                              o_.taps.student[i] + "' has " + std::to_string(s[1]) + ", teacher tap '" +
                              o_.taps.teacher[i] + "' " + std::to_string(t[1]));
    }
  }

  std::vector<StageSpec> stages() const override {
    StageSpec init{"init", static_cast<int>(o_.init_epochs), o_.taps.student.back()};
    init.lr = o_.init_lr;
    return {init, StageSpec{"main"}};
  }

  LossTerms compute(const MethodInput& in) override {
    if (in.stage == 0) {
      std::vector<torch::Tensor> s, t;
      for (size_t i = 0; i < o_.taps.student.size(); ++i) {
        s.push_back(in.student.at(o_.taps.student[i]));
        t.push_back(in.teachers.at(0)->at(o_.taps.teacher[i]));
      }
      return {{"fsp", losses::fsp_loss(s, t, o_.reduction == "sum"), o_.beta}};
    }
    return ce_own_kd(in, {}, o_.kd);
  }

 private:
  Options o_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::FSP);
