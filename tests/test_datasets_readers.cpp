// Every reader on files the test writes in exactly the real formats, good and corrupt; the real
// Fashion-MNIST; splits; loader determinism and augmentation.
#include <gtest/gtest.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "base/errors.h"
#include "datasets/dataset.h"
#include "datasets/readers.h"
#include "jpeg_writer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using kd::test::write_file;

namespace {

std::string be32(uint32_t v) {
  return std::string{char(v >> 24), char((v >> 16) & 255), char((v >> 8) & 255), char(v & 255)};
}

// IDX images: magic 0x00000803, N, rows, cols, then N*rows*cols bytes; labels: 0x00000801, N, N bytes.
std::string idx_images(int n, int h, int w, int offset = 0) {
  std::string s = be32(0x803) + be32(n) + be32(h) + be32(w);
  for (int i = 0; i < n * h * w; ++i) s += char((i + offset) & 255);
  return s;
}
std::string idx_labels(const std::vector<int>& labels) {
  std::string s = be32(0x801) + be32(static_cast<uint32_t>(labels.size()));
  for (int l : labels) s += char(l);
  return s;
}
void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(Idx, PlainAndGzipReadTheSameValues) {
  std::string dir = kd::test::make_temp_dir("idx");
  write_file(dir + "/im", idx_images(3, 2, 2));
  write_file(dir + "/lb", idx_labels({1, 0, 9}));
  write_gz(dir + "/im.gz", idx_images(3, 2, 2));
  write_gz(dir + "/lb.gz", idx_labels({1, 0, 9}));
  for (auto [im, lb] : {std::pair<std::string, std::string>{"im", "lb"}, {"im.gz", "lb.gz"}}) {
    auto d = kd::read_idx_pair(dir + "/" + im, dir + "/" + lb, 10);
    ASSERT_EQ(d->size(), 3);
    EXPECT_EQ(d->image_shape(), (std::vector<int64_t>{1, 2, 2}));
    EXPECT_EQ(d->label(2), 9);
    EXPECT_EQ(d->image(1)[0][1][0].item<int>(), 6);  // record 1, row 1, col 0 -> byte 4 + 2 = 6
  }
}

TEST(Idx, CorruptFilesNameFileAndRecord) {
  std::string dir = kd::test::make_temp_dir("idx");
  write_file(dir + "/lb", idx_labels({1, 0, 9}));
  std::string good = idx_images(3, 2, 2);
  write_file(dir + "/trunc", good.substr(0, good.size() - 5));
  auto m = error_of([&] { kd::read_idx_pair(dir + "/trunc", dir + "/lb", 10); });
  EXPECT_NE(m.find(dir + "/trunc"), std::string::npos) << m;
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  EXPECT_NE(m.find("record 1"), std::string::npos) << m;  // 11 of 12 data bytes: record 1 (of 0..2) is where it breaks
  std::string bad = good;
  bad[2] = 0x0D;  // float data type
  write_file(dir + "/type", bad);
  m = error_of([&] { kd::read_idx_pair(dir + "/type", dir + "/lb", 10); });
  EXPECT_NE(m.find("byte 2"), std::string::npos) << m;
  bad = good;
  bad[0] = 0x12;
  write_file(dir + "/magic", bad);
  m = error_of([&] { kd::read_idx_pair(dir + "/magic", dir + "/lb", 10); });
  EXPECT_NE(m.find("magic"), std::string::npos) << m;
  write_file(dir + "/im", good);
  write_file(dir + "/lb12", idx_labels({1, 12, 3}));
  m = error_of([&] { kd::read_idx_pair(dir + "/im", dir + "/lb12", 10); });
  EXPECT_NE(m.find("label 12 of record 1"), std::string::npos) << m;
  EXPECT_NE(m.find(dir + "/lb12"), std::string::npos) << m;
  write_file(dir + "/lb2", idx_labels({1, 2}));
  m = error_of([&] { kd::read_idx_pair(dir + "/im", dir + "/lb2", 10); });
  EXPECT_NE(m.find("2 labels for 3 images"), std::string::npos) << m;
  std::string gz_good;
  write_gz(dir + "/cut.gz", good);
  std::ifstream in(dir + "/cut.gz", std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file(dir + "/cut2.gz", gz.substr(0, gz.size() / 2));
  m = error_of([&] { kd::read_idx_pair(dir + "/cut2.gz", dir + "/lb", 10); });
  EXPECT_NE(m.find("cut2.gz"), std::string::npos) << m;
}

std::string cifar_record(int label_bytes, int coarse, int fine, int seed) {
  std::string r;
  if (label_bytes == 2) r += char(coarse);
  r += char(fine);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 1024; ++i) r += char((c * 50 + i + seed) & 255);  // R plane, then G, then B
  return r;
}

TEST(Cifar, TenAndHundredBinaryFormats) {
  std::string dir = kd::test::make_temp_dir("cifar");
  std::string root10 = dir + "/cifar-10-batches-bin";
  for (int b = 1; b <= 5; ++b)
    write_file(root10 + "/data_batch_" + std::to_string(b) + ".bin",
               cifar_record(1, 0, b, b) + cifar_record(1, 0, 9, 0));
  write_file(root10 + "/test_batch.bin", cifar_record(1, 0, 3, 7));
  auto [train, test] = kd::read_cifar(dir, false, false);  // finds the subfolder
  EXPECT_EQ(train->size(), 10);
  EXPECT_EQ(test->size(), 1);
  EXPECT_EQ(train->num_classes(), 10);
  EXPECT_EQ(train->label(0), 1);
  EXPECT_EQ(train->label(9), 9);
  auto img = test->image(0);
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(img[1][0][0].item<int>(), (50 + 7) & 255) << "second plane is green";
  EXPECT_EQ(img[0][1][2].item<int>(), (32 + 2 + 7) & 255) << "row-major within a plane";

  std::string root100 = dir + "/c100";
  write_file(root100 + "/train.bin", cifar_record(2, 4, 73, 0) + cifar_record(2, 19, 99, 1));
  write_file(root100 + "/test.bin", cifar_record(2, 0, 5, 2));
  auto fine = kd::read_cifar(root100, true, false);
  EXPECT_EQ(fine.first->num_classes(), 100);
  EXPECT_EQ(fine.first->label(0), 73);
  auto coarse = kd::read_cifar(root100, true, true);
  EXPECT_EQ(coarse.first->num_classes(), 20);
  EXPECT_EQ(coarse.first->label(1), 19);
}

TEST(Cifar, TruncatedAndBadLabel) {
  std::string dir = kd::test::make_temp_dir("cifar");
  write_file(dir + "/train.bin", cifar_record(2, 1, 2, 0) + cifar_record(2, 1, 2, 0).substr(0, 1000));
  write_file(dir + "/test.bin", cifar_record(2, 0, 5, 2));
  auto m = error_of([&] { kd::read_cifar(dir, true, false); });
  EXPECT_NE(m.find(dir + "/train.bin"), std::string::npos) << m;
  EXPECT_NE(m.find("record 1 is truncated"), std::string::npos) << m;
  write_file(dir + "/train.bin", cifar_record(2, 1, 2, 0) + cifar_record(2, 1, 100, 0));
  m = error_of([&] { kd::read_cifar(dir, true, false); });
  EXPECT_NE(m.find("label 100 of record 1"), std::string::npos) << m;
  m = error_of([&] { kd::read_cifar(dir + "/missing", false, false); });
  EXPECT_NE(m.find("missing"), std::string::npos) << m;
}

// A w x h RGB JPEG whose left half is red and right half is blue.
std::string make_jpeg(int w, int h) {
  std::vector<unsigned char> row(static_cast<size_t>(w) * 3);
  for (int x = 0; x < w; ++x) {
    row[x * 3] = x < w / 2 ? 255 : 0;
    row[x * 3 + 2] = x < w / 2 ? 0 : 255;
  }
  return kd::test::encode_jpeg(w, h, 3, JCS_RGB, row, 95);
}

// A w x h grayscale PNG with value 200.
void write_png(const std::string& path, int w, int h) {
  FILE* f = fopen(path.c_str(), "wb");
  png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(p);
  png_init_io(p, f);
  png_set_IHDR(p, info, w, h, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(p, info);
  std::vector<unsigned char> row(static_cast<size_t>(w), 200);
  for (int y = 0; y < h; ++y) png_write_row(p, row.data());
  png_write_end(p, nullptr);
  png_destroy_write_struct(&p, &info);
  fclose(f);
}

TEST(ImageFolder, JpegPngSubsetAndBadImages) {
  std::string root = kd::test::make_temp_dir("imgs");
  for (const char* split : {"train", "val"}) {
    for (const char* wnid : {"n01", "n02", "n03"}) {
      std::string d = root + "/" + split + "/" + wnid;
      write_file(d + "/a.JPEG", make_jpeg(40, 30));
      fs::create_directories(d);
      write_png(d + "/b.png", 20, 24);
    }
  }
  kd::ImageFolderOptions o;
  o.root = root;
  o.num_classes = 2;
  o.image_size = 16;
  o.resize = 18;
  auto [train, test] = kd::open_image_folder(o);
  EXPECT_EQ(train->num_classes(), 2);
  EXPECT_EQ(train->size(), 4);
  auto jpg = kd::decode_image(make_jpeg(40, 30), "x.JPEG");
  EXPECT_EQ(jpg.sizes(), (std::vector<int64_t>{3, 30, 40}));
  EXPECT_GT(jpg[0][15][5].item<int>(), 200);  // red on the left
  EXPECT_LT(jpg[2][15][5].item<int>(), 60);
  EXPECT_GT(jpg[2][15][35].item<int>(), 200);  // blue on the right
  // Class list file.
  write_file(root + "/classes.txt", "n03\nn01\n");
  o.classes_file = root + "/classes.txt";
  auto sub = kd::open_image_folder(o);
  EXPECT_EQ(sub.first->label(0), 0);  // n03 first
  write_file(root + "/bad.txt", "n01\nn99\n");
  o.classes_file = root + "/bad.txt";
  auto m = error_of([&] { kd::open_image_folder(o); });
  EXPECT_NE(m.find("line 2: class 'n99'"), std::string::npos) << m;
  // An undecodable image: error names the file; skip warns and goes on.
  write_file(root + "/train/n01/c.JPEG", "\xFF\xD8 not really a jpeg");
  o.classes_file = "";
  auto broken = kd::open_image_folder(o);
  int64_t idx = -1;
  for (int64_t i = 0; i < broken.first->size(); ++i)
    if (error_of([&] { broken.first->image(i); }) != "no error") idx = i;
  ASSERT_GE(idx, 0);
  m = error_of([&] { broken.first->image(idx); });
  EXPECT_NE(m.find("c.JPEG"), std::string::npos) << m;
  o.on_bad_image = "skip";
  auto skipping = kd::open_image_folder(o);
  EXPECT_EQ(error_of([&] { skipping.first->image(idx); }), "no error");
  m = error_of([&] { kd::decode_image("GIF89a....", "x.gif"); });
  EXPECT_NE(m.find("x.gif: not a JPEG or PNG"), std::string::npos) << m;
}

// Inputs the fuzzer (fuzz/fuzz_image.cpp) found or needed: each is a DataError naming the file, or decodes.
TEST(ImageFolder, FuzzerFindings) {
  // A truncated JPEG: libjpeg would fill the missing rows with grey; it is an error instead.
  std::string jpg = make_jpeg(64, 64);
  std::string m = error_of([&] { kd::decode_image(jpg.substr(0, jpg.size() * 6 / 10), "cut.JPEG"); });
  EXPECT_NE(m.find("cut.JPEG"), std::string::npos) << m;
  // A CMYK JPEG (Photoshop's; ImageNet has some) decodes to RGB.
  {
    const std::string cmyk = kd::test::encode_jpeg(16, 8, 4, JCS_CMYK, std::vector<unsigned char>(16 * 4, 128));
    auto img = kd::decode_image(cmyk, "cmyk.JPEG");
    EXPECT_EQ(img.sizes(), (std::vector<int64_t>{3, 8, 16}));
    EXPECT_LE((img.max() - img.min()).item<int>(), 2) << "a uniform CMYK image decodes uniform";
  }
  // A PNG whose text chunk claims 1.7 GB (libpng would allocate it up front).
  {
    auto chunk = [](const std::string& type, const std::string& data, uint32_t declared) {
      std::string body = type + data;
      uint32_t crc =
          static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
      return be32(declared) + body + be32(crc);
    };
    std::string ihdr = be32(4) + be32(4) + std::string{8, 0, 0, 0, 0};  // 4x4, 8-bit gray
    std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr, 13) + chunk("tEXt", "k", 1700000000u);
    m = error_of([&] { kd::decode_image(png, "text.png"); });
    EXPECT_NE(m.find("text.png"), std::string::npos) << m;
  }
  // A 1 x 2000 image: resizing its shorter side to 256 would take 500 MB; an error naming it (or skipped).
  std::string root = kd::test::make_temp_dir("thin");
  for (const char* split : {"train", "val"}) {
    fs::create_directories(root + "/" + split + "/n01");
    write_png(root + "/" + split + "/n01/thin.png", 2000, 1);
  }
  kd::ImageFolderOptions o;
  o.root = root;
  o.image_size = 224;
  o.resize = 256;
  auto thin = kd::open_image_folder(o);
  m = error_of([&] { thin.first->image(0); });
  EXPECT_NE(m.find("thin.png"), std::string::npos) << m;
  EXPECT_NE(m.find("elongated"), std::string::npos) << m;
  o.on_bad_image = "skip";
  EXPECT_FALSE(kd::open_image_folder(o).first->image(0).defined());
}

bool have_fashion() {
  return fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

TEST(FashionMnist, RealDataAndStratifiedValidationSplit) {
  if (!have_fashion()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto s = kd::open_dataset({{"name", "fashion_mnist"}, {"val_fraction", 0.1}});
  EXPECT_EQ(s.train->size() + s.val->size(), 60000);
  EXPECT_EQ(s.val->size(), 6000);
  EXPECT_EQ(s.test->size(), 10000);
  EXPECT_EQ(s.num_classes, 10);
  EXPECT_EQ(s.image_size, 28);
  auto counts = torch::bincount(s.val->all_labels(), {}, 10);
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c].item<int64_t>(), 600) << "class " << c;
  // Same seed, same split; another seed, another split; never overlapping.
  auto again = kd::open_dataset({{"name", "fashion_mnist"}, {"val_fraction", 0.1}});
  EXPECT_TRUE(torch::equal(s.val->all_images(), again.val->all_images()));
  auto other = kd::open_dataset({{"name", "fashion_mnist"}, {"val_fraction", 0.1}, {"split_seed", 1}});
  EXPECT_FALSE(torch::equal(s.val->all_images(), other.val->all_images()));
  auto sub = kd::open_dataset({{"name", "fashion_mnist"}, {"train_subset", 1000}, {"test_subset", 500}});
  EXPECT_EQ(sub.train->size() + sub.val->size(), 1000);
  EXPECT_EQ(sub.test->size(), 500);
}

TEST(OpenDataset, ConfigErrorsNameTheKey) {
  auto m = error_of([] { kd::open_dataset({{"name", "synthetic"}, {"bogus", 1}}); });
  EXPECT_NE(m.find("dataset.bogus"), std::string::npos) << m;
  m = error_of([] { kd::open_dataset({{"name", "synthetic"}, {"val_fraction", 0.9}}); });
  EXPECT_NE(m.find("dataset.val_fraction"), std::string::npos) << m;
  m = error_of([] { kd::open_dataset({{"name", "imagenet21k"}}); });
  EXPECT_NE(m.find("dataset.name"), std::string::npos) << m;
  m = error_of([] { kd::open_dataset({{"name", "cifar10"}, {"root", "/nonexistent/cifar"}}); });
  EXPECT_NE(m.find("/nonexistent/cifar"), std::string::npos) << m;
  m = error_of([] { kd::open_dataset({{"name", "synthetic"}, {"augment", {{"flip", "yes"}}}}); });
  EXPECT_NE(m.find("dataset.augment.flip"), std::string::npos) << m;
}

// "normalize" replaces the data set's own statistics (e.g. RepDistiller's CIFAR-100 loader's, for its teachers).
TEST(OpenDataset, NormalizeSetsTheStatisticsPerChannel) {
  const nlohmann::json three = {{"name", "synthetic"}, {"channels", 3}, {"train_size", 20}, {"test_size", 10}};
  EXPECT_EQ(kd::open_dataset(three).norm.mean, (std::vector<float>{0.5f, 0.5f, 0.5f})) << "the synthetic default";
  auto cfg = three;
  cfg["normalize"] = {{"mean", {0.5071, 0.4867, 0.4408}}, {"std", {0.2675, 0.2565, 0.2761}}};
  auto s = kd::open_dataset(cfg);
  EXPECT_EQ(s.norm.mean, (std::vector<float>{0.5071f, 0.4867f, 0.4408f}));
  EXPECT_EQ(s.norm.std, (std::vector<float>{0.2675f, 0.2565f, 0.2761f}));
  cfg["normalize"]["mean"] = {0.5, 0.5};
  auto m = error_of([&] { kd::open_dataset(cfg); });
  EXPECT_EQ(m, "dataset.normalize.mean: expected an array of 3 numbers (one per channel)");
  cfg["normalize"] = {{"mean", {0.5, 0.5, 0.5}}, {"std", {0.2, 0.0, 0.2}}};
  m = error_of([&] { kd::open_dataset(cfg); });
  EXPECT_EQ(m, "dataset.normalize.std: each value must be in (0, 1]");
  cfg["normalize"] = {{"mean", {0.5, 0.5, 0.5}}};
  m = error_of([&] { kd::open_dataset(cfg); });
  EXPECT_NE(m.find("dataset.normalize.std"), std::string::npos) << m;
}

std::vector<torch::Tensor> epoch_batches(kd::DatasetPtr d, uint64_t seed, int workers, bool augment) {
  kd::LoaderOptions o;
  o.batch_size = 32;
  o.seed = seed;
  o.workers = workers;
  o.augment = augment;
  o.augment_options.random_crop = true;
  o.augment_options.crop_padding = 2;
  o.augment_options.horizontal_flip = true;
  kd::Loader l(d, o);
  l.start_epoch(3);
  std::vector<torch::Tensor> out;
  kd::Batch b;
  while (l.next(b)) {
    out.push_back(b.x);
    out.push_back(b.y.to(torch::kFloat));
  }
  return out;
}

TEST(Loader, SameSeedSameBatchesWhateverTheWorkers) {
  auto s = kd::open_dataset({{"name", "synthetic"}, {"train_size", 200}, {"val_fraction", 0.0}});
  auto a = epoch_batches(s.train, 7, 1, true), b = epoch_batches(s.train, 7, 3, true),
       c = epoch_batches(s.train, 8, 2, true);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), 2u * 7u);  // ceil(200/32) batches
  bool all_same = true, all_same_c = true;
  for (size_t i = 0; i < a.size(); ++i) {
    all_same &= torch::equal(a[i], b[i]);
    all_same_c &= torch::equal(a[i], c[i]);
  }
  EXPECT_TRUE(all_same) << "1 and 3 workers must give identical batches";
  EXPECT_FALSE(all_same_c) << "another seed must give another order";
}

