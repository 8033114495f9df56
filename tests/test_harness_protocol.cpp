// The CIFAR-100 and ImageNet-subset configs against the peers' published settings. Every method entry names the
// published line it reproduces ("provenance": repository, commit, file, line, arguments), and what kdbench would
// train for it is that line's: the teacher -> student pair, the weight of every loss term, the temperature, the
// layers, the recipe and the initialisation stage.
//
// The reference is tests/data/reference/protocol/published_settings.json, made by
// generators/gen_published_settings.py from the peers' own scripts, configs and argument parsers (RepDistiller,
// mdistiller, logit-standardization-KD, DIST's image_classification_sota, ReviewKD, overhaul-distillation,
// torchdistill; the commits are in its "provenance"). kdbench's side is measured, not restated: each entry's method
// is built by the registry from the entry's resolved parameters, prepared on the tap shapes of its real student and
// teacher architectures, and asked for its loss terms on real tap tensors in each stage; the weights it returns are
// the ones the harness sums.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "base/errors.h"
#include "harness/model_state.h"
#include "harness/plan.h"
#include "harness/runner.h"
#include "models/model.h"
#include "peer_models.h"
#include "reports/report.h"
#include "store/store.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using kd::test::tap_of_feat;
using kd::test::zoo_name;

const json& published() {
  static const json doc = [] {
    std::ifstream in(kd::test::source_dir() + "/tests/data/reference/protocol/published_settings.json");
    return json::parse(in);
  }();
  return doc;
}

// The record an entry's provenance names: the same repository, commit, file and arguments (and line, if given).
const json* find_record(const json& prov, std::string* why) {
  std::vector<const json*> found;
  for (const auto& r : published().at("records")) {
    if (r.at("repo") != prov.at("repo") || r.at("commit") != prov.at("commit") || r.at("file") != prov.at("file"))
      continue;
    if (r.at("args") != prov.value("args", std::string())) continue;
    if (prov.contains("line") && r.value("line", json()) != prov.at("line")) continue;
    found.push_back(&r);
  }
  if (found.size() != 1) *why = std::to_string(found.size()) + " published records match the provenance " + prov.dump();
  return found.size() == 1 ? found.front() : nullptr;
}

// The geometry of a config's data set (CIFAR-100, or the ImageNet subset's image_folder), without the files.
struct Geometry {
  int image_size = 32, num_classes = 100;
  int64_t train_size = 50000;
};
Geometry geometry_of(const json& dataset) {
  Geometry g;
  if (dataset.at("name") == "image_folder") {
    g.image_size = dataset.value("image_size", 224);
    g.num_classes = dataset.value("num_classes", 100);
    g.train_size = 1300 * g.num_classes;
  }
  return g;
}

// What kdbench trains for one planned student run, measured on its real architectures.
struct Measured {
  std::vector<kd::StageSpec> stages;
  std::vector<std::map<std::string, double>> weights;  // per stage: term -> weight (at the stage's last epoch)
  std::set<std::string> student_taps, teacher_taps;    // what the method reads, less "logits"
  kd::TapShapes student_shapes, teacher_shapes;
  std::string student, teacher;  // zoo names
};

// A zoo model at a geometry and its taps on two fixed images (eval mode), built once per test program.
const std::pair<kd::ModelPtr, kd::TapMap>& model_and_taps(const std::string& name, const Geometry& g) {
  static std::map<std::string, std::pair<kd::ModelPtr, kd::TapMap>> cache;
  const std::string key = name + "@" + std::to_string(g.image_size) + "x" + std::to_string(g.num_classes);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  torch::manual_seed(0);
  const auto x = torch::randn({2, 3, g.image_size, g.image_size});
  auto model = kd::create_model(kd::ModelSpec{name, g.num_classes, 3, g.image_size});
  model->eval();
  kd::TapMap taps;
  {
    torch::NoGradGuard ng;
    model->forward_taps(x, &taps);
  }
  return cache[key] = {model, taps};
}

kd::TapShapes shapes_of(const kd::TapMap& taps) {
  kd::TapShapes s;
  for (const auto& [k, v] : taps) s[k] = v.sizes().vec();
  return s;
}

