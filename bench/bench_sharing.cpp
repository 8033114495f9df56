// Teacher-output sharing, the main lever on sweep cost (DESIGN.md; harness/trainer.h train_lockstep):
// K students of one seed see the same batches, so the teacher's forward pass for a batch can run once
// for all of them. Each iteration is one batch for K logit-KD students (cnn_large -> cnn_tiny, T 4,
// alpha 0.9, batch 128 of synthetic 28x28x1 data, drawn once from the Loader so data cost is excluded):
//   Naive:  every student runs its own teacher forward, then its step  (K teacher forwards per batch);
//   Shared: one teacher forward, then the K student steps              (1 teacher forward per batch).
// items/s counts student-images (K x batch per iteration); s_per_student_step is the cost of one
// student's step including its share of the teacher forward. One batch runs untimed first (run_steps).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "bench/bench_common.h"
#include "methods/losses.h"
#include "models/model.h"

namespace kd::bench {
namespace {

constexpr int64_t kBatch = 128;
constexpr double kAlpha = 0.9, kTemperature = 4.0;

struct Group {
  ModelPtr teacher;
  std::vector<ModelPtr> students;
  std::vector<std::unique_ptr<torch::optim::SGD>> optimizers;
  std::vector<Batch> batches;
};

Group make_group(int64_t k) {
  const DataSplits& data = synthetic_data(28, 1, 4096);
  Group g;
  torch::manual_seed(0);
  g.teacher = create_model(ModelSpec{"cnn_large", data.num_classes, data.channels, data.image_size});
  g.teacher->eval();
  for (int64_t i = 0; i < k; ++i) {
    // Every student starts from the same weights, as the runs of one seed do.
    torch::manual_seed(1);
    g.students.push_back(create_model(ModelSpec{"cnn_tiny", data.num_classes, data.channels, data.image_size}));
    g.students.back()->train();
    g.optimizers.push_back(std::make_unique<torch::optim::SGD>(g.students.back()->parameters(), sgd_options()));
  }
  LoaderOptions o;
  o.batch_size = kBatch;
  o.drop_last = true;
  o.norm = data.norm;
  o.workers = 0;
  Loader loader(data.train, o);
  Batch b;
  while (g.batches.size() < 4 && loader.next(b)) g.batches.push_back(b);
  return g;
}

torch::Tensor teacher_logits(TapModel& teacher, const torch::Tensor& x) {
  torch::NoGradGuard ng;
  return teacher.forward(x);
}

void student_step(TapModel& student, torch::optim::SGD& opt, const Batch& b, const torch::Tensor& t) {
  opt.zero_grad();
  auto s = student.forward(b.x);
  auto loss = (1 - kAlpha) * torch::cross_entropy_loss(s, b.y) + kAlpha * losses::soft_kl(s, t, kTemperature);
  loss.backward();
  opt.step();
}

void set_counters(benchmark::State& state, int64_t k, int64_t teacher_forwards_per_batch) {
  state.SetItemsProcessed(state.iterations() * k * kBatch);
  state.counters["students"] = static_cast<double>(k);
  state.counters["teacher_forwards"] = static_cast<double>(teacher_forwards_per_batch);  // per batch
  state.counters["s_per_student_step"] = benchmark::Counter(
      static_cast<double>(k), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// Naive: each of the K students runs the teacher itself. Arg: K.
void BM_TeacherSharing_Naive(benchmark::State& state) {
  const int64_t k = state.range(0);
  Group g = make_group(k);
  size_t step = 0;
  run_steps(state, [&] {
    const Batch& b = g.batches[step++ % g.batches.size()];
    for (int64_t i = 0; i < k; ++i) {
      auto t = teacher_logits(*g.teacher, b.x);
      student_step(*g.students[static_cast<size_t>(i)], *g.optimizers[static_cast<size_t>(i)], b, t);
    }
  });
  set_counters(state, k, k);
}
BENCHMARK(BM_TeacherSharing_Naive)->ArgName("K")->Arg(1)->Arg(4)->Arg(12)->UseRealTime()->Unit(benchmark::kMillisecond);

// Shared: one teacher forward per batch, its logits used by all K students (what train_lockstep does).
// Arg: K.
void BM_TeacherSharing_Shared(benchmark::State& state) {
  const int64_t k = state.range(0);
  Group g = make_group(k);
  size_t step = 0;
  run_steps(state, [&] {
    const Batch& b = g.batches[step++ % g.batches.size()];
    auto t = teacher_logits(*g.teacher, b.x);
    for (int64_t i = 0; i < k; ++i)
      student_step(*g.students[static_cast<size_t>(i)], *g.optimizers[static_cast<size_t>(i)], b, t);
  });
  set_counters(state, k, 1);
}
BENCHMARK(BM_TeacherSharing_Shared)
    ->ArgName("K")
    ->Arg(1)
    ->Arg(4)
    ->Arg(12)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kd::bench
