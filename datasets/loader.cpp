// The Loader: deterministic order and augmentation, normalisation through a per-channel lookup
// table, worker threads with a bounded prefetch window, and a fast path for in-memory datasets.
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "datasets/dataset.h"
#include "datasets/readers.h"

namespace kd {

namespace {

// splitmix64's finaliser: a bijective 64-bit mix.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// A counter-based stream: draw k is mix(key + k * golden), so any draw is a pure function of the key.
// Our own generator and our own uniform mapping keep the results identical across standard libraries.
class Stream {
 public:
  explicit Stream(uint64_t key) : key_(key) {}
  uint64_t next() { return mix(key_ + 0x9E3779B97F4A7C15ULL * ++k_); }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  // Uniform integer in [0, n), n >= 1 (multiply-shift on 32 bits: bias below 2^-32 * n).
  int64_t below(int64_t n) { return static_cast<int64_t>(((next() >> 32) * static_cast<uint64_t>(n)) >> 32); }

 private:
  uint64_t key_, k_ = 0;
};

uint64_t sample_key(uint64_t seed, int64_t epoch, int64_t index) {
  return mix(mix(mix(seed ^ 0x5DEECE66DULL) + static_cast<uint64_t>(epoch)) + static_cast<uint64_t>(index));
}

}  // namespace

SampleAugment sample_augment(const AugmentOptions& a, uint64_t seed, int64_t epoch, int64_t index, int64_t height,
                             int64_t width) {
  SampleAugment s;
  Stream r(sample_key(seed, epoch, index));
  if (a.random_resized_crop) {
    // torchvision's RandomResizedCrop: scale (0.08, 1), log-uniform ratio (3/4, 4/3), 10 attempts,
    // then a center crop with the ratio clamped to the range.
    const double area = static_cast<double>(height * width);
    const double lo = std::log(3.0 / 4.0), hi = std::log(4.0 / 3.0);
    for (int attempt = 0; attempt < 10 && s.h == 0; ++attempt) {
      double target = area * (0.08 + 0.92 * r.uniform());
      double ratio = std::exp(lo + (hi - lo) * r.uniform());
      auto w = static_cast<int64_t>(std::llround(std::sqrt(target * ratio)));
      auto h = static_cast<int64_t>(std::llround(std::sqrt(target / ratio)));
      if (w > 0 && h > 0 && w <= width && h <= height) {
        s.h = h;
        s.w = w;
        s.top = r.below(height - h + 1);
        s.left = r.below(width - w + 1);
      }
    }
    if (s.h == 0) {
      double in_ratio = static_cast<double>(width) / static_cast<double>(height);
      s.w = width;
      s.h = height;
      if (in_ratio < 3.0 / 4.0) {
        s.h = std::min<int64_t>(height, std::llround(static_cast<double>(width) / (3.0 / 4.0)));
      } else if (in_ratio > 4.0 / 3.0) {
        s.w = std::min<int64_t>(width, std::llround(static_cast<double>(height) * (4.0 / 3.0)));
      }
      s.top = (height - s.h) / 2;
      s.left = (width - s.w) / 2;
    }
  }
  const int p = a.random_crop ? a.crop_padding : 0;
  s.pad_dy = p;
  s.pad_dx = p;
  if (a.random_crop && p > 0) {
    s.pad_dy = static_cast<int>(r.below(2 * p + 1));
    s.pad_dx = static_cast<int>(r.below(2 * p + 1));
  }
  if (a.horizontal_flip) s.flip = (r.next() >> 63) != 0;
  return s;
}

struct Loader::Impl {
  DatasetPtr data;
  LoaderOptions o;
  AugmentOptions aug;  // what is actually applied (all off unless o.augment)
  int64_t n = 0, batches = 0, channels = 0, out_size = 0;
  torch::Tensor images;    // in-memory uint8 [N, C, H, W] contiguous, or undefined
  torch::Tensor labels;    // int64 [N]
  bool fast = false;       // images defined and already out_size x out_size, no resized crop
  std::vector<float> lut;  // [C][256]: normalised value of each pixel byte

  std::vector<int64_t> order;
  int64_t epoch = 0;
  bool started = false;

  std::mutex mu;
  std::condition_variable cv_ready, cv_space;
  std::map<int64_t, Batch> ready;
  std::map<int64_t, std::exception_ptr> failed;
  std::exception_ptr error;  // the error already thrown by next(), rethrown until the next epoch
  int64_t next_to_make = 0, next_to_give = 0;
  bool stop = false;
  std::vector<std::thread> threads;

