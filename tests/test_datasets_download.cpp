// `kdbench data`: downloads from a real HTTP server on 127.0.0.1 that the test starts (Python's
// http.server), serving archives the test makes in the publishers' exact layout (CIFAR-10's binary
// version, Imagenette), with their checksums given to the command; a truncated archive, a wrong checksum,
// a transfer cut short and a missing file each fail with one error and leave nothing that looks complete;
// what is there and intact is not downloaded again.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <jpeglib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/errors.h"
#include "base/fsutil.h"
#include "datasets/dataset.h"
#include "datasets/download.h"
#include "jpeg_writer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A .tar.gz of `files` (path in the archive -> bytes), as the publishers' archives are.
void write_tar_gz(const std::string& path, const std::vector<std::pair<std::string, std::string>>& files) {
  struct archive* a = archive_write_new();
  archive_write_add_filter_gzip(a);
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  for (const auto& [name, bytes] : files) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(bytes.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    archive_write_data(a, bytes.data(), bytes.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

// CIFAR-10's binary batch: 10000 records of <label byte><3072 pixel bytes>; record r of batch b has
// label (r + b) % 10 and every pixel (r * 7 + b) % 256.
std::string cifar10_batch(int b) {
  std::string s;
  s.reserve(10000 * 3073);
  for (int r = 0; r < 10000; ++r) {
    s += static_cast<char>((r + b) % 10);
    s.append(3072, static_cast<char>((r * 7 + b) % 256));
  }
  return s;
}

std::string tiny_jpeg() {
  return kd::test::encode_jpeg(40, 30, 3, JCS_RGB, std::vector<unsigned char>(40 * 3, 128));
}

// Serves `root` on 127.0.0.1 (a free port); /cut/<file> declares the file's full length but sends half of
// it and closes; /endless/<n>/<file> sends n zero bytes without announcing a length; /liar/<file> announces a
// terabyte and sends 1 kB. Every request path is appended to root/requests.log.
const char* kServer = R"PY(
import http.server, os, sys
root, port_file = sys.argv[1], sys.argv[2]
class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def log_message(self, *a):
        pass
    def do_GET(self):
        with open(os.path.join(root, "requests.log"), "a") as log:
            log.write(self.path + "\n")
        if self.path.startswith("/endless/"):  # /endless/<n>/<file>: n bytes, no length announced
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.end_headers()
            chunk = b"\0" * 65536
            while n > 0:
                self.wfile.write(chunk[: min(n, len(chunk))])
                n -= len(chunk)
            self.close_connection = True
            return
        if self.path.startswith("/liar/"):  # announces a terabyte, sends a little
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(b"\0" * 1024)
            self.close_connection = True
            return
        if self.path.startswith("/cut/"):
            data = open(os.path.join(root, "full", self.path[5:]), "rb").read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
open(port_file + ".tmp", "w").write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
)PY";

class DataDownload : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = kd::test::make_temp_dir("http");
    fs::create_directories(root_ + "/full");
    fs::create_directories(root_ + "/trunc");
    std::vector<std::pair<std::string, std::string>> files;
    for (int b = 1; b <= 5; ++b)
      files.emplace_back("cifar-10-batches-bin/data_batch_" + std::to_string(b) + ".bin", cifar10_batch(b));
    files.emplace_back("cifar-10-batches-bin/test_batch.bin", cifar10_batch(0));
    files.emplace_back("cifar-10-batches-bin/batches.meta.txt", "airplane\nautomobile\nbird\n");
    write_tar_gz(root_ + "/full/cifar-10-binary.tar.gz", files);
    cifar_sha_ = kd::file_digest(root_ + "/full/cifar-10-binary.tar.gz", "sha256");
    const std::string whole = slurp(root_ + "/full/cifar-10-binary.tar.gz");
    kd::test::write_file(root_ + "/trunc/cifar-10-binary.tar.gz", whole.substr(0, whole.size() * 3 / 4));
    const std::string jpeg = tiny_jpeg();
    std::vector<std::pair<std::string, std::string>> nette{{"imagenette2-160/noisy_imagenette.csv", "path,label\n"}};
    for (const char* split : {"train", "val"})
      for (const char* wnid : {"n01440764", "n02102040"})
        for (int i = 0; i < 2; ++i)
          nette.emplace_back(
              std::string("imagenette2-160/") + split + "/" + wnid + "/" + wnid + "_" + std::to_string(i) + ".JPEG",
              jpeg);
    write_tar_gz(root_ + "/full/imagenette2-160.tgz", nette);
    nette_sha_ = kd::file_digest(root_ + "/full/imagenette2-160.tgz", "sha256");

    kd::test::write_file(root_ + "/server.py", kServer);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execlp("python3", "python3", (root_ + "/server.py").c_str(), root_.c_str(), (root_ + "/port").c_str(),
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !fs::exists(root_ + "/port"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    base_ = "http://127.0.0.1:" + slurp(root_ + "/port");
  }
  static void TearDownTestSuite() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  void SetUp() override { ASSERT_TRUE(fs::exists(root_ + "/port")) << "the test HTTP server did not start"; }

  static kd::test::CommandResult data(const std::string& args) {
    return kd::test::run_command(kd::test::kdbench_bin() + " data " + args);
  }
  static int requests_for(const std::string& file) {
    std::ifstream in(root_ + "/requests.log");
    int n = 0;
    for (std::string line; std::getline(in, line);) n += contains(line, file);
    return n;
  }
  // Nothing in `dir` but what a finished fetch makes (no temporaries, no half-unpacked folder).
  static std::vector<std::string> listing(const std::string& dir) {
    std::vector<std::string> v;
    for (auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }

  static std::string root_, base_, cifar_sha_, nette_sha_;
  static pid_t pid_;
};
std::string DataDownload::root_, DataDownload::base_, DataDownload::cifar_sha_, DataDownload::nette_sha_;
pid_t DataDownload::pid_ = -1;

TEST_F(DataDownload, Cifar10DownloadsUnpacksOpensAndIsNotFetchedTwice) {
  const std::string dir = kd::test::make_temp_dir("cifar10");
  // What a download and an unpacking killed half-way (by a process that is gone) left: removed.
  const std::string gone = ".tmp.999999999." + kd::this_host();
  kd::test::write_file(dir + "/cifar-10-binary.tar.gz" + gone, "partial");
  kd::test::write_file(dir + "/cifar-10-batches-bin.unpack" + gone + "/cifar-10-batches-bin/test_batch.bin", "x");
  // Another host's leftovers in a shared folder are that host's business: kept.
  kd::test::write_file(dir + "/cifar-10-binary.tar.gz.tmp.999999999.another-host", "theirs");
  auto r = data("cifar10 " + dir + " --url-base " + base_ + "/full --sha256 " + cifar_sha_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json block = {{"name", "cifar10"}, {"root", dir + "/cifar-10-batches-bin"}};
  EXPECT_TRUE(contains(r.output, "\"dataset\": " + block.dump())) << r.output;
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                                                    "cifar-10-binary.tar.gz.tmp.999999999.another-host"}));
  EXPECT_EQ(requests_for("/full/cifar-10-binary.tar.gz"), 1);
  fs::remove(dir + "/cifar-10-binary.tar.gz.tmp.999999999.another-host");

  // The readers open what was unpacked.
  kd::DataSplits s = kd::open_dataset({{"name", "cifar10"}, {"root", dir}, {"val_fraction", 0.0}});
  EXPECT_EQ(s.train->size(), 50000);
  EXPECT_EQ(s.test->size(), 10000);
  EXPECT_EQ(s.num_classes, 10);

  // Again: the unpacked folder is intact, nothing is fetched.
  r = data("cifar10 " + dir + " --url-base " + base_ + "/full --sha256 " + cifar_sha_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "cifar10 is already there")) << r.output;
  EXPECT_EQ(requests_for("/full/cifar-10-binary.tar.gz"), 1);

  // The folder gone or damaged but the archive intact: unpacked again, still not fetched.
  fs::resize_file(dir + "/cifar-10-batches-bin/test_batch.bin", 1000);
  r = data("cifar10 " + dir + " --url-base " + base_ + "/full --sha256 " + cifar_sha_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "cifar-10-binary.tar.gz is already there and intact")) << r.output;
  EXPECT_EQ(fs::file_size(dir + "/cifar-10-batches-bin/test_batch.bin"), 30730000u);
  EXPECT_EQ(requests_for("/full/cifar-10-binary.tar.gz"), 1);

  // An archive that does not match (a corrupt earlier download) is fetched again.
  kd::remove_tree(dir + "/cifar-10-batches-bin");
  kd::test::write_file(dir + "/cifar-10-binary.tar.gz", "garbage");
  r = data("cifar10 " + dir + " --url-base " + base_ + "/full --sha256 " + cifar_sha_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "downloading it again")) << r.output;
  EXPECT_EQ(requests_for("/full/cifar-10-binary.tar.gz"), 2);
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"cifar-10-batches-bin", "cifar-10-binary.tar.gz"}));
}

