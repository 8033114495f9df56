#include "datasets/readers.h"

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "base/errors.h"
#include "base/log.h"

namespace fs = std::filesystem;

namespace kd {

// ---------------------------------------------------------------------------------------------
// files

std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw DataError(path, "cannot open file (missing or not readable)");
  std::streamoff size = in.tellg();
  if (size < 0) throw DataError(path, "cannot determine the file size");
  std::string raw(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (size > 0 && !in.read(raw.data(), size))
    throw DataError(path, "read error after byte " + std::to_string(in.gcount()));
  return raw;
}

std::string read_file_maybe_gz(const std::string& path) {
  std::string raw = read_file_bytes(path);
  if (raw.size() < 2 || static_cast<unsigned char>(raw[0]) != 0x1f || static_cast<unsigned char>(raw[1]) != 0x8b)
    return raw;
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) throw DataError(path, "zlib init failed");
  std::string out;
  out.reserve(raw.size() * 2);
  char buf[1 << 16];
  size_t fed = 0;  // compressed bytes handed to zlib so far (fed in chunks: avail_in is 32-bit)
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (zs.avail_in == 0 && fed < raw.size()) {
      size_t chunk = std::min<size_t>(raw.size() - fed, size_t(1) << 30);
      zs.next_in = reinterpret_cast<Bytef*>(raw.data() + fed);
      zs.avail_in = static_cast<uInt>(chunk);
      fed += chunk;
    }
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
    bool stuck = rc == Z_BUF_ERROR || (rc == Z_OK && zs.avail_in == 0 && fed == raw.size() && zs.avail_out != 0);
    if ((rc != Z_OK && rc != Z_STREAM_END) || stuck) {
      size_t at = fed - zs.avail_in;
      inflateEnd(&zs);
      throw DataError(path, "corrupt gzip data at compressed byte " + std::to_string(at) + " of " +
                                std::to_string(raw.size()) + " (" +
                                (rc == Z_BUF_ERROR || stuck ? "truncated" : "invalid") + "), after " +
                                std::to_string(out.size()) + " uncompressed bytes");
    }
  }
  inflateEnd(&zs);
  return out;
}

// ---------------------------------------------------------------------------------------------
// IDX

IdxArray parse_idx(const std::string& bytes, const std::string& name) {
  auto u8 = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  if (bytes.size() < 4) throw DataError(name, "truncated IDX header: " + std::to_string(bytes.size()) + " bytes");
  if (u8(0) != 0 || u8(1) != 0)
    throw DataError(name, "bad magic number at byte 0: not an IDX file (expected 0x000008NN, got 0x" +
                              fmt::format("{:02x}{:02x}{:02x}{:02x}", u8(0), u8(1), u8(2), u8(3)) + ")");
  if (u8(2) != 0x08)
    throw DataError(name, fmt::format("IDX data type 0x{:02x} at byte 2 is not unsigned byte (0x08)", u8(2)));
  int nd = u8(3);
  if (nd < 1 || nd > 4)
    throw DataError(name, "IDX with " + std::to_string(nd) + " dimensions at byte 3 (expected 1 to 4)");
  size_t header = 4 + 4 * static_cast<size_t>(nd);
  if (bytes.size() < header) throw DataError(name, "truncated IDX header: needs " + std::to_string(header) + " bytes");
  IdxArray a;
  uint64_t total = 1;
  for (int d = 0; d < nd; ++d) {
    size_t o = 4 + 4 * static_cast<size_t>(d);
    uint64_t v = (uint64_t(u8(o)) << 24) | (uint64_t(u8(o + 1)) << 16) | (uint64_t(u8(o + 2)) << 8) | u8(o + 3);
    if (v == 0 || v > (1u << 28))
      throw DataError(
          name, "IDX dimension " + std::to_string(d) + " at byte " + std::to_string(o) + " is " + std::to_string(v));
    a.dims.push_back(static_cast<int64_t>(v));
    total *= v;
    if (total > (uint64_t(1) << 34)) throw DataError(name, "IDX dimensions are implausibly large");
  }
  if (bytes.size() - header < total) {
    uint64_t rec = 1;
    for (size_t d = 1; d < a.dims.size(); ++d) rec *= static_cast<uint64_t>(a.dims[d]);
    uint64_t have = (bytes.size() - header) / rec;
    throw DataError(name, "truncated: header promises " + std::to_string(a.dims[0]) + " records, file ends in record " +
                              std::to_string(have) + " (byte " + std::to_string(bytes.size()) + ")");
  }
  if (bytes.size() - header > total)
    throw DataError(name,
                    "has " + std::to_string(bytes.size() - header - total) + " trailing bytes after the last record");
  a.data = torch::empty(a.dims, torch::kUInt8);
  std::memcpy(a.data.data_ptr<uint8_t>(), bytes.data() + header, total);
  return a;
}

