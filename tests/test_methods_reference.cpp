// Every loss of methods part 1 against values computed by its REFERENCE implementation: the peers' own loss
// code (RepDistiller, mdistiller, the DIST and logit-standardisation authors' code), run in float64 on fixed
// inputs. The values live in tests/data/reference/<method>.json, each with its provenance (repository,
// commit, file, function, arguments, torch version) in its "provenance" key; this test prints it. Inputs
// are decimals with 4 digits, so strtod gives exactly the tensors the peer code saw; outputs are Python
// float reprs. Each loss value and the gradient with respect to the student's input are compared.
// Values under "independent_checks" are NOT peer output (they say so): arithmetic on the peer outputs or
// the paper's form, used only for the `form: paper` options.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "methods/logit_losses.h"
#include "methods/losses.h"
#include "methods/method.h"
#include "methods/relation_losses.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using kd::LossTerms;
using kd::TapMap;
namespace L = kd::losses;

constexpr double kRel = 1e-10;  // float64 on both sides: agreement to ~1e-13 is typical

json load(const std::string& name) {
  const std::string path = kd::test::source_dir() + "/tests/data/reference/" + name + ".json";
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  json j = json::parse(f);
  const auto& p = j.at("provenance");
  std::cout << "[reference] " << name << ": " << p.value("repo", "") << " @ " << p.value("commit", "") << ", "
            << p.value("file", "") << ", " << p.value("function", "") << " (" << p.value("dtype", "") << ", torch "
            << p.value("torch", "") << ")\n";
  return j;
}

// A nested JSON list of numbers as a float64 tensor of its shape.
torch::Tensor tensor(const json& v) {
  std::vector<int64_t> shape;
  const json* cur = &v;
  while (cur->is_array()) {
    shape.push_back(static_cast<int64_t>(cur->size()));
    if (cur->empty()) break;
    cur = &(*cur)[0];
  }
  std::vector<double> flat;
  std::function<void(const json&)> walk = [&](const json& x) {
    if (x.is_array())
      for (const auto& e : x) walk(e);
    else
      flat.push_back(x.get<double>());
  };
  walk(v);
  return torch::tensor(flat, torch::kDouble).reshape(shape);
}

torch::Tensor labels(const json& v) {
  std::vector<int64_t> l;
  for (const auto& e : v) l.push_back(e.get<int64_t>());
  return torch::tensor(l, torch::kLong);
}

// The primary case (top-level keys) and every entry of more_cases, each an object with inputs/outputs/grad.
std::vector<json> cases(const json& j) {
  json primary = {{"name", j.at("primary_case")}};
  for (const char* k : {"inputs", "outputs", "grad", "hyperparameters", "independent_checks"})
    if (j.contains(k)) primary[k] = j.at(k);
  std::vector<json> out{primary};
  for (const auto& c : j.value("more_cases", json::array())) out.push_back(c);
  return out;
}

void expect_close(double got, double want, const std::string& what) {
  EXPECT_NEAR(got, want, kRel * std::max(1.0, std::abs(want))) << what;
}

void expect_tensor_close(const torch::Tensor& got, const json& want_json, const std::string& what) {
  auto want = tensor(want_json);
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double scale = std::max(1.0, want.abs().max().item<double>());
  EXPECT_LE((got.to(torch::kDouble) - want).abs().max().item<double>(), kRel * scale) << what;
}

// d loss / d x for a fresh leaf copy of x.
template <class Fn>
torch::Tensor grad_of(const torch::Tensor& x, Fn&& loss_of) {
  auto leaf = x.clone().requires_grad_(true);
  loss_of(leaf).backward();
  return leaf.grad();
}

