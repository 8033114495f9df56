// A store URL's secrets (issue 24, case 5): what libpq reads as a password from a connection string -- whatever
// its form: a '?' or '@' in the URL's userinfo, a percent-encoded query key, sslpassword, a key=value string --
// is what kdbench removes wherever it shows, logs or stores the URL. libpq's own parser (PQconninfoParse) is the
// reference: each form below carries a secret to libpq, and the redacted form carries none but still names the
// same server, database and user.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <map>
#include <string>

#include "store/store.h"

namespace {

// libpq's reading of a connection string: keyword -> value, for the keywords that have one; {"!error": message}
// when it cannot parse it.
std::map<std::string, std::string> libpq_reads(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  std::map<std::string, std::string> out;
  if (!opts) {
    out["!error"] = err ? err : "?";
    if (err) PQfreemem(err);
    return out;
  }
  for (PQconninfoOption* o = opts; o->keyword; ++o)
    if (o->val) out[o->keyword] = o->val;
  PQconninfoFree(opts);
  return out;
}

TEST(StoreUrl, WhateverLibpqReadsAsASecretIsRemoved) {
  const struct {
    std::string conninfo;
    std::vector<std::string> secrets;  // as written, and as libpq decodes them
  } forms[] = {
      {"postgresql://kd:pa?ss-1@db.example:5432/kdb", {"pa?ss-1"}},
      {"postgresql://kd:p%40ss-3@db.example/kdb", {"p%40ss-3", "p@ss-3"}},
      {"postgresql://db.example/kdb?user=kd&pass%77ord=s3cr3t-4", {"s3cr3t-4"}},
      {"postgresql://kd@db.example/kdb?sslmode=require&sslpassword=s3cr3t-5", {"s3cr3t-5"}},
      {"postgres://kd:s3cr3t-6@db.example/kdb?password=other-6&application_name=a", {"s3cr3t-6", "other-6"}},
      {"postgresql://kd@db.example/kdb?%70assword=s3%63r3t-7", {"s3%63r3t-7", "s3cr3t-7"}},
      {"host=db.example user=kd password=s3cr3t-8 dbname=kdb", {"s3cr3t-8"}},
      {"host=db.example port=5433 user=kd password='s3 cr3t-9' dbname=kdb sslmode=disable", {"s3 cr3t-9"}},
      {"dbname=kdb user=kd sslpassword=s3cr3t-10 host=db.example", {"s3cr3t-10"}},
  };
  for (const auto& f : forms) {
    SCOPED_TRACE(f.conninfo);
    const auto original = libpq_reads(f.conninfo);
    ASSERT_FALSE(original.count("!error")) << original.at("!error");
    ASSERT_TRUE(original.count("password") || original.count("sslpassword")) << "the form carries no secret to libpq";
    EXPECT_TRUE(kd::is_store_url(f.conninfo));
    const std::string shown = kd::redact_store_url(f.conninfo);
    for (const auto& s : f.secrets) EXPECT_EQ(shown.find(s), std::string::npos) << shown;
    const auto after = libpq_reads(shown);
    ASSERT_FALSE(after.count("!error")) << shown << ": " << after.at("!error");
    EXPECT_FALSE(after.count("password")) << shown;
    EXPECT_FALSE(after.count("sslpassword")) << shown;
    for (const char* k : {"host", "port", "dbname", "user", "sslmode", "application_name"}) {
      SCOPED_TRACE(k);
      EXPECT_EQ(after.count(k), original.count(k)) << shown;
      if (original.count(k) && after.count(k)) {
        EXPECT_EQ(after.at(k), original.at(k)) << shown;
      }
    }
  }
  // What carries no secret comes back as libpq reads it, and a file path unchanged.
  EXPECT_EQ(libpq_reads(kd::redact_store_url("postgresql://kd@db.example:5432/kdb")),
            libpq_reads("postgresql://kd@db.example:5432/kdb"));
  EXPECT_EQ(kd::redact_store_url("results/x/results.db"), "results/x/results.db");
  EXPECT_EQ(kd::redact_store_url("results/a=b c.db"), "results/a=b c.db");
  EXPECT_FALSE(kd::is_store_url("results/a=b c.db"));
  EXPECT_FALSE(kd::is_store_url("results.db"));
  // An unencoded '@' in a password: libpq takes the userinfo up to the first '@' and the rest of the password
  // as part of the host, which is hidden too.
  const std::string at = kd::redact_store_url("postgresql://kd:pa?ss@x-2@db.example:5432/kdb");
  EXPECT_EQ(at.find("pa?ss"), std::string::npos) << at;
  EXPECT_EQ(at.find("x-2"), std::string::npos) << at;
  // A URL libpq cannot parse shows none of what follows the scheme (its parts may be a password).
  const std::string broken = kd::redact_store_url("postgresql://kd:s3cr3t-11@db.example/kdb?nonsense=1");
  EXPECT_EQ(broken.find("s3cr3t-11"), std::string::npos) << broken;
}

}  // namespace