DatasetPtr read_idx_pair(const std::string& images_path, const std::string& labels_path, int num_classes) {
  IdxArray im = parse_idx(read_file_maybe_gz(images_path), images_path);
  IdxArray lb = parse_idx(read_file_maybe_gz(labels_path), labels_path);
  if (im.dims.size() != 3)
    throw DataError(images_path,
                    "bad magic number at byte 0: expected an IDX image file (magic 0x00000803), got 0x0000080" +
                        std::to_string(im.dims.size()));
  if (lb.dims.size() != 1)
    throw DataError(labels_path,
                    "bad magic number at byte 0: expected an IDX label file (magic 0x00000801), got 0x0000080" +
                        std::to_string(lb.dims.size()));
  if (im.dims[0] != lb.dims[0])
    throw DataError(labels_path, std::to_string(lb.dims[0]) + " labels for " + std::to_string(im.dims[0]) +
                                     " images in " + images_path);
  auto labels = lb.data.to(torch::kLong);
  auto* p = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < labels.size(0); ++i)
    if (p[i] >= num_classes)
      throw DataError(labels_path, "label " + std::to_string(p[i]) + " of record " + std::to_string(i) + " (byte " +
                                       std::to_string(8 + i) + ") is out of range [0, " + std::to_string(num_classes) +
                                       ")");
  auto images = im.data.unsqueeze(1).contiguous();
  return std::make_shared<InMemoryDataset>(images, labels, num_classes, images_path);
}

// ---------------------------------------------------------------------------------------------
// CIFAR

std::pair<torch::Tensor, torch::Tensor> parse_cifar(const std::string& bytes, const std::string& name,
                                                    int bytes_per_label, bool coarse, int num_classes) {
  const size_t rec = static_cast<size_t>(bytes_per_label) + 3072;
  if (bytes.empty()) throw DataError(name, "empty file");
  if (bytes.size() % rec != 0)
    throw DataError(name, "size " + std::to_string(bytes.size()) + " is not a multiple of the " + std::to_string(rec) +
                              "-byte record: record " + std::to_string(bytes.size() / rec) + " is truncated at byte " +
                              std::to_string(bytes.size()));
  const int64_t n = static_cast<int64_t>(bytes.size() / rec);
  auto images = torch::empty({n, 3, 32, 32}, torch::kUInt8);
  auto labels = torch::empty({n}, torch::kLong);
  auto* ip = images.data_ptr<uint8_t>();
  auto* lp = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const char* r = bytes.data() + static_cast<size_t>(i) * rec;
    int lab = static_cast<unsigned char>(r[bytes_per_label == 2 && !coarse ? 1 : 0]);
    if (lab >= num_classes)
      throw DataError(name, "label " + std::to_string(lab) + " of record " + std::to_string(i) + " (byte " +
                                std::to_string(static_cast<size_t>(i) * rec) + ") is out of range [0, " +
                                std::to_string(num_classes) + ")");
    lp[i] = lab;
    std::memcpy(ip + i * 3072, r + bytes_per_label, 3072);
  }
  return {images, labels};
}

std::pair<DatasetPtr, DatasetPtr> read_cifar(const std::string& root_in, bool cifar100, bool coarse) {
  fs::path root(root_in);
  const char* sub = cifar100 ? "cifar-100-binary" : "cifar-10-batches-bin";
  if (fs::is_directory(root / sub)) root /= sub;
  if (!fs::is_directory(root)) throw DataError(root_in, "data folder not found");
  std::vector<std::string> train_files, test_files;
  if (cifar100) {
    train_files = {"train.bin"};
    test_files = {"test.bin"};
  } else {
    for (int i = 1; i <= 5; ++i) train_files.push_back("data_batch_" + std::to_string(i) + ".bin");
    test_files = {"test_batch.bin"};
  }
  int bpl = cifar100 ? 2 : 1;
  int classes = cifar100 ? (coarse ? 20 : 100) : 10;
  auto load = [&](const std::vector<std::string>& files) {
    std::vector<torch::Tensor> ims, lbs;
    for (const auto& f : files) {
      fs::path p = root / f;
      if (!fs::exists(p)) throw DataError(p.string(), "file not found");
      auto [im, lb] = parse_cifar(read_file_maybe_gz(p.string()), p.string(), bpl, coarse, classes);
      ims.push_back(im);
      lbs.push_back(lb);
    }
    return std::make_shared<InMemoryDataset>(torch::cat(ims), torch::cat(lbs), classes, root.string());
  };
  return {load(train_files), load(test_files)};
}

