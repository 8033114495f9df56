// cc: Correlation Congruence (Peng, Jin, Liu, Li, Wu, Liu, Zhou & Zhang, ICCV 2019, Sec. 3). Student and
// teacher features are each mapped by a trainable linear embedding (feat -> embed_dim) and compared across
// the samples of the batch. Terms: ce (1 - alpha), cc (beta), kd (alpha, only when alpha > 0).
// Reference: RepDistiller b84f547 distiller_zoo/CC.py `Correlation` ("the authors nicely shared the code"),
// run with -a 0 -b 0.02 on f = LinearEmbed(feat[-1]) -> 128 for student AND teacher, BOTH embeddings trained
// with the student (train_student.py puts both in trainable_list): the defaults (beta 0.02, taps pool,
// embed_dim 128, two trainable embeddings owned by this method and counted as its extra parameters):
//   delta = |e_s - e_t|,  cc = (1 / (B - 1)) sum_{i < B-1} <delta_i, delta_{i+1}> (losses::correlation_congruence)
// Paper vs reference:
//   1. the functional form: the reference multiplies neighbouring rows of the absolute residual; the paper
//      (Eq. 5-9) matches the batch's correlation matrices psi_ij = k(f_i, f_j) of a Gaussian RBF kernel
//      approximated by its order-P Taylor series, L_CC = (1 / B^2) ||psi(F_t) - psi(F_s)||^2;
//   2. the reference depends on the order of the batch (only neighbours i, i+1 interact); the paper's does not;
//   3. normalisation: 1 / (B - 1) in the reference, 1 / B^2 in the paper;
//   4. the paper samples class-balanced (or superclass-balanced) batches; RepDistiller and kdbench do not;
//   5. the paper adds KD (alpha CE + (1 - alpha) KD + beta CC); RepDistiller runs it with KD weight 0.
// form: reference (default, follows the reference) | paper (1-3: features L2-normalised, the RBF-Taylor
// correlation with rbf_gamma and taylor_order; their values in the paper were not re-checked, hence options).
// Checked against RepDistiller's own values: tests/test_methods_reference.cpp (tests/data/reference/cc.json);
// the paper form against hand arithmetic in the same file.
#include "base/errors.h"
#include "methods/common_terms.h"
#include "methods/losses.h"
#include "methods/method.h"
#include "methods/relation_losses.h"

namespace kd {

class CorrelationCongruence final : public Method {
 public:
  struct Options {
    std::string student_tap = "pool";
    std::string teacher_tap = "pool";
    int64_t embed_dim = 128;
    double beta = 0.02;
    Form form = Form::Reference;
    double rbf_gamma = 0.4;
    int64_t taylor_order = 2;
    KdTerm kd;
  };
  static MethodInfo info() {
    return MethodInfo::of<CorrelationCongruence>(
               "cc", "Peng et al. 2019: correlation congruence of linearly embedded student and teacher features")
        .cite(
            "Peng et al., ICCV 2019, Sec. 3 (Eq. 5-9); reference RepDistiller distiller_zoo/CC.py Correlation "
            "with train_student.py's two LinearEmbed")
        .teachers(1, 1)
        .string("student_tap", &Options::student_tap, {}, "student features (RepDistiller: the pooled features)")
        .string("teacher_tap", &Options::teacher_tap, {}, "teacher features")
        .integer("embed_dim", &Options::embed_dim, 1, 65536, "output size of the two trainable linear embeddings")
        .number("beta", &Options::beta, 0.0, 1e7, "weight of the CC term (RepDistiller: 0.02)")
        .form("form", &Options::form,
              "reference: neighbouring rows of |e_s - e_t| (RepDistiller, batch-order dependent); paper: "
              "RBF-Taylor correlation matrices")
        .number("rbf_gamma", &Options::rbf_gamma, 1e-6, 100.0, "form paper: the RBF kernel's gamma")
        .integer("taylor_order", &Options::taylor_order, 0, 16, "form paper: order P of the kernel's Taylor series")
        .kd_term(&Options::kd);
  }
  explicit CorrelationCongruence(const Options& o) : o_(o) {}
  std::vector<std::string> student_taps() const override { return {o_.student_tap, "logits"}; }
  std::vector<std::string> teacher_taps(int) const override { return {o_.teacher_tap, "logits"}; }

  void prepare(const PrepareContext& ctx) override {
    auto flat = [&](const TapShapes& shapes, const std::string& tap, const char* key) {
      auto it = shapes.find(tap);
      if (it == shapes.end()) throw ConfigError(key, "no tap '" + tap + "'");
      int64_t n = 1;
      for (size_t i = 1; i < it->second.size(); ++i) n *= it->second[i];
      return n;
    };
    const int64_t ds = flat(ctx.student, o_.student_tap, "student_tap");
    const int64_t dt = flat(ctx.teachers.at(0), o_.teacher_tap, "teacher_tap");
    embeds_ = std::make_shared<torch::nn::Module>("CCEmbeddings");
    embed_s_ = embeds_->register_module("student", torch::nn::Linear(ds, o_.embed_dim));
    embed_t_ = embeds_->register_module("teacher", torch::nn::Linear(dt, o_.embed_dim));
    embeds_->to(ctx.device);
  }
  std::shared_ptr<torch::nn::Module> module() override { return embeds_; }

  LossTerms compute(const MethodInput& in) override {
    auto es = embed_s_(in.student.at(o_.student_tap).flatten(1));
    auto et = embed_t_(in.teachers.at(0)->at(o_.teacher_tap).flatten(1));
    auto cc = o_.form == Form::Paper ? losses::correlation_congruence_paper(es, et, o_.rbf_gamma, o_.taylor_order)
                                     : losses::correlation_congruence(es, et);
    return ce_own_kd(in, {{"cc", cc, o_.beta}}, o_.kd);
  }

 private:
  Options o_;
  std::shared_ptr<torch::nn::Module> embeds_;
  torch::nn::Linear embed_s_{nullptr}, embed_t_{nullptr};
};

}  // namespace kd
KD_REGISTER_METHOD(kd::CorrelationCongruence);