  Impl(DatasetPtr d, LoaderOptions opt) : data(std::move(d)), o(std::move(opt)) {
    if (!data) throw std::invalid_argument("Loader: no dataset");
    if (o.batch_size < 1) throw std::invalid_argument("Loader: batch_size must be >= 1");
    if (o.part_count < 1 || o.part_index < 0 || o.part_index >= o.part_count)
      throw std::invalid_argument("Loader: part_index must be in [0, part_count)");
    if (o.augment) aug = o.augment_options;
    n = data->size();
    batches = o.drop_last ? n / o.batch_size : (n + o.batch_size - 1) / o.batch_size;
    auto shape = data->image_shape();
    channels = shape.at(0);
    out_size = o.image_size > 0 ? o.image_size : shape.at(1);
    labels = data->all_labels().contiguous();
    images = data->all_images();
    if (images.defined()) {
      images = images.contiguous();
      fast = !aug.random_resized_crop && images.size(2) == out_size && images.size(3) == out_size;
    }
    auto per_channel = [&](const std::vector<float>& v, float def, const char* what) {
      if (v.empty()) return std::vector<float>(static_cast<size_t>(channels), def);
      if (v.size() == 1) return std::vector<float>(static_cast<size_t>(channels), v[0]);
      if (static_cast<int64_t>(v.size()) != channels)
        throw std::invalid_argument(std::string("Loader: normalisation ") + what + " has " + std::to_string(v.size()) +
                                    " values for " + std::to_string(channels) + " channels");
      return v;
    };
    auto mean = per_channel(o.norm.mean, 0.0f, "mean"), sd = per_channel(o.norm.std, 1.0f, "std");
    lut.resize(static_cast<size_t>(channels) * 256);
    for (int64_t c = 0; c < channels; ++c) {
      if (!(sd[static_cast<size_t>(c)] > 0)) throw std::invalid_argument("Loader: normalisation std must be > 0");
      // (v - 255 mean) / (255 std): exact for integer-valued statistics on the 0..255 scale.
      const float m255 = mean[static_cast<size_t>(c)] * 255.0f, s255 = sd[static_cast<size_t>(c)] * 255.0f;
      for (int v = 0; v < 256; ++v) lut[static_cast<size_t>(c * 256 + v)] = (static_cast<float>(v) - m255) / s255;
    }
  }

  ~Impl() { stop_workers(); }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> l(mu);
      stop = true;
    }
    cv_space.notify_all();
    cv_ready.notify_all();
    for (auto& t : threads) t.join();
    threads.clear();
  }

  // Writes one uint8 [C, S, S] image (S = out_size), random-cropped and flipped per `s`, normalised,
  // into dst (float [C, S, S]). Pixels from outside the image (padding) are pixel value 0.
  void emit(const uint8_t* src, const SampleAugment& s, float* dst) const {
    const int64_t S = out_size;
    const int p = aug.random_crop ? aug.crop_padding : 0;
    const int64_t oy = s.pad_dy - p, ox = s.pad_dx - p;  // source = output + offset
    for (int64_t c = 0; c < channels; ++c) {
      const float* L = lut.data() + c * 256;
      const uint8_t* plane = src + c * S * S;
      float* out = dst + c * S * S;
      if (oy == 0 && ox == 0 && !s.flip) {
        for (int64_t i = 0; i < S * S; ++i) out[i] = L[plane[i]];
        continue;
      }
      // Output columns whose source column is inside [0, S), as [lo, hi):
      //   no flip: sx = x + ox        -> x in [-ox, S - ox)
      //   flip:    sx = S - 1 - x + ox -> x in [ox, S + ox)
      const int64_t lo = std::min(S, std::max<int64_t>(0, s.flip ? ox : -ox));
      const int64_t hi = std::max(lo, std::min(S, s.flip ? S + ox : S - ox));
      for (int64_t y = 0; y < S; ++y) {
        float* row = out + y * S;
        const int64_t sy = y + oy;
        if (sy < 0 || sy >= S) {
          std::fill(row, row + S, L[0]);
          continue;
        }
        const uint8_t* in = plane + sy * S;
        std::fill(row, row + lo, L[0]);
        if (!s.flip) {
          for (int64_t x = lo; x < hi; ++x) row[x] = L[in[x + ox]];
        } else {
          for (int64_t x = lo; x < hi; ++x) row[x] = L[in[S - 1 - x + ox]];
        }
        std::fill(row + hi, row + S, L[0]);
      }
    }
  }

  // One image through the geometric part before `emit`: a resized crop or a center crop to S x S.
  torch::Tensor to_output_size(torch::Tensor img, const SampleAugment& s) const {
    if (s.h > 0) return resize_u8(img.narrow(1, s.top, s.h).narrow(2, s.left, s.w), out_size, out_size).contiguous();
    return center_crop_u8(img, out_size).contiguous();
  }

  Batch make(int64_t b) {
    const int64_t batch_start = b * o.batch_size;
    const int64_t batch_len = std::min(o.batch_size, n - batch_start);
    // This loader's part of the batch (all of it unless the batch is split between data-parallel replicas).
    const int64_t start = batch_start + batch_len * o.part_index / o.part_count;
    const int64_t len = batch_start + batch_len * (o.part_index + 1) / o.part_count - start;
    const int64_t S = out_size, plane = channels * S * S;
    std::vector<int64_t> kept;
    kept.reserve(static_cast<size_t>(len));
    auto x =
        torch::empty({len, channels, S, S}, torch::TensorOptions().dtype(torch::kFloat).pinned_memory(o.pin_memory));
    float* xp = x.data_ptr<float>();
    int64_t k = 0;
    for (int64_t i = 0; i < len; ++i) {
      const int64_t idx = order[static_cast<size_t>(start + i)];
      if (fast) {
        SampleAugment s = sample_augment(aug, o.seed, epoch, idx, S, S);
        emit(images.data_ptr<uint8_t>() + idx * plane, s, xp + k * plane);
      } else {
        torch::Tensor img = images.defined() ? images[idx] : data->image(idx);
        if (!img.defined()) {
          if (o.augment) continue;                              // training: leave it out
          img = torch::zeros({channels, S, S}, torch::kUInt8);  // evaluation: keep outputs aligned
        }
        if (img.dim() != 3 || img.size(0) != channels || img.scalar_type() != torch::kUInt8)
          throw std::logic_error("dataset image " + std::to_string(idx) + " is not uint8 [" + std::to_string(channels) +
                                 ", H, W]");
        SampleAugment s = sample_augment(aug, o.seed, epoch, idx, img.size(1), img.size(2));
        auto sized = to_output_size(img, s);
        emit(sized.data_ptr<uint8_t>(), s, xp + k * plane);
      }
      kept.push_back(idx);
      ++k;
    }
    Batch out;
    out.step = b;
    out.indices = torch::from_blob(kept.data(), {k}, torch::kLong).clone();
    out.x = k == len ? x : x.narrow(0, 0, k).clone();
    out.y = labels.index_select(0, out.indices);
    return out;
  }

  void worker() {
    for (;;) {
      int64_t b;
      {
        std::unique_lock<std::mutex> l(mu);
        cv_space.wait(l, [&] { return stop || (next_to_make < batches && next_to_make - next_to_give < window()); });
        if (stop || next_to_make >= batches) return;
        b = next_to_make++;
      }
      Batch batch;
      std::exception_ptr err;
      try {
        batch = make(b);
      } catch (...) {
        err = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> l(mu);
        if (err) {
          failed[b] = err;
        } else {
          ready[b] = std::move(batch);
        }
      }
      cv_ready.notify_all();
    }
  }

  // Batches being made or waiting, at most: the prefetch depth plus one per worker.
  int64_t window() const { return std::max(0, o.prefetch) + std::max(1, o.workers); }
};

