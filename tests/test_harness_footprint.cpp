// The methods' own parameters and buffers as `kdbench plan` reports them (harness/method_footprint.h), and the
// layers configs/cifar100.json names for VID, AB, FSP, FT, CRD, ReviewKD and OFD: every entry's method is built
// on the tap shapes of its real student and teacher architectures at CIFAR geometry (synthetic stand-in data of
// 100 classes, 3 x 32 x 32), so a tap name that an architecture lacks, or shapes a method cannot connect, fail here.
#include <gtest/gtest.h>

#include <set>

#include "base/errors.h"
#include "harness/method_footprint.h"
#include "harness/plan.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;

kd::DataSplits cifar_like(int64_t train_size) {
  return kd::open_dataset({{"name", "synthetic"},
                           {"num_classes", 100},
                           {"channels", 3},
                           {"image_size", 32},
                           {"train_size", train_size},
                           {"test_size", 100},
                           {"seed", 1}});
}

TEST(MethodFootprint, EveryPart2EntryOfTheCifarConfigBuildsOnItsArchitectures) {
  auto cfg = kd::load_sweep_config(kd::test::source_dir() + "/configs/cifar100.json");
  auto plan = kd::plan_sweep(cfg);
  auto data = cifar_like(1000);
  const std::set<std::string> part2{"vid", "ab", "fsp", "ft", "crd", "reviewkd", "ofd"};
  std::set<std::string> seen;
  int built = 0;
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
    if (r.method == "crd") {
      // Two banks of (training samples x 128) floats, the 5 numbers of contrast.params.
      EXPECT_EQ(f->buffer_elements, 2 * data.train->size() * 128 + 5);
      EXPECT_EQ(f->buffer_bytes, 4 * f->buffer_elements);
    }
    ++built;
  }
  EXPECT_EQ(built, 51) << "9 VID, 9 AB, 9 FT, 4 FSP, 9 CRD, 7 ReviewKD and 4 OFD pairs";
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
