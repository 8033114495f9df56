// Loss kernels: forward + backward of each pure loss in methods/losses.h on realistic shapes, and of
// every registered method's compute() through the registry, on tap maps shaped like real zoo models'.
// Each iteration is one batch; items/s is samples (images) per second.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/errors.h"
#include "bench/bench_common.h"
#include "methods/losses.h"
#include "methods/method.h"
#include "models/model.h"

namespace kd::bench {
namespace {

constexpr double kTemperature = 4.0;

// Student logits are leaves that need a gradient (the backward pass ends there); teacher logits are
// plain tensors, as the harness hands them over (detached). Spread like trained models' logits.
torch::Tensor student_leaf(torch::IntArrayRef shape) {
  return (3 * torch::randn(shape)).requires_grad_(true);
}
torch::Tensor teacher_tensor(torch::IntArrayRef shape) {
  return 3 * torch::randn(shape);
}

void set_counters(benchmark::State& state, int64_t batch, int64_t bytes_per_iteration) {
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * bytes_per_iteration);
}

// ---- pure losses -------------------------------------------------------------------------------

// soft_kl (Hinton KD) forward + backward on logits [B, C]. Args: B, C.
void BM_SoftKL(benchmark::State& state) {
  const int64_t B = state.range(0), C = state.range(1);
  auto s = student_leaf({B, C});
  auto t = teacher_tensor({B, C});
  run_steps(state, [&] {
    s.mutable_grad() = torch::Tensor();  // a fresh gradient each step, as after zero_grad()
    auto loss = losses::soft_kl(s, t, kTemperature);
    loss.backward();
    benchmark::DoNotOptimize(s.grad().data_ptr());
  });
  set_counters(state, B, tensor_bytes(s) + tensor_bytes(t));
}
BENCHMARK(BM_SoftKL)
    ->ArgNames({"B", "C"})
    ->Args({128, 10})   // Fashion-MNIST
    ->Args({128, 100})  // CIFAR-100
    ->Args({64, 1000})  // ImageNet
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// FitNets hint: a 1x1 conv (no bias) + BatchNorm regressor of the student map, pooled to the
// teacher's size, then hint_mse; backward into the regressor and the student map.
// Args: B, student channels, teacher channels, student H=W, teacher H=W.
void BM_HintMSE_Conv1x1(benchmark::State& state) {
  const int64_t B = state.range(0), Cs = state.range(1), Ct = state.range(2), Hs = state.range(3), Ht = state.range(4);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(Cs, Ct, 1).bias(false));
  torch::nn::BatchNorm2d bn(Ct);
  auto v = torch::randn({B, Cs, Hs, Hs}).relu().requires_grad_(true);
  auto u = torch::randn({B, Ct, Ht, Ht}).relu();
  run_steps(state, [&] {
    v.mutable_grad() = torch::Tensor();
    conv->zero_grad();
    bn->zero_grad();
    auto [r, t] = losses::pool_to_common_size(bn(conv(v)), u);
    auto loss = losses::hint_mse(r, t);
    loss.backward();
    benchmark::DoNotOptimize(v.grad().data_ptr());
  });
  set_counters(state, B, tensor_bytes(v) + tensor_bytes(u));
}
BENCHMARK(BM_HintMSE_Conv1x1)
    ->ArgNames({"B", "Cs", "Ct", "Hs", "Ht"})
    ->Args({128, 8, 64, 7, 7})      // cnn_tiny block2 -> cnn_large block2 (Fashion-MNIST)
    ->Args({64, 128, 128, 16, 16})  // resnet8x4 block2 -> resnet32x4 block2
    ->Args({64, 256, 256, 8, 8})    // resnet8x4 block3 -> resnet32x4 block3
    ->Args({64, 64, 128, 16, 8})    // wrn_40_2 block2 -> a smaller 8x8 teacher map (pooling path)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Attention transfer, one tap pair: attention_loss (p = 2) forward + backward into the student map.
