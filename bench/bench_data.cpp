// The data pipeline: the Loader over in-memory data (synthetic, shaped like Fashion-MNIST and CIFAR)
// with and without augmentation and with 0/1/2 worker threads; the Loader over an image folder of JPEGs
// (decode + resize + random resized crop + flip); and the readers' buffer parsers (IDX, CIFAR binary,
// JPEG, PNG) on bytes written in the real formats in this process. items/s is images per second.
#include <benchmark/benchmark.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "datasets/dataset.h"
#include "datasets/readers.h"

// libjpeg's header needs <cstdio> (FILE, size_t) before it.
#include <jpeglib.h>
#include <png.h>

namespace fs = std::filesystem;

namespace kd::bench {
namespace {

LoaderOptions training_loader_options(const DataSplits& data, int64_t batch, bool augment, int workers) {
  LoaderOptions o;
  o.batch_size = batch;
  o.shuffle = true;
  o.seed = 0;
  o.augment = augment;
  o.augment_options = parse_augment(data.augment, "bench.augment");
  o.norm = data.norm;
  o.image_size = data.image_size;
  o.workers = workers;
  o.prefetch = 4;  // as the trainer sets it
  return o;
}

// Runs one epoch per iteration; returns the number of images delivered.
int64_t drain_epochs(benchmark::State& state, Loader& loader) {
  int64_t images = 0, epoch = 0;
  Batch b;
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    while (loader.next(b)) {
      images += b.x.size(0);
      benchmark::DoNotOptimize(b.x.data_ptr());
    }
  }
  return images;
}

// ---- Loader over in-memory data ------------------------------------------------------------------

// One epoch of the training loader (batch 128, shuffled) over a synthetic training split of 3,686
// images (4,096 less the 10% validation carve), at 28x28x1 or 32x32x3. Augmentation = random crop
// (padding 4) + horizontal flip. Args: image size (28: 1 channel, 32: 3 channels), augment, workers.
void BM_Loader_InMemory(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  const bool augment = state.range(1) != 0;
  const int workers = static_cast<int>(state.range(2));
  DataSplits data = synthetic_data(size, size == 28 ? 1 : 3, 4096);
  data.augment = {{"random_crop", true}, {"padding", 4}, {"flip", true}};
  Loader loader(data.train, training_loader_options(data, 128, augment, workers));
  const int64_t images = drain_epochs(state, loader);
  state.SetItemsProcessed(images);
  state.SetBytesProcessed(images * data.channels * size * size * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_Loader_InMemory)
    ->ArgNames({"size", "augment", "workers"})
    ->ArgsProduct({{28, 32}, {0, 1}, {0, 1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- test images in the real file formats ---------------------------------------------------------

// A photo-like RGB image: smooth gradients plus noise (so the codecs see realistic entropy).
std::vector<uint8_t> test_rgb(int w, int h, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 12.0f);
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        float v = 128 + 90 * std::sin(0.02f * (x + 37 * c) + 0.013f * y * (c + 1)) + noise(rng);
        px[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f));
      }
  return px;
}

std::string encode_jpeg(const std::vector<uint8_t>& rgb, int w, int h, int quality = 90) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long len = 0;
  jpeg_mem_dest(&c, &buf, &len);
  c.image_width = static_cast<JDIMENSION>(w);
  c.image_height = static_cast<JDIMENSION>(h);
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(rgb.data() + static_cast<size_t>(c.next_scanline) * w * 3);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::string out(reinterpret_cast<const char*>(buf), len);
  jpeg_destroy_compress(&c);
  std::free(buf);
  return out;
}

std::string encode_png(const std::vector<uint8_t>& rgb, int w, int h) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(w);
  img.height = static_cast<png_uint_32>(h);
  img.format = PNG_FORMAT_RGB;
  png_alloc_size_t len = 0;
  if (!png_image_write_to_memory(&img, nullptr, &len, 0, rgb.data(), 0, nullptr))
    throw std::runtime_error(std::string("png size: ") + img.message);
  std::string out(len, '\0');
  if (!png_image_write_to_memory(&img, out.data(), &len, 0, rgb.data(), 0, nullptr))
    throw std::runtime_error(std::string("png encode: ") + img.message);
  out.resize(len);
  return out;
}

// ---- readers' buffer parsers -----------------------------------------------------------------------

void put_be32(std::string& s, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xFF));
}

