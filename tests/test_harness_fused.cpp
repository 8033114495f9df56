// The trainer's fast paths give the same training as the plain one. Horizontal fusion (models/model.h):
// K students as one model give exactly the K independent forwards, and training a lockstep group fused
// gives the same students as training them one by one, with per-student learning rates, weight decay,
// gradient clipping and method hyperparameters. Channels-last and bf16 autocast (the GPU path's options)
// on the CPU. The teacher-output cache.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <set>

#include "datasets/dataset.h"
#include "harness/plan.h"
#include "harness/trainer.h"
#include "methods/method.h"
#include "models/model.h"

namespace {

struct Case {
  std::string model;
  int channels, size;
};

TEST(Fusion, FusedForwardIsKIndependentForwards) {
  for (const Case& c : {Case{"cnn_tiny", 1, 28}, Case{"resnet8", 3, 32}}) {
    const int64_t K = 3;
    kd::ModelSpec spec{c.model, 10, c.channels, c.size};
    std::vector<kd::ModelPtr> students;
    for (int64_t k = 0; k < K; ++k) {
      torch::manual_seed(100 + k);
      students.push_back(kd::create_model(spec));
      students.back()->train();
    }
    auto fused = kd::fuse_models(students, spec);
    fused->train();
    EXPECT_EQ(kd::count_parameters(*fused), K * kd::count_parameters(*students[0])) << c.model;
    auto x = torch::randn({5, c.channels, c.size, c.size});
    kd::TapMap ft;
    auto fl = fused->forward_taps(x, &ft);
    ASSERT_EQ(fl.sizes(), (std::vector<int64_t>{5, K * 10})) << c.model;
    for (int64_t k = 0; k < K; ++k) {
      kd::TapMap st;
      auto sl = students[static_cast<size_t>(k)]->forward_taps(x, &st);
      EXPECT_TRUE(torch::allclose(kd::fused_part(fl, k, K), sl, 1e-4, 1e-5)) << c.model << " student " << k;
      for (const auto& [name, t] : st) {
        ASSERT_TRUE(ft.count(name)) << name;
        EXPECT_TRUE(torch::allclose(kd::fused_part(ft.at(name), k, K), t, 1e-4, 1e-5))
            << c.model << " tap " << name << " student " << k;
      }
    }
    // Training-mode forwards also updated each student's batch-norm statistics the same way.
    auto back = kd::create_model(spec);
    kd::unfuse_into(*fused, 1, K, *back);
    auto a = back->named_buffers(), b = students[1]->named_buffers();
    for (const auto& item : a)
      EXPECT_TRUE(torch::allclose(item.value().to(torch::kFloat), b[item.key()].to(torch::kFloat), 1e-4, 1e-6))
          << c.model << " buffer " << item.key();
  }
  EXPECT_FALSE(kd::supports_fusion("shufflenetv1"));  // its channel shuffle would mix the students
  EXPECT_THROW(kd::create_model(kd::ModelSpec{"shufflenetv1", 10, 3, 32, 2}), std::exception);
}

// Trains the same four runs (different methods, learning rates, weight decay, clipping) with and
// without fusion, and returns each run's final parameters and buffers by run name.
// A run of the group trained by train_group.
struct Def {
  std::string name, method;
  kd::json params;
  double lr, weight_decay, clip;
  std::string optimizer = "sgd";
};

// What train_group trains on: the student and teacher models, the images' shape, and the runs.
struct GroupShape {
  std::string student = "cnn_tiny", teacher = "cnn_medium";
  int channels = 1, image_size = 16;
  std::vector<Def> defs = {
      {"baseline", "baseline", kd::json::object(), 0.1, 5e-4, 0},
      {"kd_t2", "logit_kd", {{"temperature", 2.0}, {"alpha", 0.5}}, 0.05, 5e-4, 0},
      {"kd_t4_clip", "logit_kd", {{"temperature", 4.0}, {"alpha", 0.9}}, 0.1, 0.0, 0.5},
      {"attention", "attention", {{"beta", 100.0}}, 0.08, 1e-3, 0},
  };
};

std::map<std::string, std::vector<torch::Tensor>> train_group(const kd::TrainOptions& options,
                                                              std::map<std::string, double>* val_top1,
                                                              bool augment = false, const GroupShape& shape = {}) {
  kd::json dcfg = {{"name", "synthetic"},
                   {"num_classes", 4},
                   {"train_size", 400},
                   {"test_size", 64},
                   {"image_size", shape.image_size},
                   {"channels", shape.channels},
                   {"seed", 9},
                   {"val_fraction", 0.125}};
  if (augment) dcfg["augment"] = {{"random_crop", true}, {"padding", 2}, {"flip", true}};
  auto data = kd::open_dataset(dcfg);
  kd::TeacherHandle teacher;
  teacher.run_id = "teacher";
  teacher.model = kd::create_seeded_model(shape.teacher, data, 42);
  teacher.model->to(options.device);
  teacher.model->eval();
  teacher.val_logits = kd::predict(*teacher.model, data.val, data, 256, options.device, 1);
  teacher.test_logits = kd::predict(*teacher.model, data.test, data, 256, options.device, 1);
  const std::vector<Def>& defs = shape.defs;
  std::vector<kd::RunSpec> specs(defs.size());
  for (size_t i = 0; i < defs.size(); ++i) {
    auto& s = specs[i];
    s.id = s.name = defs[i].name;
    s.role = kd::RunRole::Student;
    s.method = defs[i].method;
    s.params = kd::MethodRegistry::instance().resolve(s.method, defs[i].params, "test").all();
    s.seed = 0;
    s.model = shape.student;
    s.recipe.epochs = 2;
    s.recipe.batch_size = 64;
    s.recipe.lr = defs[i].lr;
    s.recipe.momentum = 0.9;
    s.recipe.nesterov = true;
    s.recipe.weight_decay = defs[i].weight_decay;
    s.recipe.grad_clip = defs[i].clip;
    s.recipe.optimizer = defs[i].optimizer;
    if (s.method != "baseline") s.teacher_ids = {"teacher"};
    kd::resolve_stages(s);
  }
  std::vector<kd::GroupMember> members(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    members[i].spec = &specs[i];
    if (!specs[i].teacher_ids.empty()) members[i].teachers = {&teacher};
  }
  std::map<std::string, std::vector<torch::Tensor>> out;
  kd::TrainOptions o = options;
  o.workers = 0;
  o.on_done = [&](const kd::GroupMember& m, kd::RunOutcome& r) {
    EXPECT_TRUE(r.ok) << m.spec->name << " " << r.error_json;
    if (!r.ok) return;
    std::vector<torch::Tensor> state;
    for (auto& p : r.model->parameters()) state.push_back(p.detach().to(torch::kCPU).clone());
    for (auto& b : r.model->buffers()) state.push_back(b.detach().to(torch::kCPU, torch::kFloat).clone());
    out[m.spec->name] = state;
    (*val_top1)[m.spec->name] = r.finals["final.val.top1"];
  };
  kd::train_lockstep(members, data, o);
  return out;
}

// 12 SGD steps; fused and unfused agree to ~1e-7 (float reassociation in the grouped convolutions).
// (With 448 samples instead of 400, one batch makes the attention run differ by 1.5e-3 while the others
// stay at 1e-7: a near-zero attention map, whose L2 normalisation has a gradient ~ 1/||map||, magnifies
// rounding differences; the data here avoid that batch.)
TEST(Fusion, FusedTrainingMatchesUnfusedTraining) {
  torch::set_num_threads(1);
  std::map<std::string, double> val_plain, val_fused;
  kd::TrainOptions fuse;
  fuse.fuse = true;
  auto plain = train_group(kd::TrainOptions{}, &val_plain);
  auto fused = train_group(fuse, &val_fused);
  ASSERT_EQ(plain.size(), 4u);
  ASSERT_EQ(fused.size(), 4u);
  for (const auto& [name, tensors] : plain) {
    const auto& f = fused.at(name);
    ASSERT_EQ(f.size(), tensors.size());
    double worst = 0;
    for (size_t i = 0; i < tensors.size(); ++i)
      worst = std::max(worst,
                       (f[i] - tensors[i]).abs().max().item<double>() / (1.0 + tensors[i].abs().max().item<double>()));
    EXPECT_LT(worst, 1e-5) << name << ": fused training drifted from unfused training";
    EXPECT_NEAR(val_fused.at(name), val_plain.at(name), 2.0) << name;
  }
  // The runs really differ from one another (each kept its own hyperparameters).
  EXPECT_GT((plain.at("baseline")[0] - plain.at("kd_t2")[0]).abs().max().item<double>(), 1e-3);
}

// The largest difference between two trainings' final weights, relative to each tensor's scale, per run.
std::map<std::string, double> drift(const std::map<std::string, std::vector<torch::Tensor>>& a,
                                    const std::map<std::string, std::vector<torch::Tensor>>& b) {
  std::map<std::string, double> out;
  for (const auto& [name, tensors] : a) {
    const auto& other = b.at(name);
    double worst = 0;
    for (size_t i = 0; i < tensors.size(); ++i)
      worst = std::max(worst, (other[i] - tensors[i]).abs().max().item<double>() /
                                  (1.0 + tensors[i].abs().max().item<double>()));
    out[name] = worst;
  }
  return out;
}

// The static step (what CUDA graphs capture: device work only, its own SGD on learning-rate tensors, the
// teacher's forward inside the step, the last smaller batch of an epoch included) trains as the laned and
// the fused steps do, on the CPU: the graphs' math, checked where no GPU is.
TEST(StaticStep, TrainsAsTheLanedAndFusedStepsDo) {
  torch::set_num_threads(1);
  std::map<std::string, double> val_plain, val_static, val_fused_static;
  auto plain = train_group(kd::TrainOptions{}, &val_plain);
  kd::TrainOptions st;
  st.static_step = true;
  auto stat = train_group(st, &val_static);
  kd::TrainOptions fst = st;
  fst.fuse = true;
  auto fused_stat = train_group(fst, &val_fused_static);
  ASSERT_EQ(stat.size(), 4u);
  ASSERT_EQ(fused_stat.size(), 4u);
  for (const auto& [name, d] : drift(plain, stat)) {
    EXPECT_LT(d, 1e-5) << name << ": the static step drifted from the laned step";
    EXPECT_NEAR(val_static.at(name), val_plain.at(name), 2.0) << name;
  }
  for (const auto& [name, d] : drift(plain, fused_stat))
    EXPECT_LT(d, 1e-5) << name << ": the fused static step drifted from the laned step";
  // AdamW takes the static step too (the updater's capturable form), alone, beside SGD and fused: as the laned step.
  GroupShape adamw;
  adamw.defs = {{"kd_t2", "logit_kd", {{"temperature", 2.0}, {"alpha", 0.5}}, 0.05, 5e-4, 0},
                {"kd_adamw", "logit_kd", {{"temperature", 2.0}, {"alpha", 0.5}}, 0.01, 5e-4, 0, "adamw"},
                {"kd_adamw_wd", "logit_kd", {{"temperature", 4.0}, {"alpha", 0.9}}, 0.003, 5e-2, 0, "adamw"},
                {"at_adamw_clip", "attention", {{"beta", 100.0}}, 0.01, 0, 1.0, "adamw"}};
  auto a = train_group(st, &val_static, false, adamw);
  auto b = train_group(kd::TrainOptions{}, &val_plain, false, adamw);
  kd::TrainOptions fused_eager;
  fused_eager.fuse = true;
  auto c = train_group(fst, &val_fused_static, false, adamw);
  auto e = train_group(fused_eager, &val_fused_static, false, adamw);
  for (const auto& [name, d] : drift(a, b)) EXPECT_LT(d, 1e-5) << name << ": static vs laned (AdamW group)";
  for (const auto& [name, d] : drift(c, b)) EXPECT_LT(d, 1e-5) << name << ": fused static vs laned (AdamW group)";
  for (const auto& [name, d] : drift(e, b)) EXPECT_LT(d, 1e-5) << name << ": fused eager vs laned (AdamW group)";
  // The comparison can fail: the same group with another learning rate for one run drifts far.
  GroupShape other = adamw;
  other.defs[1].lr = 0.02;
  auto o = train_group(kd::TrainOptions{}, &val_plain, false, other);
  EXPECT_GT(drift(o, b).at("kd_adamw"), 1e-3);
}

// On a GPU (skipped with a message where there is none): CUDA graphs against the eager step, fused against
// unfused, bf16 against fp32, for logit_kd, fitnets and attention on resnet8x4 students.
TEST(Gpu, GraphsFusionAndBf16OnResnet8x4Students) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: the GPU tests run in scripts/gpu-check";
  GroupShape gpu;
  gpu.student = "resnet8x4";
  gpu.teacher = "resnet8";
  gpu.channels = 3;
  gpu.image_size = 32;
  gpu.defs = {
      {"kd", "logit_kd", {{"temperature", 4.0}, {"alpha", 0.9}}, 0.05, 5e-4, 0},
      {"fitnets", "fitnets",
       {{"mode", "one_stage"}, {"beta", 1.0}, {"student_tap", "block2"}, {"teacher_tap", "block2"}}, 0.05, 5e-4, 0},
      {"attention", "attention", {{"beta", 100.0}}, 0.05, 5e-4, 1.0},
  };
  std::map<std::string, double> v_eager, v_graphs, v_fused, v_bf16;
  kd::TrainOptions eager;
  eager.device = torch::kCUDA;
  kd::TrainOptions graphs = eager;
  graphs.cuda_graphs = true;
  kd::TrainOptions fused = graphs;
  fused.fuse = true;
  kd::TrainOptions bf16 = graphs;
  bf16.bf16 = true;
  auto e = train_group(eager, &v_eager, false, gpu);
  auto g = train_group(graphs, &v_graphs, false, gpu);
  auto f = train_group(fused, &v_fused, false, gpu);
  auto h = train_group(bf16, &v_bf16, false, gpu);
  // Tolerances: graphs replay the same kernels (cuDNN may pick other algorithms in a capture: 1e-4);
  // fusion reassociates sums in grouped convolutions (1e-4 after 12 steps); bf16 has 8 bits of mantissa
  // (a few percent of the weights' scale).
  for (const auto& [name, d] : drift(e, g)) EXPECT_LT(d, 1e-4) << name << ": graphs vs eager";
  for (const auto& [name, d] : drift(g, f)) EXPECT_LT(d, 1e-4) << name << ": fused vs unfused";
  for (const auto& [name, d] : drift(g, h)) {
    EXPECT_LT(d, 0.2) << name << ": bf16 vs fp32";
    EXPECT_GT(d, 1e-5) << name << ": bf16 had no effect";
  }
  for (const auto& [name, v] : v_eager) EXPECT_NEAR(v_graphs.at(name), v, 2.0) << name;
}

