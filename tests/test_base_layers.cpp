// scripts/check-layers: the folders are layers and every include points down. It passes on this tree and
// fails, naming the file and the rule, on a copy with one upward or sideways include added.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "test_util.h"

namespace {

std::string script() {
  return kd::test::source_dir() + "/scripts/check-layers";
}

// A copy of the tree's rooms (every room scripts/check-layers knows) in a temporary folder.
std::string copy_rooms(const std::string& tag) {
  std::string dir = kd::test::make_temp_dir(tag);
  for (const char* room : {"base", "datasets", "models", "methods", "store", "reports", "pybridge", "harness", "cli"}) {
    auto r = kd::test::run_command("cp -r '" + kd::test::source_dir() + "/" + room + "' '" + dir + "/'");
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  return dir;
}

void append(const std::string& path, const std::string& line) {
  std::ofstream f(path, std::ios::app);
  f << line << "\n";
}

TEST(Layers, ThisTreeHasNoIncludeAcrossTheLayers) {
  auto r = kd::test::run_command(script());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("every include points down"), std::string::npos) << r.output;
}

TEST(Layers, AnUpwardIncludeFailsAndNamesTheFile) {
  std::string dir = copy_rooms("layers-up");
  EXPECT_EQ(kd::test::run_command(script() + " '" + dir + "'").exit_code, 0) << "the copy passes as it is";
  append(dir + "/datasets/dataset.h", "#include \"harness/plan.h\"");
  auto r = kd::test::run_command(script() + " '" + dir + "'");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("datasets/dataset.h:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"harness/plan.h\", but datasets/ may include only base"), std::string::npos) << r.output;
}

TEST(Layers, ASidewaysIncludeBetweenRoomsOfOneFloorFails) {
  std::string dir = copy_rooms("layers-side");
  append(dir + "/methods/losses.h", "#include \"models/model.h\"");
  append(dir + "/reports/stats.h", "#include \"harness/trainer.h\"");
  auto r = kd::test::run_command(script() + " '" + dir + "'");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("methods/losses.h:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("reports/stats.h:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 include(s) cross the layers"), std::string::npos) << r.output;
}

}  // namespace