Measured measure(const kd::RunSpec& r, const kd::Plan& plan, const Geometry& g) {
  Measured m;
  auto method = kd::MethodRegistry::instance().create(r.method, kd::MethodParams(r.params));
  m.student = r.model;
  const kd::TapMap& s_taps = model_and_taps(r.model, g).second;
  kd::TapMap t_taps;
  kd::PrepareContext ctx;
  ctx.student = shapes_of(s_taps);
  m.student_shapes = ctx.student;
  ctx.train_size = g.train_size;
  ctx.num_classes = g.num_classes;
  ctx.train_labels = torch::arange(g.train_size, torch::kLong).remainder(g.num_classes);
  if (!r.teacher_ids.empty()) {
    m.teacher = plan.find(r.teacher_ids.at(0))->model;
    const auto& [teacher, taps] = model_and_taps(m.teacher, g);
    t_taps = taps;
    m.teacher_shapes = shapes_of(t_taps);
    ctx.teachers.push_back(m.teacher_shapes);
    ctx.teacher_tap_norms.push_back(kd::tap_norms(*teacher));
    ctx.teacher_modules.push_back(teacher);
  }
  method->prepare(ctx);
  for (const auto& t : method->student_taps())
    if (t != "logits") m.student_taps.insert(t);
  if (!r.teacher_ids.empty())
    for (const auto& t : method->teacher_taps(0))
      if (t != "logits") m.teacher_taps.insert(t);
  m.stages = r.stages;
  std::vector<const kd::TapMap*> teachers{&t_taps};
  if (r.teacher_ids.empty()) teachers.clear();
  const auto labels = torch::tensor({3, 7}, torch::kLong);
  const auto indices = torch::tensor({11, 12}, torch::kLong);
  int64_t epoch = -1;
  for (size_t si = 0; si < r.stages.size(); ++si) {
    epoch += r.stages[si].epochs;  // the stage's last epoch: warm-ups are over
    kd::MethodInput in{s_taps, teachers, labels, indices, static_cast<int>(si), epoch, r.stages[si].epochs - 1};
    std::map<std::string, double> w;
    for (const auto& term : method->compute(in)) w[term.name] += term.weight;
    m.weights.push_back(w);
  }
  return m;
}

// The published weights of the main stage as kdbench's term names. RepDistiller's "feature" weight (-b) goes to the
// method's own term(s): for RKD to "distance" and "angle", times RKDLoss's own w_d and w_a.
std::map<std::string, double> expected_terms(const json& rec, const std::map<std::string, double>& measured) {
  std::map<std::string, double> e;
  for (const auto& [k, v] : rec.at("terms").items())
    if (k != "feature") e[k] = v.get<double>();
  if (rec.at("terms").contains("feature")) {
    const double beta = rec.at("terms").at("feature").get<double>();
    if (rec.at("method") == "rkd") {
      e["distance"] = beta * rec.at("options").at("rkd").at("w_d").get<double>();
      e["angle"] = beta * rec.at("options").at("rkd").at("w_a").get<double>();
    } else {
      for (const auto& [k, v] : measured)
        if (k != "ce" && k != "kd") e[k] = beta;  // the method's own term, whatever kdbench calls it
    }
  }
  return e;
}

// Drops zero weights: a term with weight 0 is a term not trained.
std::map<std::string, double> nonzero(const std::map<std::string, double>& m) {
  std::map<std::string, double> out;
  for (const auto& [k, v] : m)
    if (v != 0) out[k] = v;
  return out;
}

// The same terms with the same weights, up to rounding (kdbench's CE weight 1 - 0.9 is 0.09999999999999998).
testing::AssertionResult same_weights(const std::map<std::string, double>& kdbench,
                                      const std::map<std::string, double>& published) {
  auto show = [](const std::map<std::string, double>& m) {
    std::string s;
    for (const auto& [k, v] : m) s += (s.empty() ? "" : ", ") + k + " " + std::to_string(v);
    return "{" + s + "}";
  };
  const auto a = nonzero(kdbench), b = nonzero(published);
  bool same = a.size() == b.size();
  for (const auto& [k, v] : a) same = same && b.count(k) && std::abs(v - b.at(k)) <= 1e-12 * std::max(1.0, std::abs(v));
  if (same) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "kdbench " << show(a) << ", published " << show(b);
}

