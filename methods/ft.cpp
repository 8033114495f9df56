// ft: factor transfer (Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor Transfer",
// NeurIPS 2018, Sec. 3, Eq. 1-3). The reference is RepDistiller's distiller_zoo/FT.py (FactorTransfer),
// models/util.py (Paraphraser, Translator) and helper/pretrain.py (init), the code of RepDistiller's CIFAR-100
// table (HobbitLong/RepDistiller @ b84f547, --distill factor):
//   paraphraser (on the teacher's last feature map t, C_t channels, factor width C_f = int(C_t * rate), rate 0.5):
//     encoder 3x3 conv C_t->C_t, LReLU(0.1), 3x3 C_t->C_f, LReLU, 3x3 C_f->C_f, LReLU (biases, no BN);
//     decoder 3x3 transposed convs C_f->C_f, C_f->C_t, C_t->C_t, each followed by LReLU(0.1);
//   translator (on the student's last map, C_s channels): 3x3 conv C_s->C_s, BN, LReLU, C_s->C_f, BN, LReLU,
//     C_f->C_f, BN, LReLU;
//   stage "paraphraser" (init_epochs, RepDistiller 30): rec = mean((decoder(encoder(t)) - t)^2) (nn.MSELoss); only
//     the paraphraser trains (the student is frozen, in eval mode), at lr init_lr (RepDistiller: 0.01 when the
//     student is a ResNet or WRN, else the recipe's lr; 0 here = the recipe's);
//   stage "main" (the recipe's epochs): ce (1 - alpha) + kd (alpha, only when alpha > 0) + ft (beta, RepDistiller's
//     -b 200), ft = FactorTransfer(translator(s), encoder(t)) (losses::ft_loss): the larger factor map pooled,
//     factor(f) = L2-normalised mean_c f^p1 (p1 = 2) per sample, mean over B*H*W of |factor_s - factor_t|^p2
//     (p2 = 1). The paraphraser is frozen (run without gradients; RepDistiller keeps it out of the optimizer, in
//     eval mode); the translator and the student train.
// Paper vs reference (the default follows the reference):
//   1. (major) the code's factor() collapses the channels (mean of f^2, an attention-like spatial map) and then
//      L2-normalises; the paper normalises the whole factor tensor F / ||F||_2 and takes the p-norm (p = 1) of the
//      difference per sample. Option factor = "attention" (reference) | "paper";
//   2. the reduction is a mean over B*H*W (the paper: a per-sample norm, batch mean);
//   3. paraphraser and translator are 3+3 and 3 conv layers with LeakyReLU(0.1); the translator has BN, the
//      paraphraser none (use_bn=False); rate k = 0.5;
//   4. a spatial mismatch is handled by pooling the larger factor map;
//   5. the init-stage lr depends on the student's family in RepDistiller (0.01 for ResNet/WRN students); here it
//      is the option init_lr (default 0.01; configs/cifar100.json sets it per pair).
#include "base/errors.h"
#include "methods/common_terms.h"
#include "methods/feature_losses.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class FT final : public Method {
 public:
  struct Options {
    std::string student_tap = "block3";
    std::string teacher_tap = "block3";
    double rate = 0.5;
    double p1 = 2.0;
    double p2 = 1.0;
    std::string factor = "attention";
    int64_t init_epochs = 30;
    double init_lr = 0.01;
    double beta = 200.0;
    KdTerm kd;
  };
  static MethodInfo info() {
    return MethodInfo::of<FT>("ft",
                              "Kim et al. 2018: a paraphraser trained to reconstruct the teacher's features gives "
                              "factors; a translator on the student learns to match them")
        .cite(
            "Kim et al. 2018 (NeurIPS), Sec. 3 Eq. 1-3; reference RepDistiller distiller_zoo/FT.py, models/util.py, "
            "helper/pretrain.py @ b84f547")
        .teachers(1, 1)
        .string("student_tap", &Options::student_tap, {}, "student map the translator reads (RepDistiller: feat[-2])")
        .string("teacher_tap", &Options::teacher_tap, {}, "teacher map the paraphraser reads (feat[-2])")
        .number("rate", &Options::rate, 0.01, 4.0, "paraphrase rate k: factor channels = int(teacher channels * k)")
        .number("p1", &Options::p1, 0.5, 8.0, "exponent of the channel mean in factor() (reference 2)")
        .number("p2", &Options::p2, 0.5, 8.0, "the distance's exponent (1 = mean absolute difference)")
        .string("factor", &Options::factor, {"attention", "paper"},
                "attention: channel-mean factor maps (reference); paper: whole factor tensors normalised")
        .integer("init_epochs", &Options::init_epochs, 1, 10000, "epochs of the paraphraser stage (RepDistiller 30)")
        .number("init_lr", &Options::init_lr, 0.0, 10.0, "lr of the paraphraser stage; 0 = the recipe's")
        .number("beta", &Options::beta, 0.0, 1e6, "weight of the ft term (RepDistiller: 200)")
        .kd_term(&Options::kd);
  }
  explicit FT(const Options& o) : o_(o) {}

  std::vector<std::string> student_taps() const override { return {"logits", o_.student_tap}; }
  std::vector<std::string> teacher_taps(int) const override { return {"logits", o_.teacher_tap}; }

  void prepare(const PrepareContext& ctx) override {
    const auto& s = ctx.student.at(o_.student_tap);
    const auto& t = ctx.teachers.at(0).at(o_.teacher_tap);
    if (s.size() != 4 || t.size() != 4)
      throw ConfigError("student_tap",
                        "FT needs 4-D feature maps ('" + o_.student_tap + "' / '" + o_.teacher_tap + "')");
    const int64_t ct = t[1], cs = s[1], cf = static_cast<int64_t>(static_cast<double>(t[1]) * o_.rate);
    if (cf < 1) throw ConfigError("rate", "gives no factor channels for the teacher tap's " + std::to_string(ct));
    auto conv = [](int64_t in, int64_t out) {
      return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(1).padding(1));
    };
    auto deconv = [](int64_t in, int64_t out) {
      return torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(in, out, 3).stride(1).padding(1));
    };
    auto lrelu = [] { return torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.1)); };
    auto none = [] { return torch::nn::Identity(); };  // RepDistiller's empty nn.Sequential() where use_bn=False
    auto bn = [](int64_t c) { return torch::nn::BatchNorm2d(c); };
    module_ = std::make_shared<torch::nn::Module>("FT");
    // Module names and indices as RepDistiller's Paraphraser / Translator state dicts.
    auto para = std::make_shared<torch::nn::Module>("Paraphraser");
    encoder_ = para->register_module("encoder", torch::nn::Sequential(conv(ct, ct), none(), lrelu(), conv(ct, cf),
                                                                      none(), lrelu(), conv(cf, cf), none(), lrelu()));
    decoder_ =
        para->register_module("decoder", torch::nn::Sequential(deconv(cf, cf), none(), lrelu(), deconv(cf, ct), none(),
                                                               lrelu(), deconv(ct, ct), none(), lrelu()));
    auto trans = std::make_shared<torch::nn::Module>("Translator");
    translator_ =
        trans->register_module("encoder", torch::nn::Sequential(conv(cs, cs), bn(cs), lrelu(), conv(cs, cf), bn(cf),
                                                                lrelu(), conv(cf, cf), bn(cf), lrelu()));
    module_->register_module("paraphraser", para);
    module_->register_module("translator", trans);
    module_->to(ctx.device);
  }
  std::shared_ptr<torch::nn::Module> module() override { return module_; }

  std::vector<StageSpec> stages() const override {
    StageSpec para{"paraphraser", static_cast<int>(o_.init_epochs), "", /*train_student=*/false, {"paraphraser"}};
    para.lr = o_.init_lr;
    StageSpec main{"main", 0, "", true, {"translator"}};
    main.eval_modules = {"paraphraser"};  // RepDistiller's loops.py: module_list[2].eval() (no batch norm in it)
    return {para, main};
  }

  LossTerms compute(const MethodInput& in) override {
    const auto& t = in.teachers.at(0)->at(o_.teacher_tap);
    if (in.stage == 0) {
      auto rec = decoder_->forward(encoder_->forward(t));
      return {{"rec", torch::mse_loss(rec, t), 1.0}};
    }
    torch::Tensor factor_t;
    {
      torch::NoGradGuard frozen;  // the paraphraser does not train in this stage
      factor_t = encoder_->forward(t);
    }
    auto factor_s = translator_->forward(in.student.at(o_.student_tap));
    return ce_own_kd(in, {{"ft", losses::ft_loss(factor_s, factor_t, o_.p1, o_.p2, o_.factor == "paper"), o_.beta}},
                     o_.kd);
  }

 private:
  Options o_;
  std::shared_ptr<torch::nn::Module> module_;
  torch::nn::Sequential encoder_{nullptr}, decoder_{nullptr}, translator_{nullptr};
};

}  // namespace kd
KD_REGISTER_METHOD(kd::FT);
