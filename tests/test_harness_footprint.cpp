// The methods' own parameters and buffers as `kdbench plan` reports them (harness/method_footprint.h), and the
// layers configs/cifar100.json names for VID, AB, FSP, FT, CRD, ReviewKD and OFD: every entry's method is built
// on the tap shapes of its real student and teacher architectures at CIFAR geometry (synthetic stand-in data of
// 100 classes, 3 x 32 x 32), so a tap name that an architecture lacks, or shapes a method cannot connect, fail here.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>

#include "base/errors.h"
#include "harness/method_footprint.h"
#include "harness/model_state.h"
#include "harness/plan.h"
#include "models/model.h"
#include "peer_models.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using kd::test::tap_of_feat;
using kd::test::zoo_name;

kd::DataSplits cifar_like(int64_t train_size) {
  return kd::open_dataset({{"name", "synthetic"},
                           {"num_classes", 100},
                           {"channels", 3},
                           {"image_size", 32},
                           {"train_size", train_size},
                           {"test_size", 100},
                           {"seed", 1}});
}

// What RepDistiller's own code builds (tests/data/reference/protocol/module_sizes.json, made by
// generators/gen_module_sizes.py from HobbitLong/RepDistiller @ b84f547: train_student.py's modules built with its
// arguments on its models' feature shapes).
json module_sizes() {
  std::ifstream in(kd::test::source_dir() + "/tests/data/reference/protocol/module_sizes.json");
  return json::parse(in);
}

// RepDistiller's modules for the pair of student run `r` (its first teacher).
json repdistiller_modules(const kd::Plan& plan, const kd::RunSpec& r) {
  static const json ref = module_sizes();
  const std::string t = plan.find(r.teacher_ids.at(0))->model;
  for (const auto& p : ref.at("pairs"))
    if (zoo_name(p.at("teacher")) == t && zoo_name(p.at("student")) == r.model) return p.at("modules");
  ADD_FAILURE() << t << " -> " << r.model << " is not among RepDistiller's pairs";
  return json{{"vid", json::object()}};
}

// The (teacher model, student model) pairs configs/cifar100.json runs.
std::set<std::pair<std::string, std::string>> cifar_pairs() {
  auto cfg = kd::load_sweep_config(kd::test::source_dir() + "/configs/cifar100.json");
  std::map<std::string, std::string> model_of;
  for (const auto& t : cfg.teachers) model_of[t.name] = t.model;
  std::set<std::pair<std::string, std::string>> pairs;
  for (const auto& e : cfg.methods)
    for (const auto& t : e.teachers)
      for (const auto& s : e.students) pairs.insert({model_of.at(t), s});
  return pairs;
}