// Runs a registered method's compute() on the given taps (one teacher).
struct MethodRun {
  std::unique_ptr<kd::Method> method;
  LossTerms terms;
};
MethodRun run_method(const std::string& name, const json& params, const TapMap& student, const TapMap& teacher,
                     const torch::Tensor& y, int64_t epoch = 0) {
  auto& reg = kd::MethodRegistry::instance();
  MethodRun r;
  r.method = reg.create(name, reg.resolve(name, params, "test"));
  kd::PrepareContext ctx;
  for (const auto& [k, v] : student) ctx.student[k] = v.sizes().vec();
  kd::TapShapes ts;
  for (const auto& [k, v] : teacher) ts[k] = v.sizes().vec();
  ctx.teachers = {ts};
  r.method->prepare(ctx);
  std::vector<const TapMap*> teachers{&teacher};
  torch::Tensor idx = torch::arange(y.size(0));
  kd::MethodInput in{student, teachers, y, idx, 0, epoch, epoch, 0, 1};
  r.terms = r.method->compute(in);
  return r;
}
const kd::LossTerm& term(const LossTerms& terms, const std::string& name) {
  for (const auto& t : terms)
    if (t.name == name) return t;
  throw std::runtime_error("no term " + name);
}
double weighted(const kd::LossTerm& t) {
  return t.weight * t.value.item<double>();
}

// ---- logit_kd (RepDistiller DistillKL; mdistiller kd_loss gives the same) ------------------------------
TEST(Reference, LogitKdEqualsRepDistillerDistillKL) {
  json j = load("logit_kd");
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    const double T = c.at("hyperparameters").at("T");
    auto s = tensor(c["inputs"]["student_logits"]), t = tensor(c["inputs"]["teacher_logits"]);
    expect_close(L::soft_kl(s, t, T).item<double>(), c["outputs"]["loss"], name);
    expect_close(L::soft_kl(s, t, T).item<double>(), c["outputs"]["mdistiller_kd_loss_same_inputs"], name);
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::soft_kl(x, t, T); }),
                        c["grad"]["student_logits"], name + " grad");
    // Through the method: the kd term, weight alpha (RepDistiller -a 0.9 -r 0.1: the defaults).
    auto y = torch::zeros({s.size(0)}, torch::kLong);
    auto r = run_method("logit_kd", {{"temperature", T}}, {{"logits", s}}, {{"logits", t}}, y);
    expect_close(term(r.terms, "kd").value.item<double>(), c["outputs"]["loss"], name);
    EXPECT_DOUBLE_EQ(term(r.terms, "kd").weight, 0.9);
    EXPECT_DOUBLE_EQ(term(r.terms, "ce").weight, 1.0 - 0.9);
  }
}

// ---- dkd (mdistiller dkd_loss, DKD.forward_train) ---------------------------------------------------------
TEST(Reference, DkdEqualsMdistillerDkdLoss) {
  json j = load("dkd");
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    const auto& h = c.at("hyperparameters");
    const double T = h["temperature"], alpha = h["alpha"], beta = h["beta"];
    auto s = tensor(c["inputs"]["student_logits"]), t = tensor(c["inputs"]["teacher_logits"]);
    auto y = labels(c["inputs"]["target"]);
    auto d = L::dkd(s, t, y, T);
    expect_close(d.tckd.item<double>(), c["outputs"]["tckd"], name + " tckd");
    expect_close(d.nckd.item<double>(), c["outputs"]["nckd"], name + " nckd");
    expect_close((alpha * d.tckd + beta * d.nckd).item<double>(), c["outputs"]["dkd"], name + " dkd");
    expect_tensor_close(grad_of(s,
                                [&](const torch::Tensor& x) {
                                  auto e = L::dkd(x, t, y, T);
                                  return alpha * e.tckd + beta * e.nckd;
                                }),
                        c["grad"]["student_logits"], name + " grad");
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::dkd(x, t, y, T).tckd; }),
                        c["grad"]["student_logits_tckd"], name + " grad tckd");
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::dkd(x, t, y, T).nckd; }),
                        c["grad"]["student_logits_nckd"], name + " grad nckd");
  }
}