// ---------------------------------------------------------------------------------------------
// image decoding

namespace {

struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool reading_scanlines;  // past jpeg_start_decompress
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  longjmp(e->jump, 1);
}
// Warnings are silent except where image data is missing, after which libjpeg fills the rest of the
// image with grey and goes on: a truncated file, or a tiny corrupt one whose header claims a huge
// image, would decode to a plausible-looking picture (and the latter cost up to 768 MB of output).
// Like a truncated PNG, that is a DataError: "premature end of data segment" (entropy-coded data
// ends before the image does), and "Premature end of JPEG file" while scanlines are still to come.
// The file ending in the last rows of blocks (e.g. a missing EOI marker) or after a complete
// progressive scan (where the image is whole, at a lower quality) stays accepted.
void jpeg_warning(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return;
  if (cinfo->err->msg_code == JWRN_HIT_MARKER) jpeg_error_exit(cinfo);
  if (cinfo->err->msg_code == JWRN_JPEG_EOF && reinterpret_cast<JpegError*>(cinfo->err)->reading_scanlines) {
    auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
    // Two rows of blocks of slack: with context upsampling, libjpeg decodes one row of blocks ahead.
    if (d->output_scanline + static_cast<JDIMENSION>(2 * d->max_v_samp_factor * DCTSIZE) < d->output_height)
      jpeg_error_exit(cinfo);
  }
}

torch::Tensor decode_jpeg(const std::string& bytes, const std::string& name) {
  jpeg_decompress_struct cinfo{};
  JpegError err{};
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_warning;
  torch::Tensor out;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw DataError(name, std::string("cannot decode JPEG: ") + err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  // Checked before jpeg_start_decompress, which allocates (and for progressive files zeroes) buffers
  // for the whole image.
  if (int64_t(cinfo.image_width) * cinfo.image_height > (int64_t(1) << 28)) {
    std::string size = std::to_string(cinfo.image_width) + "x" + std::to_string(cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    throw DataError(name, "cannot decode JPEG: image too large (" + size + " pixels, limit 2^28)");
  }
  // libjpeg converts CMYK and YCCK files (Photoshop's; ImageNet's training set has about 20) to CMYK
  // only: those are decoded as CMYK and converted to RGB below.
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  const bool inverted = cinfo.saw_Adobe_marker;  // Adobe's CMYK is stored inverted: 255 = no ink
  const int64_t channels = cmyk ? 4 : 3;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const int64_t w = cinfo.output_width, h = cinfo.output_height;
  out = torch::empty({h, w, channels}, torch::kUInt8);
  auto* p = out.data_ptr<uint8_t>();
  err.reading_scanlines = true;
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = p + static_cast<int64_t>(cinfo.output_scanline) * w * channels;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (cmyk) {
    // RGB = (1 - C) * (1 - K), per channel, in 0..255 (as Pillow converts CMYK to RGB).
    torch::Tensor rgb = torch::empty({h, w, 3}, torch::kUInt8);
    const uint8_t* s = out.data_ptr<uint8_t>();
    uint8_t* d = rgb.data_ptr<uint8_t>();
    for (int64_t i = 0; i < h * w; ++i, s += 4, d += 3) {
      const int k = inverted ? s[3] : 255 - s[3];
      for (int c = 0; c < 3; ++c) d[c] = static_cast<uint8_t>(((inverted ? s[c] : 255 - s[c]) * k + 127) / 255);
    }
    out = rgb;
  }
  return out.permute({2, 0, 1}).contiguous();
}

struct PngReader {
  const std::string* bytes;
  size_t pos;
};

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (r->pos + n > r->bytes->size()) png_error(png, "unexpected end of data (truncated file)");
  std::memcpy(out, r->bytes->data() + r->pos, n);
  r->pos += n;
}

void png_err(png_structp png, png_const_charp msg) {
  auto* m = static_cast<std::string*>(png_get_error_ptr(png));
  *m = msg;
  png_longjmp(png, 1);
}
void png_warn(png_structp, png_const_charp) {}

// libpng allocates an ancillary chunk's declared length before reading it: an 82-byte file declaring
// a 1.7 GB tEXt chunk made it malloc 1.7 GB. None of its own buffers needs more than a few MB for an
// image within the size limit (the pixels go to a tensor), so larger requests fail: libpng then skips
// the chunk (or stops with "out of memory"), and the truncated read ends in a DataError.
png_voidp png_malloc_capped(png_structp, png_alloc_size_t n) {
  return n > (size_t(64) << 20) ? nullptr : std::malloc(n);
}
void png_free_capped(png_structp, png_voidp p) {
  std::free(p);
}

torch::Tensor decode_png(const std::string& bytes, const std::string& name) {
  std::string message;
  png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &message, png_err, png_warn, nullptr,
                                             png_malloc_capped, png_free_capped);
  if (!png) throw DataError(name, "libpng init failed");
  png_infop info = png_create_info_struct(png);
  PngReader reader{&bytes, 0};
  torch::Tensor out;
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw DataError(name, "cannot decode PNG: " + message);
  }
  png_set_read_fn(png, &reader, png_read_mem);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (static_cast<uint64_t>(w) * h > (uint64_t(1) << 28)) png_error(png, "image too large");
  int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (depth == 16) png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w) * 3) png_error(png, "unexpected row layout");
  out = torch::empty({static_cast<int64_t>(h), static_cast<int64_t>(w), 3}, torch::kUInt8);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = out.data_ptr<uint8_t>() + static_cast<size_t>(y) * w * 3;
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  return out.permute({2, 0, 1}).contiguous();
}

}  // namespace

