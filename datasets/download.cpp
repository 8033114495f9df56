// Downloading, checking and unpacking the published data sets (see download.h). libcurl does the HTTP(S),
// OpenSSL's EVP the digests (computed while the bytes arrive), libarchive the unpacking.
#include "datasets/download.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>

#include "base/errors.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/temp_file.h"

namespace kd {

namespace fs = std::filesystem;

namespace {

// Checksums published by the data sets' authors:
// - CIFAR: https://www.cs.toronto.edu/~kriz/cifar.html lists the MD5 of each version ("CIFAR-10 binary
//   version (suitable for C programs) 162 MB c32a1d4ab5d03f1284b67883e8d87530", "CIFAR-100 binary version
//   161 MB 03b5dce01913d631647c71ecec9e9cb8"); sizes 170,052,171 and 168,513,733 bytes.
// - Imagenette: fast.ai's library checks its downloads against fastai/data/checks.txt (github.com/fastai/
//   fastai, commit 29be53d7ccaf7405320e2e47db8f35182abeff0a): size and MD5 per URL.
const char* kFastaiChecks = "fastai/data/checks.txt (github.com/fastai/fastai)";
const char* kCifarPage = "https://www.cs.toronto.edu/~kriz/cifar.html";

struct Digest {
  explicit Digest(const std::string& algorithm) : ctx(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(ctx, algorithm == "md5" ? EVP_md5() : EVP_sha256(), nullptr);
  }
  ~Digest() { EVP_MD_CTX_free(ctx); }
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx, p, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx, md, &n);
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (unsigned int i = 0; i < n; ++i) {
      s += digits[md[i] >> 4];
      s += digits[md[i] & 15];
    }
    return s;
  }
  EVP_MD_CTX* ctx;
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string mb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  return buf;
}

// The algorithm and hex digest an archive must have, given the options.
std::pair<std::string, std::string> wanted_digest(const DataArchive& a, const FetchOptions& o) {
  if (!o.sha256.empty()) return {"sha256", lower(o.sha256)};
  if (!a.sha256.empty()) return {"sha256", a.sha256};
  return {"md5", a.md5};
}

struct Transfer {
  FILE* out;
  Digest* digest;
  int64_t received = 0;
  int64_t expected = 0;   // for the progress lines (0 = unknown)
  int64_t max_bytes = 0;  // the most the server may send (0 = no limit)
  bool too_much = false;
  bool quiet = false;
  std::chrono::steady_clock::time_point start, last_report;
};

size_t on_data(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (t->max_bytes > 0 && static_cast<int64_t>(bytes) > t->max_bytes - t->received) {
    t->too_much = true;
    return 0;  // makes curl fail with CURLE_WRITE_ERROR
  }
  if (std::fwrite(data, 1, bytes, t->out) != bytes) return 0;
  t->digest->update(data, bytes);
  t->received += static_cast<int64_t>(bytes);
  const auto now = std::chrono::steady_clock::now();
  if (!t->quiet && now - t->last_report > std::chrono::seconds(5)) {
    t->last_report = now;
    const double secs = std::chrono::duration<double>(now - t->start).count();
    log::info("  {} of {} ({:.1f} MB/s)", mb(static_cast<double>(t->received)),
              t->expected > 0 ? mb(static_cast<double>(t->expected)) : std::string("?"),
              static_cast<double>(t->received) / 1e6 / std::max(secs, 1e-3));
  }
  return bytes;
}

