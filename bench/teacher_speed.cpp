// kd_teacher_speed: a teacher's forward pass in kdbench's zoo against the same teacher compiled with
// torch.export + AOTInductor (.pt2), in one process on one machine: the same weights, the same input
// batch, inference without autograd as the trainer runs teachers, the two sides alternated round by round
// after a warm-up. Prints images/s of each (median over rounds) and the ratio. Nothing is asserted; the
// README's figure comes from `scripts/bench-teacher`, which runs this.
//   kd_teacher_speed [--model resnet32x4] [--classes 100] [--image-size 32] [--batch 64] [--rounds 7]
//                    [--iters 3] [--threads 0] [--pt2 FILE (else compiled here)] [--json FILE]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness/aoti_export.h"
#include "models/model.h"
#include "models/pytorch_io.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Images per second of `iters` forwards of `m` on `x`.
double rate(kd::TapModel& m, const torch::Tensor& x, int iters) {
  torch::NoGradGuard ng;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) {
    auto y = m.forward(x);
    (void)y.sum().item<float>();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(x.size(0)) * iters / s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "resnet32x4", pt2, json_out;
  int classes = 100, size = 32, batch = 64, rounds = 7, iters = 3, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      model = v;
    else if (k == "--classes")
      classes = std::stoi(v);
    else if (k == "--image-size")
      size = std::stoi(v);
    else if (k == "--batch")
      batch = std::stoi(v);
    else if (k == "--rounds")
      rounds = std::stoi(v);
    else if (k == "--iters")
      iters = std::stoi(v);
    else if (k == "--threads")
      threads = std::stoi(v);
    else if (k == "--pt2")
      pt2 = v;
    else if (k == "--json")
      json_out = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    if (threads > 0) torch::set_num_threads(threads);
    torch::manual_seed(0);
    auto zoo = kd::create_model({model, classes, 3, size});
    zoo->eval();
    double compile_seconds = 0;
    if (pt2.empty()) {
      pt2 = (std::filesystem::temp_directory_path() / ("kd_teacher_speed-" + model + ".pt2")).string();
      kd::AotiExportOptions o;
      o.num_classes = classes;
      o.image_size = size;
      const auto t0 = std::chrono::steady_clock::now();
      kd::export_aoti_package(*zoo, pt2, o);
      compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    auto compiled = kd::load_exported_model(pt2, {"logits"});
    auto x = torch::randn({batch, 3, size, size});
    double diff;
    {
      torch::NoGradGuard ng;
      diff = (zoo->forward(x) - compiled->forward(x)).abs().max().item<double>();
    }
    rate(*zoo, x, 2);  // warm-up
    rate(*compiled, x, 2);
    std::vector<double> zoo_rates, compiled_rates;
    for (int r = 0; r < rounds; ++r) {
      if (r % 2) {
        compiled_rates.push_back(rate(*compiled, x, iters));
        zoo_rates.push_back(rate(*zoo, x, iters));
      } else {
        zoo_rates.push_back(rate(*zoo, x, iters));
        compiled_rates.push_back(rate(*compiled, x, iters));
      }
    }
    const double z = median(zoo_rates), c = median(compiled_rates);
    std::printf("teacher %s, %d classes, batch %d of 3x%dx%d, %d threads, %d rounds x %d forwards\n", model.c_str(),
                classes, batch, size, size, torch::get_num_threads(), rounds, iters);
    if (compile_seconds > 0) std::printf("compiled with AOTInductor in %.0f s: %s\n", compile_seconds, pt2.c_str());
    std::printf("max |logits difference| %.2g\n", diff);
    std::printf("%-28s %12s\n", "", "images/s");
    std::printf("%-28s %12.1f\n", "kdbench zoo (LibTorch eager)", z);
    std::printf("%-28s %12.1f\n", "AOTInductor package (.pt2)", c);
    std::printf("compiled_vs_zoo = %.2f (compiled images/s / zoo images/s)\n", c / z);
    if (!json_out.empty()) {
      nlohmann::json j{{"model", model},
                       {"classes", classes},
                       {"batch", batch},
                       {"image_size", size},
                       {"threads", torch::get_num_threads()},
                       {"zoo_images_per_s", z},
                       {"compiled_images_per_s", c},
                       {"compiled_vs_zoo", c / z},
                       {"max_abs_logit_diff", diff},
                       {"zoo_rounds", zoo_rates},
                       {"compiled_rounds", compiled_rates}};
      std::ofstream(json_out) << j.dump(2) << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "kd_teacher_speed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