// The GPU path's options, on the CPU: channels-last memory gives the same training (up to rounding), and
// bf16 autocast follows the fp32 training closely while really computing in bf16 (the weights differ a little).
TEST(GpuPathOnCpu, ChannelsLastAndBf16Autocast) {
  torch::set_num_threads(1);
  std::map<std::string, double> val_plain, val_cl, val_bf16;
  auto plain = train_group(kd::TrainOptions{}, &val_plain);
  kd::TrainOptions cl;
  cl.channels_last = true;
  auto nhwc = train_group(cl, &val_cl);
  kd::TrainOptions bf;
  bf.bf16 = true;
  auto bf16 = train_group(bf, &val_bf16);
  ASSERT_EQ(nhwc.size(), 4u);
  ASSERT_EQ(bf16.size(), 4u);
  for (const auto& [name, tensors] : plain) {
    double worst_cl = 0, worst_bf = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const double scale = 1.0 + tensors[i].abs().max().item<double>();
      worst_cl = std::max(worst_cl, (nhwc.at(name)[i] - tensors[i]).abs().max().item<double>() / scale);
      worst_bf = std::max(worst_bf, (bf16.at(name)[i] - tensors[i]).abs().max().item<double>() / scale);
    }
    EXPECT_LT(worst_cl, 1e-4) << name << ": channels-last training drifted";
    EXPECT_GT(worst_bf, 1e-4) << name << ": bf16 autocast had no effect";
    EXPECT_NEAR(val_bf16.at(name), val_plain.at(name), 10.0) << name << ": bf16 training went elsewhere";
    EXPECT_LT(worst_bf, 0.2) << name << ": bf16 training left the fp32 trajectory";
  }
}