void curl_global() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Downloads `url` into `tmp` (a new temporary file: base/temp_file.h; opened again without following links),
// returning the digest of what arrived. No more than `max_bytes` are taken (0: no limit; `limit_text` says what
// the limit is). Throws DataError naming the URL.
std::string download(const std::string& url, const std::string& tmp, const std::string& algorithm, int64_t expected,
                     int64_t max_bytes, const std::string& limit_text, bool quiet) {
  curl_global();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
  FILE* out = fd < 0 ? nullptr : ::fdopen(fd, "wb");
  if (!out) {
    if (fd >= 0) ::close(fd);
    throw DataError(tmp, "cannot write the download here");
  }
  std::unique_ptr<FILE, decltype(&std::fclose)> file(out, std::fclose);
  Digest digest(algorithm);
  Transfer t{out,
             &digest,
             0,
             expected,
             max_bytes,
             false,
             quiet,
             std::chrono::steady_clock::now(),
             std::chrono::steady_clock::now()};
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) throw DataError(url, "cannot start libcurl");
  char error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 30L);
  // A server that announces more than the limit is refused before anything is written.
  if (max_bytes > 0) curl_easy_setopt(curl.get(), CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_bytes));
  // A stalled transfer (under 1 kB/s for a minute) fails instead of hanging.
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "kdbench");
  const CURLcode rc = curl_easy_perform(curl.get());
  const bool closed = std::fclose(file.release()) == 0;
  if (rc == CURLE_FILESIZE_EXCEEDED)
    throw DataError(url, "download refused: the server announces more than " + limit_text);
  if (t.too_much) throw DataError(url, "download stopped: the server sent more than " + limit_text);
  if (rc != CURLE_OK) {
    std::string why = error[0] ? error : curl_easy_strerror(rc);
    if (rc == CURLE_PARTIAL_FILE)
      why = "the transfer was cut short after " + std::to_string(t.received) + " bytes (" + why + ")";
    throw DataError(url, "download failed: " + why);
  }
  if (!closed) throw DataError(tmp, "cannot write the download (disk full?)");
  return digest.hex();
}

// Where an archive's entries go (a folder of its own, so nobody else can plant a link in it): the files the
// data set lists are written no further than their sizes, the others together no further than
// kUnlistedPerArchiveByte times the archive's size (and 1 MiB), and an entry whose name holds a control character or a
// backslash (which a checksums manifest cannot name) is refused.
constexpr int64_t kUnlistedPerArchiveByte = 8;

// Unpacks `archive` into `into` (an empty folder). Entries must stay inside it: absolute paths and ".." are
// refused, as are links (the published archives have none). `sizes`: the size each listed file must have
// (relative to `into`); no entry is written past it (see kUnlistedPerArchiveByte for the others).
void unpack(const std::string& archive, const std::string& into, const std::map<std::string, int64_t>& sizes) {
  std::unique_ptr<struct archive, decltype(&archive_read_free)> in(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(in.get());
  archive_read_support_format_all(in.get());
  if (archive_read_open_filename(in.get(), archive.c_str(), 1 << 16) != ARCHIVE_OK)
    throw DataError(archive, std::string("cannot open the archive: ") + archive_error_string(in.get()));
  std::error_code size_ec;
  const int64_t archive_bytes = static_cast<int64_t>(fs::file_size(archive, size_ec));
  int64_t unlisted_left = kUnlistedPerArchiveByte * std::max<int64_t>(archive_bytes, 0) + (int64_t{1} << 20);
  struct archive_entry* entry = nullptr;
  int64_t files = 0;
  while (true) {
    const int r = archive_read_next_header(in.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      throw DataError(archive, "corrupt archive after " + std::to_string(files) +
                                   " files: " + std::string(archive_error_string(in.get())));
    const std::string name = archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "";
    const fs::path rel = fs::path(name).lexically_normal();
    if (name.empty() || rel.is_absolute() || *rel.begin() == "..")
      throw DataError(archive, "archive entry '" + name + "' points outside the folder it unpacks into");
    if (std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == '\\'; }))
      throw DataError(archive, "an archive entry's name holds a control character or a backslash");
    const fs::path dst = fs::path(into) / rel;
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFDIR) {
      fs::create_directories(dst);
      continue;
    }
    if (type != AE_IFREG) continue;  // links, devices: none in the published archives
    const auto listed = sizes.find(rel.generic_string());
    const int64_t cap = listed != sizes.end() && listed->second >= 0 ? listed->second : -1;
    fs::create_directories(dst.parent_path());
    std::ofstream out(dst, std::ios::binary | std::ios::trunc);
    if (!out) throw DataError(dst.string(), "cannot write an unpacked file");
    const void* buf;
    size_t size;
    la_int64_t offset;
    int64_t written = 0, end = 0;
    while (true) {
      const int rr = archive_read_data_block(in.get(), &buf, &size, &offset);
      if (rr == ARCHIVE_EOF) break;
      if (rr != ARCHIVE_OK && rr != ARCHIVE_WARN)
        throw DataError(archive, "corrupt archive in '" + name + "': " + std::string(archive_error_string(in.get())));
      // Checked before the bytes are written: the entry's end so far, against what it may have.
      const int64_t block_end = static_cast<int64_t>(offset) + static_cast<int64_t>(size);
      if (offset < 0 || block_end < offset) throw DataError(archive, "corrupt archive in '" + name + "'");
      if (cap >= 0 && block_end > cap)
        throw DataError(archive, "'" + rel.generic_string() + "' is larger than the " + std::to_string(cap) +
                                     " bytes it has in the published data set; nothing is kept");
      if (cap < 0 && block_end > end) {
        if (block_end - end > unlisted_left)
          throw DataError(archive, "unpacks to more than " + std::to_string(kUnlistedPerArchiveByte) +
                                       " times its own size (at '" + rel.generic_string() + "'); nothing is kept");
        unlisted_left -= block_end - end;
      }
      end = std::max(end, block_end);
      if (offset != written) {
        out.seekp(offset);
        written = offset;
      }
      out.write(static_cast<const char*>(buf), static_cast<std::streamsize>(size));
      written += static_cast<int64_t>(size);
    }
    if (!out) throw DataError(dst.string(), "cannot write an unpacked file (disk full?)");
    ++files;
  }
}