TEST(Loader, FlipAndPaddedCropByHand) {
  // One 1x4x4 image with distinct pixels; norm mean 0 / std 1/255 -> x == raw pixel value.
  auto img = torch::arange(16, torch::kUInt8).view({1, 1, 4, 4});
  auto d = std::make_shared<kd::InMemoryDataset>(img, torch::zeros({1}, torch::kLong), 2, "one");
  kd::LoaderOptions o;
  o.batch_size = 1;
  o.norm = {{0.0f}, {1.0f / 255.0f}};
  o.augment = true;
  o.augment_options.horizontal_flip = true;
  int flipped = 0, kept = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    o.seed = seed;
    kd::Loader l(d, o);
    l.start_epoch(0);
    kd::Batch b;
    ASSERT_TRUE(l.next(b));
    auto x = b.x[0][0];
    if (torch::equal(x, img[0][0].to(torch::kFloat)))
      ++kept;
    else if (torch::equal(x, img[0][0].flip({1}).to(torch::kFloat)))
      ++flipped;
    else
      ADD_FAILURE() << "neither the image nor its mirror";
  }
  EXPECT_GT(flipped, 5);
  EXPECT_GT(kept, 5);
  // Padded crop: every output is a 4x4 window of the zero-padded image.
  o.augment_options.horizontal_flip = false;
  o.augment_options.random_crop = true;
  o.augment_options.crop_padding = 1;
  auto padded = torch::constant_pad_nd(img[0][0].to(torch::kFloat), {1, 1, 1, 1}, 0);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    o.seed = seed;
    kd::Loader l(d, o);
    l.start_epoch(0);
    kd::Batch b;
    ASSERT_TRUE(l.next(b));
    bool found = false;
    for (int dy = 0; dy <= 2; ++dy)
      for (int dx = 0; dx <= 2; ++dx) found |= torch::equal(b.x[0][0], padded.narrow(0, dy, 4).narrow(1, dx, 4));
    EXPECT_TRUE(found) << "seed " << seed;
  }
}

}  // namespace