// parse_idx on an in-memory IDX images file (magic 0x00000803, N x 28 x 28 uint8), as Fashion-MNIST's
// train-images file once gunzipped. Arg: N.
void BM_ParseIdx(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  std::string bytes;
  put_be32(bytes, 0x00000803);
  put_be32(bytes, n);
  put_be32(bytes, 28);
  put_be32(bytes, 28);
  std::mt19937 rng(0);
  for (size_t i = 0; i < static_cast<size_t>(n) * 28 * 28; ++i) bytes.push_back(static_cast<char>(rng() & 0xFF));
  for (auto _ : state) {
    IdxArray a = parse_idx(bytes, "bench-images-idx3-ubyte");
    benchmark::DoNotOptimize(a.data.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_ParseIdx)->Arg(10000)->UseRealTime()->Unit(benchmark::kMillisecond);

// parse_cifar on in-memory CIFAR-100 binary records (coarse byte, fine byte, 3072 pixel bytes), fine
// labels. Arg: number of records.
void BM_ParseCifar100(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::string bytes;
  bytes.reserve(static_cast<size_t>(n) * 3074);
  std::mt19937 rng(0);
  for (int64_t r = 0; r < n; ++r) {
    bytes.push_back(static_cast<char>(rng() % 20));
    bytes.push_back(static_cast<char>(rng() % 100));
    for (int i = 0; i < 3072; ++i) bytes.push_back(static_cast<char>(rng() & 0xFF));
  }
  for (auto _ : state) {
    auto [images, labels] = parse_cifar(bytes, "bench/train.bin", 2, false, 100);
    benchmark::DoNotOptimize(images.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_ParseCifar100)->Arg(10000)->UseRealTime()->Unit(benchmark::kMillisecond);

// decode_image on a JPEG (quality 90) of W x H. Args: W, H (32x32: CIFAR-sized; 500x375: a typical
// ImageNet photo).
void BM_DecodeJpeg(benchmark::State& state) {
  const int w = static_cast<int>(state.range(0)), h = static_cast<int>(state.range(1));
  const std::string bytes = encode_jpeg(test_rgb(w, h, 1), w, h);
  for (auto _ : state) {
    auto img = decode_image(bytes, "bench.jpg");
    benchmark::DoNotOptimize(img.data_ptr());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_DecodeJpeg)
    ->ArgNames({"W", "H"})
    ->Args({32, 32})
    ->Args({500, 375})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// decode_image on a PNG (RGB, 8 bits) of W x H. Args: W, H.
void BM_DecodePng(benchmark::State& state) {
  const int w = static_cast<int>(state.range(0)), h = static_cast<int>(state.range(1));
  const std::string bytes = encode_png(test_rgb(w, h, 2), w, h);
  for (auto _ : state) {
    auto img = decode_image(bytes, "bench.png");
    benchmark::DoNotOptimize(img.data_ptr());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_DecodePng)
    ->ArgNames({"W", "H"})
    ->Args({32, 32})
    ->Args({224, 224})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// ---- Loader over an image folder --------------------------------------------------------------------

// A temporary image folder (root/{train,val}/<class>/*.JPEG) of 500x375 JPEGs: 32 per class for training,
// one per class for validation. Removed when the benchmark returns, file by file with unlink/rmdir:
// LibTorch's libtorch.so exports its own copy of std::filesystem::remove_all, which the dynamic linker
// binds in its place and which crashes (a call through a null pointer).
class TempImageFolder {
 public:
  TempImageFolder() : root_((fs::temp_directory_path() / ("kd_bench_images_" + std::to_string(::getpid()))).string()) {
    const std::string jpeg = encode_jpeg(test_rgb(500, 375, 3), 500, 375);
    make_dir(root_);
    for (const char* split : {"train", "val"}) {
      const std::string split_dir = root_ + "/" + split;
      make_dir(split_dir);
      for (int c = 0; c < 2; ++c) {
        const std::string class_dir = split_dir + "/n0000000" + std::to_string(c);
        make_dir(class_dir);
        const int files = std::string(split) == "train" ? 32 : 1;
        for (int i = 0; i < files; ++i) {
          files_.push_back(class_dir + "/img" + std::to_string(i) + ".JPEG");
          std::ofstream out(files_.back(), std::ios::binary);
          out << jpeg;
        }
      }
    }
  }
  ~TempImageFolder() {
    for (const auto& f : files_) ::unlink(f.c_str());
    for (auto d = dirs_.rbegin(); d != dirs_.rend(); ++d) ::rmdir(d->c_str());
  }
  TempImageFolder(const TempImageFolder&) = delete;
  TempImageFolder& operator=(const TempImageFolder&) = delete;
  const std::string& root() const { return root_; }

 private:
  void make_dir(const std::string& d) {
    if (::mkdir(d.c_str(), 0700) != 0) throw std::runtime_error("cannot create " + d);
    dirs_.push_back(d);
  }
  std::string root_;
  std::vector<std::string> files_, dirs_;
};

// One epoch of the image-folder training loader: 64 JPEGs (500x375) read, decoded, resized (shorter side
// 256), random-resized-cropped to 224 and flipped, batch 32. Arg: workers.
void BM_Loader_ImageFolder(benchmark::State& state) {
  const int workers = static_cast<int>(state.range(0));
  TempImageFolder folder;
  const DataSplits data = open_dataset(
      {{"name", "image_folder"}, {"root", folder.root()}, {"val_fraction", 0.0}, {"image_size", 224}}, "bench.dataset");
  Loader loader(data.train, training_loader_options(data, 32, true, workers));
  const int64_t images = drain_epochs(state, loader);
  state.SetItemsProcessed(images);
}
BENCHMARK(BM_Loader_ImageFolder)->ArgName("workers")->Arg(0)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kd::bench