TEST_F(DataDownload, BadDownloadsAreOneErrorAndLeaveNothingComplete) {
  struct Case {
    std::string what, url_base, sha, message;
  };
  const std::string zeros(64, '0');
  const std::vector<Case> cases{
      {"truncated", "/trunc", cifar_sha_, "the download's sha256 is "},
      {"wrong checksum", "/full", zeros, "the published one " + zeros + " (--sha256): a corrupt or truncated download"},
      {"cut short", "/cut", cifar_sha_, "download failed: the transfer was cut short after "},
      {"missing", "/nothing", cifar_sha_, "download failed: The requested URL returned error: 404"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string dir = kd::test::make_temp_dir("bad");
    auto r = data("cifar10 " + dir + " -q --url-base " + base_ + c.url_base + " --sha256 " + c.sha);
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_TRUE(contains(r.output, "kdbench: data error: " + base_ + c.url_base + "/cifar-10-binary.tar.gz: "))
        << r.output;
    EXPECT_TRUE(contains(r.output, c.message)) << r.output;
    EXPECT_TRUE(listing(dir).empty()) << "left behind: " << listing(dir).front();
  }
}

TEST_F(DataDownload, ImagenetteUnpacksIntoAnImageFolder) {
  const std::string dir = kd::test::make_temp_dir("nette");
  auto r = data("imagenette " + dir + " --size 160 --url-base " + base_ + "/full/ --sha256 " + nette_sha_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json block = {{"name", "image_folder"}, {"root", dir + "/imagenette2-160"}};
  EXPECT_TRUE(contains(r.output, "\"dataset\": " + block.dump())) << r.output;
  json cfg = block;
  cfg["image_size"] = 32;
  cfg["val_fraction"] = 0.0;
  kd::DataSplits s = kd::open_dataset(cfg);
  EXPECT_EQ(s.num_classes, 2);
  EXPECT_EQ(s.train->size(), 4);
  EXPECT_EQ(s.test->size(), 4);
}

// Issue 24, case 7: what a server or an archive from someone else can make `kdbench data` do. The download stops
// at the published size (whether or not the server announces a length); an entry is never written past the
// size it should have (the first check used to come after the whole entry was on disk: a 389 KB archive wrote
// 400 MB); an archive whose unpacking failed is removed, not left under its final name; and "already there"
// means the unpacked files have the checksums recorded when they were unpacked, not merely their sizes.
TEST_F(DataDownload, TheDownloadStopsAtThePublishedSize) {
  for (const std::string& how : {std::string("/endless/1000000"), std::string("/liar")}) {
    SCOPED_TRACE(how);
    const std::string dir = kd::test::make_temp_dir("capped");
    kd::DataArchive a = kd::data_archive("cifar10");
    a.url_base = base_ + how;  // as if it were the publisher's
    a.bytes = 4096;
    kd::FetchOptions o;
    o.quiet = true;
    std::string e;
    try {
      kd::fetch_dataset(a, dir, o);
    } catch (const kd::DataError& err) {
      e = err.what();
    }
    EXPECT_TRUE(contains(e, base_ + how + "/cifar-10-binary.tar.gz: ")) << e;
    EXPECT_TRUE(contains(e, "more than the published 4096 bytes")) << e;
    EXPECT_TRUE(listing(dir).empty()) << "left behind: " << listing(dir).front();
  }
}

TEST_F(DataDownload, AnEntryIsNeverWrittenPastItsSizeAndAFailedArchiveIsRemoved) {
  // 48 MB of zeros as data_batch_1.bin (30,730,000 bytes in CIFAR-10), about 47 KB gzipped; vouched for by
  // --sha256. With files capped at 40 MB (ulimit -f), writing the whole entry would kill kdbench (SIGXFSZ).
  fs::create_directories(root_ + "/bomb");
  write_tar_gz(root_ + "/bomb/cifar-10-binary.tar.gz",
               {{"cifar-10-batches-bin/data_batch_1.bin", std::string(48 << 20, '\0')}});
  const std::string sha = kd::file_digest(root_ + "/bomb/cifar-10-binary.tar.gz", "sha256");
  const std::string dir = kd::test::make_temp_dir("bomb");
  auto r = kd::test::run_command("bash -c 'ulimit -f 40000; exec \"$0\" \"$@\"' " + kd::test::kdbench_bin() +
                                 " data cifar10 " + dir + " -q --url-base " + base_ + "/bomb --sha256 " + sha);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "'cifar-10-batches-bin/data_batch_1.bin' is larger than the 30730000 bytes"))
      << r.output;
  EXPECT_TRUE(listing(dir).empty()) << "left behind: " << listing(dir).front();

  // An archive that unpacks but lacks a file: one error, and the archive is not kept under its final name.
  fs::create_directories(root_ + "/lacking");
  write_tar_gz(root_ + "/lacking/cifar-10-binary.tar.gz", {{"cifar-10-batches-bin/batches.meta.txt", "airplane\n"}});
  const std::string lacking_sha = kd::file_digest(root_ + "/lacking/cifar-10-binary.tar.gz", "sha256");
  const std::string dir2 = kd::test::make_temp_dir("lacking");
  r = data("cifar10 " + dir2 + " -q --url-base " + base_ + "/lacking --sha256 " + lacking_sha);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "unpacked, but the archive has no 'cifar-10-batches-bin/data_batch_1.bin'"))
      << r.output;
  EXPECT_TRUE(listing(dir2).empty()) << "left behind: " << listing(dir2).front();
}