// Args: B, student channels, teacher channels, student H=W, teacher H=W (different sizes: resize path).
void BM_AttentionLoss(benchmark::State& state) {
  const int64_t B = state.range(0), Cs = state.range(1), Ct = state.range(2), Hs = state.range(3), Ht = state.range(4);
  auto s = torch::randn({B, Cs, Hs, Hs}).relu().requires_grad_(true);
  auto t = torch::randn({B, Ct, Ht, Ht}).relu();
  run_steps(state, [&] {
    s.mutable_grad() = torch::Tensor();
    auto loss = losses::attention_loss(s, t, 2.0);
    loss.backward();
    benchmark::DoNotOptimize(s.grad().data_ptr());
  });
  set_counters(state, B, tensor_bytes(s) + tensor_bytes(t));
}
BENCHMARK(BM_AttentionLoss)
    ->ArgNames({"B", "Cs", "Ct", "Hs", "Ht"})
    ->Args({128, 6, 32, 14, 14})    // cnn_tiny block1 -> cnn_large block1
    ->Args({64, 64, 64, 32, 32})    // resnet8x4 block1 -> resnet32x4 block1
    ->Args({64, 128, 128, 16, 16})  // block2
    ->Args({64, 256, 256, 8, 8})    // block3
    ->Args({64, 128, 256, 16, 8})   // student map resized to the teacher's size
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Multi-teacher average: mix_teacher_probs over K teachers, then soft_kl_to_probs, forward + backward.
// Args: B, C, K.
void BM_MixTeacherProbs_SoftKLToProbs(benchmark::State& state) {
  const int64_t B = state.range(0), C = state.range(1), K = state.range(2);
  auto s = student_leaf({B, C});
  std::vector<torch::Tensor> t;
  for (int64_t k = 0; k < K; ++k) t.push_back(teacher_tensor({B, C}));
  const std::vector<double> w(static_cast<size_t>(K), 1.0 / static_cast<double>(K));
  run_steps(state, [&] {
    s.mutable_grad() = torch::Tensor();
    auto loss = losses::soft_kl_to_probs(s, losses::mix_teacher_probs(t, w, kTemperature), kTemperature);
    loss.backward();
    benchmark::DoNotOptimize(s.grad().data_ptr());
  });
  set_counters(state, B, (K + 1) * tensor_bytes(s));
}
BENCHMARK(BM_MixTeacherProbs_SoftKLToProbs)
    ->ArgNames({"B", "C", "K"})
    ->Args({128, 10, 2})
    ->Args({128, 100, 2})
    ->Args({128, 100, 4})
    ->Args({64, 1000, 3})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// CA-MKD: confidence_kd (per-sample teacher weights from the teachers' CE, then weighted KLs),
// forward + backward. Args: B, C, K.
void BM_ConfidenceKD(benchmark::State& state) {
  const int64_t B = state.range(0), C = state.range(1), K = state.range(2);
  auto s = student_leaf({B, C});
  std::vector<torch::Tensor> t;
  for (int64_t k = 0; k < K; ++k) t.push_back(teacher_tensor({B, C}));
  auto y = random_labels(B, C);
  run_steps(state, [&] {
    s.mutable_grad() = torch::Tensor();
    auto loss = losses::confidence_kd(s, t, y, kTemperature);
    loss.backward();
    benchmark::DoNotOptimize(s.grad().data_ptr());
  });
  set_counters(state, B, (K + 1) * tensor_bytes(s));
}
BENCHMARK(BM_ConfidenceKD)
    ->ArgNames({"B", "C", "K"})
    ->Args({128, 10, 2})
    ->Args({128, 100, 2})
    ->Args({128, 100, 4})
    ->Args({64, 1000, 3})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// ---- every registered method through the registry ------------------------------------------------

// A student/teachers pairing whose tap shapes come from one dry forward pass of the real zoo models.
struct Pairing {
  std::string name;
  std::string student;
  std::vector<std::string> teachers;  // enough for any method's maximum we use (2)
  int64_t batch;
  int channels, image_size, num_classes;
};

const std::vector<Pairing>& pairings() {
  static const std::vector<Pairing> p = {
      {"fmnist", "cnn_tiny", {"cnn_large", "cnn_wide"}, 128, 1, 28, 10},
      {"cifar100", "resnet8x4", {"resnet32x4", "wrn_40_2"}, 64, 3, 32, 100},
  };
  return p;
}

// Tap shapes of `model` at the pairing's input, with the batch dimension set to the pairing's batch.
const TapShapes& tap_shapes(const std::string& model, const Pairing& pr) {
  static std::map<std::string, TapShapes> cache;
  const std::string key = model + "@" + pr.name;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  torch::NoGradGuard ng;
  auto m = create_model(ModelSpec{model, pr.num_classes, pr.channels, pr.image_size});
  m->eval();
  TapMap taps;
  m->forward_taps(torch::randn({2, pr.channels, pr.image_size, pr.image_size}), &taps);
  TapShapes shapes;
  for (const auto& [name, t] : taps) {
    std::vector<int64_t> s(t.sizes().begin(), t.sizes().end());
    s[0] = pr.batch;
    shapes[name] = s;
  }
  return cache.emplace(key, std::move(shapes)).first->second;
}

// One method configuration to benchmark: a registered name and hyperparameters over its defaults.
struct Variant {
  std::string method;
  std::string label;
  nlohmann::json params;
};

