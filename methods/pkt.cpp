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
    Form form = Form::Reference;
    KdTerm kd;
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
        .form("form", &Options::form,
              "reference: mean over all B^2 pairs, self-similarity kept, eps 1e-7 (RepDistiller); paper: sum "
              "over i != j, self-similarity excluded")
        .kd_term(&Options::kd);
  }
  explicit PKT(const Options& o) : o_(o) {}
  std::vector<std::string> student_taps() const override { return {o_.student_tap, "logits"}; }
  std::vector<std::string> teacher_taps(int) const override { return {o_.teacher_tap, "logits"}; }
  LossTerms compute(const MethodInput& in) override {
    auto pkt = losses::pkt(in.student.at(o_.student_tap), in.teachers.at(0)->at(o_.teacher_tap), o_.form);
    return ce_own_kd(in, {{"pkt", pkt, o_.beta}}, o_.kd);
  }

 private:
  Options o_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::PKT);