// The taps the record's feature indices (or module paths) name in kdbench's models.
std::set<std::string> expected_taps(const json& features, const std::string& side, const std::string& zoo,
                                    const kd::TapShapes& shapes, size_t n) {
  std::set<std::string> taps;
  if (features.is_null()) return taps;
  const bool preact = features.value("preact", false);
  for (const auto& f : features.at(side)) {
    if (f.is_string()) {  // torchdistill's module paths: torchvision ResNet's layerK is the zoo's blockK
      const std::string p = f.get<std::string>();
      taps.insert(p.rfind("layer", 0) == 0 ? "block" + p.substr(5) : p);
    } else {
      taps.insert(tap_of_feat(zoo, f.get<size_t>(), n, preact, shapes));
    }
  }
  return taps;
}

void check_entry_run(const kd::MethodEntry& e, const kd::RunSpec& r, const kd::Plan& plan, const Geometry& g,
                     bool published_protocol, const json& dataset) {
  SCOPED_TRACE(e.path + " (" + e.label + ", student " + r.model + ")");
  ASSERT_FALSE(e.provenance.is_null()) << "the entry names no published line (\"provenance\")";
  std::string why;
  const json* rec = find_record(e.provenance, &why);
  ASSERT_NE(rec, nullptr) << why;
  SCOPED_TRACE("published: " + rec->at("repo").get<std::string>() + " " + rec->at("file").get<std::string>() + " " +
               rec->at("args").get<std::string>());
  const Measured m = measure(r, plan, g);

  // The pair.
  if (!rec->at("student").is_null()) {
    EXPECT_EQ(zoo_name(rec->at("student")), m.student);
  }
  if (!rec->at("teacher").is_null()) {
    EXPECT_EQ(zoo_name(rec->at("teacher")), m.teacher);
  }

  // The weight of every term of the main (last) stage.
  const auto& main = m.weights.back();
  EXPECT_TRUE(same_weights(main, expected_terms(*rec, main))) << "main-stage terms and weights";

  // The temperature, where a term uses one.
  const std::set<std::string> soft{"kd", "tckd", "nckd", "inter", "intra"};
  bool uses_t = false;
  for (const auto& [k, v] : main) uses_t |= soft.count(k) && v != 0;
  if (uses_t) {
    ASSERT_FALSE(rec->at("temperature").is_null());
    EXPECT_DOUBLE_EQ(r.params.at("temperature").get<double>(), rec->at("temperature").get<double>());
  }
  // Warm-ups and the peers' own options.
  const json opts = rec->value("options", json::object());
  if (opts.contains("warmup")) {
    EXPECT_DOUBLE_EQ(r.params.at("warmup_epochs").get<double>(), opts["warmup"].get<double>());
  }
  if (opts.contains("logit_stand")) {
    EXPECT_EQ(r.params.at("logit_standardization"), opts["logit_stand"]);
  }
  if (rec->at("method") == "crd") {
    EXPECT_EQ(r.params.at("nce_k"), opts.at("nce_k"));
    EXPECT_EQ(r.params.at("feat_dim"), opts.at("feat_dim"));
  }

  // The layers: every feature the main and the init stage read.
  const json& feats = rec->at("features");
  if (!feats.is_null() && feats.is_object()) {
    json all_feats = feats;
    if (rec->contains("init")) {
      const json& init = rec->at("init").at("features");
      for (const char* side : {"student", "teacher"})
        for (const auto& f : init.at(side)) all_feats[side].push_back(f);
      all_feats["preact"] = init.value("preact", false) || feats.value("preact", false);
    }
    const size_t ns = feats.value("n_student", size_t{0}), nt = feats.value("n_teacher", size_t{0});
    EXPECT_EQ(m.student_taps, expected_taps(all_feats, "student", m.student, m.student_shapes, ns)) << "student taps";
    EXPECT_EQ(m.teacher_taps, expected_taps(all_feats, "teacher", m.teacher, m.teacher_shapes, nt)) << "teacher taps";
  }

  // The initialisation stage: its epochs, lr and loss weight.
  if (rec->contains("init")) {
    const json& init = rec->at("init");
    ASSERT_EQ(m.stages.size(), 2u) << "an initialisation stage, then the main stage";
    EXPECT_EQ(m.stages[0].epochs, init.at("epochs").get<int>());
    const double lr = m.stages[0].lr > 0 ? m.stages[0].lr : r.recipe.lr;
    EXPECT_DOUBLE_EQ(lr, init.at("lr").get<double>()) << "init-stage lr";
    double w = 0;
    for (const auto& [k, v] : m.weights.front()) w += v;
    EXPECT_EQ(m.weights.front().size(), 1u) << "one term in the init stage";
    EXPECT_DOUBLE_EQ(w, init.at("weight").get<double>()) << "init-stage weight";
  } else {
    EXPECT_EQ(m.stages.size(), 1u) << "the published line has no initialisation stage";
  }

  // The inputs: the teachers are RepDistiller's, so every CIFAR-100 entry sees RepDistiller's normalisation, which
  // mdistiller, its logit-standardisation fork and DIST use too. (ReviewKD and OFD normalise with other statistics,
  // [125.3, 123.0, 113.9] / 255 and [63.0, 62.1, 66.7] / 255: one sweep has one normalisation; the README lists it.)
  static const std::set<std::string> same_inputs{"HobbitLong/RepDistiller", "megvii-research/mdistiller",
                                                 "sunshangquan/logit-standardization-KD",
                                                 "hunto/image_classification_sota"};
  if (rec->contains("normalize") && same_inputs.count(rec->at("repo").get<std::string>())) {
    ASSERT_TRUE(dataset.contains("normalize")) << "the data set keeps kdbench's own statistics";
    for (const char* k : {"mean", "std"})
      EXPECT_EQ(dataset.at("normalize").at(k).get<std::vector<double>>(),
                rec->at("normalize").at(k).get<std::vector<double>>())
          << "normalize." << k;
  }

  // The published protocol: every training image, no validation split.
  if (published_protocol) {
    EXPECT_FALSE(rec->at("protocol").at("validation_split").get<bool>());
    EXPECT_EQ(dataset.value("val_fraction", 0.1), 0.0) << "no validation split";
    EXPECT_FALSE(dataset.contains("train_subset")) << "all training images";
  }

  // The recipe (the main stage's; a run's epochs are its stages' sum). None is published for torchvision's
  // pretrained ResNet-18 (the ImageNet student alone).
  const json& pr = rec->at("recipe");
  if (pr.is_null()) return;
  EXPECT_EQ(r.recipe.epochs, pr.at("epochs").get<int64_t>());
  EXPECT_EQ(r.recipe.batch_size, pr.at("batch_size").get<int64_t>());
  EXPECT_EQ(r.recipe.optimizer, pr.at("optimizer").get<std::string>());
  EXPECT_DOUBLE_EQ(r.recipe.lr, pr.at("lr").get<double>());
  EXPECT_DOUBLE_EQ(r.recipe.momentum, pr.at("momentum").get<double>());
  EXPECT_EQ(r.recipe.nesterov, pr.at("nesterov").get<bool>());
  EXPECT_DOUBLE_EQ(r.recipe.weight_decay, pr.at("weight_decay").get<double>());
  EXPECT_EQ(r.recipe.schedule, pr.at("schedule").get<std::string>());
  EXPECT_EQ(r.recipe.milestones, pr.at("milestones").get<std::vector<int64_t>>());
  EXPECT_DOUBLE_EQ(r.recipe.gamma, pr.at("gamma").get<double>());
  EXPECT_EQ(r.recipe.warmup_epochs, 0);
}

