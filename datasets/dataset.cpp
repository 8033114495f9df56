// Datasets: subsets, stratified splits, the synthetic set, and opening a dataset from its config.
#include "datasets/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>

#include "base/errors.h"
#include "base/json_reader.h"
#include "base/log.h"
#include "datasets/readers.h"

namespace fs = std::filesystem;

namespace kd {

torch::Tensor Dataset::all_labels() const {
  auto out = torch::empty({size()}, torch::kLong);
  auto* p = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < size(); ++i) p[i] = label(i);
  return out;
}

// ---------------------------------------------------------------------------------------------
// in-memory and subset datasets

InMemoryDataset::InMemoryDataset(torch::Tensor images, torch::Tensor labels, int num_classes, std::string desc)
    : images_(std::move(images)), labels_(std::move(labels)), num_classes_(num_classes), desc_(std::move(desc)) {}

namespace {

class SubsetDataset : public Dataset {
 public:
  SubsetDataset(DatasetPtr base, std::vector<int64_t> idx) : base_(std::move(base)), idx_(std::move(idx)) {
    for (auto i : idx_)
      if (i < 0 || i >= base_->size()) throw std::out_of_range("subset index out of range");
    auto all = base_->all_images();
    if (all.defined()) {
      auto t = torch::from_blob(idx_.data(), {static_cast<int64_t>(idx_.size())}, torch::kLong).clone();
      images_ = all.index_select(0, t);
      labels_ = base_->all_labels().index_select(0, t);
    }
  }
  int64_t size() const override { return static_cast<int64_t>(idx_.size()); }
  int num_classes() const override { return base_->num_classes(); }
  std::vector<int64_t> image_shape() const override { return base_->image_shape(); }
  int64_t label(int64_t i) const override {
    return labels_.defined() ? labels_.data_ptr<int64_t>()[i] : base_->label(idx_.at(static_cast<size_t>(i)));
  }
  torch::Tensor image(int64_t i) const override {
    return images_.defined() ? images_[i] : base_->image(idx_.at(static_cast<size_t>(i)));
  }
  torch::Tensor all_images() const override { return images_; }
  torch::Tensor all_labels() const override { return labels_.defined() ? labels_ : Dataset::all_labels(); }
  std::string describe() const override {
    return base_->describe() + " [subset of " + std::to_string(idx_.size()) + "]";
  }

 private:
  DatasetPtr base_;
  std::vector<int64_t> idx_;
  torch::Tensor images_, labels_;
};

}  // namespace

DatasetPtr make_subset(DatasetPtr base, std::vector<int64_t> indices) {
  return std::make_shared<SubsetDataset>(std::move(base), std::move(indices));
}

// Per class, a seeded shuffle of its indices; the first round(fraction * n_c) go to `picked`.
static std::pair<std::vector<int64_t>, std::vector<int64_t>> stratified_indices(const Dataset& d, double fraction,
                                                                                uint64_t seed) {
  std::map<int64_t, std::vector<int64_t>> by_class;
  auto labels = d.all_labels();
  auto* lp = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < d.size(); ++i) by_class[lp[i]].push_back(i);
  std::vector<int64_t> rest, picked;
  for (auto& [c, idx] : by_class) {
    std::mt19937_64 rng(seed * 1000003ULL + static_cast<uint64_t>(c) * 7919ULL + 1);
    std::shuffle(idx.begin(), idx.end(), rng);
    auto n = static_cast<size_t>(std::llround(fraction * static_cast<double>(idx.size())));
    picked.insert(picked.end(), idx.begin(), idx.begin() + static_cast<long>(n));
    rest.insert(rest.end(), idx.begin() + static_cast<long>(n), idx.end());
  }
  std::sort(rest.begin(), rest.end());
  std::sort(picked.begin(), picked.end());
  return {rest, picked};
}

std::pair<DatasetPtr, DatasetPtr> stratified_split(DatasetPtr train, double val_fraction, uint64_t seed) {
  auto [rest, val] = stratified_indices(*train, val_fraction, seed);
  return {make_subset(train, rest), make_subset(train, val)};
}

// ---------------------------------------------------------------------------------------------
// synthetic: each class is a fixed random low-frequency pattern; samples add a random shift and noise.

