// `kdbench data cifar10|cifar100|imagenette [DIR]`: downloads a data set from its publisher, checks it
// against the published checksum, unpacks it where kdbench's readers expect it and prints the "dataset"
// block for a config (datasets/download.h).
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "datasets/download.h"

namespace kd {

int cmd_data(const std::string& dataset, const std::string& dir, const std::string& size, const FetchOptions& o) {
  DataArchive a = data_archive(dataset, size);
  FetchResult r = fetch_dataset(a, dir, o);
  std::cout << "\"dataset\": " << r.dataset.dump() << "\n";
  return 0;
}

}  // namespace kd

namespace kd::cli {
namespace {
struct DataArgs {
  std::string dataset, dir = "data", size;
  FetchOptions fetch;
};
}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND("data", "Download CIFAR-10, CIFAR-100 or Imagenette, check it, unpack it, print its dataset block",
                    53, [](CLI::App& sub) -> kd::cli::CommandRun {
                      auto a = std::make_shared<kd::cli::DataArgs>();
                      sub.add_option("dataset", a->dataset, "cifar10 | cifar100 | imagenette")
                          ->required()
                          ->check(CLI::IsMember({"cifar10", "cifar100", "imagenette"}));
                      sub.add_option("dir", a->dir, "Folder to put it in (default: ./data)");
                      sub.add_option("--size", a->size, "imagenette: 320 (default), 160 or full");
                      sub.add_option("--url-base", a->fetch.url_base,
                                     "Download from this folder instead of the publisher's");
                      sub.add_option("--sha256", a->fetch.sha256,
                                     "Expect this SHA-256 instead of the published checksum");
                      sub.add_flag("-q,--quiet", a->fetch.quiet, "No progress lines");
                      return [a] { return kd::cmd_data(a->dataset, a->dir, a->size, a->fetch); };
                    });
