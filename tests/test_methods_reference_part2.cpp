// VID, AB, FSP, FT, CRD, ReviewKD and OFD against their reference implementations: each method's modules get
// the reference module's FIXED weights and the same inputs, and its losses, gradients, batch-norm statistics (and
// CRD's memory banks and Z) must equal what the peer's own code computed. The values and their provenance
// (repository, commit, file, function, arguments) are in tests/data/reference/part2/*.json (README there).
// Also: the sampler of CRD's negatives, each method's stages and its extra parameters and buffers.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "base/errors.h"
#include "methods/crd_memory.h"
#include "methods/feature_losses.h"
#include "methods/method.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using kd::TapMap;

json load(const std::string& name) {
  const std::string path = kd::test::source_dir() + "/tests/data/reference/part2/" + name + ".json";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

// A nested JSON list of numbers -> a float32 tensor (each number parsed as a double, then cast to float32: the
// files hold the shortest decimals that round-trip to the peer's float32 values).
void flatten(const json& j, std::vector<int64_t>& shape, size_t depth, std::vector<float>& out) {
  if (!j.is_array()) {
    out.push_back(static_cast<float>(j.get<double>()));
    return;
  }
  if (shape.size() <= depth) shape.push_back(static_cast<int64_t>(j.size()));
  for (const auto& e : j) flatten(e, shape, depth + 1, out);
}
torch::Tensor T(const json& j) {
  std::vector<int64_t> shape;
  std::vector<float> v;
  flatten(j, shape, 0, v);
  return torch::tensor(v, torch::kFloat).reshape(shape);
}
std::vector<torch::Tensor> Ts(const json& j) {
  std::vector<torch::Tensor> v;
  for (const auto& e : j) v.push_back(T(e));
  return v;
}

void expect_close(const torch::Tensor& got, const torch::Tensor& want, const std::string& what, double rtol = 2e-5) {
  ASSERT_TRUE(got.defined()) << what << ": undefined";
  ASSERT_EQ(got.numel(), want.numel()) << what << ": " << got.sizes() << " vs " << want.sizes();
  auto g = got.detach().to(torch::kDouble).reshape(want.sizes());
  auto w = want.to(torch::kDouble);
  const double scale = std::max(1.0, w.abs().max().item<double>());
  const double err = (g - w).abs().max().item<double>();
  EXPECT_LE(err, rtol * scale) << what << ": max abs error " << err << "\n got  " << g.flatten().slice(0, 0, 8)
                               << "\n want " << w.flatten().slice(0, 0, 8);
}
void expect_close(double got, double want, const std::string& what, double rtol = 2e-5) {
  EXPECT_LE(std::abs(got - want), rtol * std::max(1.0, std::abs(want))) << what << ": " << got << " vs " << want;
}

// Copies the reference state dict `sd` into `m` under `prefix`; the module's float parameters and buffers under
// the prefix must be exactly the dict's entries (the same names and shapes: the same modules).
void load_state(torch::nn::Module& m, const json& sd, const std::string& prefix = "") {
  std::map<std::string, torch::Tensor> mine;
  for (auto& p : m.named_parameters()) mine[p.key()] = p.value();
  for (auto& b : m.named_buffers())
    if (b.value().is_floating_point()) mine[b.key()] = b.value();
  std::set<std::string> seen;
  torch::NoGradGuard ng;
  for (const auto& [key, value] : sd.items()) {
    const std::string name = prefix + key;
    ASSERT_TRUE(mine.count(name)) << "the module has no '" << name << "'";
    auto t = T(value);
    ASSERT_EQ(mine[name].sizes(), t.sizes()) << name;
    mine[name].copy_(t);
    seen.insert(name);
  }
  for (const auto& [name, t] : mine) {
    if (name.rfind(prefix, 0) == 0) {
      EXPECT_TRUE(seen.count(name)) << "'" << name << "' is not in the reference module";
    }
  }
}

torch::Tensor named(torch::nn::Module& m, const std::string& name) {
  for (auto& p : m.named_parameters())
    if (p.key() == name) return p.value();
  for (auto& b : m.named_buffers())
    if (b.key() == name) return b.value();
  ADD_FAILURE() << "no tensor '" << name << "'";
  return {};
}

int64_t numel_of(const std::vector<torch::Tensor>& ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += t.numel();
  return n;
}

std::unique_ptr<kd::Method> make(const std::string& method, const json& params) {
  auto& reg = kd::MethodRegistry::instance();
  return reg.create(method, reg.resolve(method, params, "test"));
}

kd::TapShapes shapes_of(const TapMap& taps) {
  kd::TapShapes s;
  for (const auto& [k, v] : taps) s[k] = v.sizes().vec();
  return s;
}

// A batch: named student and teacher taps (plus logits), labels 0..B-1 mod 3.
struct Batch {
  TapMap student, teacher;
  torch::Tensor labels, indices;
  Batch(TapMap s, TapMap t) : student(std::move(s)), teacher(std::move(t)) {
    const int64_t B = student.begin()->second.size(0);
    student["logits"] = torch::zeros({B, 3});
    teacher["logits"] = torch::zeros({B, 3});
    labels = torch::arange(B, torch::kLong) % 3;
    indices = torch::arange(B, torch::kLong);
  }
  kd::PrepareContext context() const {
    kd::PrepareContext ctx;
    ctx.student = shapes_of(student);
    ctx.teachers = {shapes_of(teacher)};
    ctx.train_size = 20;
    ctx.num_classes = 3;
    return ctx;
  }
  kd::LossTerms compute(kd::Method& m, int stage, int64_t epoch = 0) {
    teachers_ = {&teacher};
    return m.compute(kd::MethodInput{student, teachers_, labels, indices, stage, epoch, epoch, 0, 1});
  }
  std::vector<const TapMap*> teachers_;
};

const kd::LossTerm& term(const kd::LossTerms& terms, const std::string& name) {
  for (const auto& t : terms)
    if (t.name == name) return t;
  throw std::runtime_error("no term " + name);
}

std::set<std::string> names(const kd::LossTerms& terms) {
  std::set<std::string> s;
  for (const auto& t : terms) s.insert(t.name);
  return s;
}

TapMap taps_named(const std::string& prefix, const std::vector<torch::Tensor>& ts) {
  TapMap m;
  for (size_t i = 0; i < ts.size(); ++i) m[prefix + std::to_string(i)] = ts[i];
  return m;
}
json tap_list(const std::string& prefix, size_t n) {
  json l = json::array();
  for (size_t i = 0; i < n; ++i) l.push_back(prefix + std::to_string(i));
  return l;
}

// ---- VID -------------------------------------------------------------------------------------------------------
TEST(ReferencePart2, VIDMatchesRepDistillerVIDLoss) {
  const json j = load("vid");
  ASSERT_EQ(j["provenance"]["repo"], "HobbitLong/RepDistiller");
  for (const std::string c : {"same", "pool_s", "pool_t"}) {
    SCOPED_TRACE(c);
    auto s = T(j["inputs"][c]["student"]).requires_grad_(true);
    auto t = T(j["inputs"][c]["teacher"]);
    Batch b({{"s", s}}, {{"t", t}});
    auto m = make("vid", {{"student_taps", {"s"}}, {"teacher_taps", {"t"}}});
    m->prepare(b.context());
    // The initial log-scale is the reference's log(exp(5 - 1e-5) - 1).
    expect_close(named(*m->module(), "0.log_scale"), T(j["weights"]["log_scale_init"]), "log_scale init");
    load_state(*m->module(), j["weights"]["state_dict"], "0.");
    auto terms = b.compute(*m, 0);
    EXPECT_EQ(names(terms), (std::set<std::string>{"ce", "vid"}));
    const auto& vid = term(terms, "vid");
    EXPECT_DOUBLE_EQ(vid.weight, 1.0);
    expect_close(vid.value.item<double>(), j["outputs"][c]["loss"].get<double>(), "loss");
    vid.value.backward();
    expect_close(s.grad(), T(j["grad"][c]["student"]), "d loss / d student");
    expect_close(named(*m->module(), "0.log_scale").grad(), T(j["grad"][c]["log_scale"]), "d loss / d log_scale");
    if (c == "same")
      expect_close(named(*m->module(), "0.regressor.0.weight").grad(), T(j["grad"][c]["regressor.0.weight"]),
                   "d loss / d regressor.0.weight");
  }
  expect_close(kd::losses::vid_variance(T(j["weights"]["state_dict"]["log_scale"]), 1e-5), T(j["derived"]["pred_var"]),
               "pred_var");
}

TEST(ReferencePart2, VIDPaperReductionSumsOverChannelsAndPositions) {
  // The paper's form is the reference's per-element mean times C*H*W (labelled arithmetic on the peer's value).
  const json j = load("vid");
  auto s = T(j["inputs"]["same"]["student"]);
  Batch b({{"s", s}}, {{"t", T(j["inputs"]["same"]["teacher"])}});
  auto m = make("vid", {{"student_taps", {"s"}}, {"teacher_taps", {"t"}}, {"reduction", "sum"}});
  m->prepare(b.context());
  load_state(*m->module(), j["weights"]["state_dict"], "0.");
  const double chw = 8 * 4 * 4;
  expect_close(term(b.compute(*m, 0), "vid").value.item<double>(), j["outputs"]["same"]["loss"].get<double>() * chw,
               "sum reduction");
}

// ---- AB --------------------------------------------------------------------------------------------------------
TEST(ReferencePart2, ABInitStageMatchesRepDistillerConnectorAndABLoss) {
  const json j = load("ab");
  const json& in = j["inputs"]["connector_init_stage"];
  auto s = Ts(in["feat_s_preact"]);
  for (auto& x : s) x.requires_grad_(true);
  Batch b(taps_named("s", s), taps_named("t", Ts(in["feat_t_preact"])));
  auto m = make("ab", {{"student_taps", tap_list("s", 3)}, {"teacher_taps", tap_list("t", 3)}});
  m->prepare(b.context());
  load_state(*m->module(), j["weights"]["connector_state_dict_before_forward"]);
  m->module()->train();  // pretrain.py: init_modules.train()
  auto terms = b.compute(*m, 0);
  ASSERT_EQ(names(terms), (std::set<std::string>{"ab"}));
  const auto& out = j["outputs"]["connector_init_stage"];
  expect_close(terms[0].value.item<double>(), out["loss"].get<double>(), "sum(loss_group)");
  terms[0].value.backward();
  for (size_t i = 0; i < 3; ++i)
    expect_close(s[i].grad(), T(j["grad"]["connector_init_stage"]["feat_s_preact"][i]),
                 "d loss / d s" + std::to_string(i));
  for (const auto& [name, value] : out["bn_running_after_one_forward"].items())
    expect_close(named(*m->module(), name), T(value), name + " after the forward");
  // Main stage: cross-entropy only (RepDistiller sets loss_kd = 0 for abound and runs -a 0).
  EXPECT_EQ(names(b.compute(*m, 1)), (std::set<std::string>{"ce"}));
}

TEST(ReferencePart2, ABLossWeightsAndMarginOnRawTensors) {
  const json j = load("ab");
  const json& in = j["inputs"]["abloss_direct"];
  auto src = Ts(in["source"]);
  for (auto& x : src) x.requires_grad_(true);
  auto loss = kd::losses::ab_loss(src, Ts(in["target"]), in["margin"].get<double>());
  double want = 0;
  for (const auto& l : j["outputs"]["abloss_direct"]["loss_group"]) want += l.get<double>();
  expect_close(loss.item<double>(), want, "sum(loss_group)");
  loss.backward();
  for (size_t i = 0; i < src.size(); ++i)
    expect_close(src[i].grad(), T(j["grad"]["abloss_direct"]["source"][i]), "d loss / d source" + std::to_string(i));
}

// ---- FSP -------------------------------------------------------------------------------------------------------
TEST(ReferencePart2, FSPMatchesRepDistillerFSP) {
  const json j = load("fsp");
  auto gs = Ts(j["inputs"]["chain"]["g_s"]);
  auto gt = Ts(j["inputs"]["chain"]["g_t"]);
  for (auto& x : gs) x.requires_grad_(true);
  const json& out = j["outputs"]["chain"];
  for (size_t k = 0; k + 1 < gs.size(); ++k) {
    expect_close(kd::losses::fsp_matrix(gs[k], gs[k + 1]), T(out["fsp_s"][k]), "fsp_s " + std::to_string(k));
    expect_close(kd::losses::fsp_matrix(gt[k], gt[k + 1]), T(out["fsp_t"][k]), "fsp_t " + std::to_string(k));
  }
  Batch b(taps_named("s", gs), taps_named("t", gt));
  auto m = make("fsp", {{"student_taps", tap_list("s", 4)}, {"teacher_taps", tap_list("t", 4)}});
  m->prepare(b.context());
  EXPECT_EQ(m->module(), nullptr) << "FSP owns no parameters";
  auto terms = b.compute(*m, 0);
  ASSERT_EQ(names(terms), (std::set<std::string>{"fsp"}));
  expect_close(terms[0].value.item<double>(), out["loss"].get<double>(), "sum(loss_group)");
  terms[0].value.backward();
  for (size_t i = 0; i < gs.size(); ++i)
    expect_close(gs[i].grad(), T(j["grad"]["chain"]["g_s"][i]), "d loss / d g_s" + std::to_string(i));
  EXPECT_EQ(names(b.compute(*m, 1)), (std::set<std::string>{"ce"}));
}

TEST(ReferencePart2, FSPRefusesUnequalChannelsAsTheReferenceDoes) {
  const json j = load("fsp");
  EXPECT_NE(j["provenance"]["channel_mismatch_behaviour"].get<std::string>().find("num of channels not equal"),
            std::string::npos);
  Batch b({{"a", torch::zeros({2, 3, 4, 4})}, {"b", torch::zeros({2, 4, 4, 4})}},
          {{"a", torch::zeros({2, 3, 4, 4})}, {"b", torch::zeros({2, 8, 4, 4})}});
  auto m = make("fsp", {{"student_taps", {"a", "b"}}, {"teacher_taps", {"a", "b"}}});
  try {
    m->prepare(b.context());
    FAIL() << "unequal channels were accepted";
  } catch (const kd::ConfigError& e) {
    EXPECT_EQ(e.key_path(), "teacher_taps");
    EXPECT_NE(std::string(e.what()).find("student tap 'b' has 4, teacher tap 'b' 8"), std::string::npos) << e.what();
  }
}

// ---- FT --------------------------------------------------------------------------------------------------------
TEST(ReferencePart2, FTMatchesRepDistillerParaphraserTranslatorAndFactorTransfer) {
  const json j = load("ft");
  auto t = T(j["inputs"]["main"]["f_t"]);
  auto s = T(j["inputs"]["main"]["f_s"]).requires_grad_(true);
  expect_close(T(j["inputs"]["paraphraser_init"]["f_t"]), t, "the same teacher map in both cases", 0);
  Batch b({{"s", s}}, {{"t", t}});
  auto m = make("ft", {{"student_tap", "s"}, {"teacher_tap", "t"}});
  m->prepare(b.context());
  load_state(*m->module(), j["weights"]["paraphraser"], "paraphraser.");
  load_state(*m->module(), j["weights"]["translator"], "translator.");
  m->module()->train();
  // Stage "paraphraser": reconstruction of the teacher's map.
  auto terms = b.compute(*m, 0);
  ASSERT_EQ(names(terms), (std::set<std::string>{"rec"}));
  expect_close(terms[0].value.item<double>(), j["outputs"]["paraphraser_init"]["mse"].get<double>(), "mse");
  terms[0].value.backward();
  for (const std::string p : {"encoder.0.bias", "decoder.6.bias"})
    expect_close(named(*m->module(), "paraphraser." + p).grad(), T(j["grad"]["paraphraser_init"][p]), "d mse / d " + p);
  m->module()->zero_grad();
  // Stage "main": translator factor against the (frozen) paraphraser's.
  terms = b.compute(*m, 1);
  EXPECT_EQ(names(terms), (std::set<std::string>{"ce", "ft"}));
  const auto& ft = term(terms, "ft");
  EXPECT_DOUBLE_EQ(ft.weight, 200.0);
  expect_close(ft.value.item<double>(), j["outputs"]["main"]["loss"].get<double>(), "factor transfer loss");
  ft.value.backward();
  expect_close(s.grad(), T(j["grad"]["main"]["f_s"]), "d loss / d f_s");
  for (auto& p : m->module()->named_parameters()) {
    if (p.key().rfind("paraphraser.", 0) == 0) {
      EXPECT_FALSE(p.value().grad().defined()) << p.key() << " is frozen";
    }
  }
}

TEST(ReferencePart2, FTFactorLossPoolsTheLargerFactorAndTakesP2) {
  const json j = load("ft");
  const json& in = j["inputs"]["factor_loss_direct"];
  for (const auto& [p2, key] : std::vector<std::pair<double, std::string>>{{1.0, "p2_1"}, {2.0, "p2_2"}}) {
    auto a = T(in["f_s"]).requires_grad_(true);
    auto loss = kd::losses::ft_loss(a, T(in["f_t"]), 2.0, p2);
    expect_close(loss.item<double>(), j["outputs"]["factor_loss_direct"]["loss_" + key].get<double>(), key);
    loss.backward();
    expect_close(a.grad(), T(j["grad"]["factor_loss_direct"]["f_s_" + key]), "d loss / d f_s " + key);
  }
}

// ---- CRD -------------------------------------------------------------------------------------------------------
TEST(ReferencePart2, CRDHeadMatchesRepDistillerOverTwoSteps) {
  const json j = load("crd");
  const json& a = j["provenance"]["arguments"];
  kd::crd::CRDHead head(a["s_dim"].get<int64_t>(), a["t_dim"].get<int64_t>(), a["feat_dim"].get<int64_t>(),
                        a["n_data"].get<int64_t>(), a["nce_k"].get<int64_t>(), a["nce_t"].get<double>(),
                        a["nce_m"].get<double>());
  load_state(*head, j["weights"]["state_dict_initial"]);
  EXPECT_LT(head->params[2].item<double>(), 0) << "Z is unset before the first batch";
  for (const std::string step : {"step1", "step2"}) {
    SCOPED_TRACE(step);
    const json& in = j["inputs"][step];
    const json& out = j["outputs"][step];
    auto f_s = T(in["f_s"]).requires_grad_(true);
    auto idx = torch::tensor(in["idx"].get<std::vector<int64_t>>(), torch::kLong);
    std::vector<int64_t> flat;
    for (const auto& row : in["contrast_idx"])
      for (const auto& v : row) flat.push_back(v.get<int64_t>());
    auto cidx = torch::tensor(flat, torch::kLong).view({idx.size(0), -1});
    ASSERT_TRUE(torch::equal(cidx.select(1, 0), idx)) << "column 0 is the sample itself (exact mode)";
    head->zero_grad();
    auto r = head->forward(f_s, T(in["f_t"]), idx, cidx);
    expect_close(r.v_s, T(out["embed_s"]), "embed_s");
    expect_close(r.v_t, T(out["embed_t"]), "embed_t");
    expect_close(r.out_s, T(out["out_s(=out_v1, student emb vs memory_v2)"]), "out_v1");
    expect_close(r.out_t, T(out["out_t(=out_v2, teacher emb vs memory_v1)"]), "out_v2");
    expect_close(head->params[2].item<double>(), out["Z_v1"].get<double>(), "Z_v1", 1e-6);
    expect_close(head->params[3].item<double>(), out["Z_v2"].get<double>(), "Z_v2", 1e-6);
    expect_close(r.loss.item<double>(), out["loss"][0].get<double>(), "loss");
    expect_close(head->memory_v1, T(out["memory_v1_after"]), "memory_v1 after the step");
    expect_close(head->memory_v2, T(out["memory_v2_after"]), "memory_v2 after the step");
    r.loss.backward();
    expect_close(f_s.grad(), T(j["grad"][step]["f_s"]), "d loss / d f_s");
    expect_close(head->embed_t->weight.grad(), T(j["grad"][step]["embed_t.linear.weight"]),
                 "d loss / d embed_t.weight");
    expect_close(head->embed_t->bias.grad(), T(j["grad"][step]["embed_t.linear.bias"]), "d loss / d embed_t.bias");
  }
}

TEST(ReferencePart2, CRDMethodUpdatesExactlyTheBatchRowsWithMomentum) {
  const int64_t n = 20, B = 4;
  auto labels_all = torch::arange(n, torch::kLong) % 4;
  Batch b({{"pool", torch::randn({B, 6})}}, {{"pool", torch::randn({B, 10})}});
  b.student["logits"] = torch::zeros({B, 4});
  b.indices = torch::tensor({3, 6, 9, 12}, torch::kLong);
  b.labels = labels_all.index_select(0, b.indices);
  auto ctx = b.context();
  ctx.train_size = n;
  ctx.train_labels = labels_all;
  auto m = make("crd", {{"feat_dim", 8}, {"nce_k", 5}});
  m->prepare(ctx);
  auto head = std::dynamic_pointer_cast<kd::crd::CRDHeadImpl>(m->module());
  ASSERT_TRUE(head);
  // Extra parameters: the two embeddings; the banks are buffers of 2 x n x feat_dim (and the 5 params).
  EXPECT_EQ(numel_of(head->parameters()), (6 + 1) * 8 + (10 + 1) * 8);
  EXPECT_EQ(numel_of(head->buffers()), 2 * n * 8 + 5);
  for (int step = 0; step < 2; ++step) {
    auto before_s = head->memory_v1.clone(), before_t = head->memory_v2.clone();
    torch::Tensor v_s, v_t;
    {
      torch::NoGradGuard ng;
      v_s = kd::losses::crd_l2_normalize(head->embed_s(b.student.at("pool")));
      v_t = kd::losses::crd_l2_normalize(head->embed_t(b.teacher.at("pool")));
    }
    auto terms = b.compute(*m, 0);
    EXPECT_EQ(names(terms), (std::set<std::string>{"ce", "crd"}));
    EXPECT_DOUBLE_EQ(term(terms, "crd").weight, 0.8);
    EXPECT_TRUE(std::isfinite(term(terms, "crd").value.item<double>()));
    EXPECT_GT(head->params[2].item<double>(), 0) << "Z set by the first batch";
    auto rows = b.indices;
    for (auto [bank, before, v] :
         {std::tuple{head->memory_v1, before_s, v_s}, std::tuple{head->memory_v2, before_t, v_t}}) {
      auto want = before.index_select(0, rows) * 0.5 + v * 0.5;
      want = want / want.norm(2, 1, true);
      expect_close(bank.index_select(0, rows), want, "updated rows");
      auto others = torch::ones({n}, torch::kBool);
      others.index_fill_(0, rows, false);
      EXPECT_TRUE(torch::equal(bank.index({others}), before.index({others}))) << "rows outside the batch changed";
    }
    b.indices = torch::tensor({6, 0, 17, 3}, torch::kLong);
    b.labels = labels_all.index_select(0, b.indices);
  }
}

TEST(ReferencePart2, CRDExactNegativesComeFromOtherClassesWithoutThePositive) {
  const int64_t n = 600, classes = 6;
  auto labels = torch::randint(0, classes, {n}, torch::kLong);
  auto lab = labels.accessor<int64_t, 1>();
  kd::crd::ContrastSampler sampler;
  sampler.reset(labels, n, 7);
  auto idx = torch::tensor({0, 5, 17, 599}, torch::kLong);
  std::vector<int64_t> counts(static_cast<size_t>(n), 0);
  for (int64_t K : {50, 450, 2000}) {  // below, near and above the size of the other classes' pool
    auto draw = sampler.draw(idx, K, "exact");
    ASSERT_EQ(draw.sizes(), (std::vector<int64_t>{4, K + 1}));
    auto d = draw.accessor<int64_t, 2>();
    for (int64_t b = 0; b < 4; ++b) {
      const int64_t i = idx[b].item<int64_t>();
      EXPECT_EQ(d[b][0], i) << "column 0 is the sample itself";
      int64_t pool = 0;
      for (int64_t x = 0; x < n; ++x) pool += lab[x] != lab[i];
      std::set<int64_t> distinct;
      for (int64_t k = 1; k <= K; ++k) {
        ASSERT_GE(d[b][k], 0);
        ASSERT_LT(d[b][k], n);
        EXPECT_NE(lab[d[b][k]], lab[i]) << "a negative of the positive's class";
        distinct.insert(d[b][k]);
        if (K == 50) ++counts[static_cast<size_t>(d[b][k])];
      }
      if (K <= pool) {
        EXPECT_EQ(static_cast<int64_t>(distinct.size()), K) << "without replacement when the pool suffices";
      } else {
        EXPECT_LE(static_cast<int64_t>(distinct.size()), pool);
      }
    }
  }
  // The same seed draws the same indices; another seed others.
  kd::crd::ContrastSampler a, b, c;
  a.reset(labels, n, 1);
  b.reset(labels, n, 1);
  c.reset(labels, n, 2);
  auto da = a.draw(idx, 40, "exact");
  EXPECT_TRUE(torch::equal(da, b.draw(idx, 40, "exact")));
  EXPECT_FALSE(torch::equal(da, c.draw(idx, 40, "exact")));
  // Uniform over the pool: 4000 draws of 50 of the ~500 others of sample 0's class.
  kd::crd::ContrastSampler u;
  u.reset(labels, n, 3);
  std::vector<int64_t> hits(static_cast<size_t>(n), 0);
  auto one = torch::tensor({0}, torch::kLong);
  for (int r = 0; r < 4000; ++r) {
    auto d = u.draw(one, 50, "exact");
    for (int64_t k = 1; k <= 50; ++k) ++hits[static_cast<size_t>(d[0][k].item<int64_t>())];
  }
  int64_t pool = 0;
  for (int64_t x = 0; x < n; ++x) pool += lab[x] != lab[0];
  const double expect = 4000.0 * 50 / static_cast<double>(pool), sd = std::sqrt(expect);
  for (int64_t x = 0; x < n; ++x) {
    if (lab[x] == lab[0]) {
      EXPECT_EQ(hits[static_cast<size_t>(x)], 0);
    } else {
      EXPECT_NEAR(static_cast<double>(hits[static_cast<size_t>(x)]), expect, 6 * sd) << "sample " << x;
    }
  }
}

TEST(ReferencePart2, CRDRelaxAndUniformModesAndNoLabels) {
  const int64_t n = 100;
  auto labels = torch::arange(n, torch::kLong) % 5;
  kd::crd::ContrastSampler s;
  s.reset(labels, n, 11);
  auto idx = torch::tensor({1, 2, 3}, torch::kLong);
  auto relax = s.draw(idx, 30, "relax");
  for (int64_t b = 0; b < 3; ++b) {
    EXPECT_EQ(relax[b][0].item<int64_t>() % 5, idx[b].item<int64_t>() % 5) << "relax: a positive of the same class";
    for (int64_t k = 1; k <= 30; ++k) EXPECT_NE(relax[b][k].item<int64_t>() % 5, idx[b].item<int64_t>() % 5);
  }
  auto uni = s.draw(idx, 300, "uniform");
  EXPECT_TRUE(torch::equal(uni.select(1, 0), idx));
  EXPECT_GE(uni.min().item<int64_t>(), 0);
  EXPECT_LT(uni.max().item<int64_t>(), n);
  EXPECT_TRUE((uni.narrow(1, 1, 300) % 5 == 1).any().item<bool>()) << "uniform: negatives of any class";
  // Without labels every other sample is a negative; never the positive itself.
  kd::crd::ContrastSampler nl;
  nl.reset(torch::Tensor(), n, 5);
  auto d = nl.draw(idx, 99, "exact");
  for (int64_t b = 0; b < 3; ++b) {
    auto row = d[b].narrow(0, 1, 99);
    EXPECT_FALSE((row == idx[b]).any().item<bool>());
    EXPECT_EQ(std::get<0>(torch::_unique(row)).numel(), 99);
  }
}

// ---- ReviewKD ----------------------------------------------------------------------------------------------------
TEST(ReferencePart2, ReviewKDMatchesTheAuthorsABFsAndHCL) {
  const json j = load("reviewkd");
  const json& in = j["inputs"]["reviewkd_forward_hcl"];
  auto fs = Ts(in["student_feats_f1_to_f4"]);
  for (auto& x : fs) x.requires_grad_(true);
  Batch b(taps_named("s", fs), taps_named("t", Ts(in["teacher_feats"])));
  auto m = make("reviewkd", {{"student_taps", tap_list("s", 4)}, {"teacher_taps", tap_list("t", 4)}, {"beta", 5.0}});
  m->prepare(b.context());
  load_state(*m->module(), j["weights"]["state_dict"]);
  m->module()->train();
  auto terms = b.compute(*m, 0, /*epoch=*/25);
  EXPECT_EQ(names(terms), (std::set<std::string>{"ce", "reviewkd"}));
  const auto& r = term(terms, "reviewkd");
  EXPECT_DOUBLE_EQ(r.weight, 5.0) << "past the warm-up: the full weight";
  expect_close(r.value.item<double>(), j["outputs"]["reviewkd_forward_hcl"]["hcl"].get<double>(), "hcl");
  r.value.backward();
  for (size_t i = 0; i < fs.size(); ++i)
    expect_close(fs[i].grad(), T(j["grad"]["reviewkd_forward_hcl"]["student_feats_f1_to_f4"][i]),
                 "d hcl / d f" + std::to_string(i + 1));
  for (const auto& [name, value] : j["outputs"]["reviewkd_forward_hcl"]["bn_running_after_forward"].items())
    expect_close(named(*m->module(), name), T(value), name + " after the forward");
  // The warm-up: weight * min(1, epoch / 20), epoch 0-based (train.py).
  EXPECT_DOUBLE_EQ(term(b.compute(*m, 0, 0), "reviewkd").weight, 0.0);
  EXPECT_DOUBLE_EQ(term(b.compute(*m, 0, 10), "reviewkd").weight, 2.5);
  EXPECT_DOUBLE_EQ(term(b.compute(*m, 0, 20), "reviewkd").weight, 5.0);
}

TEST(ReferencePart2, HCLPyramidLevelsAndGradients) {
  const json j = load("reviewkd");
  const json& in = j["inputs"]["hcl_direct"];
  auto a = Ts(in["fstudent"]);
  auto t = Ts(in["fteacher"]);
  for (auto& x : a) x.requires_grad_(true);
  for (size_t i = 0; i < a.size(); ++i)
    expect_close(kd::losses::hcl_level(a[i], t[i]).item<double>(),
                 j["outputs"]["hcl_direct"]["per_level"][i].get<double>(), "level " + std::to_string(i));
  auto loss = kd::losses::hcl(a, t);
  expect_close(loss.item<double>(), j["outputs"]["hcl_direct"]["hcl"].get<double>(), "hcl");
  loss.backward();
  for (size_t i = 0; i < a.size(); ++i)
    expect_close(a[i].grad(), T(j["grad"]["hcl_direct"]["fstudent"][i]), "d hcl / d fs" + std::to_string(i));
}

// ---- OFD -------------------------------------------------------------------------------------------------------
// A stand-in teacher: the batch norms the taps come from (what TapModel::tap_norm names in a zoo model).
std::shared_ptr<torch::nn::Module> teacher_norms(const json& weights, const json& biases) {
  auto m = std::make_shared<torch::nn::Module>();
  torch::NoGradGuard ng;
  for (size_t i = 0; i < weights.size(); ++i) {
    auto w = T(weights[i]);
    auto bn = m->register_module("bn" + std::to_string(i), torch::nn::BatchNorm2d(w.size(0)));
    bn->weight.copy_(w);
    bn->bias.copy_(T(biases[i]));
  }
  return m;
}

TEST(ReferencePart2, OFDMarginsFromTheTeachersBatchNorms) {
  const json j = load("ofd");
  const json& in = j["inputs"]["get_margin_from_BN"];
  for (size_t i = 0; i < 3; ++i)
    expect_close(kd::losses::ofd_margin(T(in["bn_weight"][i]), T(in["bn_bias"][i])),
                 T(j["outputs"]["get_margin_from_BN"]["margins"][i]), "margin " + std::to_string(i));
  // A batch norm at its initial weights (gamma 1, beta 0): E[x | x < 0] of N(0, 1) = -sqrt(2 / pi).
  expect_close(kd::losses::ofd_margin(torch::ones({2}), torch::zeros({2})), torch::full({2}, -std::sqrt(2.0 / M_PI)),
               "default margin", 1e-6);
}

TEST(ReferencePart2, OFDMatchesTheAuthorsDistiller) {
  const json j = load("ofd");
  const json& in = j["inputs"]["distiller_forward"];
  auto s = Ts(in["s_feats_preReLU"]);
  for (auto& x : s) x.requires_grad_(true);
  Batch b(taps_named("s", s), taps_named("t", Ts(in["t_feats_preReLU"])));
  auto ctx = b.context();
  const json& bn = j["inputs"]["get_margin_from_BN"];
  ctx.teacher_modules = {teacher_norms(bn["bn_weight"], bn["bn_bias"])};
  ctx.teacher_tap_norms = {{{"t0", "bn0"}, {"t1", "bn1"}, {"t2", "bn2"}}};
  auto m = make("ofd", {{"student_taps", tap_list("s", 3)}, {"teacher_taps", tap_list("t", 3)}});
  m->prepare(ctx);
  for (size_t i = 0; i < 3; ++i) {
    auto margin = named(*m->module(), "margin" + std::to_string(i + 1));
    EXPECT_EQ(margin.sizes(), (std::vector<int64_t>{1, T(bn["bn_weight"][i]).size(0), 1, 1}));
    expect_close(margin, T(j["outputs"]["get_margin_from_BN"]["margins"][i]), "margin buffer " + std::to_string(i));
  }
  // The connectors: margins are buffers of the method's module, not the reference's Connectors.
  load_state(*m->module(), j["weights"]["connectors_state_dict"], "connectors.");
  m->module()->train();  // train_with_distillation.py: d_net.train()
  auto terms = b.compute(*m, 0);
  EXPECT_EQ(names(terms), (std::set<std::string>{"ce", "ofd"}));
  const auto& ofd = term(terms, "ofd");
  EXPECT_DOUBLE_EQ(ofd.weight, 1e-3);
  const json& out = j["outputs"]["distiller_forward"];
  expect_close(ofd.value.item<double>() * 2, out["loss_distill"].get<double>(), "loss_distill (per sample x B)");
  auto scaled = ofd.value * ofd.weight;
  expect_close(scaled.item<double>(), out["scaled_loss(loss_distill.sum()/batch_size/1000)"].get<double>(),
               "the trainer's loss_distill.sum() / batch_size / 1000");
  scaled.backward();
  for (size_t i = 0; i < 3; ++i)
    expect_close(s[i].grad(), T(j["grad"]["distiller_forward"]["s_feats_preReLU_of_scaled_loss"][i]),
                 "d scaled loss / d s" + std::to_string(i));
}

TEST(ReferencePart2, OFDPartialL2EveryMaskCase) {
  const json j = load("ofd");
  const json& in = j["inputs"]["distillation_loss_direct"];
  auto src = T(in["source"]).requires_grad_(true);
  auto loss = kd::losses::ofd_partial_l2(src, T(in["target"]), T(in["margin"]));
  expect_close(loss.item<double>(), j["outputs"]["distillation_loss_direct"]["loss"].get<double>(), "loss");
  loss.backward();
  expect_close(src.grad(), T(j["grad"]["distillation_loss_direct"]["source"]), "d loss / d source");
}

TEST(ReferencePart2, OFDWithoutTeacherModulesUsesInitialBatchNormMarginsAndNamesAMissingNorm) {
  Batch b({{"s", torch::randn({2, 2, 4, 4})}}, {{"t", torch::randn({2, 3, 4, 4})}});
  auto m = make("ofd", {{"student_taps", {"s"}}, {"teacher_taps", {"t"}}});
  m->prepare(b.context());  // kdbench loss: shapes alone
  expect_close(named(*m->module(), "margin1"), torch::full({3}, -std::sqrt(2.0 / M_PI)), "margin", 1e-6);
  auto ctx = b.context();
  ctx.teacher_modules = {std::make_shared<torch::nn::Module>()};
  ctx.teacher_tap_norms = {{}};
  try {
    m->prepare(ctx);
    FAIL() << "a teacher tap without a batch norm was accepted";
  } catch (const kd::ConfigError& e) {
    EXPECT_EQ(e.key_path(), "teacher_taps");
    EXPECT_NE(std::string(e.what()).find("teacher tap 't'"), std::string::npos) << e.what();
  }
}

// ---- stages and extra parameters ----------------------------------------------------------------------------------
TEST(ReferencePart2, StagesAsTheReferencesRunThem) {
  auto ab = make("ab", json::object())->stages();
  ASSERT_EQ(ab.size(), 2u);
  EXPECT_EQ(ab[0].name, "init");
  EXPECT_EQ(ab[0].epochs, 30);
  EXPECT_EQ(ab[0].train_until_tap, "preact_block3");
  EXPECT_TRUE(ab[0].train_student);
  EXPECT_EQ(ab[0].lr, 0.0) << "RepDistiller's init runs at its lr";
  EXPECT_EQ(ab[1].name, "main");
  EXPECT_EQ(ab[1].epochs, 0);
  // RepDistiller's main stage: the connectors in module_list but not trainable_list, and in eval mode (loops.py).
  EXPECT_EQ(ab[1].eval_modules, (std::vector<std::string>{"connectors"}));
  auto fsp = make("fsp", json::object())->stages();
  ASSERT_EQ(fsp.size(), 2u);
  EXPECT_EQ(fsp[0].name, "init");
  EXPECT_EQ(fsp[0].epochs, 30);
  EXPECT_EQ(fsp[0].train_until_tap, "block3");
  auto ft = make("ft", json::object())->stages();
  ASSERT_EQ(ft.size(), 2u);
  EXPECT_EQ(ft[0].name, "paraphraser");
  EXPECT_EQ(ft[0].epochs, 30);
  EXPECT_FALSE(ft[0].train_student);
  EXPECT_EQ(ft[0].train_modules, (std::vector<std::string>{"paraphraser"}));
  EXPECT_DOUBLE_EQ(ft[0].lr, 0.01);
  EXPECT_TRUE(ft[1].train_student);
  EXPECT_EQ(ft[1].train_modules, (std::vector<std::string>{"translator"}));
  EXPECT_EQ(ft[1].eval_modules, (std::vector<std::string>{"paraphraser"})) << "loops.py: module_list[2].eval()";
  EXPECT_TRUE(ft[0].eval_modules.empty());
  EXPECT_TRUE(ab[0].eval_modules.empty());
  for (const char* single : {"vid", "crd", "reviewkd", "ofd"})
    EXPECT_EQ(make(single, json::object())->stages().size(), 1u);
}

TEST(ReferencePart2, ExtraParametersAreTheReferenceModulesParameters) {
  // Each method's own parameters (what the report counts as extra parameters) are exactly the reference module's
  // parameters: its state dict without the batch-norm running statistics (load_state checked the names).
  auto count_ref = [](const json& sd, const std::string& skip_prefix = "") {
    int64_t n = 0;
    for (const auto& [k, v] : sd.items())
      if (k.find("running_") == std::string::npos && (skip_prefix.empty() || k.rfind(skip_prefix, 0) != 0))
        n += T(v).numel();
    return n;
  };
  {
    const json j = load("vid");
    Batch b({{"s", T(j["inputs"]["same"]["student"])}}, {{"t", T(j["inputs"]["same"]["teacher"])}});
    auto m = make("vid", {{"student_taps", {"s"}}, {"teacher_taps", {"t"}}});
    m->prepare(b.context());
    EXPECT_EQ(numel_of(m->module()->parameters()), count_ref(j["weights"]["state_dict"]));
    EXPECT_EQ(numel_of(m->module()->parameters()), 4 * 8 + 8 * 8 + 8 * 8 + 8);
  }
  {
    const json j = load("ab");
    const json& in = j["inputs"]["connector_init_stage"];
    Batch b(taps_named("s", Ts(in["feat_s_preact"])), taps_named("t", Ts(in["feat_t_preact"])));
    auto m = make("ab", {{"student_taps", tap_list("s", 3)}, {"teacher_taps", tap_list("t", 3)}});
    m->prepare(b.context());
    const int64_t want = (4 * 8 + 8 + 2 * 8) + (4 * 6 * 9 + 6 + 2 * 6);  // 1x1 conv+bias+BN, 3x3/2 conv+bias+BN
    EXPECT_EQ(numel_of(m->module()->parameters()), count_ref(j["weights"]["connector_state_dict_before_forward"]));
    EXPECT_EQ(numel_of(m->module()->parameters()), want);
  }
  {
    const json j = load("ft");
    Batch b({{"s", T(j["inputs"]["main"]["f_s"])}}, {{"t", T(j["inputs"]["main"]["f_t"])}});
    auto m = make("ft", {{"student_tap", "s"}, {"teacher_tap", "t"}});
    m->prepare(b.context());
    EXPECT_EQ(numel_of(m->module()->parameters()),
              count_ref(j["weights"]["paraphraser"]) + count_ref(j["weights"]["translator"]));
  }
  {
    const json j = load("reviewkd");
    const json& in = j["inputs"]["reviewkd_forward_hcl"];
    Batch b(taps_named("s", Ts(in["student_feats_f1_to_f4"])), taps_named("t", Ts(in["teacher_feats"])));
    auto m = make("reviewkd", {{"student_taps", tap_list("s", 4)}, {"teacher_taps", tap_list("t", 4)}});
    m->prepare(b.context());
    EXPECT_EQ(numel_of(m->module()->parameters()), count_ref(j["weights"]["state_dict"]));
  }
  {
    const json j = load("ofd");
    const json& in = j["inputs"]["distiller_forward"];
    Batch b(taps_named("s", Ts(in["s_feats_preReLU"])), taps_named("t", Ts(in["t_feats_preReLU"])));
    auto m = make("ofd", {{"student_taps", tap_list("s", 3)}, {"teacher_taps", tap_list("t", 3)}});
    m->prepare(b.context());
    EXPECT_EQ(numel_of(m->module()->parameters()), count_ref(j["weights"]["connectors_state_dict"]));
  }
  {
    const json j = load("crd");
    auto m = make("crd", {{"feat_dim", 8}, {"nce_k", 5}});
    Batch b({{"pool", torch::zeros({4, 6})}}, {{"pool", torch::zeros({4, 10})}});
    m->prepare(b.context());
    EXPECT_EQ(numel_of(m->module()->parameters()), count_ref(j["weights"]["state_dict_initial"], "contrast."));
    EXPECT_EQ(numel_of(m->module()->buffers()), 2 * 20 * 8 + 5) << "the memory banks, 2 x n_data x feat_dim";
  }
}

// What `kdbench loss` gives a method: tap shapes, train_size = max(indices) + 1, the class count from the logits; no
// training labels, no teacher modules. Every part-2 method prepares from that and computes every stage, finite.
TEST(ReferencePart2, PreparesFromTapShapesAlone) {
  torch::manual_seed(0);
  auto net_taps = [](int64_t w) {
    TapMap t;
    t["stem"] = torch::randn({4, w, 8, 8});
    t["preact_block1"] = torch::randn({4, w, 8, 8});
    t["preact_block2"] = torch::randn({4, 2 * w, 4, 4});
    t["preact_block3"] = torch::randn({4, 2 * w, 2, 2});
    for (const char* k : {"1", "2", "3"}) t[std::string("block") + k] = t[std::string("preact_block") + k].relu();
    t["pool"] = t["block3"].mean({2, 3});
    return t;
  };
  for (const char* name : {"vid", "ab", "fsp", "ft", "crd", "reviewkd", "ofd"}) {
    SCOPED_TRACE(name);
    Batch b(net_taps(3), net_taps(std::string(name) == "fsp" ? 3 : 5));
    for (auto& [k, v] : b.student) v.requires_grad_(true);
    auto ctx = b.context();
    ctx.train_size = b.indices.max().item<int64_t>() + 1;
    auto m = make(name, std::string(name) == "crd" ? json{{"feat_dim", 16}} : json::object());
    ASSERT_NO_THROW(m->prepare(ctx));
    for (int stage = 0; stage < static_cast<int>(m->stages().size()); ++stage) {
      auto terms = b.compute(*m, stage);
      torch::Tensor total;
      for (const auto& t : terms) total = total.defined() ? total + t.weight * t.value : t.weight * t.value;
      EXPECT_TRUE(std::isfinite(total.item<double>())) << "stage " << stage;
      total.backward();
    }
  }
}

TEST(ReferencePart2, RegistryHoldsThePart2Methods) {
  auto& reg = kd::MethodRegistry::instance();
  for (const char* m : {"vid", "ab", "fsp", "ft", "crd", "reviewkd", "ofd"}) {
    ASSERT_NE(reg.find(m), nullptr) << m;
    EXPECT_EQ(reg.get(m).min_teachers, 1) << m;
    EXPECT_EQ(reg.get(m).max_teachers, 1) << m;
    const auto* a = reg.get(m).find("alpha");
    ASSERT_TRUE(a && reg.get(m).find("temperature") && reg.get(m).find("beta")) << m;
    EXPECT_DOUBLE_EQ(a->default_value.get<double>(), 0.0) << m << ": the published runs add no KD term";
  }
  // Published weights as defaults.
  EXPECT_DOUBLE_EQ(reg.get("vid").find("beta")->default_value.get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(reg.get("ft").find("beta")->default_value.get<double>(), 200.0);
  EXPECT_DOUBLE_EQ(reg.get("crd").find("beta")->default_value.get<double>(), 0.8);
  EXPECT_EQ(reg.get("crd").find("nce_k")->default_value.get<int64_t>(), 16384);
  EXPECT_DOUBLE_EQ(reg.get("crd").find("nce_m")->default_value.get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(reg.get("crd").find("nce_t")->default_value.get<double>(), 0.07);
  EXPECT_EQ(reg.get("crd").find("negatives")->default_value, "exact");
  EXPECT_DOUBLE_EQ(reg.get("reviewkd").find("warmup_epochs")->default_value.get<double>(), 20.0);
  EXPECT_DOUBLE_EQ(reg.get("ofd").find("beta")->default_value.get<double>(), 1e-3);
}

}  // namespace