torch::Tensor decode_image(const std::string& bytes, const std::string& name) {
  auto b = [&](size_t i) { return i < bytes.size() ? static_cast<unsigned char>(bytes[i]) : 0; };
  if (b(0) == 0xFF && b(1) == 0xD8) return decode_jpeg(bytes, name);
  if (b(0) == 0x89 && b(1) == 'P' && b(2) == 'N' && b(3) == 'G') return decode_png(bytes, name);
  throw DataError(name, "not a JPEG or PNG file (unknown magic bytes)");
}

torch::Tensor resize_u8(const torch::Tensor& img, int64_t h, int64_t w) {
  if (img.size(1) == h && img.size(2) == w) return img;
  auto f = img.unsqueeze(0).to(torch::kFloat);
  f = torch::nn::functional::interpolate(f, torch::nn::functional::InterpolateFuncOptions()
                                                .size(std::vector<int64_t>{h, w})
                                                .mode(torch::kBilinear)
                                                .align_corners(false)
                                                .antialias(true));
  return f.squeeze(0).round().clamp(0, 255).to(torch::kUInt8);
}

torch::Tensor resize_shorter_u8(const torch::Tensor& img, int64_t size) {
  const int64_t H = img.size(1), W = img.size(2);
  if (std::min(H, W) == size) return img;
  // The longer side scales by size / shorter, rounded to nearest.
  int64_t nh = H <= W ? size : (H * size + W / 2) / W;
  int64_t nw = H <= W ? (W * size + H / 2) / H : size;
  return resize_u8(img, nh, nw);
}

torch::Tensor center_crop_u8(const torch::Tensor& img, int64_t size) {
  torch::Tensor r = std::min(img.size(1), img.size(2)) < size ? resize_shorter_u8(img, size) : img;
  if (r.size(1) == size && r.size(2) == size) return r;
  int64_t top = (r.size(1) - size) / 2, left = (r.size(2) - size) / 2;
  return r.narrow(1, top, size).narrow(2, left, size);
}

// ---------------------------------------------------------------------------------------------
// image folders