// The manifest of an unpacked folder: "<sha256>  <path>" per file (sha256sum's format, so that
// `sha256sum --check` reads it), written when unpacking succeeds; "already there" means it holds.
const char* kManifest = "kdbench-checksums.sha256";

std::string sha256_of(const fs::path& p) {
  return file_digest(p.string(), "sha256");
}

void write_manifest(const fs::path& folder) {
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(folder); it != fs::recursive_directory_iterator(); ++it)
    if (it->is_regular_file() && !it->is_symlink() && it->path() != folder / kManifest)
      files.push_back(it->path().lexically_relative(folder).generic_string());
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) text += sha256_of(folder / f) + "  " + f + "\n";
  write_text_atomically((folder / kManifest).string(), text, "manifest");
}

// Whether `folder` holds every expected file with its size (and something under each expected folder); `why`
// says what is not.
bool has_expected_files(const DataArchive& a, const fs::path& folder, std::string* why) {
  if (!fs::is_directory(folder)) {
    if (why) *why = folder.string() + " is not there";
    return false;
  }
  for (const auto& [rel, size] : a.expected_files) {
    const fs::path p = folder / rel;
    std::error_code ec;
    if (!fs::exists(p, ec)) {
      if (why) *why = "the archive has no '" + a.folder + "/" + rel + "'";
      return false;
    }
    if (size >= 0 && static_cast<int64_t>(fs::file_size(p, ec)) != size) {
      if (why)
        *why = "'" + a.folder + "/" + rel + "' has " + std::to_string(fs::file_size(p, ec)) + " bytes, not " +
               std::to_string(size);
      return false;
    }
    if (size < 0 && fs::is_directory(p, ec) && fs::is_empty(p, ec)) {
      if (why) *why = "'" + a.folder + "/" + rel + "' is empty";
      return false;
    }
  }
  return true;
}