TEST_F(DataDownload, AlreadyThereMeansTheRecordedChecksumsHold) {
  const std::string dir = kd::test::make_temp_dir("verified");
  auto r = data("cifar10 " + dir + " -q --url-base " + base_ + "/full --sha256 " + cifar_sha_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string folder = dir + "/cifar-10-batches-bin";
  // The manifest of what was unpacked checks with coreutils' sha256sum.
  auto check = kd::test::run_command("cd " + folder + " && sha256sum --check --strict kdbench-checksums.sha256");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_TRUE(contains(check.output, "test_batch.bin: OK")) << check.output;
  const std::string good = kd::file_digest(folder + "/test_batch.bin", "sha256");
  // Bytes overwritten in place (the size unchanged): not intact; unpacked again from the archive.
  {
    std::fstream f(folder + "/test_batch.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(12345);
    f.write("tampered", 8);
  }
  r = data("cifar10 " + dir + " --url-base " + base_ + "/full --sha256 " + cifar_sha_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "cifar10 is already there")) << r.output;
  EXPECT_TRUE(contains(r.output, "test_batch.bin")) << "the message names the file that differs\n" << r.output;
  EXPECT_EQ(kd::file_digest(folder + "/test_batch.bin", "sha256"), good);
  // Without its manifest a folder is not taken on trust either.
  fs::remove(folder + "/kdbench-checksums.sha256");
  r = data("cifar10 " + dir + " --url-base " + base_ + "/full --sha256 " + cifar_sha_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "cifar10 is already there")) << r.output;
  EXPECT_TRUE(fs::exists(folder + "/kdbench-checksums.sha256"));
  r = data("cifar10 " + dir + " --url-base " + base_ + "/full --sha256 " + cifar_sha_);
  EXPECT_TRUE(contains(r.output, "cifar10 is already there")) << r.output;

  // Imagenette's train/ and val/ there but empty: fetched.
  const std::string nette = kd::test::make_temp_dir("nette-empty");
  fs::create_directories(nette + "/imagenette2-160/train");
  fs::create_directories(nette + "/imagenette2-160/val");
  const int before = requests_for("/full/imagenette2-160.tgz");
  r = data("imagenette " + nette + " --size 160 --url-base " + base_ + "/full --sha256 " + nette_sha_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(requests_for("/full/imagenette2-160.tgz"), before + 1);
  EXPECT_TRUE(fs::exists(nette + "/imagenette2-160/val/n01440764/n01440764_0.JPEG"));
}

// What an archive may not do (held before issue 24 as well): write outside the folder it unpacks into, through
// ".." or an absolute path (one error naming the entry), or make links (skipped: the data set then lacks a file).
TEST_F(DataDownload, ArchiveEntriesStayInsideTheFolder) {
  const std::string escaped = root_ + "/escaped-" + std::to_string(::getpid()) + ".bin";
  int n = 0;
  for (const std::string& entry : {std::string("cifar-10-batches-bin/../../escaped.bin"), escaped}) {
    SCOPED_TRACE(entry);
    const std::string served = root_ + "/outside" + std::to_string(n++);
    fs::create_directories(served);
    write_tar_gz(served + "/cifar-10-binary.tar.gz", {{entry, "x"}});
    const std::string sha = kd::file_digest(served + "/cifar-10-binary.tar.gz", "sha256");
    const std::string dir = kd::test::make_temp_dir("outside");
    auto r = data("cifar10 " + dir + "/d -q --url-base " + base_ + "/" + fs::path(served).filename().string() +
                  " --sha256 " + sha);
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_TRUE(contains(r.output, "points outside the folder it unpacks into")) << r.output;
    EXPECT_FALSE(fs::exists(dir + "/escaped.bin"));
    EXPECT_FALSE(fs::exists(escaped));
  }
  // A symbolic link to a file outside, under the name of a file the data set has.
  fs::create_directories(root_ + "/linked");
  {
    struct archive* a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    ASSERT_EQ(archive_write_open_filename(a, (root_ + "/linked/cifar-10-binary.tar.gz").c_str()), ARCHIVE_OK);
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, "cifar-10-batches-bin/test_batch.bin");
    archive_entry_set_filetype(e, AE_IFLNK);
    archive_entry_set_symlink(e, "/etc/passwd");
    archive_entry_set_perm(e, 0777);
    archive_write_header(a, e);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
  }
  const std::string sha = kd::file_digest(root_ + "/linked/cifar-10-binary.tar.gz", "sha256");
  const std::string dir = kd::test::make_temp_dir("linked");
  auto r = data("cifar10 " + dir + " -q --url-base " + base_ + "/linked --sha256 " + sha);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "unpacked, but ")) << r.output;
  for (const auto& e : fs::recursive_directory_iterator(dir)) EXPECT_FALSE(e.is_symlink()) << e.path();
}