TEST(Reference, DkdWarmUpFollowsMdistillersOneBasedEpoch) {
  json j = load("dkd");
  const auto& w = j.at("warmup");
  ASSERT_EQ(w.at("case"), j.at("primary_case"));
  const auto& cfg = w.at("cfg");
  auto s = tensor(j["inputs"]["student_logits"]), t = tensor(j["inputs"]["teacher_logits"]);
  auto y = labels(j["inputs"]["target"]);
  json params = {
      {"alpha", cfg["ALPHA"]}, {"beta", cfg["BETA"]}, {"temperature", cfg["T"]}, {"warmup_epochs", cfg["WARMUP"]}};
  auto& reg = kd::MethodRegistry::instance();
  EXPECT_EQ(reg.resolve("dkd", json::object(), "t").all(), reg.resolve("dkd", params, "t").all())
      << "the defaults are mdistiller's CIFAR-100 configuration";
  ASSERT_EQ(cfg["CE_WEIGHT"], 1.0);
  for (const auto& v : w.at("values")) {
    const int64_t epoch = v.at("epoch");  // mdistiller's 1-based epoch; MethodInput.epoch is 0-based
    auto r = run_method("dkd", params, {{"logits", s}}, {{"logits", t}}, y, epoch - 1);
    const std::string what = "epoch " + std::to_string(epoch);
    expect_close(weighted(term(r.terms, "ce")), v["loss_ce"], what + " loss_ce");
    expect_close(weighted(term(r.terms, "tckd")) + weighted(term(r.terms, "nckd")), v["loss_kd"], what + " loss_kd");
    double total = 0;
    for (const auto& x : r.terms) total += weighted(x);
    expect_close(total, v["trainer_total"], what + " total");
  }
}

// ---- dist (DIST_KD's classification submodule, dist_kd.py DIST) ------------------------------------------------
TEST(Reference, DistEqualsDistKdDIST) {
  json j = load("dist");
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    const auto& h = c.at("hyperparameters");
    const double tau = h["tau"], beta = h["beta"], gamma = h["gamma"];
    auto s = tensor(c["inputs"]["student_logits"]), t = tensor(c["inputs"]["teacher_logits"]);
    auto d = L::dist(s, t, tau);
    expect_close(d.inter.item<double>(), c["outputs"]["inter_loss_tau2"], name + " inter");
    expect_close(d.intra.item<double>(), c["outputs"]["intra_loss_tau2"], name + " intra");
    expect_close((d.inter / (tau * tau)).item<double>(), c["outputs"]["inter_class_relation"], name);
    expect_close((d.intra / (tau * tau)).item<double>(), c["outputs"]["intra_class_relation"], name);
    expect_close((beta * d.inter + gamma * d.intra).item<double>(), c["outputs"]["loss"], name + " loss");
    expect_tensor_close(grad_of(s,
                                [&](const torch::Tensor& x) {
                                  auto e = L::dist(x, t, tau);
                                  return beta * e.inter + gamma * e.intra;
                                }),
                        c["grad"]["student_logits"], name + " grad");
    // The method: ce (1) + inter (beta) + intra (gamma); its defaults are the CIFAR strategy's effective
    // weights, 2 = kd_loss_weight 2 x DIST(beta=1, gamma=1).
    auto y = torch::zeros({s.size(0)}, torch::kLong);
    auto r = run_method("dist", {{"temperature", tau}}, {{"logits", s}}, {{"logits", t}}, y);
    expect_close(weighted(term(r.terms, "inter")) + weighted(term(r.terms, "intra")),
                 2.0 * (c["outputs"]["inter_loss_tau2"].get<double>() + c["outputs"]["intra_loss_tau2"].get<double>()),
                 name + " method");
    EXPECT_DOUBLE_EQ(term(r.terms, "inter").weight, 2.0);
    EXPECT_DOUBLE_EQ(term(r.terms, "intra").weight, 2.0);
    EXPECT_DOUBLE_EQ(term(r.terms, "ce").weight, 1.0);
  }
}