// Whether `folder` is as it was unpacked: every file its manifest lists has the checksum recorded then, and the
// expected files are there. `why` says what is not.
bool intact(const DataArchive& a, const fs::path& folder, std::string* why) {
  if (!has_expected_files(a, folder, why)) return false;
  std::ifstream manifest(folder / kManifest);
  if (!manifest) {
    if (why) *why = "it has no " + std::string(kManifest) + " (the checksums of what was unpacked)";
    return false;
  }
  for (std::string line; std::getline(manifest, line);) {
    if (line.size() < 67 || line.compare(64, 2, "  ") != 0) {
      if (why) *why = std::string(kManifest) + " is damaged";
      return false;
    }
    const std::string rel = line.substr(66);
    const fs::path p = folder / rel;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec) || sha256_of(p) != line.substr(0, 64)) {
      if (why) *why = "'" + a.folder + "/" + rel + "' differs from its recorded checksum";
      return false;
    }
  }
  return true;
}

// Temporary files and unpack folders (base/temp_file.h) that a killed kdbench of this host left in `dir` (a data
// folder may be on a file system that several machines share: another host's pid means nothing here).
void remove_stale(const std::string& dir) {
  remove_stale_temporaries(dir);
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory() && is_stale_temporary(it->path().filename().string())) remove_tree(it->path().string());
}

nlohmann::json dataset_block(const DataArchive& a, const std::string& root) {
  if (a.dataset == "imagenette") return {{"name", "image_folder"}, {"root", root}};
  return {{"name", a.dataset}, {"root", root}};
}

}  // namespace

DataArchive data_archive(const std::string& dataset, const std::string& variant) {
  DataArchive a;
  a.dataset = dataset;
  if (dataset == "cifar10" || dataset == "cifar100") {
    if (!variant.empty()) throw ConfigError("dataset", dataset + " has no variants (got '" + variant + "')");
    a.url_base = "https://www.cs.toronto.edu/~kriz";
    a.source = kCifarPage;
    if (dataset == "cifar10") {
      a.file = "cifar-10-binary.tar.gz";
      a.md5 = "c32a1d4ab5d03f1284b67883e8d87530";
      a.bytes = 170052171;
      a.folder = "cifar-10-batches-bin";
      for (int i = 1; i <= 5; ++i) a.expected_files.emplace_back("data_batch_" + std::to_string(i) + ".bin", 30730000);
      a.expected_files.emplace_back("test_batch.bin", 30730000);
    } else {
      a.file = "cifar-100-binary.tar.gz";
      a.md5 = "03b5dce01913d631647c71ecec9e9cb8";
      a.bytes = 168513733;
      a.folder = "cifar-100-binary";
      a.expected_files = {{"train.bin", 50000 * 3074}, {"test.bin", 10000 * 3074}};
    }
    return a;
  }
  if (dataset == "imagenette") {
    a.url_base = "https://s3.amazonaws.com/fast-ai-imageclas";
    a.source = kFastaiChecks;
    const std::string v = variant.empty() ? "320" : variant;
    if (v == "320") {
      a.file = "imagenette2-320.tgz";
      a.md5 = "1f1f74f133caff120e575856659b87a2";
      a.bytes = 341663724;
    } else if (v == "160") {
      a.file = "imagenette2-160.tgz";
      a.md5 = "c475f8f7617a200ba35b9facc48443c3";
      a.bytes = 99003388;
    } else if (v == "full") {
      a.file = "imagenette2.tgz";
      a.md5 = "2c774ecb40005b35d7937d50f5d42336";
      a.bytes = 1557161267;
    } else {
      throw ConfigError("dataset", "imagenette comes in sizes 320, 160 and full (got '" + v + "')");
    }
    a.folder = a.file.substr(0, a.file.size() - 4);
    a.expected_files = {{"train", -1}, {"val", -1}};
    return a;
  }
  throw ConfigError("dataset", "kdbench downloads cifar10, cifar100 and imagenette (got '" + dataset + "')");
}

std::string file_digest(const std::string& path, const std::string& algorithm) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path, "cannot read the file");
  Digest d(algorithm);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    d.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return d.hex();
}

