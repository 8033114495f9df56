// Security through the real CLI (KDBENCH_BIN), issue 24: configs, teacher files, shard stores and store URLs
// come from other people, so nothing in them may run a command through the job files kdbench writes, write
// outside the output folder, crash kdbench or show a password; and a teacher file can be pinned by its sha256.
//   - `kdbench slurm`: the generated .sbatch is checked with `bash -n` and run (its `exec` replaced by a
//     function that records the command's arguments) for hostile names, outputs and cache paths (case 1);
//   - `kdbench k8s`: the manifest is read back with a YAML parser (PyYAML) (case 2);
//   - teacher files that crashed kdbench or ended in a raw LibTorch error (cases 3 and 9), pinned teachers;
//   - store URLs whose password escaped redaction, end to end through a real PostgreSQL server (case 5);
//   - `kdbench merge` of a shard whose store names a run "../../escaped" (case 6);
//   - `kdbench runs --format csv` of labels a spreadsheet would run (case 10).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hostile_files.h"
#include "store/store.h"
#include "test_util.h"

namespace fs = std::filesystem;
using kd::test::PostgresServer;
using nlohmann::json;

namespace {

namespace p = kd::test::pickle;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// `s` in single quotes for sh.
std::string q(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

kd::test::CommandResult kdbench(const std::string& args, const std::string& env = "") {
  return kd::test::run_command(env + (env.empty() ? "" : " ") + q(kd::test::kdbench_bin()) + " " + args);
}

// A sweep of one tiny baseline run on synthetic data, written to `path` with `over` merged in.
std::string write_config(const std::string& path, const std::string& dir, const json& over = json::object()) {
  json j = json::parse(R"({
    "name": "sec",
    "dataset": {"name": "synthetic", "num_classes": 4, "train_size": 64, "test_size": 32, "image_size": 16,
                "channels": 1, "seed": 3},
    "student": "cnn_tiny", "seeds": [0], "threads": 1,
    "recipe": {"epochs": 1, "batch_size": 32},
    "methods": [{"method": "baseline"}],
    "report": false
  })");
  j["output"] = dir + "/out";
  j["cache_dir"] = dir + "/cache";
  j.merge_patch(over);
  kd::test::write_file(path, j.dump(2));
  return path;
}

const char* kUrl = "postgresql://kd@db.example:5432/sweeps";

// Runs a job file as Slurm would run array task 5, except that `exec` (the script's last line, which starts
// kdbench) is a function that writes its arguments, NUL-separated, to DIR/argv. A stub `srun` on the PATH
// records any call (the job file runs one kdbench per array task itself, so none is expected).
struct ScriptRun {
  int exit_code;
  std::string output;
  std::vector<std::string> argv;
  bool srun_called;
};
ScriptRun run_job_file(const std::string& script, const std::string& dir) {
  fs::create_directories(dir + "/bin");
  kd::test::write_file(dir + "/bin/srun", "#!/bin/sh\necho \"$@\" >> " + q(dir + "/srun.log") + "\n");
  fs::permissions(dir + "/bin/srun", fs::perms::owner_all);
  kd::test::write_file(dir + "/run.sh", "exec() { printf '%s\\0' \"$@\" > \"$ARGV_OUT\"; }\nsource \"$1\"\n");
  fs::remove(dir + "/argv");
  auto r = kd::test::run_command("cd " + q(dir) + " && SLURM_ARRAY_TASK_ID=5 ARGV_OUT=" + q(dir + "/argv") + " PATH=" +
                                 q(dir + "/bin") + ":\"$PATH\" bash " + q(dir + "/run.sh") + " " + q(script));
  ScriptRun s{r.exit_code, r.output, {}, fs::exists(dir + "/srun.log")};
  const std::string raw = slurp(dir + "/argv");
  for (size_t at = 0; at < raw.size();) {
    const size_t end = raw.find('\0', at);
    s.argv.push_back(raw.substr(at, end - at));
    at = end + 1;
  }
  return s;
}

// Case 1: the sweep's name went into the .sbatch file unquoted; a newline in it became a shell line on every
// node. Names are now letters, digits, '.', '_' and '-' (starting and ending with a letter or digit, at most 64).
TEST(CliSecurity, SlurmJobFileRefusesNamesOutsideTheSafeSet) {
  const std::string dir = kd::test::make_temp_dir("sec-name");
  const std::string marker = dir + "/INJECTED";  // run_job_file runs the job file in `dir`
  for (const std::string& name :
       {std::string("x\ntouch INJECTED\n#"), std::string("x;touch INJECTED"), std::string("$(touch INJECTED)"),
        std::string("`touch INJECTED`"), std::string("a b"), std::string("-x"), std::string(".."), std::string("x'y"),
        std::string("x."), std::string(65, 'a'), std::string("caf\xc3\xa9")}) {
    SCOPED_TRACE(name);
    const std::string cfg = write_config(dir + "/cfg.json", dir, {{"name", name}});
    auto r = kdbench("slurm " + q(cfg) + " --workers 2 --store " + kUrl + " --script " + q(dir + "/job.sbatch"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "kdbench: config error: name: ")) << r.output;
    if (fs::exists(dir + "/job.sbatch")) {
      EXPECT_FALSE(run_job_file(dir + "/job.sbatch", dir).exit_code == 0 && fs::exists(marker))
          << "the job file ran a command from the name:\n"
          << slurp(dir + "/job.sbatch");
      fs::remove(dir + "/job.sbatch");
    }
    EXPECT_FALSE(fs::exists(marker));
  }
  // The names that are allowed.
  for (const std::string& name :
       {std::string("cifar100"), std::string("fashion-mnist"), std::string("r32x4_to_r8x4.v2"), std::string(64, 'a')}) {
    const std::string cfg = write_config(dir + "/cfg.json", dir, {{"name", name}});
    EXPECT_EQ(kdbench("plan " + q(cfg)).exit_code, 0) << name;
  }
}

// A control character (a newline) in a path or a Slurm option that goes into the job file is refused with the
// key or flag that holds it: no quoting survives a newline in an #SBATCH line or a comment.
TEST(CliSecurity, SlurmJobFileRefusesControlCharacters) {
  const std::string dir = kd::test::make_temp_dir("sec-ctl");
  const std::string marker = dir + "/INJECTED";
  const std::string inject = "\ntouch " + marker + " #";
  const struct {
    json over;
    std::string flags, key;
  } cases[] = {
      {{{"output", dir + "/o" + inject}}, "", "output"},
      {{{"cache_dir", dir + "/c" + inject}}, "", "cache_dir"},
      {json::object(), "-o " + q(dir + "/o" + inject), "--output"},
      {json::object(), "--partition " + q("gpu" + inject), "--partition"},
      {json::object(), "--time " + q("1:00:00" + inject), "--time"},
      {json::object(), "--gres " + q("gpu:1" + inject), "--gres"},
      {json::object(), "--account " + q("lab" + inject), "--account"},
      {json::object(), "--mem " + q("16G" + inject), "--mem"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.key);
    const std::string cfg = write_config(dir + "/cfg.json", dir, c.over);
    auto r = kdbench("slurm " + q(cfg) + " --workers 2 --store " + kUrl + " --script " + q(dir + "/job.sbatch") + " " +
                     c.flags);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "kdbench: config error: " + c.key + ": ")) << r.output;
    if (fs::exists(dir + "/job.sbatch")) {
      run_job_file(dir + "/job.sbatch", dir);
      EXPECT_FALSE(fs::exists(marker)) << "the job file ran a command:\n" << slurp(dir + "/job.sbatch");
      fs::remove(dir + "/job.sbatch");
      fs::remove(marker);
    }
  }
}