TEST(MethodFootprint, EveryPart2EntryOfTheCifarConfigBuildsOnItsArchitectures) {
  auto cfg = kd::load_sweep_config(kd::test::source_dir() + "/configs/cifar100.json");
  auto plan = kd::plan_sweep(cfg);
  auto data = cifar_like(1000);
  const std::set<std::string> part2{"vid", "ab", "fsp", "ft", "crd", "reviewkd", "ofd"};
  std::set<std::string> seen;
  int built = 0, matched_repdistiller = 0;
  for (const auto& r : plan.runs) {
    if (!part2.count(r.method) || r.seed != cfg.seeds.front() || !seen.insert(r.name).second) continue;
    SCOPED_TRACE(r.name);
    std::optional<kd::MethodFootprint> f;
    ASSERT_NO_THROW(f = kd::method_footprint(r, plan, data));
    ASSERT_TRUE(f.has_value());
    // FSP has no modules; AB's connectors are identities where the shapes agree (RepDistiller's Connector), as
    // for these same-width pairs.
    const std::set<std::string> identity_ab{"ab_wrn_40_2_wrn_16_2", "ab_resnet56_resnet20", "ab_resnet32x4_resnet8x4",
                                            "ab_vgg13_vgg8"};
    if (r.method == "fsp" || identity_ab.count(r.name)) {
      EXPECT_EQ(f->parameters, 0);
    } else {
      EXPECT_GT(f->parameters, 0);
    }
    // RepDistiller's methods: the sizes of the modules its train_student.py builds for the pair.
    static const std::map<std::string, std::string> peer_distill{
        {"vid", "vid"}, {"ab", "abound"}, {"ft", "factor"}, {"crd", "crd"}};
    if (peer_distill.count(r.method)) {
      const json m = repdistiller_modules(plan, r).at(peer_distill.at(r.method));
      EXPECT_EQ(f->parameters, m.at("parameters").get<int64_t>());
      if (r.method != "crd") {
        EXPECT_EQ(f->buffer_elements, m.at("buffer_elements").get<int64_t>());
      } else {  // two banks of n x 128 (RepDistiller's n: its 50,000 training images) and the same 5 numbers
        const int64_t bank = 2 * 128;
        EXPECT_EQ(f->buffer_elements - bank * data.train->size(),
                  m.at("buffer_elements").get<int64_t>() - bank * m.at("n_data").get<int64_t>());
      }
      ++matched_repdistiller;
    }
    if (r.method == "crd") {
      // Two banks of (training samples x 128) floats, the 5 numbers of contrast.params.
      EXPECT_EQ(f->buffer_elements, 2 * data.train->size() * 128 + 5);
      EXPECT_EQ(f->buffer_bytes, 4 * f->buffer_elements);
    }
    ++built;
  }
  EXPECT_EQ(built, 51) << "9 VID, 9 AB, 9 FT, 4 FSP, 9 CRD, 7 ReviewKD and 4 OFD pairs";
  EXPECT_EQ(matched_repdistiller, 36) << "VID, AB, FT and CRD on 9 pairs each";
}

TEST(MethodFootprint, RepDistillersFeaturesAreTheZoosTaps) {
  const json ref = module_sizes();
  std::set<std::string> models;
  for (const auto& [t, s] : cifar_pairs()) models.insert({t, s});
  for (const auto& [peer, f] : ref.at("features").items()) {
    const std::string zoo = zoo_name(peer);
    if (!models.count(zoo)) continue;
    models.erase(zoo);
    auto m = kd::create_model(kd::ModelSpec{zoo, 100, 3, 32});
    m->eval();
    const auto shapes = kd::tap_shapes(*m, torch::zeros({2, 3, 32, 32}));
    for (const char* which : {"feat", "preact"}) {
      const auto& feats = f.at(which);
      for (size_t k = 0; k < feats.size(); ++k) {
        const std::string tap = tap_of_feat(zoo, k, feats.size(), std::string(which) == "preact", shapes);
        SCOPED_TRACE(peer + " " + which + "[" + std::to_string(k) + "] = " + tap);
        ASSERT_TRUE(shapes.count(tap));
        std::vector<int64_t> have(shapes.at(tap).begin() + 1, shapes.at(tap).end());
        EXPECT_EQ(have, feats[k].get<std::vector<int64_t>>());
      }
    }
  }
  EXPECT_TRUE(models.empty()) << "a model of the config has no features in module_sizes.json: " << *models.begin();
}

