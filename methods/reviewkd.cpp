// reviewkd: knowledge review (Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021,
// Sec. 3.2-3.4). The reference is the authors' dvlab-research/ReviewKD @ cede6ea, CIFAR-100/model/reviewkd.py
// (ABF, ReviewKD, hcl) and CIFAR-100/train.py, the code of the paper's CIFAR-100 numbers:
//   student levels f_1..f_n (shallow to deep; RepDistiller-style backbones give the three stage outputs and the
//   pooled features as a 1x1 map), teacher levels t_1..t_n (the teacher's PRE-ReLU stage outputs and its pooled
//   features). One attention-based fusion (ABF) per level, in_i = C(f_i), out_i = C(t_i), mid = min(512, in_n):
//     conv1 = 1x1 conv (no bias) + BN to mid; conv2 = 3x3 conv (pad 1, no bias) + BN to out_i; kaiming_uniform(a=1)
//     on both convs; every level but the deepest fuses with the residual from the level below it:
//     y = nearest-upsample(residual to f_i's size), z = sigmoid(1x1 conv(cat[conv1(f_i), y])) (2 channels, bias),
//     x = conv1(f_i) * z_0 + y * z_1; then x is nearest-resized to t_i's size if needed; output_i = conv2(x) and x
//     is the residual passed to the next shallower level (the deepest level starts the chain without fusion);
//   hcl = sum_i hcl_level(output_i, t_i)  (losses::hcl: MSE plus MSEs of 4x4, 2x2, 1x1 average pools smaller
//     than the map, weighted 1/2, 1/4, 1/8 and normalised by the weights' sum);
//   terms: ce (1 - alpha), reviewkd (beta * min(1, epoch / warmup_epochs), epoch 0-based: train.py's
//     kd_loss_weight * min(1, epoch / kd_warm_up), warm-up 20 epochs), kd (alpha, only when alpha > 0; the
//     published runs use none). Published kd_loss_weight (script/reviewKD.sh): 5 for wrn-40-2 -> wrn-16-2 /
//     wrn-40-1 / ShuffleV1 and resnet32x4 -> resnet8x4 / ShuffleV1, 8 for resnet32x4 -> ShuffleV2, 0.6 for
//     resnet56 -> resnet20, 1 for resnet110 -> resnet32; train.py's default is 1. Single stage; the ABFs are the
//     method's parameters (trained with the student, weight decay included, BN in train mode).
// The channel counts and sizes come from the taps, which reproduces build_review_kd's hard-coded tables for
// the CIFAR pairs (e.g. resnet32x4 -> ShuffleV1: in 240/480/960/960, out 64/128/256/256, shapes 16/8/4/1,
// out_shapes 32/16/8/1).
// Paper vs reference (the default follows the reference):
//   1. the per-level weights of the pyramid halve only over the levels used (l < h) and are normalised by
//      their sum; 2. the linear warm-up from 0 at epoch 0; 3. the student side is post-ReLU, the teacher side
//      pre-ReLU (preact=True); 4. nearest-neighbour resizing (PyTorch's legacy 'nearest');
//   5. the reference runs the TEACHER in train mode (batch statistics; its BN running averages drift during
//      distillation); kdbench's teachers are shared by every run and always run in eval mode (running
//      statistics), so this one difference from the reference remains;
//   6. the student's stem feature f_0 is not used.
#include <algorithm>

#include "base/errors.h"
#include "methods/common_terms.h"
#include "methods/feature_losses.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

namespace {

namespace F = torch::nn::functional;

// A map with its spatial size; a 2-D [B, C] tap (pooled features) is the 1x1 map [B, C, 1, 1].
torch::Tensor as_map(const torch::Tensor& t) {
  return t.dim() == 2 ? t.view({t.size(0), t.size(1), 1, 1}) : t;
}
std::vector<int64_t> as_map_shape(std::vector<int64_t> s) {
  if (s.size() == 2) s.insert(s.end(), {1, 1});
  return s;
}

torch::Tensor nearest(const torch::Tensor& x, int64_t h, int64_t w) {
  return F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kNearest));
}

// ReviewKD's ABF(in, mid, out, fuse); names as its state dict: conv1.{0,1}, conv2.{0,1}, att_conv.0.
struct ABFImpl : torch::nn::Module {
  ABFImpl(int64_t in, int64_t mid, int64_t out, bool fuse) {
    conv1 = register_module("conv1",
                            torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, mid, 1).bias(false)),
                                                  torch::nn::BatchNorm2d(mid)));
    conv2 = register_module(
        "conv2", torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(mid, out, 3).padding(1).bias(false)),
                                       torch::nn::BatchNorm2d(out)));
    if (fuse)
      att_conv = register_module(
          "att_conv",
          torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(2 * mid, 2, 1)), torch::nn::Sigmoid()));
    torch::NoGradGuard ng;
    for (auto* seq : {&conv1, &conv2})
      torch::nn::init::kaiming_uniform_((*seq)[0]->as<torch::nn::Conv2dImpl>()->weight, 1.0);
  }
  // Returns (output, residual). `y` (the residual from the deeper level) only when fusing.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& f, const torch::Tensor& y, int64_t out_h,
                                                  int64_t out_w) {
    auto x = conv1->forward(f);
    if (att_conv) {
      auto yu = nearest(y, x.size(2), x.size(3));
      auto z = att_conv->forward(torch::cat({x, yu}, 1));
      x = x * z.narrow(1, 0, 1) + yu * z.narrow(1, 1, 1);
    }
    if (x.size(2) != out_h || x.size(3) != out_w) x = nearest(x, out_h, out_w);
    return {conv2->forward(x), x};
  }
  torch::nn::Sequential conv1{nullptr}, conv2{nullptr}, att_conv{nullptr};
};
TORCH_MODULE(ABF);

}  // namespace