// Paths with every character a shell treats specially (but no control character) are quoted: bash parses the
// job file, and running it starts kdbench with exactly the config and output given, and nothing else.
TEST(CliSecurity, SlurmJobFileQuotesPathsAndRunsThemAsGiven) {
  const std::string dir = kd::test::make_temp_dir("sec-quote");
  const std::string marker = dir + "/INJECTED";
  const std::string odd = " $(touch " + marker + ") `touch " + marker + "` 'q' \"d\" ;|&<>*?~ #x $HOME \\ ";
  fs::create_directories(dir + "/cfg" + odd);
  const std::string cfg = write_config(dir + "/cfg" + odd + "/sweep.json", dir,
                                       {{"output", dir + "/out" + odd}, {"cache_dir", dir + "/cache" + odd}});
  auto r = kdbench("slurm " + q(cfg) + " --workers 3 --store " + kUrl + " --partition gpu --time 1-02:00:00");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string script = dir + "/out" + odd + "/slurm/kdbench-sec.sbatch";
  ASSERT_TRUE(fs::exists(script)) << r.output;
  auto syntax = kd::test::run_command("bash -n " + q(script));
  EXPECT_EQ(syntax.exit_code, 0) << syntax.output << slurp(script);
  ScriptRun run = run_job_file(script, dir);
  EXPECT_EQ(run.exit_code, 0) << run.output << slurp(script);
  EXPECT_FALSE(fs::exists(marker)) << slurp(script);
  EXPECT_FALSE(run.srun_called);
  const std::vector<std::string> want{fs::canonical(kd::test::kdbench_bin()).string(),
                                      "sweep",
                                      fs::absolute(cfg).string(),
                                      "--output",
                                      dir + "/out" + odd,
                                      "--worker-index",
                                      "5"};
  EXPECT_EQ(run.argv, want) << slurp(script);
  // The #SBATCH lines are single words to sbatch too (it reads quotes as a shell does).
  const std::string s = slurp(script);
  EXPECT_TRUE(contains(s, "#SBATCH --output='" + dir + "/out")) << s;
  EXPECT_TRUE(contains(s, "#SBATCH --partition=gpu\n")) << s;
}

