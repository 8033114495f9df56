// pkt: Probabilistic Knowledge Transfer (Passalis & Tefas, ECCV 2018, Sec. 3, Eq. 7-10): the batch's
// cosine-similarity kernel K = (1 + cos) / 2 turned into conditional probabilities p_{j|i} = K_ij / sum_k K_ik,
// and the student's matched to the teacher's by KL divergence (losses::pkt).
// Terms: ce (1 - alpha), pkt (beta), kd (alpha, only when alpha > 0).
// Reference: RepDistiller b84f547 distiller_zoo/PKT.py `PKT.cosine_similarity_loss` (the authors' own
// passalis/probabilistic_kt nn/pkt.py), run with -a 0 -b 30000 on feat[-1], the globally pooled features:
// the defaults (beta 30000, taps pool). mdistiller: FEAT_WEIGHT 30000 on the pooled features.
// Paper vs reference:
//   1. the reference keeps each sample's similarity with itself (K_ii = 1) in the normalisation and in the
//      KL; the paper sums over k != i and j != i;
//   2. the reference takes the MEAN over all B^2 entries (i = j included); the paper SUMS over i != j, so
//      its values are about B^2 times larger (beta must shrink accordingly);
//   3. the reference adds eps = 1e-7 to the norms and inside the log ratio, and sets NaN to 0.
// form: reference (default, follows the reference) | paper (1 and 2 as the paper, no eps).
// Checked against RepDistiller's own values: tests/test_methods_reference.cpp (tests/data/reference/pkt.json;
// the paper form against the arithmetic recorded there, labelled as not peer output).
#include "methods/common_terms.h"
#include "methods/losses.h"
#include "methods/method.h"
#include "methods/relation_losses.h"

namespace kd {

class PKT final : public Method {
 public:
  struct Options {
    std::string student_tap = "pool";
    std::string teacher_tap = "pool";
    double beta = 30000.0;
    std::string form = "reference";
    double alpha = 0.0;
    double temperature = 4.0;
  };
  static MethodInfo info() {
    return MethodInfo::of<PKT>("pkt",
                               "Passalis & Tefas 2018: KL between the batch's cosine-kernel conditional "
                               "probabilities of student and teacher")
        .cite(
            "Passalis & Tefas, ECCV 2018, Sec. 3 (Eq. 7-10); reference RepDistiller distiller_zoo/PKT.py "
            "(= passalis/probabilistic_kt)")
        .teachers(1, 1)
        .string("student_tap", &Options::student_tap, {}, "student features (RepDistiller: the pooled features)")
        .string("teacher_tap", &Options::teacher_tap, {}, "teacher features")
        .number("beta", &Options::beta, 0.0, 1e7, "weight of the PKT term (RepDistiller: 30000)")
        .string("form", &Options::form, {"reference", "paper"},
                "reference: mean over all B^2 pairs, self-similarity kept, eps 1e-7 (RepDistiller); paper: sum "
                "over i != j, self-similarity excluded")
        .number("alpha", &Options::alpha, 0.0, 1.0, "weight of an added KD term; CE gets 1 - alpha")
        .number("temperature", &Options::temperature, 0.05, 100.0, "KD temperature when alpha > 0");
  }
  explicit PKT(const Options& o)
      : s_tap_(o.student_tap),
        t_tap_(o.teacher_tap),
        beta_(o.beta),
        form_(o.form == "paper" ? losses::Form::Paper : losses::Form::Reference),
        alpha_(o.alpha),
        T_(o.temperature) {}
  std::vector<std::string> student_taps() const override { return {s_tap_, "logits"}; }
  std::vector<std::string> teacher_taps(int) const override { return {t_tap_, "logits"}; }
  LossTerms compute(const MethodInput& in) override {
    return ce_own_kd(in, {{"pkt", losses::pkt(in.student.at(s_tap_), in.teachers.at(0)->at(t_tap_), form_), beta_}},
                     alpha_, T_);
  }

 private:
  std::string s_tap_, t_tap_;
  double beta_;
  losses::Form form_;
  double alpha_, T_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::PKT);
