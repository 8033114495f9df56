// sp: Similarity-Preserving KD (Tung & Mori, ICCV 2019, Sec. 3, Eq. 2-4). Per tap pair, the batch's
// row-normalised Gram matrices G = normalise_rows(Q Q^T), Q = the features flattened per sample, are matched:
//   sp = sum over tap pairs of (1 / B^2) ||G_t - G_s||_F^2         (losses::similarity_preserving)
// Terms: ce (1 - alpha), sp (beta), kd (alpha, only when alpha > 0).
// Reference: RepDistiller b84f547 distiller_zoo/SP.py `Similarity` ("verified by original author"), run with
// -a 0 -b 3000 on g = [feat[-2]], the output of the last convolutional stage (post-ReLU, before pooling):
// the defaults (beta 3000, taps block3, the last stage of the zoo's three-stage models; name the last stage
// of deeper models, e.g. block4 of vgg, in the config). mdistiller: FEAT_WEIGHT 3000 on the same tensor.
// Paper vs reference (the default follows the reference; they agree, so there is no `form` option):
//   1. the reference clamps each row norm at 1e-12 (F.normalize);
//   2. the layer: RepDistiller uses one pair, the last stage; the paper allows a set of pairs (taps are lists);
//   3. student and teacher may differ in channels and spatial size (Q is flattened per sample).
// Checked against RepDistiller's own values: tests/test_methods_reference.cpp (tests/data/reference/sp.json).
#include "base/errors.h"
#include "methods/common_terms.h"
#include "methods/losses.h"
#include "methods/method.h"
#include "methods/relation_losses.h"

namespace kd {

class SimilarityPreserving final : public Method {
 public:
  struct Options {
    PairedTaps taps{{"block3"}, {"block3"}};
    double beta = 3000.0;
    KdTerm kd;
  };
  static MethodInfo info() {
    return MethodInfo::of<SimilarityPreserving>(
               "sp", "Tung & Mori 2019: match the batch's row-normalised Gram matrices (similarity-preserving KD)")
        .cite("Tung & Mori, ICCV 2019, Sec. 3 (Eq. 2-4); reference RepDistiller distiller_zoo/SP.py Similarity")
        .teachers(1, 1)
        .paired_taps(&Options::taps, "student taps, paired in order (RepDistiller: the last stage)",
                     "teacher taps, paired in order")
        .number("beta", &Options::beta, 0.0, 1e7, "weight of the similarity term (RepDistiller: 3000)")
        .kd_term(&Options::kd);
  }
  explicit SimilarityPreserving(const Options& o) : o_(o) {}
  std::vector<std::string> student_taps() const override { return with_logits(o_.taps.student); }
  std::vector<std::string> teacher_taps(int) const override { return with_logits(o_.taps.teacher); }
  LossTerms compute(const MethodInput& in) override {
    torch::Tensor sp;
    for (size_t i = 0; i < o_.taps.student.size(); ++i) {
      auto l =
          losses::similarity_preserving(in.student.at(o_.taps.student[i]), in.teachers.at(0)->at(o_.taps.teacher[i]));
      sp = sp.defined() ? sp + l : l;
    }
    return ce_own_kd(in, {{"sp", sp, o_.beta}}, o_.kd);
  }

 private:
  Options o_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::SimilarityPreserving);