Loader::Loader(DatasetPtr data, LoaderOptions options) : impl_(std::make_unique<Impl>(std::move(data), options)) {}
Loader::~Loader() = default;
int64_t Loader::batches_per_epoch() const {
  return impl_->batches;
}
int64_t Loader::size() const {
  return impl_->n;
}

void Loader::start_epoch(int64_t epoch) {
  Impl& m = *impl_;
  m.stop_workers();
  m.stop = false;
  m.error = nullptr;
  m.ready.clear();
  m.failed.clear();
  m.epoch = epoch;
  m.started = true;
  m.order.resize(static_cast<size_t>(m.n));
  std::iota(m.order.begin(), m.order.end(), 0);
  if (m.o.shuffle) {  // Fisher-Yates with our own stream: the order is a pure function of (seed, epoch)
    Stream r(mix(mix(m.o.seed ^ 0x2545F4914F6CDD1DULL) + static_cast<uint64_t>(epoch)));
    for (int64_t i = m.n - 1; i > 0; --i)
      std::swap(m.order[static_cast<size_t>(i)], m.order[static_cast<size_t>(r.below(i + 1))]);
  }
  m.next_to_make = m.next_to_give = 0;
  for (int i = 0; i < m.o.workers; ++i) m.threads.emplace_back([&m] { m.worker(); });
}

bool Loader::next(Batch& out) {
  Impl& m = *impl_;
  if (!m.started) start_epoch(0);
  if (m.error) std::rethrow_exception(m.error);
  if (m.next_to_give >= m.batches) return false;
  if (m.o.workers <= 0) {
    try {
      out = m.make(m.next_to_give);
    } catch (...) {
      m.error = std::current_exception();
      throw;
    }
    ++m.next_to_give;
    return true;
  }
  std::unique_lock<std::mutex> l(m.mu);
  m.cv_ready.wait(l, [&] { return m.ready.count(m.next_to_give) || m.failed.count(m.next_to_give); });
  auto f = m.failed.find(m.next_to_give);
  if (f != m.failed.end()) {
    m.error = f->second;
    l.unlock();
    std::rethrow_exception(m.error);
  }
  out = std::move(m.ready[m.next_to_give]);
  m.ready.erase(m.next_to_give);
  ++m.next_to_give;
  l.unlock();
  m.cv_space.notify_all();
  return true;
}

}  // namespace kd
