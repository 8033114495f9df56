// The data sets people use, fetched from their publishers: CIFAR-10 and CIFAR-100 (binary versions, from
// the authors' page) and Imagenette (fast.ai). Each archive is downloaded over HTTPS with libcurl to a new
// temporary file (base/temp_file.h) while its checksum is computed, no further than its published size,
// checked against the published checksum, renamed into place, and unpacked (libarchive) into a temporary
// folder, no file past the size it has in the published data set, which is renamed into place once complete
// with a manifest of the checksums of its files (kdbench-checksums.sha256, sha256sum's format); so an
// interrupted, corrupt or oversized download never looks complete, and an archive that does not unpack is
// removed. What is already there and intact (the unpacked folder whose files have the checksums of its
// manifest, or the archive with the right checksum) is not downloaded again.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kd {

struct DataArchive {
  std::string dataset;      // "cifar10", "cifar100", "imagenette"
  std::string url_base;     // the publisher's folder, e.g. "https://www.cs.toronto.edu/~kriz"
  std::string file;         // archive name under url_base, e.g. "cifar-10-binary.tar.gz"
  std::string md5, sha256;  // the published checksum (lower-case hex; one of them is set)
  int64_t bytes = 0;        // published size, 0 = unknown
  std::string folder;       // the folder the archive unpacks to, e.g. "cifar-10-batches-bin"
  // Files (relative to `folder`) and their sizes (-1 = any) that an intact unpacked copy has.
  std::vector<std::pair<std::string, int64_t>> expected_files;
  std::string source;  // where the checksum is published, for messages and the README
};

// The archive of `dataset` ("cifar10", "cifar100", "imagenette"; imagenette `variant` "320" (default),
// "160" or "full"). Throws ConfigError("dataset", ...) for an unknown name or variant.
DataArchive data_archive(const std::string& dataset, const std::string& variant = "");

struct FetchOptions {
  std::string url_base;  // replaces the publisher's (a mirror, or a test server)
  std::string sha256;    // replaces the published checksum (with a mirror's own archive)
  bool quiet = false;    // no progress lines
};

struct FetchResult {
  std::string root;         // the unpacked folder (DIR/<folder>)
  bool downloaded = false;  // false: it was already there
  nlohmann::json dataset;   // the config's "dataset" block for it
};

// Makes `dir`/<folder> from the archive (downloading it into `dir` unless an intact copy is there).
// Throws DataError naming the URL or file: an HTTP or network failure, a download cut short or longer than
// the published size (twice it with FetchOptions::sha256), a checksum that differs (both checksums in the
// message), an archive that does not unpack, lacks the expected files or holds a file larger than it should
// be. After any failure neither the archive nor the folder exists under its final name.
FetchResult fetch_dataset(const DataArchive& a, const std::string& dir, const FetchOptions& o);

// Lower-case hex digests of a file ("md5" or "sha256"); throws DataError naming it.
std::string file_digest(const std::string& path, const std::string& algorithm);

}  // namespace kd