FetchResult fetch_dataset(const DataArchive& a, const std::string& dir, const FetchOptions& o) {
  FetchResult r;
  fs::create_directories(dir);
  remove_stale(dir);
  const fs::path folder = fs::path(dir) / a.folder;
  r.root = fs::absolute(folder).lexically_normal().string();
  r.dataset = dataset_block(a, r.root);
  std::string why_not;
  if (intact(a, folder, &why_not)) {
    if (!o.quiet) log::info("{} is already there: {}", a.dataset, r.root);
    return r;
  }
  if (fs::exists(folder) && !o.quiet) log::info("{} is not intact ({}): making it again", r.root, why_not);
  const auto [algorithm, want] = wanted_digest(a, o);
  const std::string base = o.url_base.empty() ? a.url_base : o.url_base;
  const std::string url = base + (base.empty() || base.back() == '/' ? "" : "/") + a.file;
  const fs::path archive = fs::path(dir) / a.file;
  std::string got;
  if (fs::exists(archive)) {
    got = file_digest(archive.string(), algorithm);
    if (got != want) {
      log::warn("{} has {} {}, not the published {}: downloading it again", archive.string(), algorithm, got, want);
      fs::remove(archive);
    } else if (!o.quiet) {
      log::info("{} is already there and intact", archive.string());
    }
  }
  if (!fs::exists(archive)) {
    // No more than the published size when the published checksum is what the download must have; a mirror's
    // own archive (--sha256) may be packed otherwise, up to twice that.
    const int64_t max_bytes = o.sha256.empty() ? a.bytes : 2 * a.bytes;
    const std::string limit_text = o.sha256.empty()
                                       ? "the published " + std::to_string(a.bytes) + " bytes"
                                       : std::to_string(max_bytes) + " bytes (twice the published " +
                                             std::to_string(a.bytes) + ", as --sha256 names another archive)";
    if (!o.quiet)
      log::info("downloading {} ({})", url, a.bytes > 0 && o.url_base.empty() ? mb(static_cast<double>(a.bytes)) : "");
    std::string tmp;
    try {
      tmp = create_temporary_file(archive.string());
      got = download(url, tmp, algorithm, o.url_base.empty() ? a.bytes : 0, max_bytes, limit_text, o.quiet);
      if (got != want)
        throw DataError(url, "the download's " + algorithm + " is " + got + ", the published one " + want +
                                 (o.sha256.empty() ? " (" + a.source + ")" : " (--sha256)") +
                                 ": a corrupt or truncated download; nothing was kept");
      fs::rename(tmp, archive);
    } catch (...) {
      std::error_code ec;
      if (!tmp.empty()) fs::remove(tmp, ec);
      throw;
    }
    r.downloaded = true;
  }
  std::map<std::string, int64_t> sizes;
  for (const auto& [rel, size] : a.expected_files) sizes[a.folder + "/" + rel] = size;
  std::string unpack_dir;
  try {
    unpack_dir = create_temporary_folder((fs::path(dir) / (a.folder + ".unpack")).string());
    unpack(archive.string(), unpack_dir, sizes);
    const fs::path unpacked = fs::path(unpack_dir) / a.folder;
    std::string why;
    if (!has_expected_files(a, unpacked, &why)) throw DataError(archive.string(), "unpacked, but " + why);
    write_manifest(unpacked);
    remove_tree(folder.string());  // an incomplete or damaged copy from before
    fs::rename(unpacked, folder);
    remove_tree(unpack_dir);
  } catch (...) {
    // Neither the folder nor an archive that does not unpack stays under its final name.
    if (!unpack_dir.empty()) remove_tree(unpack_dir);
    std::error_code ec;
    fs::remove(archive, ec);
    throw;
  }
  if (!o.quiet) log::info("{} unpacked into {}", a.dataset, r.root);
  return r;
}

}  // namespace kd