// Issue 24, case 8: the download's temporary file is created new under an unpredictable name, so a link
// someone planted under the name it used to have (<archive>.tmp.<pid>.<host>) is not written through.
TEST_F(DataDownload, APlantedLinkIsNotWrittenThrough) {
  const std::string dir = kd::test::make_temp_dir("planted");
  const std::string victim = dir + "/victim";
  kd::test::write_file(victim, "precious");
  ASSERT_EQ(
      ::symlink(victim.c_str(),
                (dir + "/cifar-10-binary.tar.gz.tmp." + std::to_string(::getpid()) + "." + kd::this_host()).c_str()),
      0);
  kd::DataArchive a = kd::data_archive("cifar10");
  kd::FetchOptions o;
  o.url_base = base_ + "/full";
  o.sha256 = cifar_sha_;
  o.quiet = true;
  kd::fetch_dataset(a, dir, o);
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_EQ(kd::file_digest(dir + "/cifar-10-binary.tar.gz", "sha256"), cifar_sha_);
}

TEST(DataArchives, PublishedChecksumsAndUnknownNames) {
  auto c10 = kd::data_archive("cifar10");
  EXPECT_EQ(c10.url_base + "/" + c10.file, "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
  EXPECT_EQ(c10.md5, "c32a1d4ab5d03f1284b67883e8d87530");
  auto c100 = kd::data_archive("cifar100");
  EXPECT_EQ(c100.md5, "03b5dce01913d631647c71ecec9e9cb8");
  EXPECT_EQ(c100.folder, "cifar-100-binary");
  auto nette = kd::data_archive("imagenette");
  EXPECT_EQ(nette.url_base + "/" + nette.file, "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz");
  EXPECT_EQ(nette.md5, "1f1f74f133caff120e575856659b87a2");
  EXPECT_THROW(kd::data_archive("imagenet"), kd::ConfigError);
  EXPECT_THROW(kd::data_archive("imagenette", "640"), kd::ConfigError);
  auto r = kd::test::run_command(kd::test::kdbench_bin() + " data mnist");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, "mnist")) << r.output;
}

}  // namespace
