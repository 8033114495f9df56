// libFuzzer target: CIFAR binary batches (the official cifar-10-batches-bin / cifar-100-binary files).
//
// Covers kd::parse_cifar on the input in all three label layouts read_cifar uses: CIFAR-10 (1 label
// byte, 10 classes), CIFAR-100 fine (2 label bytes, the second, 100 classes) and CIFAR-100 coarse (the
// first, 20 classes): record size, truncation and label-range errors. Then the same bytes as a file
// through kd::read_file_maybe_gz (read_cifar reads every batch through it, so gzipped batches work),
// parsed in the layout that matches the inflated size. Only kd::DataError is caught.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/errors.h"
#include "datasets/readers.h"
#include "fuzz_util.h"

namespace {

struct Layout {
  int bytes_per_label;
  bool coarse;
  int classes;
};
constexpr Layout kLayouts[] = {{1, false, 10}, {2, false, 100}, {2, true, 20}};

void parse(const std::string& bytes, const Layout& l) {
  try {
    auto [images, labels] = kd::parse_cifar(bytes, "fuzz.bin", l.bytes_per_label, l.coarse, l.classes);
    const int64_t n = static_cast<int64_t>(bytes.size() / (3072 + static_cast<size_t>(l.bytes_per_label)));
    if (images.sizes().vec() != std::vector<int64_t>{n, 3, 32, 32} || labels.sizes().vec() != std::vector<int64_t>{n})
      kd::fuzz::fail("CIFAR tensor shapes");
    if (n > 0 && (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= l.classes))
      kd::fuzz::fail("CIFAR label out of range");
  } catch (const kd::DataError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);  // one thread: deterministic, and no OpenMP spinning next to other runs
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kd::fuzz::MemFile file("fuzz_cifar");
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  for (const Layout& l : kLayouts) parse(bytes, l);
  try {
    const std::string raw = kd::read_file_maybe_gz(file.set(bytes.data(), bytes.size()));
    if (raw != bytes) parse(raw, raw.size() % 3074 == 0 ? kLayouts[1] : kLayouts[0]);
  } catch (const kd::DataError&) {
  }
  return 0;
}
