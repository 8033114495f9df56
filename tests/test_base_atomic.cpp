// Temporary files of base/fsutil (issue 24, case 8): someone who can write the folder a file goes to must not
// be able to make kdbench write another file. The temporary beside the file is created new (O_CREAT | O_EXCL |
// O_NOFOLLOW) under a name with an unpredictable part, so a link planted under any name kdbench used to use is
// neither followed nor replaced; temporaries a dead process of this host left are still found and removed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "base/fsutil.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(AtomicFiles, APlantedLinkIsNeverFollowed) {
  const std::string dir = kd::test::make_temp_dir("atomic");
  const std::string victim = dir + "/victim", target = dir + "/report.md";
  kd::test::write_file(victim, "precious");
  // Under the name the temporary had (target.tmp.<pid>.<host>): a link to the victim.
  const std::string old_name = target + ".tmp." + std::to_string(::getpid()) + "." + kd::this_host();
  ASSERT_EQ(::symlink(victim.c_str(), old_name.c_str()), 0);
  kd::write_text_atomically(target, "the report");
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_EQ(slurp(target), "the report");
  EXPECT_TRUE(fs::is_symlink(old_name)) << "someone else's link is left alone";
  struct stat st {};
  ASSERT_EQ(::lstat(target.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST(AtomicFiles, TemporaryNamesAreNewAndUnpredictable) {
  const std::string dir = kd::test::make_temp_dir("atomic");
  const std::string target = dir + "/ckpt.pt";
  const std::string prefix = target + ".tmp." + std::to_string(::getpid()) + "." + kd::this_host() + ".";
  std::set<std::string> names;
  for (int i = 0; i < 20; ++i)
    kd::write_atomically(target, [&](const std::string& tmp) {
      names.insert(tmp);
      // The temporary exists already, as a regular file of its own (created, not found), when `write` runs.
      struct stat st {};
      ASSERT_EQ(::lstat(tmp.c_str(), &st), 0) << tmp;
      EXPECT_TRUE(S_ISREG(st.st_mode)) << tmp;
      EXPECT_EQ(st.st_nlink, 1u) << tmp;
      std::ofstream(tmp) << i;
    });
  EXPECT_EQ(names.size(), 20u) << "every write has a temporary of its own";
  for (const auto& n : names) {
    ASSERT_EQ(n.rfind(prefix, 0), 0u) << n << " (pid and host stay in the name, for remove_stale_temporaries)";
    EXPECT_GE(n.size() - prefix.size(), 8u) << n;
  }
  EXPECT_EQ(slurp(target), "19");
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
}

TEST(AtomicFiles, StaleTemporariesOfThisHostAreRemovedOthersKept) {
  const std::string dir = kd::test::make_temp_dir("atomic");
  const std::string gone = dir + "/a.pt.tmp.999999999." + kd::this_host() + ".Xy3kQ9mN2pL7";
  const std::string old_style = dir + "/b.pt.tmp.999999999." + kd::this_host();
  const std::string mine = dir + "/c.pt.tmp." + std::to_string(::getpid()) + "." + kd::this_host() + ".Ab12Cd34Ef56";
  const std::string other_host = dir + "/d.pt.tmp.999999999.another-host.Xy3kQ9mN2pL7";
  for (const auto& f : {gone, old_style, mine, other_host}) kd::test::write_file(f, "x");
  kd::remove_stale_temporaries(dir);
  EXPECT_FALSE(fs::exists(gone));
  EXPECT_FALSE(fs::exists(old_style));
  EXPECT_TRUE(fs::exists(mine)) << "a live process's temporary";
  EXPECT_TRUE(fs::exists(other_host)) << "another host's pid means nothing here";
}

}  // namespace