// Case 2: the name went raw into a comment of the Kubernetes manifest; a newline and "---" added a whole
// object to what `kubectl apply` creates. So did --pvc and --secret, and a line break that only YAML 1.1
// knows (U+0085, U+2028) in any string of the config (the manifest embeds the config in a block scalar).
// Now every value is a quoted scalar or a name checked against Kubernetes' rules, and PyYAML reads back
// exactly two objects that say what was given.
json yaml_documents(const std::string& text, const std::string& dir) {
  kd::test::write_file(dir + "/manifest.yaml", text);
  auto r = kd::test::run_command(
      "python3 -c 'import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open("
      "sys.argv[1], encoding=\"utf-8\")))))' " +
      q(dir + "/manifest.yaml"));
  if (r.exit_code != 0) return json{{"error", r.output}};
  return json::parse(r.output);
}

TEST(CliSecurity, KubernetesManifestRefusesHostileNames) {
  const std::string dir = kd::test::make_temp_dir("sec-k8s");
  const std::string pod =
      "\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: evil\nspec:\n  containers:\n  - name: x\n"
      "    image: evil.example:miner\n---\n";  // (no '/': the name check before issue 24 refused only that)
  const struct {
    std::string name, flags, key;
  } cases[] = {
      {"x" + pod + "#", "", "name"},
      {"sec", "--pvc " + q("shared" + pod), "--pvc"},
      {"sec", "--secret " + q("pg" + pod), "--secret"},
      {"sec", "--pvc " + q("Has_Upper"), "--pvc"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.key);
    const std::string cfg = write_config(dir + "/cfg.json", dir, {{"name", c.name}});
    auto r = kdbench("k8s " + q(cfg) + " --workers 2 --image reg.example/kd:1 --store " + kUrl + " " + c.flags);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "kdbench: config error: " + c.key + ": ")) << r.output;
    if (r.exit_code == 0) {
      json docs = yaml_documents(r.output, dir);
      EXPECT_EQ(docs.size(), 2u) << docs.dump(1);
    }
  }
}

