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
// it and closes. Every request path is appended to root/requests.log.
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