// bf16 is part of a trained run's identity; fp32 ids are unchanged by the option's existence.
TEST(GpuPathOnCpu, PrecisionIsPartOfTheRunIds) {
  kd::json j = kd::json::parse(R"({"name": "p", "dataset": {"name": "synthetic"}, "student": "cnn_tiny", "seeds": [0],
    "teachers": {"t": {"model": "cnn_medium"}},
    "methods": [{"method": "logit_kd"}, {"method": "progressive", "params": {"assistants": ["cnn_medium"]}}]})");
  auto fp32 = kd::plan_sweep(kd::parse_sweep_config(j, "p.json"));
  j["precision"] = "fp32";
  auto fp32b = kd::plan_sweep(kd::parse_sweep_config(j, "p.json"));
  j["precision"] = "bf16";
  auto bf16 = kd::plan_sweep(kd::parse_sweep_config(j, "p.json"));
  ASSERT_EQ(fp32.runs.size(), bf16.runs.size());
  std::set<std::string> ids;
  for (size_t i = 0; i < fp32.runs.size(); ++i) {
    EXPECT_EQ(fp32.runs[i].id, fp32b.runs[i].id);
    EXPECT_NE(fp32.runs[i].id, bf16.runs[i].id) << fp32.runs[i].name;
    ids.insert(bf16.runs[i].id);
  }
  // Every teacher a bf16 run names is a bf16 run of the same plan (the chain was re-linked).
  for (const auto& r : bf16.runs)
    for (const auto& t : r.teacher_ids) EXPECT_TRUE(ids.count(t)) << r.name << " names a missing teacher " << t;
}