// ---- logit standardisation (sunshangquan/logit-standardization-KD: normalize, kd_loss, dkd_loss) ----------
TEST(Reference, LogitStandardizationEqualsTheAuthorsCode) {
  json j = load("logit_standardization");
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    const auto& h = c.at("hyperparameters");
    const double T = h["base_temperature"], w = h["kd_weight"];
    const double dkd_alpha = h["DKD"]["ALPHA"], dkd_beta = h["DKD"]["BETA"];
    auto s = tensor(c["inputs"]["student_logits"]), t = tensor(c["inputs"]["teacher_logits"]);
    auto y = labels(c["inputs"]["target"]);
    const auto ref = L::StandardizationForm::Reference;
    expect_tensor_close(L::standardize_logits(s, ref), c["outputs"]["normalize_student"], name + " normalize");
    expect_tensor_close(L::standardize_logits(t, ref), c["outputs"]["normalize_teacher"], name + " normalize");
    auto kd_ls = [&](const torch::Tensor& x, L::StandardizationForm f) {
      return L::soft_kl(L::standardize_logits(x, f), L::standardize_logits(t, f), T);
    };
    auto dkd_ls = [&](const torch::Tensor& x, L::StandardizationForm f) {
      auto d = L::dkd(L::standardize_logits(x, f), L::standardize_logits(t, f), y, T);
      return dkd_alpha * d.tckd + dkd_beta * d.nckd;
    };
    expect_close(kd_ls(s, ref).item<double>(), c["outputs"]["kd_ls"], name + " kd_ls");
    expect_close(L::soft_kl(s, t, T).item<double>(), c["outputs"]["kd_no_ls"], name + " kd without LS");
    expect_close(dkd_ls(s, ref).item<double>(), c["outputs"]["dkd_ls"], name + " dkd_ls");
    auto d = L::dkd(L::standardize_logits(s, ref), L::standardize_logits(t, ref), y, T);
    expect_close(d.tckd.item<double>(), c["outputs"]["dkd_ls_tckd"], name + " tckd");
    expect_close(d.nckd.item<double>(), c["outputs"]["dkd_ls_nckd"], name + " nckd");
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return kd_ls(x, ref); }),
                        c["grad"]["student_logits_kd_ls"], name + " grad kd_ls");
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return dkd_ls(x, ref); }),
                        c["grad"]["student_logits_dkd_ls"], name + " grad dkd_ls");
    // Paper form (population std, no eps): the JSON's labelled independent check (peer KL on such logits).
    const auto& ind = c.at("independent_checks");
    expect_close(kd_ls(s, L::StandardizationForm::Paper).item<double>(), ind["kd_ls_population_std"], name);
    expect_close(dkd_ls(s, L::StandardizationForm::Paper).item<double>(), ind["dkd_ls_population_std"], name);

    // The methods with the options as the authors train them (tools/train.py --logit-stand --base-temp T
    // --kd-weight w): KD with CE weight 0.1 and KD weight w; DKD with alpha = w, beta = w * BETA, CE 1.
    json kd_params = {{"logit_standardization", true}, {"temperature", T}, {"alpha", w}, {"ce_weight", 0.1}};
    auto r = run_method("logit_kd", kd_params, {{"logits", s}}, {{"logits", t}}, y);
    expect_close(weighted(term(r.terms, "ce")), c["outputs"]["KD_forward_train"]["loss_ce"], name + " KD ce");
    expect_close(weighted(term(r.terms, "kd")), c["outputs"]["KD_forward_train"]["loss_kd"], name + " KD kd");
    json dkd_params = {{"logit_standardization", true}, {"temperature", T}, {"alpha", dkd_alpha}, {"beta", dkd_beta}};
    for (const auto& [key, epoch] : std::vector<std::pair<std::string, int64_t>>{{"DKD_forward_train_epoch1", 1},
                                                                                 {"DKD_forward_train_epoch240", 240}}) {
      auto rd = run_method("dkd", dkd_params, {{"logits", s}}, {{"logits", t}}, y, epoch - 1);
      expect_close(weighted(term(rd.terms, "ce")), c["outputs"][key]["loss_ce"], name + " " + key);
      expect_close(weighted(term(rd.terms, "tckd")) + weighted(term(rd.terms, "nckd")), c["outputs"][key]["loss_kd"],
                   name + " " + key);
    }
  }
}