TEST(CliSecurity, KubernetesManifestSaysExactlyWhatWasGiven) {
  const std::string dir = kd::test::make_temp_dir("sec-k8s-ok");
  const std::string nel = "\xc2\x85", ls = "\xe2\x80\xa8";
  const std::string label = "x" + nel + "---" + nel + "apiVersion: v1" + nel + "kind: Pod" + ls + "\"'\n#: |";
  const json methods = json::array({json{{"method", "baseline"}, {"label", label}}});
  const std::string cfg = write_config(dir + "/cfg.json", dir, {{"methods", methods}});
  const std::string image = "reg.example/kd:1\"\n---\nkind: Pod #" + nel + "'";
  const std::string output = "res ults/\"x\"\n---" + ls + "y: 'z'";
  auto r = kdbench("k8s " + q(cfg) + " --workers 2 --store " + kUrl + " --image " + q(image) + " -o " + q(output) +
                   " --cpu " + q("8\n---") + " --memory " + q("32Gi: x"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json docs = yaml_documents(r.output, dir);
  ASSERT_TRUE(docs.is_array()) << docs.dump(1) << "\n" << r.output;
  ASSERT_EQ(docs.size(), 2u) << docs.dump(1);
  EXPECT_EQ(docs[0]["kind"], "ConfigMap");
  EXPECT_EQ(docs[1]["kind"], "Job");
  const json& pod = docs[1]["spec"]["template"]["spec"];
  ASSERT_EQ(pod["containers"].size(), 1u);
  const json& c = pod["containers"][0];
  EXPECT_EQ(c["image"], image);
  EXPECT_EQ(c["command"], json({"kdbench", "sweep", "/config/sweep.json", "--output", "/shared/" + output}));
  EXPECT_EQ(c["env"][0]["value"], kUrl);
  EXPECT_EQ(c["resources"]["limits"]["cpu"], "8\n---");
  EXPECT_EQ(c["resources"]["limits"]["memory"], "32Gi: x");
  const json embedded = json::parse(docs[0]["data"]["sweep.json"].get<std::string>());
  EXPECT_EQ(embedded["methods"][0]["label"], label);
  EXPECT_EQ(embedded["name"], "sec");
}

// Cases 3 and 9 through the CLI: a teacher file that crashed kdbench (a stack overflow while a million nested
// tuples were freed) or ended in a raw LibTorch error with exit code 1 (a storage of 2^62 floats) is one data
// error, exit code 3, naming the file.
TEST(CliSecurity, HostileTeacherFilesAreOneDataError) {
  const std::string dir = kd::test::make_temp_dir("sec-teacher");
  const std::string nested = p::proto2() + p::none() + std::string(1000000, '\x85') + p::stop();
  const struct {
    std::string name, bytes;
  } files[] = {
      {"nested.pt", p::zip_torch_file(nested, true)},
      {"nested_legacy.pt", p::legacy_torch_file(nested)},
      {"wrap.pt", p::legacy_torch_file(p::state_dict(4, 4), {{"0", int64_t{1} << 62, ""}})},
  };
  for (const auto& f : files) {
    SCOPED_TRACE(f.name);
    const std::string file = dir + "/" + f.name;
    kd::test::write_file(file, f.bytes);
    const json teachers = {{"t", {{"model", "cnn_tiny"}, {"obtain", "pytorch"}, {"file", file}}}};
    const std::string cfg =
        write_config(dir + "/" + f.name + ".json", dir + "/" + f.name + ".d", {{"teachers", teachers}});
    auto r = kdbench("sweep " + q(cfg));
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_TRUE(contains(r.output, "kdbench: data error: " + file + ": ")) << r.output;
  }
}

// Teachers pinned by sha256: a file that differs is refused before it is loaded (one error naming both
// digests), and the digest of every loaded teacher file is in its run record and in the report. The reference
// digest is coreutils' sha256sum of RepDistiller's resnet8 checkpoint (tests/data/repdistiller).
TEST(CliSecurity, TeacherFilesArePinnedBySha256AndTheirDigestIsRecorded) {
  const std::string dir = kd::test::make_temp_dir("sec-sha");
  const std::string file = kd::test::source_dir() + "/tests/data/repdistiller/resnet8_cifar100.pth";
  auto sum = kd::test::run_command("sha256sum " + q(file));
  ASSERT_EQ(sum.exit_code, 0) << sum.output;
  const std::string digest = sum.output.substr(0, 64);
  auto config = [&](const std::string& tag, const json& sha) {
    json t = {{"model", "resnet8"}, {"obtain", "pytorch"}, {"key", "model"}, {"file", file}};
    if (!sha.is_null()) t["sha256"] = sha;
    return write_config(dir + "/" + tag + ".json", dir + "/" + tag,
                        {{"dataset",
                          {{"name", "synthetic"},
                           {"num_classes", 100},
                           {"channels", 3},
                           {"train_size", 100},
                           {"test_size", 50},
                           {"image_size", 32}}},
                         {"student", "resnet8"},
                         {"recipe", {{"epochs", 1}, {"batch_size", 50}}},
                         {"teachers", {{"rd", t}}},
                         {"methods", json::array({json{{"method", "logit_kd"}}})},
                         {"report", tag == "pinned"}});
  };
  const std::string zeros(64, '0');
  auto r = kdbench("sweep " + q(config("wrong", zeros)));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "kdbench: data error: " + file + ": ")) << r.output;
  EXPECT_TRUE(contains(r.output, digest)) << r.output;
  EXPECT_TRUE(contains(r.output, "teachers.rd.sha256")) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/wrong/out/checkpoints") && !fs::is_empty(dir + "/wrong/out/checkpoints"));

  r = kdbench("plan " + q(config("malformed", "abc")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "kdbench: config error: teachers.rd.sha256: ")) << r.output;

  for (const char* tag : {"pinned", "unpinned"}) {
    SCOPED_TRACE(tag);
    r = kdbench("sweep " + q(config(tag, std::string(tag) == "pinned" ? json(digest) : json())));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    kd::SqliteStore store(dir + "/" + tag + "/out/results.db", true);
    bool found = false;
    for (const auto& run : store.runs())
      if (run.role == kd::RunRole::Teacher) {
        const json env = json::parse(run.environment);
        ASSERT_TRUE(env.contains("teacher_file")) << run.environment;
        EXPECT_EQ(env["teacher_file"]["sha256"], digest);
        EXPECT_EQ(env["teacher_file"]["path"], fs::absolute(file).string());
        found = true;
      }
    EXPECT_TRUE(found);
  }
  const json report = json::parse(slurp(dir + "/pinned/out/report/report.json"));
  ASSERT_EQ(report["teachers"].size(), 1u);
  EXPECT_EQ(report["teachers"][0]["sha256"], digest);
  EXPECT_TRUE(contains(slurp(dir + "/pinned/out/report/index.html"), digest));
}