// Method forward + backward as the trainer runs it for one batch: compute() the named terms on the
// student's and teachers' taps, sum weight * term, backward into the student taps and the method's own
// parameters (regressors). The models' forward/backward is not included (see bench_train.cpp).
void BM_Method(benchmark::State& state, const Variant& v, const Pairing& pr, int stage) {
  const auto& reg = MethodRegistry::instance();
  const MethodInfo& info = reg.get(v.method);
  auto method = reg.create(v.method, reg.resolve(v.method, v.params, "bench." + v.label));
  const int num_teachers = std::max(info.min_teachers, 0);
  const TapShapes& sshapes = tap_shapes(pr.student, pr);
  std::vector<TapShapes> tshapes;
  for (int t = 0; t < num_teachers; ++t)
    tshapes.push_back(tap_shapes(pr.teachers.at(static_cast<size_t>(t) % pr.teachers.size()), pr));
  torch::manual_seed(0);
  PrepareContext ctx;
  ctx.student = sshapes;
  ctx.teachers = tshapes;
  ctx.train_size = 50000;
  ctx.num_classes = pr.num_classes;
  try {
    method->prepare(ctx);
  } catch (const ConfigError& e) {
    // The method does not apply to this pairing's shapes (e.g. FSP needs equal channel counts at every tap;
    // cnn_tiny's and cnn_large's differ): no figure, and the reason in the output.
    state.SkipWithError(("not applicable to " + pr.name + ": " + e.what()).c_str());
    return;
  }
  auto module = method->module();
  if (module) module->train();

  TapMap student;
  auto student_taps = method->student_taps();
  student_taps.push_back("logits");
  for (const auto& tap : student_taps)
    if (!student.count(tap)) student[tap] = student_leaf(sshapes.at(tap));
  std::vector<TapMap> teachers(static_cast<size_t>(num_teachers));
  std::vector<const TapMap*> teacher_ptrs;
  int64_t bytes = 0;
  for (const auto& [name, t] : student) bytes += tensor_bytes(t);
  for (int t = 0; t < num_teachers; ++t) {
    for (const auto& tap : method->teacher_taps(t)) {
      teachers[static_cast<size_t>(t)][tap] = teacher_tensor(tshapes[static_cast<size_t>(t)].at(tap));
      bytes += tensor_bytes(teachers[static_cast<size_t>(t)][tap]);
    }
    teacher_ptrs.push_back(&teachers[static_cast<size_t>(t)]);
  }
  const auto labels = random_labels(pr.batch, pr.num_classes);
  const auto indices = torch::randint(50000, {pr.batch}, torch::kLong);

  size_t num_terms = 0;
  run_steps(state, [&] {
    for (auto& [name, t] : student) t.mutable_grad() = torch::Tensor();
    if (module) module->zero_grad();
    MethodInput in{student, teacher_ptrs, labels, indices, stage};
    LossTerms terms = method->compute(in);
    torch::Tensor total = torch::zeros({});
    for (const auto& term : terms) total = total + term.weight * term.value;
    total.backward();
    num_terms = terms.size();
    benchmark::DoNotOptimize(total.data_ptr());
  });
  set_counters(state, pr.batch, bytes);
  state.counters["terms"] = static_cast<double>(num_terms);
  state.counters["teachers"] = num_teachers;
}

}  // namespace

void register_method_benchmarks() {
  const auto& reg = MethodRegistry::instance();
  // Every registered method with its declared defaults (a new method gets a benchmark without an edit
  // here), plus the non-default settings that change the computation.
  std::vector<Variant> variants;
  for (const auto& name : reg.names()) variants.push_back({name, name, nlohmann::json::object()});
  const std::vector<Variant> extra = {
      {"fitnets", "fitnets_one_stage", {{"mode", "one_stage"}}},
      {"attention", "attention_with_kd", {{"alpha", 0.9}}},
      {"multi_teacher", "multi_teacher_confidence", {{"aggregation", "confidence"}}},
      {"multi_teacher", "multi_teacher_feature", {{"beta", 1.0}}},
  };
  for (const auto& v : extra)
    if (reg.find(v.method)) variants.push_back(v);

  for (const auto& v : variants) {
    // Stage names of this configuration (FitNets two-stage: "hint" then "kd").
    std::vector<StageSpec> stages = reg.create(v.method, reg.resolve(v.method, v.params, "bench"))->stages();
    for (const auto& pr : pairings()) {
      for (size_t s = 0; s < stages.size(); ++s) {
        std::string name = "BM_Method/" + v.label + "/" + pr.name;
        if (stages.size() > 1) name += "/stage:" + stages[s].name;
        benchmark::RegisterBenchmark(name.c_str(), BM_Method, v, pr, static_cast<int>(s))
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
}

}  // namespace kd::bench