TEST(Reference, LogitKdOptionsAddedLaterKeepEarlierRunIds) {
  // The resolved parameters (what a run id hashes) of a logit_kd run without the new options are what they
  // were before the options existed; setting one to its default is the same run.
  auto& reg = kd::MethodRegistry::instance();
  const json before = {{"temperature", 4.0}, {"alpha", 0.9}};
  EXPECT_EQ(reg.resolve("logit_kd", json::object(), "t").all(), before);
  EXPECT_EQ(reg.resolve("logit_kd", {{"logit_standardization", false}, {"ce_weight", -1}}, "t").all(), before);
  auto ls = reg.resolve("logit_kd", {{"logit_standardization", true}}, "t").all();
  EXPECT_EQ(ls.at("logit_standardization"), true);
  try {
    reg.resolve("logit_kd", {{"alpha", 9}}, "methods[1].params");
    FAIL() << "alpha 9 without ce_weight gives CE a negative weight";
  } catch (const kd::ConfigError& e) {
    EXPECT_EQ(e.key_path(), "methods[1].params.alpha");
  }
}

// ---- sp (RepDistiller Similarity) ----------------------------------------------------------------------------
TEST(Reference, SpEqualsRepDistillerSimilarity) {
  json j = load("sp");
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    auto s = tensor(c["inputs"]["student_feat"]), t = tensor(c["inputs"]["teacher_feat"]);
    expect_close(L::similarity_preserving(s, t).item<double>(), c["outputs"]["loss"], name);
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::similarity_preserving(x, t); }),
                        c["grad"]["student_feat"], name + " grad");
  }
  // Two tap pairs through the method: the sum of the per-pair losses (RepDistiller's forward returns the list).
  auto cs = cases(j);
  TapMap st{{"logits", torch::zeros({4, 3}, torch::kDouble)},
            {"a", tensor(cs[0]["inputs"]["student_feat"])},
            {"b", tensor(cs[1]["inputs"]["student_feat"])}};
  TapMap tt{{"logits", torch::zeros({4, 3}, torch::kDouble)},
            {"x", tensor(cs[0]["inputs"]["teacher_feat"])},
            {"y", tensor(cs[1]["inputs"]["teacher_feat"])}};
  auto r = run_method("sp", {{"student_taps", {"a", "b"}}, {"teacher_taps", {"x", "y"}}}, st, tt,
                      torch::zeros({4}, torch::kLong));
  expect_close(term(r.terms, "sp").value.item<double>(), j["multi_layer"]["sum"], "sp two pairs");
  EXPECT_DOUBLE_EQ(term(r.terms, "sp").weight, 3000.0);
}

// ---- rkd (RepDistiller RKDLoss(25, 50)) ------------------------------------------------------------------------
TEST(Reference, RkdEqualsRepDistillerRKDLoss) {
  json j = load("rkd");
  const auto ref = L::Form::Reference;
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    const double wd = c["hyperparameters"]["w_d"], wa = c["hyperparameters"]["w_a"];
    auto s = tensor(c["inputs"]["student_emb"]), t = tensor(c["inputs"]["teacher_emb"]);
    auto r = L::rkd(s, t, ref);
    expect_close(r.distance.item<double>(), c["outputs"]["loss_distance_unweighted"], name + " distance");
    expect_close(r.angle.item<double>(), c["outputs"]["loss_angle_unweighted"], name + " angle");
    expect_close((wd * r.distance + wa * r.angle).item<double>(), c["outputs"]["loss"], name + " loss");
    auto total = [&](const torch::Tensor& x) {
      auto e = L::rkd(x, t, ref);
      return wd * e.distance + wa * e.angle;
    };
    expect_tensor_close(grad_of(s, total), c["grad"]["student_emb"], name + " grad");
    // RKDLoss(w_d=1, w_a=0) and RKDLoss(w_d=0, w_a=1): each term's own gradient.
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::rkd(x, t, ref).distance; }),
                        c["grad"]["student_emb_distance_only"], name + " grad distance");
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::rkd(x, t, ref).angle; }),
                        c["grad"]["student_emb_angle_only"], name + " grad angle");
    // form: paper averages over distinct pairs and triplets: the labelled arithmetic on the peer's outputs.
    auto p = L::rkd(s, t, L::Form::Paper);
    const auto& ind = c.at("independent_checks");
    expect_close(p.distance.item<double>(), ind["loss_d_if_mean_over_offdiagonal_B(B-1)"], name + " paper distance");
    expect_close(p.angle.item<double>(), ind["loss_a_if_mean_over_distinct_triplets_B(B-1)(B-2)"], name + " paper");
    // The method's defaults are RepDistiller's weights.
    const auto B = s.size(0);
    auto m = run_method("rkd", {{"student_tap", "e"}, {"teacher_tap", "e"}},
                        {{"logits", torch::zeros({B, 3}, torch::kDouble)}, {"e", s}},
                        {{"logits", torch::zeros({B, 3}, torch::kDouble)}, {"e", t}}, torch::zeros({B}, torch::kLong));
    expect_close(weighted(term(m.terms, "distance")) + weighted(term(m.terms, "angle")), c["outputs"]["loss"], name);
  }
}