// Case 5 through the CLI: a password that libpq reads from a URL but kdbench's redaction missed ('?' in it,
// a percent-encoded key, sslpassword, a key=value string) went into error messages and the Slurm job file;
// a password on the command line (--store, DIR|URL) is refused, as it shows in `ps` and in shell histories.
TEST(CliSecurity, StorePasswordsAreRefusedOnCommandLinesAndInJobFiles) {
  const std::string dir = kd::test::make_temp_dir("sec-pw");
  const std::string cfg = write_config(dir + "/cfg.json", dir);
  const std::vector<std::pair<std::string, std::string>> urls = {
      {"postgresql://kd:pa?ss-1@127.0.0.1:1/x", "pa?ss-1"},
      {"postgresql://kd@127.0.0.1:1/x?pass%77ord=s3cr3t-2", "s3cr3t-2"},
      {"postgresql://kd@127.0.0.1:1/x?sslpassword=s3cr3t-3", "s3cr3t-3"},
      {"host=127.0.0.1 port=1 user=kd password=s3cr3t-4 dbname=x", "s3cr3t-4"},
  };
  for (const auto& [url, secret] : urls) {
    SCOPED_TRACE(url);
    // In the environment, for a job file: refused (it would be written into the file).
    auto r = kdbench("slurm " + q(cfg) + " --workers 2 --script " + q(dir + "/job.sbatch"), "KDBENCH_STORE=" + q(url));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(contains(r.output, secret)) << r.output;
    EXPECT_FALSE(fs::exists(dir + "/job.sbatch") && contains(slurp(dir + "/job.sbatch"), secret))
        << slurp(dir + "/job.sbatch");
    fs::remove(dir + "/job.sbatch");
    r = kdbench("k8s " + q(cfg) + " --workers 2 --image i", "KDBENCH_STORE=" + q(url));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(contains(r.output, secret)) << r.output;
    // In the environment, to connect (nothing listens on port 1): the error shows no password.
    r = kdbench("plan " + q(cfg), "KDBENCH_STORE=" + q(url));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_FALSE(contains(r.output, secret)) << r.output;
    // On the command line: refused, naming the flag or argument.
    r = kdbench("runs --store " + q(url));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "config error: --store: ")) << r.output;
    EXPECT_FALSE(contains(r.output, secret)) << r.output;
    r = kdbench("report " + q(url) + " -o " + q(dir + "/report"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(contains(r.output, secret)) << r.output;
    r = kdbench("sweep " + q(cfg) + " --store " + q(url));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(contains(r.output, secret)) << r.output;
  }
}

