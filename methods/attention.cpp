// attention: Zagoruyko & Komodakis 2017 ("Paying More Attention to Attention", ICLR, Sec. 3.1, Eq. 2):
// Q = vec(mean_c |A_c|^p), L2-normalised per sample; at = sum over tap pairs of mean((Q_s - Q_t)^2),
// the mean over batch and positions (the paper's Sec. 4.1 divides beta = 1e3 by the number of
// attention-map elements and the batch size, which this mean does; the authors' cifar.py and
// RepDistiller use the same form with beta = 1000).
// Taps of different spatial size (losses::attention_loss):
//   resize: pool (default; RepDistiller b84f547 distiller_zoo/AT.py `at_loss`, whose CIFAR-100 numbers are
//           the published ones): the larger RAW feature map is adaptive-average-pooled to the smaller one's
//           size BEFORE the attention maps are taken;
//   resize: interpolate: the student's 2-D map mean_c |A_c|^p is bilinearly resized to the teacher's size
//           (kdbench's behaviour before; the two give losses several times apart).
// Differences between the paper (Eq. 2) and the reference code (RepDistiller and the authors' cifar.py),
// each of which the default follows from the reference:
//   1. squared distance, not the p-norm ||Q_s - Q_t||_2 of Eq. 2;
//   2. the mean over batch and positions (beta = 1000 absorbs it), not a per-sample norm summed, and no 1/2;
//   3. the channel mean, not the sum (cancelled by the L2 normalisation);
//   4. RepDistiller takes f^p, kdbench |f|^p (the paper's): equal for p = 2 and for post-ReLU taps;
//   5. different sizes: RepDistiller pools the larger map (resize: pool); the paper and the authors' code
//      assume equal sizes. RepDistiller pools to a square of the smaller height; kdbench pools height and
//      width each to the smaller one (the same on square maps).
// Checked against RepDistiller's own values: tests/test_methods_reference.cpp (tests/data/reference/
// attention.json). Terms: ce (1 - alpha), at (beta), kd (alpha, only when alpha > 0: the paper's AT + KD).
#include "base/errors.h"
#include "methods/common_terms.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class Attention final : public Method {
 public:
  struct Options {
    PairedTaps taps{{"block1", "block2", "block3"}, {"block1", "block2", "block3"}};
    double p = 2.0;
    double beta = 1000.0;
    KdTerm kd;
    std::string resize = "pool";
  };
  static MethodInfo info() {
    return MethodInfo::of<Attention>(
               "attention", "Zagoruyko & Komodakis 2017: match L2-normalised spatial attention maps at several depths")
        .cite("Zagoruyko & Komodakis 2017, Sec. 3.1, Eq. 2 (p = 2)")
        .teachers(1, 1)
        .paired_taps(&Options::taps, "student taps, paired in order", "teacher taps, paired in order")
        .number("p", &Options::p, 1.0, 8.0, "exponent of |A|^p")
        .number("beta", &Options::beta, 0.0, 1e7, "weight of the attention term")
        .kd_term(&Options::kd)
        .string("resize", &Options::resize, {"pool", "interpolate"},
                "maps of different sizes: pool = the larger raw map average-pooled to the smaller (RepDistiller); "
                "interpolate = the student's attention map bilinearly resized to the teacher's");
  }
  explicit Attention(const Options& o)
      : o_(o),
        resize_(o.resize == "interpolate" ? losses::AttentionResize::Interpolate : losses::AttentionResize::Pool) {}
  std::vector<std::string> student_taps() const override { return with_logits(o_.taps.student); }
  std::vector<std::string> teacher_taps(int) const override { return with_logits(o_.taps.teacher); }
  LossTerms compute(const MethodInput& in) override {
    torch::Tensor at;
    for (size_t i = 0; i < o_.taps.student.size(); ++i) {
      auto l = losses::attention_loss(in.student.at(o_.taps.student[i]), in.teachers.at(0)->at(o_.taps.teacher[i]),
                                      o_.p, resize_);
      at = at.defined() ? at + l : l;
    }
    return ce_own_kd(in, {{"at", at, o_.beta}}, o_.kd);
  }

 private:
  Options o_;
  losses::AttentionResize resize_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::Attention);