// ---- pkt (RepDistiller PKT.cosine_similarity_loss) ----------------------------------------------------------------
TEST(Reference, PktEqualsRepDistillerPKT) {
  json j = load("pkt");
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    auto s = tensor(c["inputs"]["student_emb"]), t = tensor(c["inputs"]["teacher_emb"]);
    expect_close(L::pkt(s, t, L::Form::Reference).item<double>(), c["outputs"]["loss"], name);
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::pkt(x, t, L::Form::Reference); }),
                        c["grad"]["student_emb"], name + " grad");
    expect_close(L::pkt(s, t, L::Form::Paper).item<double>(), c["independent_checks"]["paper_form_loss"],
                 name + " paper");
  }
}

// ---- nst (RepDistiller NSTLoss) ------------------------------------------------------------------------------
TEST(Reference, NstEqualsRepDistillerNSTLoss) {
  json j = load("nst");
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    auto s = tensor(c["inputs"]["student_feat"]), t = tensor(c["inputs"]["teacher_feat"]);
    expect_close(L::nst(s, t).item<double>(), c["outputs"]["loss"], name);
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::nst(x, t); }), c["grad"]["student_feat"],
                        name + " grad");
  }
  // The two different-size pairs (one batch of 2) through the method: the sum of RepDistiller's per-pair values.
  auto cs = cases(j);
  TapMap st{{"logits", torch::zeros({2, 3}, torch::kDouble)},
            {"block1", tensor(cs[1]["inputs"]["student_feat"])},
            {"block2", tensor(cs[2]["inputs"]["student_feat"])}};
  TapMap tt{{"logits", torch::zeros({2, 3}, torch::kDouble)},
            {"block1", tensor(cs[1]["inputs"]["teacher_feat"])},
            {"block2", tensor(cs[2]["inputs"]["teacher_feat"])}};
  auto r = run_method("nst", {{"student_taps", {"block1", "block2"}}, {"teacher_taps", {"block1", "block2"}}}, st, tt,
                      torch::zeros({2}, torch::kLong));
  expect_close(term(r.terms, "nst").value.item<double>(),
               j["multi_layer"]["per_pair"][1].get<double>() + j["multi_layer"]["per_pair"][2].get<double>(), "nst");
  EXPECT_DOUBLE_EQ(term(r.terms, "nst").weight, 50.0);
}

// ---- cc (RepDistiller Correlation) ---------------------------------------------------------------------------
TEST(Reference, CcEqualsRepDistillerCorrelation) {
  json j = load("cc");
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    auto s = tensor(c["inputs"]["student_emb"]), t = tensor(c["inputs"]["teacher_emb"]);
    expect_close(L::correlation_congruence(s, t).item<double>(), c["outputs"]["loss"], name);
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::correlation_congruence(x, t); }),
                        c["grad"]["student_emb"], name + " grad");
    // RepDistiller trains the teacher-side embedding too: the gradient reaches it.
    expect_tensor_close(grad_of(t, [&](const torch::Tensor& x) { return L::correlation_congruence(s, x); }),
                        c["grad"]["teacher_emb"], name + " teacher grad");
  }
  // The same samples in another order give another value (RepDistiller's own, both recorded in the file).
  auto cs = cases(j);
  EXPECT_GT(std::abs(cs[0]["outputs"]["loss"].get<double>() - cs[1]["outputs"]["loss"].get<double>()), 1.0);
}

