// Training steps: one SGD step (forward, cross-entropy, backward, optimizer step) of zoo models at
// the batch sizes the recipes use, and one logit-KD step (teacher forward without grad + student step).
// Each iteration is one batch; items/s is training images per second. A first step runs untimed (run_steps),
// so one-off allocations are not measured.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <string>

#include "bench/bench_common.h"
#include "methods/losses.h"
#include "models/model.h"

namespace kd::bench {
namespace {

struct Shape {
  int64_t batch;
  int channels, image_size, num_classes;
};
constexpr Shape kFashionMnist{128, 1, 28, 10};
constexpr Shape kCifar100{64, 3, 32, 100};

ModelPtr make(const std::string& name, const Shape& s) {
  torch::manual_seed(0);
  return create_model(ModelSpec{name, s.num_classes, s.channels, s.image_size});
}

// One plain training step of `model` (the from-scratch student or a teacher being trained).
void BM_TrainStep(benchmark::State& state, const std::string& model_name, Shape s) {
  auto model = make(model_name, s);
  model->train();
  torch::optim::SGD opt(model->parameters(), sgd_options());
  auto x = torch::randn({s.batch, s.channels, s.image_size, s.image_size});
  auto y = random_labels(s.batch, s.num_classes);
  auto step = [&] {
    opt.zero_grad();
    auto loss = torch::cross_entropy_loss(model->forward(x), y);
    loss.backward();
    opt.step();
    return loss;
  };
  run_steps(state, [&] { benchmark::DoNotOptimize(step().data_ptr()); });
  state.SetItemsProcessed(state.iterations() * s.batch);
  state.counters["params"] = static_cast<double>(count_parameters(*model));
}
BENCHMARK_CAPTURE(BM_TrainStep, cnn_tiny_fmnist, std::string("cnn_tiny"), kFashionMnist)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TrainStep, cnn_large_fmnist, std::string("cnn_large"), kFashionMnist)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TrainStep, resnet8x4_cifar100, std::string("resnet8x4"), kCifar100)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// One logit-KD step: the teacher's forward pass in eval mode without grad, then the student's step on
// (1 - alpha) CE + alpha soft_kl (alpha 0.9, T 4), as logit_kd computes it.
void BM_LogitKDStep(benchmark::State& state, const std::string& teacher_name, const std::string& student_name,
                    Shape s) {
  auto teacher = make(teacher_name, s);
  teacher->eval();
  auto student = make(student_name, s);
  student->train();
  torch::optim::SGD opt(student->parameters(), sgd_options());
  auto x = torch::randn({s.batch, s.channels, s.image_size, s.image_size});
  auto y = random_labels(s.batch, s.num_classes);
  const double alpha = 0.9, T = 4.0;
  auto step = [&] {
    torch::Tensor t;
    {
      torch::NoGradGuard ng;
      t = teacher->forward(x);
    }
    opt.zero_grad();
    auto logits = student->forward(x);
    auto loss = (1 - alpha) * torch::cross_entropy_loss(logits, y) + alpha * losses::soft_kl(logits, t, T);
    loss.backward();
    opt.step();
    return loss;
  };
  run_steps(state, [&] { benchmark::DoNotOptimize(step().data_ptr()); });
  state.SetItemsProcessed(state.iterations() * s.batch);
}
BENCHMARK_CAPTURE(BM_LogitKDStep, cnn_large_to_cnn_tiny_fmnist, std::string("cnn_large"), std::string("cnn_tiny"),
                  kFashionMnist)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LogitKDStep, resnet32x4_to_resnet8x4_cifar100, std::string("resnet32x4"), std::string("resnet8x4"),
                  kCifar100)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kd::bench
