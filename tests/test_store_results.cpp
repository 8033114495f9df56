#include <gtest/gtest.h>

#include <filesystem>

#include "store/store.h"
#include "test_util.h"

namespace {

kd::RunRecord make_run(const std::string& id) {
  kd::RunRecord r;
  r.id = id;
  r.sweep_id = "s1";
  r.role = kd::RunRole::Student;
  r.name = "logit_kd";
  r.method = "logit_kd";
  r.setting = R"({"temperature":4})";
  r.seed = 1;
  r.model = "cnn_tiny";
  return r;
}

TEST(ResultsStore, RoundTripAndAtomicFinish) {
  std::string dir = kd::test::make_temp_dir("store");
  kd::SqliteStore store(dir + "/results.db");
  store.put_sweep("s1", "demo", "{}", R"({"threads":2})");
  store.add_run(make_run("a"));
  store.add_run(make_run("a"));  // idempotent
  ASSERT_EQ(store.runs().size(), 1u);
  EXPECT_EQ(store.run("a")->status, kd::RunStatus::Pending);
  ASSERT_TRUE(store.claim_run("a", "host:1", 60));
  EXPECT_FALSE(store.claim_run("a", "host:2", 60)) << "a running run with a fresh heartbeat is not claimable";
  EXPECT_EQ(store.run("a")->status, kd::RunStatus::Running);
  // Before finish: no finals, not done.
  EXPECT_TRUE(store.finals("a").empty());
  kd::RunRecord done = make_run("a");
  done.wall_seconds = 12.5;
  done.params = 1234;
  store.finish_run(done, {{"main", 0, "val.top1", 50.0}, {"main", 1, "val.top1", 60.0}},
                   {{"final.test.top1", 61.0}, {"bestval.epoch", 1}});
  auto r = store.run("a");
  EXPECT_EQ(r->status, kd::RunStatus::Done);
  EXPECT_DOUBLE_EQ(r->wall_seconds, 12.5);
  EXPECT_EQ(r->params, 1234);
  EXPECT_EQ(store.epochs("a").size(), 2u);
  EXPECT_DOUBLE_EQ(store.finals("a").at("final.test.top1"), 61.0);
  // A finished run is never reset or reclaimed.
  store.reset_run("a");
  EXPECT_EQ(store.run("a")->status, kd::RunStatus::Done);
  EXPECT_FALSE(store.claim_run("a", "host:3", 0));
}

TEST(ResultsStore, StaleRunIsReclaimable) {
  std::string dir = kd::test::make_temp_dir("store");
  kd::SqliteStore store(dir + "/results.db");
  store.add_run(make_run("b"));
  ASSERT_TRUE(store.claim_run("b", "host:1", 60));
  // With a stale threshold of -1 s every heartbeat is "old": the run can be taken over.
  EXPECT_TRUE(store.claim_run("b", "host:2", -1));
  EXPECT_EQ(store.run("b")->owner, "host:2");
}

TEST(ResultsStore, FailedRunKeepsErrorAndEpochs) {
  std::string dir = kd::test::make_temp_dir("store");
  kd::SqliteStore store(dir + "/results.db");
  store.add_run(make_run("c"));
  ASSERT_TRUE(store.claim_run("c", "h:1", 60));
  store.fail_run("c", "", R"({"epoch":2,"step":7,"term":"kd","message":"loss is NaN"})", {{"main", 0, "val.top1", 10}});
  auto r = store.run("c");
  EXPECT_EQ(r->status, kd::RunStatus::Failed);
  EXPECT_NE(r->error.find("\"term\":\"kd\""), std::string::npos);
  EXPECT_EQ(store.epochs("c").size(), 1u);
  store.reset_run("c");
  EXPECT_EQ(store.run("c")->status, kd::RunStatus::Pending);
}

TEST(ResultsStore, TwoHandlesClaimExactlyOnce) {
  std::string dir = kd::test::make_temp_dir("store");
  kd::SqliteStore a(dir + "/results.db");
  kd::SqliteStore b(dir + "/results.db");
  for (int i = 0; i < 20; ++i) a.add_run(make_run("r" + std::to_string(i)));
  int claimed_a = 0, claimed_b = 0;
  for (int i = 0; i < 20; ++i) {
    std::string id = "r" + std::to_string(i);
    claimed_a += a.claim_run(id, "h:1", 600);
    claimed_b += b.claim_run(id, "h:2", 600);
  }
  EXPECT_EQ(claimed_a, 20);
  EXPECT_EQ(claimed_b, 0);
}

TEST(ResultsStore, ReadOnlyOpenOfMissingFileNamesIt) {
  std::string dir = kd::test::make_temp_dir("store");
  try {
    kd::SqliteStore s(dir + "/nope.db", true);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("nope.db"), std::string::npos) << e.what();
  }
}

}  // namespace