DatasetPtr make_synthetic(int num_classes, int64_t n, int image_size, int channels, uint64_t seed, uint64_t stream) {
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(seed * 2654435761ULL + 12345);
  auto protos = torch::rand({num_classes, channels, 4, 4}, gen);
  protos = torch::nn::functional::interpolate(protos, torch::nn::functional::InterpolateFuncOptions()
                                                          .size(std::vector<int64_t>{image_size, image_size})
                                                          .mode(torch::kBilinear)
                                                          .align_corners(false));
  auto sgen = at::detail::createCPUGenerator(seed * 2654435761ULL + 999 + stream * 7777);
  auto labels = torch::randint(0, num_classes, {n}, sgen, torch::kLong);
  auto imgs = protos.index_select(0, labels);
  imgs = imgs + 0.35 * torch::randn(imgs.sizes(), sgen);
  auto u8 = (imgs.clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
  return std::make_shared<InMemoryDataset>(
      u8, labels, num_classes,
      "synthetic(" + std::to_string(num_classes) + " classes, seed " + std::to_string(seed) + ")");
}

// ---------------------------------------------------------------------------------------------
// open_dataset

namespace {

const char* kFashionDefault = "/usr/share/datasets/fashion-mnist";

std::string fashion_root() {
  const char* d = std::getenv("KDBENCH_DATA_DIR");
  return d ? std::string(d) + "/fashion-mnist" : kFashionDefault;
}

std::string idx_file(const std::string& root, const std::string& base) {
  for (const auto& name : {base, base + ".gz"}) {
    fs::path p = fs::path(root) / name;
    if (fs::exists(p)) return p.string();
  }
  throw DataError((fs::path(root) / (base + ".gz")).string(), "file not found (nor without .gz)");
}

DatasetPtr subset_count(DatasetPtr d, int64_t count, uint64_t seed) {
  if (count <= 0 || count >= d->size()) return d;
  double frac = static_cast<double>(count) / static_cast<double>(d->size());
  auto [rest, picked] = stratified_indices(*d, frac, seed + 424242);
  return make_subset(d, picked);
}

// "normalize": {"mean": [...], "std": [...]}, one value per channel on [0, 1] pixels (e.g. the statistics a peer's
// loader uses, so its teachers see the inputs they were trained on).
Normalization parse_normalization(const nlohmann::json& j, const std::string& key_path, size_t channels) {
  ObjectReader rd(j, key_path);
  Normalization n;
  for (auto [key, out] : {std::pair<const char*, std::vector<float>*>{"mean", &n.mean}, {"std", &n.std}}) {
    const nlohmann::json& v = rd.raw(key);
    if (!v.is_array() || v.size() != channels)
      throw ConfigError(rd.path(key),
                        "expected an array of " + std::to_string(channels) + " numbers (one per channel)");
    for (const auto& x : v) {
      if (!x.is_number() || !std::isfinite(x.get<double>()) ||
          x.get<double>() < (std::string(key) == "std" ? 1e-6 : -1) || x.get<double>() > 1)
        throw ConfigError(rd.path(key),
                          std::string(key) == "std" ? "each value must be in (0, 1]" : "each value must be in [-1, 1]");
      out->push_back(x.get<float>());
    }
  }
  rd.finish();
  return n;
}

}  // namespace

AugmentOptions parse_augment(const nlohmann::json& cfg, const std::string& key_path) {
  AugmentOptions a;
  if (cfg.is_null()) return a;
  ObjectReader rd(cfg, key_path);
  a.random_crop = rd.boolean("random_crop", false);
  a.crop_padding = static_cast<int>(rd.integer("padding", 4, 0, 64));
  a.horizontal_flip = rd.boolean("flip", false);
  a.random_resized_crop = rd.boolean("random_resized_crop", false);
  rd.finish();
  return a;
}

DataSplits open_dataset(const nlohmann::json& cfg, const std::string& key_path) {
  ObjectReader rd(cfg, key_path);
  DataSplits s;
  s.name = rd.string("name", std::nullopt,
                     {"fashion_mnist", "mnist_idx", "cifar10", "cifar100", "image_folder", "synthetic"});
  double val_fraction = rd.number("val_fraction", 0.1, 0.0, 0.5);
  auto split_seed = static_cast<uint64_t>(rd.integer("split_seed", 0, 0, INT32_MAX));
  int64_t train_subset = rd.integer("train_subset", 0, 0, INT64_MAX);
  int64_t test_subset = rd.integer("test_subset", 0, 0, INT64_MAX);
  nlohmann::json augment = rd.has("augment") ? rd.raw("augment") : nlohmann::json(nullptr);
  nlohmann::json normalize = rd.has("normalize") ? rd.raw("normalize") : nlohmann::json(nullptr);
  DatasetPtr train, test;
  if (s.name == "fashion_mnist" || s.name == "mnist_idx") {
    std::string root = s.name == "fashion_mnist" ? rd.string("root", fashion_root()) : rd.string("root", std::nullopt);
    rd.finish();
    if (!fs::is_directory(root))
      throw DataError(root, "data folder not found" +
                                std::string(s.name == "fashion_mnist"
                                                ? " (install Debian's dataset-fashion-mnist: scripts/setup does)"
                                                : ""));
    train = read_idx_pair(idx_file(root, "train-images-idx3-ubyte"), idx_file(root, "train-labels-idx1-ubyte"), 10);
    test = read_idx_pair(idx_file(root, "t10k-images-idx3-ubyte"), idx_file(root, "t10k-labels-idx1-ubyte"), 10);
    s.norm = s.name == "fashion_mnist" ? Normalization{{0.2860f}, {0.3530f}} : Normalization{{0.1307f}, {0.3081f}};
    s.source = root;
    if (augment.is_null()) augment = nlohmann::json::object();  // no augmentation by default for 28x28 gray
  } else if (s.name == "cifar10" || s.name == "cifar100") {
    std::string root = rd.string("root", std::nullopt);
    std::string labels = rd.string("labels", std::string("fine"), {"fine", "coarse"});
    rd.finish();
    auto pair = read_cifar(root, s.name == "cifar100", labels == "coarse");
    train = pair.first;
    test = pair.second;
    s.norm = s.name == "cifar10" ? Normalization{{0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}}
                                 : Normalization{{0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}};
    s.source = root;
    if (augment.is_null()) augment = {{"random_crop", true}, {"padding", 4}, {"flip", true}};
  } else if (s.name == "image_folder") {
    ImageFolderOptions o;
    o.root = rd.string("root", std::nullopt);
    o.train_split = rd.string("train_split", std::string("train"));
    o.test_split = rd.string("test_split", std::string("val"));
    o.classes_file = rd.string("classes_file", std::string(""));
    o.num_classes = static_cast<int>(rd.integer("num_classes", 0, 0, 100000));
    o.image_size = static_cast<int>(rd.integer("image_size", 224, 8, 4096));
    o.resize = static_cast<int>(rd.integer("resize", o.image_size * 8 / 7, 8, 8192));
    o.on_bad_image = rd.string("on_bad_image", std::string("error"), {"error", "skip"});
    rd.finish();
    auto pair = open_image_folder(o);
    train = pair.first;
    test = pair.second;
    s.norm = Normalization{{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
    s.source = o.root;
    if (augment.is_null()) augment = {{"random_resized_crop", true}, {"flip", true}};
  } else {  // synthetic
    int classes = static_cast<int>(rd.integer("num_classes", 10, 2, 1000));
    int64_t ntrain = rd.integer("train_size", 2048, 1, 10000000);
    int64_t ntest = rd.integer("test_size", 512, 1, 10000000);
    int size = static_cast<int>(rd.integer("image_size", 28, 4, 512));
    int channels = static_cast<int>(rd.integer("channels", 1, 1, 4));
    auto seed = static_cast<uint64_t>(rd.integer("seed", 0, 0, INT32_MAX));
    rd.finish();
    train = make_synthetic(classes, ntrain, size, channels, seed, 0);
    test = make_synthetic(classes, ntest, size, channels, seed, 1);
    s.norm = Normalization{std::vector<float>(static_cast<size_t>(channels), 0.5f),
                           std::vector<float>(static_cast<size_t>(channels), 0.25f)};
    s.source = "generated";
    if (augment.is_null()) augment = nlohmann::json::object();
  }
  parse_augment(augment, key_path + ".augment");  // validate
  s.augment = augment;
  if (!normalize.is_null()) s.norm = parse_normalization(normalize, key_path + ".normalize", s.norm.mean.size());
  train = subset_count(train, train_subset, split_seed);
  test = subset_count(test, test_subset, split_seed);
  if (val_fraction > 0) {
    auto [tr, va] = stratified_split(train, val_fraction, split_seed);
    s.train = tr;
    s.val = va;
  } else {
    s.train = train;
    s.val = make_subset(train, {});
  }
  s.test = test;
  s.num_classes = train->num_classes();
  auto shape = train->image_shape();
  s.channels = static_cast<int>(shape[0]);
  s.image_size = static_cast<int>(shape[1]);
  return s;
}

std::vector<DatasetStatus> list_datasets() {
  std::vector<DatasetStatus> out;
  std::string f = fashion_root();
  bool found =
      fs::exists(fs::path(f) / "train-images-idx3-ubyte.gz") || fs::exists(fs::path(f) / "train-images-idx3-ubyte");
  out.push_back({"fashion_mnist",
                 "Fashion-MNIST, 60000/10000 28x28 gray, 10 classes (Debian: dataset-fashion-mnist); the default",
                 found, f});
  out.push_back({"mnist_idx", "any folder with the four MNIST-format IDX files (key root)", false, "set dataset.root"});
  out.push_back({"cifar10", "CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin)", false,
                 "set dataset.root (cannot be downloaded here)"});
  out.push_back({"cifar100", "CIFAR-100 binary version (train.bin, test.bin), fine or coarse labels", false,
                 "set dataset.root (cannot be downloaded here)"});
  out.push_back({"image_folder", "ImageNet-style root/<split>/<wnid>/*.JPEG|png, subset by class list or count", false,
                 "set dataset.root"});
  out.push_back({"synthetic", "seeded learnable patterns, for tests and benchmarks", true, "generated"});
  return out;
}

}  // namespace kd