// Every method entry of a config, on the runs of its first seed.
int check_config(const std::string& file, bool published_protocol) {
  auto cfg = kd::load_sweep_config(kd::test::source_dir() + "/" + file);
  auto plan = kd::plan_sweep(cfg);
  const Geometry g = geometry_of(cfg.dataset);
  int checked = 0;
  for (const auto& e : cfg.methods)
    for (const auto& r : plan.runs) {
      if (r.role != kd::RunRole::Student || r.seed != cfg.seeds.front() || r.name != e.label) continue;
      if (std::find(e.students.begin(), e.students.end(), r.model) == e.students.end()) continue;
      if (r.recipe.to_json() != e.recipe.to_json()) continue;  // another entry of the same label
      check_entry_run(e, r, plan, g, published_protocol, cfg.dataset);
      ++checked;
    }
  return checked;
}

TEST(PublishedProtocol, TheCifar100ConfigsReproduceThePublishedLines) {
  // The published protocol (all 50,000 training images, last epoch) and kdbench's (a validation split) run the same
  // entries; only the data set's split differs.
  const int published = check_config("configs/cifar100-published.json", true);
  const int own = check_config("configs/cifar100.json", false);
  EXPECT_EQ(published, own);
  EXPECT_GE(published, 80) << "every student run of every entry";
  auto a = kd::load_sweep_config(kd::test::source_dir() + "/configs/cifar100-published.json").raw;
  auto b = kd::load_sweep_config(kd::test::source_dir() + "/configs/cifar100.json").raw;
  EXPECT_EQ(a["methods"], b["methods"]);
  EXPECT_EQ(a["teachers"], b["teachers"]);
  EXPECT_EQ(a["recipe"], b["recipe"]);
  EXPECT_EQ(a["seeds"], b["seeds"]);
  EXPECT_EQ(a["dataset"]["val_fraction"], 0.0);
  EXPECT_GT(b["dataset"]["val_fraction"].get<double>(), 0.0);
  a["dataset"].erase("val_fraction");
  b["dataset"].erase("val_fraction");
  EXPECT_EQ(a["dataset"], b["dataset"]);
}

