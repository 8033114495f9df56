// libFuzzer target: IDX files (the MNIST / Fashion-MNIST format), plain or gzipped.
//
// Covers, on the same input bytes:
//  1. kd::parse_idx on the raw bytes (header, magic, dimensions, truncation, trailing bytes);
//  2. kd::read_file_maybe_gz on the bytes as a file (gzip magic -> chunked inflate and its corrupt /
//     truncated-stream errors; otherwise the bytes as they are), then kd::parse_idx of what it returns;
//  3. kd::read_idx_pair when the bytes hold an images file followed by a labels file (split where the
//     first header says the first file ends): pairing of counts, image rank, label range.
// Only kd::DataError is caught: anything else is a bug and crashes the run.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/errors.h"
#include "datasets/readers.h"
#include "fuzz_util.h"

namespace {

// Checks what parse_idx promises about a successful parse.
void check(const kd::IdxArray& a, size_t raw_size) {
  if (a.dims.empty() || a.dims.size() > 4) kd::fuzz::fail("IDX rank out of 1..4");
  if (a.data.dtype() != torch::kUInt8 || a.data.sizes().vec() != a.dims) kd::fuzz::fail("IDX tensor shape");
  size_t header = 4 + 4 * a.dims.size();
  if (header + static_cast<size_t>(a.data.numel()) != raw_size) kd::fuzz::fail("IDX size does not add up");
}

// Length of the first IDX file in `b` as its header declares it, or 0 when the header is unusable.
size_t declared_length(const std::string& b) {
  auto u8 = [&](size_t i) { return static_cast<unsigned char>(b[i]); };
  if (b.size() < 4 || u8(0) != 0 || u8(1) != 0 || u8(2) != 8 || u8(3) < 1 || u8(3) > 4) return 0;
  size_t header = 4 + 4 * static_cast<size_t>(u8(3));
  if (b.size() < header) return 0;
  uint64_t total = 1;
  for (size_t o = 4; o < header; o += 4) {
    total *= (uint64_t(u8(o)) << 24) | (uint64_t(u8(o + 1)) << 16) | (uint64_t(u8(o + 2)) << 8) | u8(o + 3);
    if (total > b.size()) return 0;
  }
  return header + total;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);  // one thread: deterministic, and no OpenMP spinning next to other runs
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kd::fuzz::MemFile images("fuzz_idx_images"), labels("fuzz_idx_labels");
  const std::string bytes(reinterpret_cast<const char*>(data), size);

  try {
    check(kd::parse_idx(bytes, "fuzz.idx"), bytes.size());
  } catch (const kd::DataError&) {
  }

  try {
    const std::string raw = kd::read_file_maybe_gz(images.set(bytes.data(), bytes.size()));
    if (raw != bytes) check(kd::parse_idx(raw, "fuzz.idx.gz"), raw.size());  // plain input: done in 1
  } catch (const kd::DataError&) {
  }

  const size_t first = declared_length(bytes);
  if (first > 0 && first < bytes.size()) {
    try {
      const std::string& im = images.set(bytes.data(), first);
      const std::string& lb = labels.set(bytes.data() + first, bytes.size() - first);
      kd::DatasetPtr d = kd::read_idx_pair(im, lb, 10);
      if (d->size() <= 0 || d->image_shape().size() != 3 || d->image_shape()[0] != 1) kd::fuzz::fail("IDX pair shape");
      for (int64_t i = 0; i < d->size(); ++i)
        if (d->label(i) < 0 || d->label(i) >= 10) kd::fuzz::fail("IDX label out of range");
    } catch (const kd::DataError&) {
    }
  }
  return 0;
}
