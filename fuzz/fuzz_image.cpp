// libFuzzer target: the image-folder path (ImageNet-style folders of .JPEG/.jpg/.png files).
//
// The input is the content of one image file in a class folder that kd::open_image_folder opened
// (a temporary folder, the file rewritten for every input), read the way the loader's workers read
// it: ImageFolderDataset::image -> kd::read_file_bytes -> kd::decode_image (magic-byte dispatch;
// JPEG through libjpeg-turbo with its error_exit/longjmp -> DataError path, truncation and size
// limits, conversion to RGB; PNG through libpng read from memory, truncation, palette / grey /
// 16-bit / alpha / tRNS conversion to 8-bit RGB, size limit) -> kd::resize_shorter_u8 to the default
// `resize` (256); then kd::center_crop_u8 to the default `image_size` (224), as the loader does
// for evaluation. on_bad_image "error" must throw kd::DataError naming the file, and "skip" must
// return an undefined tensor for the same input instead. Nothing else may escape.
//
// libjpeg-turbo, libpng and zlib are Debian's uninstrumented builds: coverage feedback comes from
// kdbench's side only, and ASan sees their heap use but not their internal reads and writes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "base/errors.h"
#include "datasets/readers.h"
#include "fuzz_util.h"

namespace fs = std::filesystem;

namespace {

struct Folder {
  fs::path root, file;
  kd::DatasetPtr strict, skipping;  // on_bad_image "error" and "skip", both reading `file`
};

Folder* folder = nullptr;

void remove_folder() {
  std::error_code ec;
  if (folder) fs::remove_all(folder->root, ec);
}

void write(const fs::path& p, const uint8_t* data, size_t size) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) kd::fuzz::fail("cannot write " + p.string());
}

void check(const torch::Tensor& img) {
  if (img.dim() != 3 || img.size(0) != 3 || std::min(img.size(1), img.size(2)) != 256 || img.dtype() != torch::kUInt8)
    kd::fuzz::fail("image() returned " + c10::str(img.sizes()));
  torch::Tensor c = kd::center_crop_u8(img, 224);
  if (c.size(0) != 3 || c.size(1) != 224 || c.size(2) != 224)
    kd::fuzz::fail("center_crop_u8 gave " + c10::str(c.sizes()));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);  // one thread: deterministic, and no OpenMP spinning next to other runs
  // Under $TMPDIR (scripts/fuzz points it into the build folder, and removes it even after a crash,
  // which skips the atexit clean-up).
  std::string tmpl = (fs::temp_directory_path() / "kdbench-fuzz-image-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) kd::fuzz::fail("mkdtemp " + tmpl);
  folder = new Folder{tmpl, fs::path(tmpl) / "train" / "n00000001" / "input.JPEG", nullptr, nullptr};
  std::atexit(remove_folder);
  for (const char* split : {"train", "val"}) fs::create_directories(folder->root / split / "n00000001");
  const uint8_t one = 0;
  write(folder->file, &one, 1);
  write(folder->root / "val" / "n00000001" / "input.png", &one, 1);
  kd::ImageFolderOptions o;
  o.root = folder->root.string();
  folder->strict = kd::open_image_folder(o).first;
  o.on_bad_image = "skip";
  folder->skipping = kd::open_image_folder(o).first;
  if (folder->strict->size() != 1 || folder->skipping->size() != 1) kd::fuzz::fail("image folder setup");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write(folder->file, data, size);
  bool ok = true;
  try {
    check(folder->strict->image(0));
  } catch (const kd::DataError& e) {
    ok = false;
    if (e.file() != folder->file.string()) kd::fuzz::fail(std::string("DataError names another file: ") + e.what());
  }
  // "skip" must turn exactly those errors into an undefined tensor (and log the file once).
  if (!ok && folder->skipping->image(0).defined()) kd::fuzz::fail("on_bad_image skip returned an image");
  return 0;
}