TEST(PublishedProtocol, TheImageNetSubsetConfigFollowsTorchdistillsRecipe) {
  EXPECT_EQ(check_config("configs/imagenet-subset.json", false), 3);
}

// The test must be able to fail: a setting that differs from its published line is caught, by name.
TEST(PublishedProtocol, ADifferingSettingIsCaught) {
  auto cfg = kd::load_sweep_config(kd::test::source_dir() + "/configs/cifar100-published.json");
  json j = cfg.raw;
  for (auto& e : j["methods"])
    if (e.value("label", std::string()) == "fitnets_resnet32x4_resnet8x4") e["params"]["alpha"] = 0.9;  // CE 0.1
  auto changed = kd::parse_sweep_config(j, "changed.json");
  auto plan = kd::plan_sweep(changed);
  for (const auto& e : changed.methods)
    if (e.label == "fitnets_resnet32x4_resnet8x4") {
      for (const auto& r : plan.runs)
        if (r.name == e.label && r.seed == changed.seeds.front()) {
          std::string why;
          const json* rec = find_record(e.provenance, &why);
          ASSERT_NE(rec, nullptr) << why;
          const Measured m = measure(r, plan, geometry_of(changed.dataset));
          EXPECT_FALSE(same_weights(m.weights.back(), expected_terms(*rec, m.weights.back())));
          return;
        }
    }
  FAIL() << "no fitnets_resnet32x4_resnet8x4 entry";
}

}  // namespace

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The published protocol's data split: with dataset.val_fraction 0 a run trains on the whole training split and
// records the final epoch's test metrics only (no validation metric, no best-on-validation epoch, nothing selected);
// the report says so and shows each entry's provenance.
TEST(PublishedProtocol, WithoutAValidationSplitOnlyTheFinalEpochIsRecorded) {
  const std::string dir = kd::test::make_temp_dir("protocol");
  json j = json::parse(R"({
    "name": "no-val",
    "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 96, "test_size": 48, "image_size": 12,
                "channels": 1, "seed": 3, "val_fraction": 0},
    "student": "cnn_tiny", "seeds": [0], "threads": 1,
    "teachers": {"medium": {"model": "cnn_medium", "recipe": {"epochs": 1}}},
    "recipe": {"epochs": 2, "batch_size": 32, "lr": 0.05},
    "methods": [
      {"method": "baseline"},
      {"method": "logit_kd", "label": "kd", "teachers": ["medium"],
       "provenance": {"repo": "HobbitLong/RepDistiller", "commit": "b84f547c5db6a35318d4671d7d5c4de74c822403",
                      "file": "scripts/run_cifar_distill.sh", "line": 5, "args": "--distill kd -r 0.1 -a 0.9 -b 0"}}
    ]
  })");
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  kd::SweepSummary s = kd::run_sweep(kd::parse_sweep_config(j, "no-val.json"), kd::SweepOptions{});
  ASSERT_EQ(s.failed, 0);
  ASSERT_EQ(s.done, s.total);
  kd::SqliteStore store(dir + "/out/results.db", true);
  int students = 0;
  for (const auto& r : store.runs()) {
    SCOPED_TRACE(r.name);
    const auto finals = store.finals(r.id);
    EXPECT_TRUE(finals.count("final.test.top1"));
    for (const auto& [k, v] : finals) {
      EXPECT_EQ(k.find(".val."), std::string::npos) << k << " recorded without a validation split";
      EXPECT_NE(k.rfind("bestval.", 0), 0u) << k << ": no best-on-validation epoch without a validation split";
    }
    for (const auto& e : store.epochs(r.id)) EXPECT_NE(e.name.rfind("val.", 0), 0u) << e.name;
    students += r.role == kd::RunRole::Student;
  }
  EXPECT_EQ(students, 2);
  kd::ReportOptions ro;
  ro.figures = false;
  kd::write_report(store, dir + "/report", ro);
  EXPECT_NE(read_text(dir + "/report/index.html").find("No validation split"), std::string::npos);
  const std::string settings = read_text(dir + "/report/settings.md");
  EXPECT_NE(settings.find("Reproduces"), std::string::npos) << settings;
  EXPECT_NE(settings.find("HobbitLong/RepDistiller@b84f547 scripts/run_cifar_distill.sh:5 --distill kd -r 0.1 -a 0.9 "
                          "-b 0"),
            std::string::npos)
      << settings;
}

