// The PostgreSQL backend against a real server (initdb into a temporary folder, 127.0.0.1, a free port):
// the store contract the SQLite backend keeps, claims that only one of many concurrent claimers wins,
// finishing only by the owner, stale claims taken over, and credentials that never show.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <thread>

#include "store/postgres_store.h"
#include "store/store.h"
#include "test_util.h"

namespace {

using kd::test::PostgresServer;

kd::RunRecord make_run(const std::string& id) {
  kd::RunRecord r;
  r.id = id;
  r.sweep_id = "s1";
  r.name = "logit_kd";
  r.method = "logit_kd";
  r.setting = R"({"temperature":4})";
  r.seed = 1;
  r.model = "cnn_tiny";
  return r;
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new PostgresServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  // A fresh database per test.
  std::string fresh_url() {
    static int n = 0;
    const std::string db = "t" + std::to_string(++n);
    server_->create_database(db);
    return server_->url(true, db);
  }
  static PostgresServer* server_;
};
PostgresServer* PostgresStoreTest::server_ = nullptr;

TEST(StoreUrl, PasswordIsRemovedWhereverItIs) {
  EXPECT_EQ(kd::redact_store_url("postgresql://kd:secret@db.example:5432/kdb"), "postgresql://kd@db.example:5432/kdb");
  EXPECT_EQ(kd::redact_store_url("postgres://kd:p%40ss:w@h/d"), "postgres://kd@h/d");
  EXPECT_EQ(kd::redact_store_url("postgresql://kd:x%40y@h:1/d?sslmode=require&password=z&application_name=a"),
            "postgresql://kd@h:1/d?application_name=a&sslmode=require");  // libpq's order of its keywords
  EXPECT_EQ(kd::redact_store_url("postgresql://h/d?password=z"), "postgresql://h/d");
  EXPECT_EQ(kd::redact_store_url("postgresql://kd@h/d"), "postgresql://kd@h/d");
  EXPECT_EQ(kd::redact_store_url("results/x/results.db"), "results/x/results.db");
  EXPECT_TRUE(kd::is_store_url("postgresql://h/d"));
  EXPECT_TRUE(kd::is_store_url("postgres://h/d"));
  EXPECT_FALSE(kd::is_store_url("results.db"));
}

TEST_F(PostgresStoreTest, RoundTripClaimsAndOwnership) {
  const std::string url = fresh_url();
  auto store = kd::open_store(url);
  ASSERT_TRUE(store->spans_hosts());
  EXPECT_EQ(store->path().find(PostgresServer::kPassword), std::string::npos) << store->path();
  store->put_sweep("s1", "demo", "{}", R"({"threads":2})");
  store->add_run(make_run("a"));
  store->add_run(make_run("a"));  // idempotent
  store->add_run(make_run("b"));
  ASSERT_EQ(store->runs().size(), 2u);
  EXPECT_EQ(store->runs()[0].id, "a") << "runs come back in insertion order";
  ASSERT_TRUE(store->claim_run("a", "host:1", 60));
  EXPECT_FALSE(store->claim_run("a", "host:2", 60)) << "a running run with a fresh heartbeat is not claimable";
  EXPECT_TRUE(store->heartbeat("a", "host:1"));
  EXPECT_FALSE(store->heartbeat("a", "host:2"));

  kd::RunRecord done = make_run("a");
  done.wall_seconds = 12.5;
  done.params = 1234;
  done.owner = "host:2";  // not the owner: nothing is written
  EXPECT_FALSE(store->finish_run(done, {{"main", 0, "val.top1", 50.0}}, {{"final.test.top1", 61.0}}));
  EXPECT_EQ(store->run("a")->status, kd::RunStatus::Running);
  EXPECT_TRUE(store->finals("a").empty());
  done.owner = "host:1";
  ASSERT_TRUE(store->finish_run(done, {{"main", 0, "val.top1", 50.0}, {"main", 1, "val.top1", 60.0}},
                                {{"final.test.top1", 61.0}, {"bestval.epoch", 1}}));
  auto a = store->run("a");
  EXPECT_EQ(a->status, kd::RunStatus::Done);
  EXPECT_DOUBLE_EQ(a->wall_seconds, 12.5);
  EXPECT_EQ(a->params, 1234);
  auto ep = store->epochs("a");
  ASSERT_EQ(ep.size(), 2u);
  EXPECT_EQ(ep[1].epoch, 1);
  EXPECT_DOUBLE_EQ(ep[1].value, 60.0);
  EXPECT_DOUBLE_EQ(store->finals("a").at("final.test.top1"), 61.0);
  EXPECT_FALSE(store->claim_run("a", "host:3", 0)) << "a finished run is never claimed again";
  store->reset_run("a");
  EXPECT_EQ(store->run("a")->status, kd::RunStatus::Done) << "reset never touches a finished run";

  // Failure, owned.
  ASSERT_TRUE(store->claim_run("b", "host:1", 60));
  EXPECT_FALSE(store->fail_run("b", "host:9", R"({"message":"x"})", {}));
  EXPECT_TRUE(store->fail_run("b", "host:1", R"({"epoch":2,"message":"loss is NaN"})", {{"main", 0, "val.top1", 10}}));
  EXPECT_EQ(store->run("b")->status, kd::RunStatus::Failed);
  EXPECT_NE(store->run("b")->error.find("NaN"), std::string::npos);

  // Reports' reads: a second, read-only connection sees it all; it cannot write.
  auto ro = kd::open_store(url, /*read_only=*/true);
  EXPECT_EQ(ro->runs().size(), 2u);
  EXPECT_EQ(ro->sweeps().size(), 1u);
  EXPECT_THROW(ro->add_run(make_run("c")), std::runtime_error);
  EXPECT_EQ(server_->psql("SELECT event FROM run_events WHERE run_id='a' ORDER BY seq", url.substr(url.rfind('/') + 1)),
            "claim\ndiscard\nfinish\n");
}

TEST_F(PostgresStoreTest, StaleClaimIsTakenOverAndTheLateOwnerRecordsNothing) {
  auto store = kd::open_store(fresh_url());
  store->add_run(make_run("r"));
  ASSERT_TRUE(store->claim_run("r", "old:1", 60));
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_FALSE(store->claim_run("r", "new:2", 60)) << "the heartbeat is 1.2 s old, the limit 60 s";
  ASSERT_TRUE(store->claim_run("r", "new:2", 1.0)) << "the heartbeat is older than 1 s: the run is claimed again";
  EXPECT_FALSE(store->heartbeat("r", "old:1")) << "the old owner learns it lost the run";
  kd::RunRecord late = make_run("r");
  late.owner = "old:1";
  EXPECT_FALSE(store->finish_run(late, {}, {{"final.test.top1", 1.0}}));
  kd::RunRecord mine = make_run("r");
  mine.owner = "new:2";
  EXPECT_TRUE(store->finish_run(mine, {}, {{"final.test.top1", 2.0}}));
  EXPECT_DOUBLE_EQ(store->finals("r").at("final.test.top1"), 2.0);
}

// Many connections claim the same runs at once: each run goes to exactly one of them.
TEST_F(PostgresStoreTest, ConcurrentClaimsHaveOneWinnerEach) {
  const std::string url = fresh_url();
  {
    auto store = kd::open_store(url);
    for (int i = 0; i < 40; ++i) store->add_run(make_run("run" + std::to_string(i)));
  }
  std::atomic<int> wins[40] = {};
  std::vector<std::thread> claimers;
  for (int c = 0; c < 6; ++c)
    claimers.emplace_back([&, c] {
      auto store = kd::open_store(url);  // each with its own connection, as workers are
      for (int i = 0; i < 40; ++i)
        if (store->claim_run("run" + std::to_string(i), "w:" + std::to_string(c), 300)) ++wins[i];
    });
  for (auto& t : claimers) t.join();
  for (int i = 0; i < 40; ++i) EXPECT_EQ(wins[i].load(), 1) << "run" << i;
}

// Credentials come from the URL, or from PGPASSWORD when the URL has none; a wrong one is one clear error
// that does not show the password it was given.
TEST_F(PostgresStoreTest, CredentialsFromUrlOrEnvironmentNeverShown) {
  const std::string url = fresh_url();
  const std::string db = url.substr(url.rfind('/') + 1);
  EXPECT_NO_THROW(kd::open_store(url));
  const std::string bare = server_->url(false, db);
  ::unsetenv("PGPASSWORD");
  ::setenv("PGPASSFILE", "/nonexistent", 1);
  EXPECT_THROW(kd::open_store(bare), std::runtime_error) << "no password anywhere";
  ::setenv("PGPASSWORD", PostgresServer::kPassword, 1);
  EXPECT_NO_THROW(kd::open_store(bare));
  ::unsetenv("PGPASSWORD");
  const std::string wrong = "postgresql://kd:not-the-pw-77@127.0.0.1:" + std::to_string(server_->port()) + "/" + db;
  try {
    kd::open_store(wrong);
    ADD_FAILURE() << "a wrong password connected";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find("not-the-pw-77"), std::string::npos) << msg;
    EXPECT_NE(msg.find("password authentication failed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("postgresql://kd@127.0.0.1"), std::string::npos) << msg;
  }
  ::unsetenv("PGPASSFILE");
}

TEST_F(PostgresStoreTest, ImportKeepsRecordsAndNeverReplacesAFinishedRun) {
  auto store = kd::open_store(fresh_url());
  kd::RunRecord r = make_run("x");
  r.status = kd::RunStatus::Done;
  r.owner = "shard:1";
  r.started_at = 100;
  r.finished_at = 200;
  r.checkpoint = "/c/x.pt";
  store->import_run(r, {{"main", 0, "val.top1", 5}}, {{"final.test.top1", 7}});
  auto got = store->run("x");
  EXPECT_EQ(got->status, kd::RunStatus::Done);
  EXPECT_DOUBLE_EQ(got->finished_at, 200);
  EXPECT_EQ(got->checkpoint, "/c/x.pt");
  r.finished_at = 300;
  store->import_run(r, {}, {{"final.test.top1", 9}});
  EXPECT_DOUBLE_EQ(store->run("x")->finished_at, 200);
  EXPECT_DOUBLE_EQ(store->finals("x").at("final.test.top1"), 7);
}

}  // namespace
