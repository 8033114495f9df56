// crd: contrastive representation distillation (Tian, Krishnan & Isola, "Contrastive Representation
// Distillation", ICLR 2020, Sec. 3.1-3.4, Eq. 10-18). The reference is RepDistiller's crd/criterion.py (CRDLoss,
// ContrastLoss, Embed), crd/memory.py (ContrastMemory) and dataset/cifar100.py (CIFAR100InstanceSample), the
// authors' code of the CIFAR-100 table (HobbitLong/RepDistiller @ b84f547, --distill crd):
//   v_s = embed_s(f_s), v_t = embed_t(f_t): Linear(d -> feat_dim 128) then x / ||x||_2 (no eps); f = the pooled
//     penultimate features (RepDistiller's feat[-1], the zoo's "pool"); both embeddings train;
//   two memory banks M_s, M_t [n_data, 128] (buffers), uniform(-1/sqrt(128/3), +1/sqrt(128/3)) at the start;
//   per sample b, idx[b] = [b's own index, K = 16384 negatives]; negatives ("exact", RepDistiller's default
//     mode): drawn from the samples of the OTHER classes, without replacement when there are at least K of
//     them (numpy.random.choice(cls_negative[y], K, replace=K > len)), else with replacement;
//   scores x_s[b, k] = exp(M_t[idx[b, k]] . v_s[b] / T) / Z_s and x_t[b, k] = exp(M_s[idx[b, k]] . v_t[b] / T) / Z_t
//     (T = 0.07), where Z_s, Z_t = mean(exp(...)) * n_data are set ONCE from the first batch and kept
//     (constants, no gradient; buffer "contrast.params" = [K, T, Z_s, Z_t, momentum], saved);
//   crd = ContrastLoss(x_s) + ContrastLoss(x_t) (losses::crd_contrast_loss, Pn = 1/n_data, eps 1e-7);
//   after scoring, the rows of this batch's indices are updated without gradient:
//     M_s[i] = normalise(m M_s[i] + (1 - m) v_s),  M_t[i] = normalise(m M_t[i] + (1 - m) v_t),  m = 0.5.
// Terms: ce (1 - alpha), kd (alpha, only when alpha > 0), crd (beta). RepDistiller's table: -r 1 -a 0 -b 0.8
// (CE + 0.8 crd); its CRD+KD row uses -a 1 with CE still weighted 1, which this alpha convention (CE at 1 - alpha)
// does not express exactly.
// The negatives come from this method's own random stream, seeded from the run's seed when it is prepared, and the
// bank lives in the method's module: a run killed and resumed restarts from scratch with a fresh bank and the
// same draws, so its result is the uninterrupted run's. The bank (2 x n_data x feat_dim floats) is reported by
// `kdbench plan` and saved beside the checkpoint with the embeddings.
// Paper vs reference (the default follows the reference):
//   1. the code divides exp(v.w / T) by a constant Z estimated once from the first batch; the paper's
//      h = exp(.)/(exp(.) + N/M) has no Z;
//   2. the loss is symmetric (teacher- and student-anchored, one bank each);
//   3. positives and negatives are both read from the momentum-averaged banks, not from the current embeddings;
//   4. negatives come from other classes only ("exact"); option negatives = "exact" | "relax" (RepDistiller's
//      relax mode: the positive is a random sample of the same class) | "uniform" (over all samples with
//      replacement, the positive's index may recur: RepDistiller's AliasMethod path, which training never takes);
//   5. eps 1e-7 inside both logs; 6. no eps in the embedding's norm; 7. RepDistiller's loss has shape [1] (a
//   scalar here). Without the training labels (kdbench loss), "exact" draws from every other sample.
#include "base/errors.h"
#include "methods/common_terms.h"
#include "methods/crd_memory.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class CRD final : public Method {
 public:
  struct Options {
    std::string student_tap = "pool";
    std::string teacher_tap = "pool";
    int64_t feat_dim = 128;
    int64_t nce_k = 16384;
    double nce_t = 0.07;
    double nce_m = 0.5;
    std::string negatives = "exact";
    double beta = 0.8;
    KdTerm kd;
  };
  static MethodInfo info() {
    return MethodInfo::of<CRD>("crd",
                               "Tian et al. 2020: contrastive objective between teacher and student embeddings with "
                               "negatives from memory banks over the training set")
        .cite(
            "Tian et al. 2020 (ICLR), Sec. 3 Eq. 10-18; reference RepDistiller crd/criterion.py, crd/memory.py, "
            "dataset/cifar100.py @ b84f547")
        .teachers(1, 1)
        .string("student_tap", &Options::student_tap, {}, "student features to embed (RepDistiller: feat[-1], pooled)")
        .string("teacher_tap", &Options::teacher_tap, {}, "teacher features to embed")
        .integer("feat_dim", &Options::feat_dim, 1, 1 << 16, "embedding width (RepDistiller 128)")
        .integer("nce_k", &Options::nce_k, 1, 1 << 24, "negatives per sample (RepDistiller 16384)")
        .number("nce_t", &Options::nce_t, 1e-4, 100.0, "temperature of the scores (RepDistiller 0.07)")
        .number("nce_m", &Options::nce_m, 0.0, 1.0, "momentum of the memory-bank update (RepDistiller 0.5)")
        .string("negatives", &Options::negatives, {"exact", "relax", "uniform"},
                "exact: other classes (reference default); relax: positive from the same class; uniform: any sample")
        .number("beta", &Options::beta, 0.0, 1e6, "weight of the crd term (RepDistiller: 0.8)")
        .kd_term(&Options::kd);
  }
  explicit CRD(const Options& o) : o_(o) {}

  std::vector<std::string> student_taps() const override { return {"logits", o_.student_tap}; }
  std::vector<std::string> teacher_taps(int) const override { return {"logits", o_.teacher_tap}; }

  void prepare(const PrepareContext& ctx) override {
    const int64_t n_data = ctx.train_size;
    if (n_data < 2)
      throw ConfigError("", "CRD needs the training split's size (at least 2 samples) for its memory bank");
    if (ctx.train_labels.defined() && ctx.train_labels.numel() != n_data)
      throw std::logic_error("CRD: train_labels has " + std::to_string(ctx.train_labels.numel()) + " entries for " +
                             std::to_string(n_data) + " samples");
    auto flat = [](const std::vector<int64_t>& shape) {
      int64_t n = 1;
      for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
      return n;
    };
    head_ = crd::CRDHead(flat(ctx.student.at(o_.student_tap)), flat(ctx.teachers.at(0).at(o_.teacher_tap)), o_.feat_dim,
                         n_data, o_.nce_k, o_.nce_t, o_.nce_m);
    head_->to(ctx.device);
    // The sampler's stream from the generator the trainer seeded with the run's seed (after the bank's draws).
    const auto seed = static_cast<uint64_t>(torch::randint(0, int64_t(1) << 62, {1}, torch::kLong).item<int64_t>());
    sampler_.reset(ctx.train_labels, n_data, seed);
  }
  std::shared_ptr<torch::nn::Module> module() override { return head_.ptr(); }
  // The negatives are drawn on the host from the batch's indices and the bank's normalisers are read back
  // once (.item()): a captured CUDA graph would replay the first batch's draws, so CRD's group runs eagerly.
  bool graph_safe() const override { return false; }

  LossTerms compute(const MethodInput& in) override {
    auto contrast_idx = sampler_.draw(in.indices, o_.nce_k, o_.negatives);
    auto out =
        head_->forward(in.student.at(o_.student_tap), in.teachers.at(0)->at(o_.teacher_tap), in.indices, contrast_idx);
    return ce_own_kd(in, {{"crd", out.loss, o_.beta}}, o_.kd);
  }

 private:
  Options o_;
  crd::CRDHead head_{nullptr};
  crd::ContrastSampler sampler_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::CRD);