namespace {

class ImageFolderDataset : public Dataset {
 public:
  ImageFolderDataset(std::vector<std::string> files, std::vector<int64_t> labels, int classes,
                     const ImageFolderOptions& o, std::string desc)
      : files_(std::move(files)), labels_(std::move(labels)), classes_(classes), o_(o), desc_(std::move(desc)) {}
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  int num_classes() const override { return classes_; }
  std::vector<int64_t> image_shape() const override { return {3, o_.image_size, o_.image_size}; }
  int64_t label(int64_t i) const override { return labels_[static_cast<size_t>(i)]; }
  torch::Tensor image(int64_t i) const override {
    const std::string& f = files_.at(static_cast<size_t>(i));
    try {
      torch::Tensor img = decode_image(read_file_bytes(f), f);
      // A very elongated image (say 1 x 60000 pixels) would become resize x (resize * 60000) pixels:
      // tens of GB. Beyond 2^24 pixels after the resize (aspect ratio 256:1 at resize 256) it is unusable.
      const int64_t h = img.size(1), w = img.size(2), s = std::min(h, w), l = std::max(h, w);
      if (static_cast<double>(l) * o_.resize / s * o_.resize > double(1 << 24))
        throw DataError(f, "image of " + std::to_string(w) + "x" + std::to_string(h) +
                               " pixels is too elongated to resize its shorter side to " + std::to_string(o_.resize));
      return resize_shorter_u8(img, o_.resize);
    } catch (const DataError& e) {
      if (o_.on_bad_image == "error") throw;
      std::lock_guard<std::mutex> l(warned_mu_);
      if (warned_.insert(f).second) log::warn("skipping an unusable image (on_bad_image: skip): {}", e.what());
      return {};
    }
  }
  std::string describe() const override { return desc_; }

 private:
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  int classes_;
  ImageFolderOptions o_;
  std::string desc_;
  mutable std::mutex warned_mu_;
  mutable std::set<std::string> warned_;
};

bool is_image(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return e == ".jpeg" || e == ".jpg" || e == ".png";
}

}  // namespace

std::pair<DatasetPtr, DatasetPtr> open_image_folder(const ImageFolderOptions& o) {
  fs::path root(o.root);
  if (!fs::is_directory(root)) throw DataError(o.root, "data folder not found");
  fs::path train_dir = root / o.train_split, test_dir = root / o.test_split;
  for (const auto& d : {train_dir, test_dir})
    if (!fs::is_directory(d)) throw DataError(d.string(), "split folder not found");
  std::vector<std::string> classes;
  if (!o.classes_file.empty()) {
    std::ifstream in(o.classes_file);
    if (!in) throw DataError(o.classes_file, "cannot read the class-list file");
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      ++n;
      line.erase(line.find_last_not_of(" \t\r") + 1);
      if (line.empty()) continue;
      if (!fs::is_directory(train_dir / line))
        throw DataError(o.classes_file,
                        "line " + std::to_string(n) + ": class '" + line + "' has no folder in " + train_dir.string());
      classes.push_back(line);
    }
  } else {
    for (const auto& e : fs::directory_iterator(train_dir))
      if (e.is_directory()) classes.push_back(e.path().filename().string());
    std::sort(classes.begin(), classes.end());
    if (o.num_classes > 0) {
      if (static_cast<size_t>(o.num_classes) > classes.size())
        throw DataError(train_dir.string(), "asked for " + std::to_string(o.num_classes) + " classes, found " +
                                                std::to_string(classes.size()));
      classes.resize(static_cast<size_t>(o.num_classes));
    }
  }
  if (classes.empty()) throw DataError(train_dir.string(), "no class folders");
  auto scan = [&](const fs::path& dir) {
    std::vector<std::string> files;
    std::vector<int64_t> labels;
    for (size_t c = 0; c < classes.size(); ++c) {
      fs::path cd = dir / classes[c];
      if (!fs::is_directory(cd)) continue;
      std::vector<std::string> fc;
      for (const auto& e : fs::directory_iterator(cd))
        if (e.is_regular_file() && is_image(e.path())) fc.push_back(e.path().string());
      std::sort(fc.begin(), fc.end());
      for (auto& f : fc) {
        files.push_back(f);
        labels.push_back(static_cast<int64_t>(c));
      }
    }
    if (files.empty()) throw DataError(dir.string(), "no .JPEG/.jpg/.png images under the chosen classes");
    return std::make_shared<ImageFolderDataset>(files, labels, static_cast<int>(classes.size()), o, dir.string());
  };
  return {scan(train_dir), scan(test_dir)};
}

}  // namespace kd
