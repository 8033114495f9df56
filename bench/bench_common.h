// Helpers shared by the benchmark suites in bench/ (bench_*.cpp, linked into one executable kd_bench).
// Nothing here asserts a timing: the suites only measure and report. Every benchmark reports wall-clock
// time (UseRealTime): LibTorch's kernels and the loader's workers run on several threads, so the main
// thread's CPU time would overstate every rate.
#pragma once
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "datasets/dataset.h"

namespace kd::bench {

// Registers one benchmark per registered method (bench_losses.cpp). Called from main() in
// bench_main.cpp, after static initialisation, because the method registry is only complete then.
void register_method_benchmarks();

// A seeded synthetic data set (kd::open_dataset {"name": "synthetic", ...}) with the default validation
// carve (val_fraction 0.1), as the trainer opens it; created once per shape and kept for the process.
inline const kd::DataSplits& synthetic_data(int image_size, int channels, int64_t train_size, int num_classes = 10) {
  static std::map<std::tuple<int, int, int64_t, int>, kd::DataSplits> cache;
  auto key = std::make_tuple(image_size, channels, train_size, num_classes);
  auto it = cache.find(key);
  if (it == cache.end()) {
    nlohmann::json cfg = {{"name", "synthetic"},
                          {"image_size", image_size},
                          {"channels", channels},
                          {"train_size", train_size},
                          {"test_size", 64},
                          {"num_classes", num_classes},
                          {"seed", 0}};
    it = cache.emplace(key, kd::open_dataset(cfg, "bench.dataset")).first;
  }
  return it->second;
}

// SGD as the default recipe configures it (momentum 0.9, Nesterov, weight decay 5e-4).
inline torch::optim::SGDOptions sgd_options(double lr = 0.05) {
  return torch::optim::SGDOptions(lr).momentum(0.9).nesterov(true).weight_decay(5e-4);
}

// Random class labels int64 [batch] in [0, classes).
inline torch::Tensor random_labels(int64_t batch, int64_t classes) {
  return torch::randint(0, classes, {batch}, torch::kLong);
}

// Runs `step` once untimed (one-off allocations, kernel selection), then once per benchmark iteration.
template <typename Step>
void run_steps(benchmark::State& state, Step&& step) {
  step();
  for (auto _ : state) step();
}

inline int64_t tensor_bytes(const torch::Tensor& t) {
  return t.numel() * static_cast<int64_t>(t.element_size());
}

}  // namespace kd::bench