// FitNets' default regressor is RepDistiller's ConvReg on feat[hint_layer = 2]: on every pair the config runs, its
// parameters and buffers are those of RepDistiller's regress_s (e.g. resnet32x4 -> ShuffleV1: a transposed 4x4
// conv 480 -> 128 with bias + BN(128), 983,424 parameters).
TEST(MethodFootprint, FitNetsRegressorHasRepDistillersSizeOnEveryPairOfTheCifarConfig) {
  const json ref = module_sizes();
  json methods = json::array(), teachers = json::object();
  std::map<std::string, json> expected;  // label -> RepDistiller's hint module
  for (const auto& [t, s] : cifar_pairs()) {
    const json* row = nullptr;
    for (const auto& p : ref.at("pairs"))
      if (zoo_name(p.at("teacher")) == t && zoo_name(p.at("student")) == s) row = &p;
    ASSERT_NE(row, nullptr) << t << " -> " << s << " is not among RepDistiller's pairs";
    const json& hint = row->at("modules").at("hint");
    const size_t layer = hint.at("hint_layer").get<size_t>();
    const size_t nt = ref.at("features").at(row->at("teacher").get<std::string>()).at("feat").size();
    const size_t ns = ref.at("features").at(row->at("student").get<std::string>()).at("feat").size();
    teachers[t] = {{"model", t}};
    const std::string label = "fitnets_" + t + "_" + s;
    methods.push_back({{"method", "fitnets"},
                       {"label", label},
                       {"teachers", {t}},
                       {"students", {s}},
                       {"params",
                        {{"mode", "one_stage"},
                         {"student_tap", tap_of_feat(s, layer, ns, false, {})},
                         {"teacher_tap", tap_of_feat(t, layer, nt, false, {})}}}});
    expected[label] = hint;
  }
  json j = {{"name", "fitnets-sizes"},
            {"dataset",
             {{"name", "synthetic"},
              {"num_classes", 100},
              {"channels", 3},
              {"image_size", 32},
              {"train_size", 200},
              {"test_size", 100}}},
            {"student", "resnet8x4"},
            {"teachers", teachers},
            {"methods", methods}};
  auto cfg = kd::parse_sweep_config(j, "fitnets-sizes.json");
  auto plan = kd::plan_sweep(cfg);
  auto data = kd::open_dataset(cfg.dataset);
  int checked = 0;
  for (const auto& r : plan.runs) {
    if (r.method != "fitnets") continue;
    SCOPED_TRACE(r.name);
    auto f = kd::method_footprint(r, plan, data);
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->parameters, expected.at(r.name).at("parameters").get<int64_t>());
    EXPECT_EQ(f->buffer_elements, expected.at(r.name).at("buffer_elements").get<int64_t>());
    ++checked;
  }
  EXPECT_EQ(checked, 9) << "the 9 teacher -> student pairs of configs/cifar100.json";
  EXPECT_EQ(expected.at("fitnets_resnet32x4_shufflenetv1").at("parameters"), 983424);
}

TEST(MethodFootprint, AMissingTapOrUnconnectableShapesNameTheRun) {
  json j = json::parse(R"({
    "name": "fp", "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 64, "test_size": 32,
                              "image_size": 16, "channels": 1},
    "student": "cnn_tiny", "seeds": [0], "teachers": {"t": {"model": "cnn_medium"}},
    "methods": [{"method": "vid", "label": "vid_bad", "params": {"student_taps": ["raw_block1"],
                                                                   "teacher_taps": ["block1"]}},
                {"method": "fsp", "label": "fsp_bad"},
                {"method": "crd", "label": "crd_ok", "params": {"feat_dim": 16}}]
  })");
  auto cfg = kd::parse_sweep_config(j, "fp.json");
  auto plan = kd::plan_sweep(cfg);
  auto data = kd::open_dataset(cfg.dataset);
  for (const auto& r : plan.runs) {
    if (r.name == "vid_bad") {
      try {
        kd::method_footprint(r, plan, data);
        ADD_FAILURE() << "a missing tap was accepted";
      } catch (const kd::ConfigError& e) {
        EXPECT_EQ(std::string(e.what()),
                  "vid_bad: method 'vid' needs tap 'raw_block1' from student 'cnn_tiny', which it does not have");
      }
    } else if (r.name == "fsp_bad") {
      try {
        kd::method_footprint(r, plan, data);
        ADD_FAILURE() << "unequal channels were accepted";
      } catch (const kd::ConfigError& e) {
        EXPECT_EQ(e.key_path(), "fsp_bad (cnn_tiny).params.teacher_taps");
      }
    } else if (r.name == "crd_ok") {
      auto f = kd::method_footprint(r, plan, data);
      ASSERT_TRUE(f.has_value());
      EXPECT_EQ(f->parameters, (8 + 1) * 16 + (32 + 1) * 16)
          << "embeddings of cnn_tiny's 8 and cnn_medium's 32 features";
      EXPECT_EQ(f->buffer_elements, 2 * data.train->size() * 16 + 5);
    } else if (r.role == kd::RunRole::Teacher) {
      EXPECT_FALSE(kd::method_footprint(r, plan, data).has_value());
    }
  }
}

}  // namespace