// The teacher-output cache: outputs computed once over the training split give the same training as a
// teacher forward on every batch (up to rounding), it is not used when the split is randomly augmented,
// and a teacher whose taps are over its budget falls back to the per-batch forward.
TEST(TeacherOutputCache, SameTrainingAsPerBatchTeacherAndOnlyWithoutAugmentation) {
  torch::set_num_threads(1);
  std::map<std::string, double> val_plain, val_cached, val_small;
  auto plain = train_group(kd::TrainOptions{}, &val_plain);
  kd::TeacherOutputCache cache;
  kd::TrainOptions with_cache;
  with_cache.teacher_cache = &cache;
  auto cached = train_group(with_cache, &val_cached);
  EXPECT_GT(cache.bytes(), 0) << "the cache was not used";
  // Filled on two lanes (each batch of the fill split between them), the cache holds the same outputs.
  kd::TeacherOutputCache cache_lanes;
  kd::TrainOptions with_lanes;
  with_lanes.teacher_cache = &cache_lanes;
  with_lanes.lanes = 2;
  std::map<std::string, double> val_lanes;
  auto cached_lanes = train_group(with_lanes, &val_lanes);
  EXPECT_EQ(cache_lanes.bytes(), cache.bytes());
  kd::TeacherOutputCache tiny(16 << 10);  // the logits would fit, with the attention run's feature maps they do not
  kd::TrainOptions with_tiny;
  with_tiny.teacher_cache = &tiny;
  auto small = train_group(with_tiny, &val_small);
  EXPECT_EQ(tiny.bytes(), 0) << "over the budget, nothing is cached";
  for (const auto& [name, tensors] : plain) {
    double worst = 0, worst_small = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const double scale = 1.0 + tensors[i].abs().max().item<double>();
      worst = std::max(worst, (cached.at(name)[i] - tensors[i]).abs().max().item<double>() / scale);
      worst = std::max(worst, (cached_lanes.at(name)[i] - tensors[i]).abs().max().item<double>() / scale);
      worst_small = std::max(worst_small, (small.at(name)[i] - tensors[i]).abs().max().item<double>() / scale);
    }
    EXPECT_LT(worst, 1e-5) << name << ": cached teacher outputs changed the training";
    EXPECT_LT(worst_small, 1e-5) << name << ": a refused cache changed the training";
  }
  // With random crops and flips a sample's input changes every time: the cache must stay unused.
  kd::TeacherOutputCache unused;
  kd::TrainOptions aug;
  aug.teacher_cache = &unused;
  std::map<std::string, double> val_aug;
  auto augmented = train_group(aug, &val_aug, /*augment=*/true);
  EXPECT_EQ(augmented.size(), 4u);
  EXPECT_EQ(unused.bytes(), 0) << "teacher outputs were cached although the batches are augmented";
}

}  // namespace
