// Datasets, splits and the loader. Datasets know nothing of models.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace kd {

struct Normalization {
  std::vector<float> mean;  // per channel, on [0,1] pixel values
  std::vector<float> std;
};

// An indexable source of labelled images. Implementations are thread-safe for reads.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int num_classes() const = 0;
  // C, H, W of what image() returns.
  virtual std::vector<int64_t> image_shape() const = 0;
  virtual int64_t label(int64_t i) const = 0;
  // Image i as uint8 [C, H, W]. An undefined tensor means "skip this sample" (an undecodable file
  // under on_bad_image: "skip"); the Loader handles it (see LoaderOptions).
  virtual torch::Tensor image(int64_t i) const = 0;
  // In-memory datasets return all images as one uint8 [N, C, H, W] tensor (the loader's fast
  // path) and all labels as int64 [N]; others return undefined tensors.
  virtual torch::Tensor all_images() const { return {}; }
  virtual torch::Tensor all_labels() const;
  virtual std::string describe() const = 0;
};
using DatasetPtr = std::shared_ptr<Dataset>;

// A view of `base` restricted to `indices` (in that order).
DatasetPtr make_subset(DatasetPtr base, std::vector<int64_t> indices);

// Deterministic, stratified carve of a validation split out of a training split: the same
// (dataset, fraction, seed) always gives the same two index sets, each class split in proportion.
// Returns {train_part, val_part}.
std::pair<DatasetPtr, DatasetPtr> stratified_split(DatasetPtr train, double val_fraction, uint64_t seed);

// What a sweep config's "dataset" object opens to.
struct DataSplits {
  std::string name;             // "fashion_mnist", "cifar10", "cifar100", "image_folder", "synthetic"
  DatasetPtr train, val, test;  // val is carved from the training split (never from test)
  int num_classes = 0;
  int channels = 0;
  int image_size = 0;      // H = W of loader output
  Normalization norm;      // per-dataset statistics
  nlohmann::json augment;  // resolved augmentation options for the training loader
  std::string source;      // where the files were found
};

// Opens the dataset named by a sweep config's "dataset" object; validates every key (unknown keys,
// wrong types and bad values throw ConfigError naming `key_path`.key). Missing or corrupt files
// throw DataError naming the file and the record/byte.
DataSplits open_dataset(const nlohmann::json& cfg, const std::string& key_path = "dataset");

// The data sets kdbench knows, and whether/where their files are found on this machine.
struct DatasetStatus {
  std::string name;
  std::string description;
  bool found = false;
  std::string location;  // where it looked / found it
};
std::vector<DatasetStatus> list_datasets();

struct AugmentOptions {
  bool random_crop = false;  // pad then crop back to size
  int crop_padding = 4;
  bool horizontal_flip = false;
  bool random_resized_crop = false;  // image-folder training (scale 0.08..1, ratio 3/4..4/3)
};
// Keys random_crop (bool), padding (int 0..64), flip (bool), random_resized_crop (bool); null = all off.
AugmentOptions parse_augment(const nlohmann::json& cfg, const std::string& key_path);

// Every random choice of augmentation for one sample: a pure function of (seed, epoch, index) and
// of the source size H x W (before any crop). The loader applies, in this order:
//   1. random resized crop (if on): the box rows [top, top+h), cols [left, left+w) of the source,
//      resized (bilinear) to the output size; otherwise a center crop to the output size;
//   2. random crop (if on): out[y][x] = zero-padded[y + pad_dy][x + pad_dx], where zero-padded is the
//      image with `crop_padding` zero pixels on every side, so pad_dy, pad_dx in [0, 2*padding];
//   3. horizontal flip (if on and `flip`): out[y][x] = in[y][W-1-x].
struct SampleAugment {
  int64_t top = 0, left = 0, h = 0, w = 0;  // random resized crop box (h == 0: none)
  int pad_dy = 0, pad_dx = 0;               // random-crop offsets (== padding when off: no shift)
  bool flip = false;
};
SampleAugment sample_augment(const AugmentOptions& a, uint64_t seed, int64_t epoch, int64_t index, int64_t height,
                             int64_t width);

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  bool augment = false;  // apply `augment_options` (training loader only)
  AugmentOptions augment_options;
  Normalization norm;
  int image_size = 0;       // output H=W (0 = dataset's own)
  int workers = 1;          // threads preparing batches ahead; 0 = prepare in next() itself
  int prefetch = 2;         // batches ready ahead of the consumer (besides those in the making)
  bool pin_memory = false;  // batches in page-locked memory (for non-blocking copies to a GPU)
  // Data-parallel: every batch is split into `part_count` contiguous parts and this loader gives part
  // `part_index` (the same order, batches and augmentation as one loader; batch b's part i holds its samples
  // [len * i / n, len * (i + 1) / n)).
  int part_index = 0, part_count = 1;
};
// Skipped samples (Dataset::image() undefined): a training loader (augment on) leaves them out of the
// batch, so that batch is smaller; an evaluation loader (augment off) gives a blank (all-zero pixel)
// image in their place so its outputs stay aligned with the split's labels. Either way the dataset
// has already logged a warning naming the file.

struct Batch {
  torch::Tensor x;        // float32 [B, C, H, W], normalised
  torch::Tensor y;        // int64 [B]
  torch::Tensor indices;  // int64 [B], dataset indices
  int64_t step = 0;       // index of the batch within its epoch
};

// Batches, shuffles and augments. The order and every random choice of augmentation are a pure
// function of (seed, epoch, sample index), so the same seed yields the same batches whatever the
// number of workers.
class Loader {
 public:
  Loader(DatasetPtr data, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  int64_t batches_per_epoch() const;
  int64_t size() const;
  void start_epoch(int64_t epoch);
  // Next batch of the current epoch; false when the epoch is done. Calls start_epoch(0) if no epoch was
  // started. An error while preparing a batch (e.g. a DataError for a corrupt image) is thrown here,
  // when that batch is due, and again by every later call until the next start_epoch().
  bool next(Batch& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kd