TEST(Reference, CcPaperFormByHand) {
  // The paper's form has no reference code: by hand for two samples in 2-D.
  // e_s = [(3, 4), (1, 0)] -> normalised (0.6, 0.8), (1, 0): dot 0.6; e_t = [(0, 2), (5, 0)]: dot 0.
  // gamma = 0.5, P = 2: k = e^-1 (1 + x + x^2 / 2): psi_s = e^-1 [[2.5, 1.78], [1.78, 2.5]],
  // psi_t = e^-1 [[2.5, 1], [1, 2.5]]; loss = 2 (0.78 e^-1)^2 / 4.
  auto s = torch::tensor({3.0, 4.0, 1.0, 0.0}, torch::kDouble).view({2, 2});
  auto t = torch::tensor({0.0, 2.0, 5.0, 0.0}, torch::kDouble).view({2, 2});
  const double want = 2.0 * std::pow(0.78 * std::exp(-1.0), 2) / 4.0;
  EXPECT_NEAR(L::correlation_congruence_paper(s, t, 0.5, 2).item<double>(), want, 1e-14);
  // Order P = 0 keeps only the constant term: the matrices agree, the loss is 0.
  EXPECT_NEAR(L::correlation_congruence_paper(s, t, 0.5, 0).item<double>(), 0.0, 1e-15);
  // Unlike the reference form it does not depend on the order of the batch.
  auto perm = torch::tensor({1, 0}, torch::kLong);
  EXPECT_NEAR(L::correlation_congruence_paper(s.index_select(0, perm), t.index_select(0, perm), 0.5, 2).item<double>(),
              want, 1e-14);
}

// ---- attention (RepDistiller Attention.at_loss: the larger map pooled before the attention map) -------------
TEST(Reference, AttentionEqualsRepDistillerAtLoss) {
  json j = load("attention");
  for (const auto& c : cases(j)) {
    const std::string name = c["name"];
    auto s = tensor(c["inputs"]["student_feat"]), t = tensor(c["inputs"]["teacher_feat"]);
    expect_close(L::attention_loss(s, t, 2.0).item<double>(), c["outputs"]["loss"], name);
    expect_tensor_close(grad_of(s, [&](const torch::Tensor& x) { return L::attention_loss(x, t, 2.0); }),
                        c["grad"]["student_feat"], name + " grad");
    if (c["outputs"].contains("at_student")) {
      expect_tensor_close(L::attention_map(s, 2.0), c["outputs"]["at_student"], name + " at(student)");
      expect_tensor_close(L::attention_map(t, 2.0), c["outputs"]["at_teacher"], name + " at(teacher)");
    }
  }
  // Different sizes: the method's default (resize: pool) is RepDistiller's; interpolation gives another value.
  auto cs = cases(j);
  TapMap st{{"logits", torch::zeros({2, 3}, torch::kDouble)},
            {"block1", tensor(cs[1]["inputs"]["student_feat"])},
            {"block2", tensor(cs[2]["inputs"]["student_feat"])}};
  TapMap tt{{"logits", torch::zeros({2, 3}, torch::kDouble)},
            {"block1", tensor(cs[1]["inputs"]["teacher_feat"])},
            {"block2", tensor(cs[2]["inputs"]["teacher_feat"])}};
  json taps = {{"student_taps", {"block1", "block2"}}, {"teacher_taps", {"block1", "block2"}}};
  auto y = torch::zeros({2}, torch::kLong);
  auto r = run_method("attention", taps, st, tt, y);
  expect_close(term(r.terms, "at").value.item<double>(), j["multi_layer"]["sum"], "attention default");
  json interp = taps;
  interp["resize"] = "interpolate";
  auto ri = run_method("attention", interp, st, tt, y);
  EXPECT_GT(std::abs(term(ri.terms, "at").value.item<double>() - j["multi_layer"]["sum"].get<double>()), 1e-3);
}

}  // namespace