// "provenance" is read and checked like every other key, and changes no run's id.
TEST(PublishedProtocol, ProvenanceIsValidatedAndLeavesRunIdsAlone) {
  json j = json::parse(R"({
    "name": "prov", "dataset": {"name": "synthetic"}, "student": "cnn_tiny", "seeds": [0],
    "teachers": {"t": {"model": "cnn_medium"}},
    "methods": [{"method": "logit_kd", "teachers": ["t"]}]
  })");
  std::vector<std::string> plain;
  for (const auto& r : kd::plan_sweep(kd::parse_sweep_config(j, "p.json")).runs) plain.push_back(r.id);
  j["methods"][0]["provenance"] = {{"repo", "a/b"}, {"commit", "0123456"}, {"file", "run.sh"}, {"line", 2}};
  std::vector<std::string> with;
  for (const auto& r : kd::plan_sweep(kd::parse_sweep_config(j, "p.json")).runs) with.push_back(r.id);
  EXPECT_EQ(plain, with);
  auto error_key = [&](const json& prov) {
    json k = j;
    k["methods"][0]["provenance"] = prov;
    try {
      kd::parse_sweep_config(k, "p.json");
    } catch (const kd::ConfigError& e) {
      return e.key_path();
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_key({{"commit", "0123456"}, {"file", "run.sh"}}), "methods[0].provenance.repo");
  EXPECT_EQ(error_key({{"repo", "a/b"}, {"commit", "0123456"}, {"file", "run.sh"}, {"url", "x"}}),
            "methods[0].provenance.url");
  EXPECT_EQ(error_key({{"repo", "a/b"}, {"commit", "0123456"}, {"file", "run.sh"}, {"line", 0}}),
            "methods[0].provenance.line");
  EXPECT_EQ(error_key({{"repo", ""}, {"commit", "0123456"}, {"file", "run.sh"}}), "methods[0].provenance.repo");
  EXPECT_EQ(error_key(json("a/b")), "methods[0].provenance");
}

}  // namespace