class ReviewKD final : public Method {
 public:
  struct Options {
    PairedTaps taps{{"block1", "block2", "block3", "pool"},
                    {"preact_block1", "preact_block2", "preact_block3", "pool"}};
    double beta = 1.0;
    double warmup_epochs = 20.0;
    int64_t mid_channels = 0;
    KdTerm kd;
  };
  static MethodInfo info() {
    return MethodInfo::of<ReviewKD>("reviewkd",
                                    "Chen et al. 2021: student levels fused deep-to-shallow by attention (ABF) and "
                                    "matched to the teacher's with a hierarchical context loss")
        .cite(
            "Chen et al. 2021 (CVPR), Sec. 3.2-3.4; reference dvlab-research/ReviewKD CIFAR-100/model/reviewkd.py, "
            "train.py @ cede6ea")
        .teachers(1, 1)
        .paired_taps(&Options::taps, "student levels, shallow to deep (2-D taps are 1x1 maps)",
                     "teacher levels, paired in order (pre-ReLU stage outputs)")
        .number("beta", &Options::beta, 0.0, 1e6, "weight of the review term (kd_loss_weight; published 0.6 to 8)")
        .number("warmup_epochs", &Options::warmup_epochs, 0.0, 10000.0,
                "the weight rises linearly from 0 at epoch 0 to beta at this epoch (0 = no warm-up)")
        .integer("mid_channels", &Options::mid_channels, 0, 1 << 16,
                 "ABF width; 0 = min(512, channels of the deepest student level) (reference)")
        .kd_term(&Options::kd);
  }
  explicit ReviewKD(const Options& o) : o_(o) {}

  std::vector<std::string> student_taps() const override { return with_logits(o_.taps.student); }
  std::vector<std::string> teacher_taps(int) const override { return with_logits(o_.taps.teacher); }

  void prepare(const PrepareContext& ctx) override {
    const size_t n = o_.taps.student.size();
    std::vector<std::vector<int64_t>> s(n), t(n);
    for (size_t i = 0; i < n; ++i) {
      s[i] = as_map_shape(ctx.student.at(o_.taps.student[i]));
      t[i] = as_map_shape(ctx.teachers.at(0).at(o_.taps.teacher[i]));
      if (s[i].size() != 4 || t[i].size() != 4)
        throw ConfigError("student_taps", "ReviewKD needs feature maps or pooled vectors ('" + o_.taps.student[i] +
                                              "' / '" + o_.taps.teacher[i] + "')");
    }
    const int64_t mid = o_.mid_channels > 0 ? o_.mid_channels : std::min<int64_t>(512, s[n - 1][1]);
    module_ = std::make_shared<torch::nn::Module>("ReviewKD");
    // Built shallow to deep (the reference's construction order, so the same seed gives the same weights), held
    // deepest first as the reference's reversed list (state dict keys abfs.0 = the deepest level).
    std::vector<ABF> built;
    for (size_t i = 0; i < n; ++i) built.push_back(ABF(s[i][1], mid, t[i][1], i + 1 < n));
    abfs_ = module_->register_module("abfs", torch::nn::ModuleList());
    for (size_t i = n; i-- > 0;) abfs_->push_back(built[i]);
    out_hw_.clear();
    for (size_t i = 0; i < n; ++i) out_hw_.emplace_back(t[i][2], t[i][3]);
    module_->to(ctx.device);
  }
  std::shared_ptr<torch::nn::Module> module() override { return module_; }

  // The fused outputs, shallow to deep, aligned with the teacher levels.
  std::vector<torch::Tensor> review(const TapMap& student) {
    const size_t n = o_.taps.student.size();
    std::vector<torch::Tensor> results(n);
    torch::Tensor residual;
    for (size_t k = 0; k < n; ++k) {  // k = 0 is the deepest level
      const size_t level = n - 1 - k;
      auto* abf = abfs_[k]->as<ABFImpl>();
      auto [out, res] = abf->forward(as_map(student.at(o_.taps.student[level])), residual, out_hw_[level].first,
                                     out_hw_[level].second);
      results[level] = out;
      residual = res;
    }
    return results;
  }

  LossTerms compute(const MethodInput& in) override {
    std::vector<torch::Tensor> teacher;
    for (const auto& tap : o_.taps.teacher) teacher.push_back(as_map(in.teachers.at(0)->at(tap)));
    const double ramp = o_.warmup_epochs > 0 ? std::min(1.0, static_cast<double>(in.epoch) / o_.warmup_epochs) : 1.0;
    return ce_own_kd(in, {{"reviewkd", losses::hcl(review(in.student), teacher), o_.beta * ramp}}, o_.kd);
  }

 private:
  Options o_;
  std::shared_ptr<torch::nn::Module> module_;
  torch::nn::ModuleList abfs_{nullptr};
  std::vector<std::pair<int64_t, int64_t>> out_hw_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::ReviewKD);