// Case 5 end to end: a real PostgreSQL server and a role whose password has a '?' (the form whose URL was shown
// whole); a sweep with its report: the password is in no record, log, or file of the sweep and its report.
TEST(CliSecurity, APasswordWithAQuestionMarkIsNowhereTheSweepWrites) {
  PostgresServer pg;
  const std::string password = "pa?ss-w0rd-5";
  pg.psql("CREATE ROLE kd2 LOGIN PASSWORD '" + password + "'");
  pg.create_database("sec");
  pg.psql("ALTER DATABASE sec OWNER TO kd2");
  const std::string url = "postgresql://kd2:" + password + "@127.0.0.1:" + std::to_string(pg.port()) + "/sec";
  const std::string dir = kd::test::make_temp_dir("sec-pg");
  const std::string cfg = write_config(dir + "/cfg.json", dir, {{"report", true}});
  auto r = kdbench("sweep " + q(cfg), "KDBENCH_STORE=" + q(url));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "w0rd-5")) << r.output;
  const std::string dump = pg.psql(
      "SELECT string_agg(coalesce(config,'') || coalesce(environment,''), ' ') FROM (SELECT config, environment "
      "FROM runs UNION ALL SELECT config, environment FROM sweeps) t",
      "sec");
  EXPECT_TRUE(contains(dump, "kd2@127.0.0.1")) << "the store is recorded, without its password\n" << dump;
  EXPECT_FALSE(contains(dump, "w0rd-5")) << dump;
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir + "/out"))
    if (e.is_regular_file()) {
      ++files;
      EXPECT_FALSE(contains(slurp(e.path().string()), "w0rd-5")) << e.path();
    }
  EXPECT_TRUE(fs::exists(dir + "/out/report/index.html"));
  EXPECT_TRUE(fs::exists(dir + "/out/report/report.json"));
  EXPECT_GT(files, 3);
}

// Case 6: `kdbench merge` made checkpoint paths from the run ids a shard's store holds; a run id "../../escaped"
// wrote outside the output folder, and the check that a checkpoint lies in the shard's folder compared
// prefixes without a separator (".../checkpoints-other/x.pt" passed). Only run ids of the form kdbench makes
// (32 lower-case hex digits) are merged.
void add_done_run(kd::SqliteStore& s, const std::string& id, const std::string& name, const std::string& checkpoint) {
  kd::RunRecord r;
  r.id = id;
  r.sweep_id = "sw";
  r.role = kd::RunRole::Student;
  r.name = name;
  r.method = "baseline";
  r.model = "cnn_tiny";
  s.add_run(r);
  ASSERT_TRUE(s.claim_run(id, "me:1", 60));
  r.owner = "me:1";
  r.checkpoint = checkpoint;
  ASSERT_TRUE(s.finish_run(r, {}, {{"final.test.top1", 50.0}}));
}

TEST(CliSecurity, MergeTakesOnlyRunIdsKdbenchMakesAndCopiesOnlyFromTheShard) {
  const std::string dir = kd::test::make_temp_dir("sec-merge");
  const std::string shard = dir + "/shard";
  kd::test::write_file(shard + "/checkpoints/x.pt", "weights");
  {
    kd::SqliteStore s(shard + "/results.db");
    s.put_sweep("sw", "sec", "{}", "{}");
    add_done_run(s, "../../escaped", "baseline", shard + "/checkpoints/x.pt");
  }
  auto r = kdbench("merge " + q(dir + "/a/b/out") + " " + q(shard));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "'../../escaped'")) << r.output;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find("escaped"), std::string::npos) << e.path();

  // A run id of kdbench's form whose checkpoint lies beside the shard's checkpoints folder, not in it.
  const std::string shard2 = dir + "/shard2";
  const std::string id(32, 'a');
  kd::test::write_file(shard2 + "/checkpoints-other/y.pt", "not the shard's");
  {
    kd::SqliteStore s(shard2 + "/results.db");
    s.put_sweep("sw", "sec", "{}", "{}");
    add_done_run(s, id, "baseline", shard2 + "/checkpoints-other/y.pt");
  }
  r = kdbench("merge " + q(dir + "/out2") + " " + q(shard2));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/out2/checkpoints/" + id + ".pt"));
  kd::SqliteStore merged(dir + "/out2/results.db", true);
  ASSERT_TRUE(merged.run(id).has_value());
  EXPECT_EQ(merged.run(id)->checkpoint, shard2 + "/checkpoints-other/y.pt");
}

// Case 10 for `kdbench runs --format csv`: a run's name that a spreadsheet would run is neutralised there too.
TEST(CliSecurity, RunsAsCsvNeutraliseFormulas) {
  const std::string dir = kd::test::make_temp_dir("sec-csv");
  {
    kd::SqliteStore s(dir + "/results.db");
    s.put_sweep("sw", "sec", "{}", "{}");
    add_done_run(s, std::string(32, 'b'), "=HYPERLINK(\"http://evil.example\",\"x\")", "");
  }
  auto r = kdbench("runs " + q(dir) + " --format csv -o " + q(dir + "/runs.csv"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string csv = slurp(dir + "/runs.csv");
  EXPECT_TRUE(contains(csv, "\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\"")) << csv;
  EXPECT_FALSE(contains(csv, ",=") || contains(csv, ",\"=")) << csv;
}

}  // namespace
