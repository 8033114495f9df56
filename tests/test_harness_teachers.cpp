// Teacher entries of every kind in a sweep config: what each reads, what its run id depends on, and the one
// error for each mistake (a missing file key, a name map that is not one, keys another kind has).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "harness/plan.h"
#include "test_util.h"

using nlohmann::json;

namespace {

json config_with(const json& teacher) {
  json j = json::parse(R"({"name": "t", "dataset": {"name": "synthetic"}, "student": "cnn_tiny", "seeds": [0],
                           "methods": [{"method": "logit_kd"}]})");
  j["teachers"] = {{"t", teacher}};
  return j;
}

std::string config_error(const json& teacher) {
  try {
    kd::parse_sweep_config(config_with(teacher), "c.json");
  } catch (const kd::ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

std::string teacher_run_id(const json& teacher) {
  auto cfg = kd::parse_sweep_config(config_with(teacher), "c.json");
  auto plan = kd::plan_sweep(cfg);
  for (const auto& r : plan.runs)
    if (r.role == kd::RunRole::Teacher) return r.id;
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(TeacherEntries, EveryKindIsReadWithItsKeys) {
  auto cfg =
      kd::parse_sweep_config(config_with({{"model", "resnet8"},
                                          {"obtain", "pytorch"},
                                          {"file", "ckpt.pth"},
                                          {"key", "model"},
                                          {"name_map", {{"prefix", {{"module.", ""}, {"module.aux.", nullptr}}}}}}),
                             "c.json");
  const auto& t = cfg.teachers.at(0);
  EXPECT_EQ(t.obtain, "pytorch");
  EXPECT_EQ(t.file, "ckpt.pth");
  EXPECT_EQ(t.key, "model");
  EXPECT_EQ(t.name_map.apply("module.conv1.weight"), std::optional<std::string>("conv1.weight"));
  EXPECT_EQ(t.name_map.apply("module.aux.w"), std::nullopt);  // the longer prefix wins, and drops it

  cfg = kd::parse_sweep_config(config_with({{"obtain", "export"}, {"file", "t.pt2"}, {"taps", {"logits", "block2"}}}),
                               "c.json");
  EXPECT_EQ(cfg.teachers.at(0).taps, (std::vector<std::string>{"logits", "block2"}));
  auto plan = kd::plan_sweep(cfg);
  auto rec = kd::make_run_record(plan.runs.at(0), plan.sweep_id);
  EXPECT_EQ(rec.model, "export:t.pt2");

  // A name map can live in a file of its own.
  const std::string dir = kd::test::make_temp_dir("namemap");
  kd::test::write_file(dir + "/map.json", R"({"rename": {"head.weight": "fc.weight"}})");
  cfg = kd::parse_sweep_config(
      config_with({{"model", "resnet8"}, {"obtain", "pytorch"}, {"file", "w.pth"}, {"name_map", dir + "/map.json"}}),
      "c.json");
  EXPECT_EQ(cfg.teachers.at(0).name_map.apply("head.weight"), std::optional<std::string>("fc.weight"));
}

// A teacher's run id depends on what it loads: the file, the key and the name map.
TEST(TeacherEntries, RunIdFollowsFileKeyAndNameMap) {
  const json base = {{"model", "resnet8"}, {"obtain", "pytorch"}, {"file", "a.pth"}};
  const std::string id = teacher_run_id(base);
  json other = base;
  other["key"] = "model";
  EXPECT_NE(teacher_run_id(other), id);
  other = base;
  other["name_map"] = {{"prefix", {{"module.", ""}}}};
  EXPECT_NE(teacher_run_id(other), id);
  other = base;
  other["file"] = "b.pth";
  EXPECT_NE(teacher_run_id(other), id);
  EXPECT_EQ(teacher_run_id(base), id);
  // The kinds kdbench had keep their ids: a checkpoint teacher's config is what it was.
  const json ckpt = {{"model", "resnet8"}, {"obtain", "checkpoint"}, {"file", "a.pt"}};
  auto cfg = kd::parse_sweep_config(config_with(ckpt), "c.json");
  auto plan = kd::plan_sweep(cfg);
  EXPECT_EQ(
      plan.runs.at(0).config.dump(),
      R"({"dataset":{"name":"synthetic"},"file":"a.pt","model":"resnet8","obtain":"checkpoint","role":"teacher","taps":[]})");
}

TEST(TeacherEntries, MistakesAreOneConfigErrorWithTheKeyPath) {
  std::string e = config_error({{"model", "resnet8"}, {"obtain", "pytorch"}});
  EXPECT_TRUE(contains(e, "teachers.t.file")) << e;
  e = config_error({{"model", "resnet8"}, {"obtain", "checkpoint"}, {"file", "a.pt"}, {"key", "model"}});
  EXPECT_TRUE(contains(e, "teachers.t.key: unknown key")) << e;
  e = config_error({{"model", "resnet8"}, {"obtain", "pytorch"}, {"file", "a.pth"}, {"name_map", {{"prefix", 3}}}});
  EXPECT_TRUE(contains(e, "teachers.t.name_map.prefix")) << e;
  e = config_error({{"model", "resnet8"}, {"obtain", "pytorch"}, {"file", "a.pth"}, {"name_map", "/no/map.json"}});
  EXPECT_TRUE(contains(e, "/no/map.json")) << e;
  e = config_error({{"obtain", "export"}, {"file", "t.pt2"}, {"taps", {"block2"}}});
  EXPECT_TRUE(contains(e, "teachers.t.taps: must name the output that holds the logits")) << e;
  e = config_error({{"obtain", "export"}, {"file", "t.pt2"}, {"model", "resnet9"}});
  EXPECT_TRUE(contains(e, "teachers.t.model: unknown model 'resnet9'")) << e;
  e = config_error({{"model", "resnet8"}, {"obtain", "onnx"}, {"file", "t.onnx"}});
  EXPECT_TRUE(contains(e, "teachers.t.obtain")) << e;
}

}  // namespace
