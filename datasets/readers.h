// The file readers behind open_dataset: IDX (MNIST format, plain or gzip), CIFAR binary, image
// folders (JPEG via libjpeg-turbo, PNG via libpng). Buffer-based parse functions are exposed so
// tests and fuzzers can feed bytes directly. Every failure is a DataError naming the file and the
// byte offset or record.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "datasets/dataset.h"

namespace kd {

// All images in memory as uint8 [N, C, H, W] with int64 labels [N].
class InMemoryDataset : public Dataset {
 public:
  InMemoryDataset(torch::Tensor images, torch::Tensor labels, int num_classes, std::string desc);
  int64_t size() const override { return images_.size(0); }
  int num_classes() const override { return num_classes_; }
  std::vector<int64_t> image_shape() const override { return {images_.size(1), images_.size(2), images_.size(3)}; }
  int64_t label(int64_t i) const override { return labels_.data_ptr<int64_t>()[i]; }
  torch::Tensor image(int64_t i) const override { return images_[i]; }
  torch::Tensor all_images() const override { return images_; }
  torch::Tensor all_labels() const override { return labels_; }
  std::string describe() const override { return desc_; }

 private:
  torch::Tensor images_, labels_;
  int num_classes_;
  std::string desc_;
};

// Reads a whole file as it is (DataError naming the path if it cannot be read).
std::string read_file_bytes(const std::string& path);
// Reads a whole file, transparently gunzipping it when it starts with the gzip magic.
std::string read_file_maybe_gz(const std::string& path);

// An IDX file in memory. `name` is used in messages. Images: uint8 [N, 1, H, W]; labels: int64 [N].
struct IdxArray {
  std::vector<int64_t> dims;
  torch::Tensor data;  // uint8 with shape dims
};
IdxArray parse_idx(const std::string& bytes, const std::string& name);
// Reads an images file and a labels file (checking counts match and labels < num_classes).
DatasetPtr read_idx_pair(const std::string& images_path, const std::string& labels_path, int num_classes);

// CIFAR binary: records of [label byte(s)] + 3072 bytes (R, G, B planes of 32x32).
// bytes_per_label 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine); `coarse` picks CIFAR-100's first byte.
std::pair<torch::Tensor, torch::Tensor> parse_cifar(const std::string& bytes, const std::string& name,
                                                    int bytes_per_label, bool coarse, int num_classes);
// Opens root (or its cifar-10-batches-bin / cifar-100-binary subfolder). Returns {train, test}.
std::pair<DatasetPtr, DatasetPtr> read_cifar(const std::string& root, bool cifar100, bool coarse);

// Decodes a JPEG or PNG (by magic bytes) to uint8 [3, H, W] RGB. Throws DataError naming `name`.
torch::Tensor decode_image(const std::string& bytes, const std::string& name);

struct ImageFolderOptions {
  std::string root, train_split = "train", test_split = "val", classes_file;
  int num_classes = 0;  // 0 = every class folder
  int image_size = 224, resize = 256;
  std::string on_bad_image = "error";  // error | skip
};
// Lazily decoded image folders: image() reads and decodes the file (in the loader's worker
// threads) and returns it with its shorter side resized to `resize`; the loader then center-crops
// image_size (evaluation) or takes a random resized crop (training). A file that cannot be read or
// decoded throws DataError naming it (on_bad_image "error") or is logged once and returned as an
// undefined tensor, i.e. skipped (on_bad_image "skip"). num_classes > 0 keeps the first classes
// (sorted wnids, or the class-list file's order).
std::pair<DatasetPtr, DatasetPtr> open_image_folder(const ImageFolderOptions& o);

// Bilinear (antialiased when shrinking) resize of uint8 [C,H,W] to [C,h,w].
torch::Tensor resize_u8(const torch::Tensor& img, int64_t h, int64_t w);
// Resizes uint8 [C,H,W] so its shorter side is `size` (aspect kept, rounded), bilinear.
torch::Tensor resize_shorter_u8(const torch::Tensor& img, int64_t size);
// Center crop to size x size; an image whose shorter side is below `size` is first resized up
// (shorter side to `size`). uint8 in, uint8 out.
torch::Tensor center_crop_u8(const torch::Tensor& img, int64_t size);

// Seeded synthetic data: each class is a fixed random low-frequency pattern (a 4x4 grid of random
// intensities per channel, upsampled bilinearly), each sample that pattern plus Gaussian noise
// (sigma 0.35 of the pixel range), clamped. `stream` separates train (0) from test (1) samples
// drawn from the same class patterns. uint8 [n, channels, size, size], labels uniform over classes.
DatasetPtr make_synthetic(int num_classes, int64_t n, int image_size, int channels, uint64_t seed, uint64_t stream);

}  // namespace kd
