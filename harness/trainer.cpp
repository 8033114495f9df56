#include "harness/trainer.h"

#include <ATen/autocast_mode.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include "harness/errors.h"
#include "harness/log.h"
#include "methods/method.h"
#include "reports/stats.h"

namespace fs = std::filesystem;

namespace kd {

// ---------------------------------------------------------------------------------------------
// metrics

double expected_calibration_error(const torch::Tensor& probs, const torch::Tensor& labels, int bins) {
  auto [conf, pred] = probs.max(1);
  auto correct = pred.eq(labels).to(torch::kDouble);
  conf = conf.to(torch::kDouble);
  const int64_t n = labels.size(0);
  if (n == 0) return 0;
  auto bin = (conf * bins).floor().clamp(0, bins - 1).to(torch::kLong);
  auto count = torch::zeros({bins}, torch::kDouble).index_add_(0, bin, torch::ones_like(conf));
  auto conf_sum = torch::zeros({bins}, torch::kDouble).index_add_(0, bin, conf);
  auto acc_sum = torch::zeros({bins}, torch::kDouble).index_add_(0, bin, correct);
  // sum_b |acc_b - conf_b| * n_b / n  ==  sum_b |acc_sum_b - conf_sum_b| / n
  return (acc_sum - conf_sum).abs().sum().item<double>() / static_cast<double>(n);
}

EvalMetrics metrics_from_logits(const torch::Tensor& logits_in, const torch::Tensor& labels_in,
                                const torch::Tensor& teacher_logits) {
  EvalMetrics m;
  auto logits = logits_in.to(torch::kCPU, torch::kFloat);
  auto labels = labels_in.to(torch::kCPU, torch::kLong);
  const int64_t n = labels.size(0);
  if (n == 0) return m;
  auto pred = logits.argmax(1);
  m.top1 = pred.eq(labels).sum().item<double>() / n * 100.0;
  int64_t k = std::min<int64_t>(5, logits.size(1));
  auto topk = std::get<1>(logits.topk(k, 1));
  m.top5 = topk.eq(labels.unsqueeze(1)).any(1).sum().item<double>() / n * 100.0;
  auto logp = torch::log_softmax(logits.to(torch::kDouble), 1);
  m.nll = torch::nll_loss(logp, labels).item<double>();
  m.ece = expected_calibration_error(logp.exp(), labels) * 100.0;
  if (teacher_logits.defined())
    m.agreement = pred.eq(teacher_logits.to(torch::kCPU).argmax(1)).sum().item<double>() / n * 100.0;
  return m;
}

void record_finals(std::map<std::string, double>& finals, const std::string& which, const EvalMetrics& val,
                   const EvalMetrics& test) {
  for (const auto& [split, m] : {std::pair<const char*, const EvalMetrics&>{"val", val}, {"test", test}}) {
    const std::string p = which + "." + split + ".";
    finals[p + "top1"] = m.top1;
    finals[p + "top5"] = m.top5;
    finals[p + "nll"] = m.nll;
    finals[p + "ece"] = m.ece;
    if (m.agreement >= 0) finals[p + "agreement"] = m.agreement;
  }
}

namespace {
// A loader over a split in index order, not augmented (evaluation, teacher outputs).
LoaderOptions in_order(const DataSplits& data, int64_t batch_size, int workers) {
  LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.shuffle = false;
  lo.augment = false;
  lo.norm = data.norm;
  lo.image_size = data.image_size;
  lo.workers = workers;
  return lo;
}
}  // namespace

torch::Tensor predict(TapModel& model, const DatasetPtr& split, const DataSplits& data, int64_t batch_size,
                      torch::Device device, int workers) {
  Loader loader(split, in_order(data, batch_size, workers));
  loader.start_epoch(0);
  torch::NoGradGuard ng;
  bool was_training = model.is_training();
  model.eval();
  std::vector<torch::Tensor> out;
  Batch b;
  while (loader.next(b)) out.push_back(model.forward(b.x.to(device)).to(torch::kCPU, torch::kFloat));
  model.train(was_training);
  if (out.empty()) return torch::zeros({0, data.num_classes});
  return torch::cat(out, 0);
}

namespace {

// Runs fn on every item, the items split into `lanes` contiguous shares, one thread per share
// (the first on the calling thread). Exceptions are re-thrown after all lanes joined.
template <typename T, typename Fn>
void for_each_lane(std::vector<T*>& items, int lanes, Fn fn) {
  lanes = std::max(1, std::min<int>(lanes, static_cast<int>(items.size())));
  if (lanes == 1) {
    for (auto* it : items) fn(*it);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<size_t>(lanes));
  auto run_share = [&](int lane) {
    try {
      size_t n = items.size();
      size_t lo = n * static_cast<size_t>(lane) / static_cast<size_t>(lanes);
      size_t hi = n * static_cast<size_t>(lane + 1) / static_cast<size_t>(lanes);
      for (size_t i = lo; i < hi; ++i) fn(*items[i]);
    } catch (...) {
      errors[static_cast<size_t>(lane)] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (int l = 1; l < lanes; ++l) threads.emplace_back(run_share, l);
  run_share(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// `model`'s forward pass (no grad) over `x` in `chunks` pieces spread over `lanes` threads; returns `taps`
// ("logits" included when named) for the whole of x. `around`, when given, wraps each piece's forward on its
// thread (autocast is per thread).
TapMap forward_on_lanes(TapModel& model, const torch::Tensor& x, int64_t chunks, int lanes,
                        const std::set<std::string>& taps,
                        const std::function<void(const std::function<void()>&)>& around) {
  std::vector<torch::Tensor> xs = x.chunk(std::max<int64_t>(1, std::min<int64_t>(chunks, x.size(0))), 0);
  std::vector<TapMap> outs(xs.size());
  std::vector<size_t> order(xs.size());
  std::iota(order.begin(), order.end(), 0);
  std::vector<size_t*> items;
  for (auto& o : order) items.push_back(&o);
  for_each_lane(items, lanes, [&](size_t& c) {
    auto piece = [&] {
      torch::NoGradGuard ng;  // per thread
      TapMap all;
      auto logits = model.forward_taps(xs[c], &all);
      all["logits"] = logits;
      for (const auto& tap : taps) outs[c][tap] = all.at(tap);
    };
    if (around)
      around(piece);
    else
      piece();
  });
  TapMap out;
  for (const auto& tap : taps) {
    std::vector<torch::Tensor> parts;
    for (auto& o : outs) parts.push_back(o.at(tap));
    out[tap] = parts.size() == 1 ? parts.front() : torch::cat(parts, 0);
  }
  return out;
}

}  // namespace

double inference_latency_ms(TapModel& model, const DataSplits& data, torch::Device device, int reps) {
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  auto x = torch::zeros({1, data.channels, data.image_size, data.image_size}, torch::TensorOptions().device(device));
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int i = 0; i < 3; ++i) model.forward(x);
  sync();
  std::vector<double> ms;
  for (int i = 0; i < std::max(1, reps); ++i) {
    auto t0 = std::chrono::steady_clock::now();
    model.forward(x);
    sync();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  model.train(was_training);
  return stats::median(std::move(ms));
}

// ---------------------------------------------------------------------------------------------
// teacher-output cache

bool TeacherOutputCache::lookup(const TeacherHandle& teacher, const std::set<std::string>& taps,
                                const torch::Tensor& indices, const DataSplits& data, torch::Device device, TapMap* out,
                                int lanes) {
  auto& have = full_[teacher.run_id];
  std::set<std::string> missing;
  for (const auto& tap : taps) {
    if (refused_.count({teacher.run_id, tap})) return false;
    if (!have.count(tap)) missing.insert(tap);
  }
  if (!missing.empty()) {
    Loader loader(data.train, in_order(data, kFillBatch, 1));
    loader.start_epoch(0);
    torch::NoGradGuard ng;
    const bool was_training = teacher.model->is_training();
    teacher.model->eval();
    std::map<std::string, std::vector<torch::Tensor>> parts;
    Batch b;
    bool first = true;
    while (loader.next(b)) {
      // The batch in one chunk per lane (each lane's torch runs one thread while a group trains).
      TapMap all = forward_on_lanes(*teacher.model, b.x.to(device), std::max(1, lanes), lanes, missing, nullptr);
      if (first) {
        // Refuse, before computing the rest, the taps whose whole-split size would break the budget.
        int64_t need = 0;
        for (const auto& tap : missing) need += all.at(tap).numel() / b.x.size(0) * data.train->size() * 4;
        if (used_ + need > budget_) {
          for (const auto& tap : missing) refused_.insert({teacher.run_id, tap});
          teacher.model->train(was_training);
          return false;
        }
        used_ += need;
        first = false;
      }
      for (const auto& tap : missing) parts[tap].push_back(all.at(tap).to(torch::kFloat).clone());
    }
    teacher.model->train(was_training);
    for (auto& [tap, v] : parts) have[tap] = torch::cat(v, 0);
  }
  auto idx = indices.to(device);
  for (const auto& tap : taps) (*out)[tap] = have.at(tap).index_select(0, idx);
  return true;
}

// ---------------------------------------------------------------------------------------------
// schedule

double learning_rate(const Recipe& r, int64_t epochs, double t, int64_t steps_per_epoch) {
  const double base = r.lr;
  if (r.warmup_epochs > 0 && t < r.warmup_epochs) {
    // Linear warm-up reaching `base` at the end of warm-up; the first step already moves.
    double step = std::floor(t * steps_per_epoch) + 1;
    return base * std::min(1.0, step / (r.warmup_epochs * steps_per_epoch));
  }
  const auto epoch = static_cast<int64_t>(std::floor(t));
  if (r.schedule == "constant") return base;
  if (r.schedule == "step") return base * std::pow(r.gamma, static_cast<double>(epoch / r.step_size));
  if (r.schedule == "multistep") {
    int passed = 0;
    for (auto m : r.milestones) passed += epoch >= m;
    return base * std::pow(r.gamma, passed);
  }
  // cosine over the epochs after warm-up
  double span = std::max(1e-9, static_cast<double>(epochs) - r.warmup_epochs);
  double x = std::clamp((t - r.warmup_epochs) / span, 0.0, 1.0);
  return r.min_lr + (base - r.min_lr) * 0.5 * (1.0 + std::cos(M_PI * x));
}

// ---------------------------------------------------------------------------------------------
// helpers

ModelPtr create_seeded_model(const std::string& name, const DataSplits& data, int64_t seed) {
  // Seed from (model name, seed) so that every run with this student and seed starts identically,
  // whatever ran before it in this process.
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  h ^= static_cast<uint64_t>(seed) * 0x9E3779B97F4A7C15ULL;
  torch::manual_seed(h & 0x7fffffffffffULL);
  ModelSpec spec{name, data.num_classes, data.channels, data.image_size};
  return create_model(spec);
}

namespace {

using Clock = std::chrono::steady_clock;

struct StageState {
  StageSpec spec;
  int64_t epochs = 0;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
};

struct Failure {
  std::string stage, term, message;
};

struct RunState {
  const GroupMember* member = nullptr;
  const RunSpec* spec = nullptr;
  ModelPtr student;
  std::unique_ptr<Method> method;
  std::shared_ptr<torch::nn::Module> method_module;
  std::vector<StageState> stages;
  int64_t total_epochs = 0;
  std::vector<std::string> student_taps;
  std::vector<std::vector<std::string>> teacher_taps;  // per teacher of this run
  bool done = false, failed = false;
  RunOutcome outcome;
  // epoch accumulators
  std::map<std::string, double> term_sums;
  double total_sum = 0;
  int64_t correct = 0, seen = 0, steps = 0;
  // best-on-validation
  double best_val = -1;
  int64_t best_epoch = -1;
  std::vector<torch::Tensor> best_state;
  EvalMetrics best_val_metrics;
  double seconds = 0;                      // training time attributed to this run
  std::optional<Failure> pending_failure;  // set by a lane, handled after the lanes join
  torch::Tensor val_logits;
  EvalMetrics final_val;                           // the last epoch's validation metrics
  torch::Tensor test_logits, bestval_test_logits;  // at the end: final and best-on-validation weights
  int64_t images = 0;
  int fused_group = -1;     // index into the fused groups, or -1 (trained on a lane)
  int64_t fused_index = 0;  // which student of its fused group

  // stage index and epoch within it, for global epoch e
  std::pair<size_t, int64_t> stage_of(int64_t e) const {
    for (size_t i = 0; i < stages.size(); ++i) {
      if (e < stages[i].epochs) return {i, e};
      e -= stages[i].epochs;
    }
    return {stages.size() - 1, stages.back().epochs - 1};
  }
};

// Runs trained as ONE horizontally fused model; student k of the fused model is runs[k].
struct FusedGroup {
  std::vector<RunState*> runs;
  ModelPtr model;
  std::vector<torch::Tensor> params, momentum;  // the fused parameters and their momentum buffers
  double momentum_coef = 0;
  bool nesterov = false;
};

// SGD (PyTorch's semantics: weight decay added to the gradient, momentum buffer = the first gradient,
// then mu * buf + g, Nesterov g + mu * buf) on every student of a fused model at once, with each
// student's own learning rate and weight decay: every fused tensor is K blocks along dim 0.
void fused_sgd_step(FusedGroup& g, const std::vector<double>& lr, const std::vector<double>& wd) {
  torch::NoGradGuard ng;
  const auto K = static_cast<int64_t>(lr.size());
  if (g.params.empty()) return;
  auto opt = torch::TensorOptions().dtype(g.params.front().scalar_type()).device(g.params.front().device());
  auto lr_t = torch::tensor(lr, torch::kDouble).to(opt).view({K, 1});
  auto wd_t = torch::tensor(wd, torch::kDouble).to(opt).view({K, 1});
  const bool any_wd = std::any_of(wd.begin(), wd.end(), [](double v) { return v != 0; });
  for (size_t i = 0; i < g.params.size(); ++i) {
    auto& p = g.params[i];
    if (!p.grad().defined()) continue;
    auto pv = p.view({K, -1});
    auto d = p.grad().view({K, -1});
    if (any_wd) d = d + wd_t * pv;
    if (g.momentum_coef != 0) {
      auto& buf = g.momentum[i];
      if (!buf.defined()) {
        buf = d.clone();
      } else {
        buf.mul_(g.momentum_coef).add_(d);
      }
      d = g.nesterov ? d.add(buf, g.momentum_coef) : buf;
    }
    pv.sub_(lr_t * d);
  }
}

// Forward passes and losses under bf16 autocast on `device` while it lives (autocast state is per thread:
// each lane opens its own), like `with torch.autocast(device, dtype=torch.bfloat16)`.
class AutocastScope {
 public:
  AutocastScope(bool on, c10::DeviceType device) : on_(on), device_(device) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(device_);
    prev_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, prev_enabled_);
    at::autocast::set_autocast_dtype(device_, prev_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_;
  c10::DeviceType device_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

// 4-D parameters (convolution weights) in channels-last memory format.
void to_channels_last(torch::nn::Module& m) {
  torch::NoGradGuard ng;
  for (auto& p : m.parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
}

std::vector<torch::Tensor> state_tensors(torch::nn::Module& m) {
  std::vector<torch::Tensor> v;
  for (auto& p : m.parameters()) v.push_back(p);
  for (auto& b : m.buffers()) v.push_back(b);
  return v;
}

std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> v;
  for (auto& t : state_tensors(m)) v.push_back(t.detach().clone());
  return v;
}

void restore(torch::nn::Module& m, const std::vector<torch::Tensor>& saved) {
  torch::NoGradGuard ng;
  auto cur = state_tensors(m);
  for (size_t i = 0; i < cur.size(); ++i) cur[i].copy_(saved[i]);
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Recipe& r, std::vector<torch::Tensor> params) {
  if (r.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(r.lr).betas({r.beta1, r.beta2}).weight_decay(r.weight_decay));
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(r.lr).momentum(r.momentum).nesterov(r.nesterov).weight_decay(r.weight_decay));
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& g : opt.param_groups()) g.options().set_lr(lr);
}

std::vector<torch::Tensor> method_parameters(const RunState& rs) {
  if (!rs.method_module) return {};
  return rs.method_module->parameters();
}

TapShapes shapes_of(const TapMap& taps) {
  TapShapes s;
  for (const auto& [k, v] : taps) s[k] = v.sizes().vec();
  return s;
}

// Student parameters upstream of `tap` (found by autograd on a probe batch).
std::vector<torch::Tensor> parameters_upstream_of(TapModel& model, const std::string& tap, const torch::Tensor& x) {
  TapMap taps;
  model.forward_taps(x, &taps);
  auto it = taps.find(tap);
  if (it == taps.end())
    throw ConfigError("", "stage trains up to tap '" + tap + "', which model '" + model.arch() + "' does not have");
  auto params = model.parameters();
  std::vector<torch::Tensor> inputs;
  for (auto& p : params)
    if (p.requires_grad()) inputs.push_back(p);
  auto grads = torch::autograd::grad({it->second.sum()}, inputs, {}, false, false, /*allow_unused=*/true);
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (grads[i].defined()) out.push_back(inputs[i]);
  return out;
}

std::string error_record(int64_t epoch, int64_t step, const std::string& stage, const std::string& term,
                         const std::string& message) {
  return json{{"epoch", epoch}, {"step", step}, {"stage", stage}, {"term", term}, {"message", message}}.dump();
}

}  // namespace

void train_lockstep(const std::vector<GroupMember>& members, const DataSplits& data, const TrainOptions& opts) {
  if (members.empty()) return;
  const RunSpec& first = *members.front().spec;
  const int64_t seed = first.seed;
  const int64_t batch_size = first.recipe.batch_size;
  const torch::Device device = opts.device;
  const int lanes = std::max(1, std::min<int>(opts.lanes, static_cast<int>(members.size())));

  LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.shuffle = true;
  lo.drop_last = false;
  lo.seed = static_cast<uint64_t>(seed);
  lo.augment = true;
  lo.augment_options = parse_augment(data.augment, "dataset.augment");
  lo.norm = data.norm;
  lo.image_size = data.image_size;
  lo.workers = opts.workers;
  lo.prefetch = 4;
  lo.pin_memory = opts.pin_memory && device.is_cuda();
  Loader loader(data.train, lo);
  const int64_t steps_per_epoch = loader.batches_per_epoch();

  // A probe batch for tap shapes and upstream-parameter discovery.
  loader.start_epoch(0);
  Batch probe;
  if (!loader.next(probe)) throw DataError(data.source, "the training split is empty");
  torch::Tensor probe_x = probe.x.narrow(0, 0, std::min<int64_t>(2, probe.x.size(0))).to(device);

  // Teachers: one model per distinct teacher run, in eval mode.
  std::map<std::string, const TeacherHandle*> teachers;
  for (const auto& m : members)
    for (const auto* t : m.teachers) teachers[t->run_id] = t;
  std::map<std::string, TapShapes> teacher_shapes;
  {
    torch::NoGradGuard ng;
    for (auto& [id, t] : teachers) {
      t->model->eval();
      if (opts.channels_last) to_channels_last(*t->model);
      TapMap taps;
      t->model->forward_taps(probe_x, &taps);
      teacher_shapes[id] = shapes_of(taps);
    }
  }

  std::vector<RunState> runs(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    RunState& rs = runs[i];
    rs.member = &members[i];
    rs.spec = members[i].spec;
    if (rs.spec->seed != seed || rs.spec->recipe.batch_size != batch_size)
      throw std::logic_error("lockstep group mixes seeds or batch sizes");
    rs.student = create_seeded_model(rs.spec->model, data, rs.spec->seed);
    rs.student->to(device);
    if (opts.channels_last) to_channels_last(*rs.student);
    const auto& reg = MethodRegistry::instance();
    rs.method = reg.create(rs.spec->method, MethodParams(rs.spec->params));
    rs.student_taps = rs.method->student_taps();
    TapShapes sshapes;
    {
      TapMap taps;
      torch::NoGradGuard ng;
      rs.student->eval();
      rs.student->forward_taps(probe_x, &taps);
      rs.student->train();
      sshapes = shapes_of(taps);
    }
    std::vector<TapShapes> tshapes;
    for (size_t t = 0; t < members[i].teachers.size(); ++t) {
      tshapes.push_back(teacher_shapes.at(members[i].teachers[t]->run_id));
      rs.teacher_taps.push_back(rs.method->teacher_taps(static_cast<int>(t)));
      for (const auto& tap : rs.teacher_taps.back())
        if (!tshapes.back().count(tap))
          throw ConfigError(rs.spec->name, "method '" + rs.spec->method + "' needs tap '" + tap + "' from teacher " +
                                               std::to_string(t) + ", which it does not have");
    }
    for (const auto& tap : rs.student_taps)
      if (!sshapes.count(tap))
        throw ConfigError(rs.spec->name, "method '" + rs.spec->method + "' needs tap '" + tap + "' from student '" +
                                             rs.spec->model + "', which it does not have");
    // Method-owned modules are seeded from the run's seed too.
    torch::manual_seed(static_cast<uint64_t>(rs.spec->seed) * 7919 + 17);
    rs.method->prepare(sshapes, tshapes, device);
    rs.method_module = rs.method->module();
    if (rs.method_module) rs.method_module->to(device);
    if (rs.method_module && opts.channels_last) to_channels_last(*rs.method_module);
    for (const auto& st : rs.method->stages()) {
      StageState s;
      s.spec = st;
      s.epochs = st.epochs > 0 ? st.epochs : rs.spec->recipe.epochs;
      rs.total_epochs += s.epochs;
      rs.stages.push_back(std::move(s));
    }
    rs.outcome.params = count_parameters(*rs.student);
    rs.outcome.macs = count_macs(*rs.student, data.channels, data.image_size);
    rs.outcome.method_params = rs.method_module ? count_parameters(*rs.method_module) : 0;
  }

  int64_t max_epochs = 0;
  for (auto& rs : runs) max_epochs = std::max(max_epochs, rs.total_epochs);

  // Horizontal fusion: eligible runs of one architecture (and momentum, Nesterov, length) become one
  // fused model built from their own initial weights.
  std::vector<FusedGroup> fused;
  if (opts.fuse) {
    std::map<std::tuple<std::string, double, bool, int64_t>, std::vector<RunState*>> by;
    for (auto& rs : runs) {
      const Recipe& r = rs.spec->recipe;
      if (rs.stages.size() != 1 || !rs.stages[0].spec.train_until_tap.empty() || r.optimizer != "sgd" ||
          !supports_fusion(rs.spec->model))
        continue;
      by[{rs.spec->model, r.momentum, r.nesterov, rs.total_epochs}].push_back(&rs);
    }
    for (auto& [key, members] : by) {
      if (members.size() < 2) continue;
      FusedGroup g;
      g.runs = members;
      std::vector<ModelPtr> students;
      for (auto* rs : members) students.push_back(rs->student);
      g.model = fuse_models(students, ModelSpec{std::get<0>(key), data.num_classes, data.channels, data.image_size});
      g.model->to(device);
      if (opts.channels_last) to_channels_last(*g.model);
      g.model->train();
      g.params = g.model->parameters();
      g.momentum.resize(g.params.size());
      g.momentum_coef = std::get<1>(key);
      g.nesterov = std::get<2>(key);
      for (size_t k = 0; k < members.size(); ++k) {
        members[k]->fused_group = static_cast<int>(fused.size());
        members[k]->fused_index = static_cast<int64_t>(k);
      }
      log::info("training {} runs of {} as one horizontally fused model", members.size(), std::get<0>(key));
      fused.push_back(std::move(g));
    }
  }

  auto fail = [&](RunState& rs, int64_t epoch, int64_t step, const std::string& stage, const std::string& term,
                  const std::string& message) {
    rs.failed = true;
    rs.done = true;
    rs.outcome.ok = false;
    rs.outcome.error_json = error_record(epoch, step, stage, term, message);
    log::warn("run {} ({} {}) failed at epoch {}, step {}, term '{}': {}", rs.spec->id.substr(0, 8), rs.spec->name,
              rs.spec->setting.dump(), epoch, step, term, message);
    if (opts.progress)
      opts.progress->advance(static_cast<double>(rs.total_epochs - epoch) * static_cast<double>(data.train->size()) *
                                 training_cost_per_image(rs.outcome.macs),
                             0);
    if (opts.on_done) opts.on_done(*rs.member, rs.outcome);
    rs.student.reset();
    rs.best_state.clear();
  };

  std::vector<std::string> teacher_ids;
  for (auto& [id, t] : teachers) teacher_ids.push_back(id);

  // One training step of one run on the shared batch (runs on a lane thread).
  auto step_run = [&](RunState& rs, int64_t epoch, int64_t step, const torch::Tensor& x, const torch::Tensor& y,
                      const std::map<std::string, TapMap>& teacher_out) {
    auto t0 = Clock::now();
    auto [si, se] = rs.stage_of(epoch);
    StageState& st = rs.stages[si];
    set_lr(*st.optimizer,
           learning_rate(rs.spec->recipe, st.epochs,
                         static_cast<double>(se) + static_cast<double>(step) / steps_per_epoch, steps_per_epoch));
    std::optional<AutocastScope> autocast;
    autocast.emplace(opts.bf16, device.type());
    TapMap staps;
    auto logits = rs.student->forward_taps(x, &staps);
    staps["logits"] = logits;
    std::vector<const TapMap*> tptrs;
    for (const auto* t : rs.member->teachers) {
      auto it = teacher_out.find(t->run_id);
      tptrs.push_back(it == teacher_out.end() ? nullptr : &it->second);
    }
    static const TapMap kEmpty;
    for (auto& p : tptrs)
      if (!p) p = &kEmpty;
    MethodInput in{staps, tptrs, y, static_cast<int>(si)};
    LossTerms terms = rs.method->compute(in);
    torch::Tensor total;
    for (const auto& term : terms) {
      auto w = term.value.to(torch::kFloat) * term.weight;
      total = total.defined() ? total + w : w;
    }
    autocast.reset();  // backward and the update outside autocast, as torch.autocast is used
    if (!total.defined()) {
      rs.pending_failure = Failure{st.spec.name, "", "method returned no loss terms"};
      return;
    }
    std::vector<double> values;
    values.reserve(terms.size());
    for (const auto& term : terms) values.push_back(term.value.item<double>());
    const double total_v = total.item<double>();
    if (!std::isfinite(total_v)) {
      std::string bad = "total";
      for (size_t k = 0; k < terms.size(); ++k)
        if (!std::isfinite(values[k])) {
          bad = terms[k].name;
          break;
        }
      rs.pending_failure = Failure{st.spec.name, bad, "loss is " + std::string(std::isnan(total_v) ? "NaN" : "inf")};
      return;
    }
    st.optimizer->zero_grad();
    total.backward();
    if (rs.spec->recipe.grad_clip > 0) {
      std::vector<torch::Tensor> ps;
      for (auto& g : st.optimizer->param_groups())
        for (auto& p : g.params()) ps.push_back(p);
      double norm = torch::nn::utils::clip_grad_norm_(ps, rs.spec->recipe.grad_clip);
      if (!std::isfinite(norm)) {
        rs.pending_failure = Failure{st.spec.name, "gradient", "gradient norm is not finite"};
        return;
      }
    }
    st.optimizer->step();
    for (size_t k = 0; k < terms.size(); ++k) rs.term_sums[terms[k].name] += values[k];
    rs.total_sum += total_v;
    rs.correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    rs.seen += y.size(0);
    rs.steps += 1;
    rs.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    rs.images += y.size(0);
  };

  // One training step of every live student of a fused group: one forward of the fused model, each
  // run's method on its student's slices of the taps, one backward of the sum of the runs' losses
  // (a run's parameters get only its own loss's gradient), then each student's own SGD update.
  auto step_fused = [&](FusedGroup& g, int64_t epoch, int64_t step, const torch::Tensor& x, const torch::Tensor& y,
                        const std::map<std::string, TapMap>& teacher_out) {
    auto t0 = Clock::now();
    const auto K = static_cast<int64_t>(g.runs.size());
    std::optional<AutocastScope> autocast;
    autocast.emplace(opts.bf16, device.type());
    TapMap ftaps;
    auto flogits = g.model->forward_taps(x, &ftaps);
    std::vector<double> lr(static_cast<size_t>(K), 0.0), wd(static_cast<size_t>(K), 0.0);
    std::vector<LossTerms> terms(static_cast<size_t>(K));
    std::vector<std::vector<double>> values(static_cast<size_t>(K));
    std::vector<double> totals(static_cast<size_t>(K), 0.0);
    std::vector<torch::Tensor> logits(static_cast<size_t>(K));
    std::vector<RunState*> live;
    torch::Tensor sum;
    for (int64_t k = 0; k < K; ++k) {
      RunState& rs = *g.runs[static_cast<size_t>(k)];
      if (rs.done) continue;
      const auto uk = static_cast<size_t>(k);
      auto [si, se] = rs.stage_of(epoch);
      StageState& st = rs.stages[si];
      lr[uk] = learning_rate(rs.spec->recipe, st.epochs,
                             static_cast<double>(se) + static_cast<double>(step) / steps_per_epoch, steps_per_epoch);
      if (st.optimizer) set_lr(*st.optimizer, lr[uk]);
      TapMap staps;
      for (const auto& tap : rs.student_taps) staps[tap] = fused_part(ftaps.at(tap), k, K);
      logits[uk] = fused_part(flogits, k, K);
      staps["logits"] = logits[uk];
      std::vector<const TapMap*> tptrs;
      static const TapMap kEmpty;
      for (const auto* t : rs.member->teachers) {
        auto it = teacher_out.find(t->run_id);
        tptrs.push_back(it == teacher_out.end() ? &kEmpty : &it->second);
      }
      MethodInput in{staps, tptrs, y, static_cast<int>(si)};
      terms[uk] = rs.method->compute(in);
      torch::Tensor total;
      for (const auto& term : terms[uk]) {
        auto w = term.value.to(torch::kFloat) * term.weight;
        total = total.defined() ? total + w : w;
      }
      if (!total.defined()) {
        rs.pending_failure = Failure{st.spec.name, "", "method returned no loss terms"};
        lr[uk] = 0;
        continue;
      }
      for (const auto& term : terms[uk]) values[uk].push_back(term.value.item<double>());
      totals[uk] = total.item<double>();
      if (!std::isfinite(totals[uk])) {
        std::string bad = "total";
        for (size_t t = 0; t < terms[uk].size(); ++t)
          if (!std::isfinite(values[uk][t])) {
            bad = terms[uk][t].name;
            break;
          }
        rs.pending_failure =
            Failure{st.spec.name, bad, "loss is " + std::string(std::isnan(totals[uk]) ? "NaN" : "inf")};
        lr[uk] = 0;
        continue;
      }
      wd[uk] = rs.spec->recipe.weight_decay;
      sum = sum.defined() ? sum + total : total;
      live.push_back(&rs);
    }
    autocast.reset();
    if (!sum.defined()) return;
    for (auto& p : g.params) p.mutable_grad() = torch::Tensor();
    for (auto* rs : live) {
      auto& st = rs->stages[rs->stage_of(epoch).first];
      if (st.optimizer) st.optimizer->zero_grad();
    }
    sum.backward();
    // Gradient clipping, per student: the norm of its slices of the fused gradients and of its method's own.
    bool any_clip = false;
    for (auto* rs : live) any_clip |= rs->spec->recipe.grad_clip > 0;
    if (any_clip) {
      torch::NoGradGuard ng;
      auto norm2 = torch::zeros({K}, torch::TensorOptions().dtype(torch::kDouble).device(device));
      for (auto& p : g.params)
        if (p.grad().defined()) norm2 += p.grad().view({K, -1}).to(torch::kDouble).pow(2).sum(1);
      auto n2 = norm2.cpu();
      std::vector<double> coef(static_cast<size_t>(K), 1.0);
      for (auto* rs : live) {
        const auto uk = static_cast<size_t>(rs->fused_index);
        double n = n2[rs->fused_index].item<double>();
        for (auto& p : method_parameters(*rs))
          if (p.grad().defined()) n += p.grad().to(torch::kDouble).pow(2).sum().item<double>();
        n = std::sqrt(n);
        const double clip = rs->spec->recipe.grad_clip;
        if (clip <= 0) continue;
        if (!std::isfinite(n)) {
          rs->pending_failure =
              Failure{rs->stages[rs->stage_of(epoch).first].spec.name, "gradient", "gradient norm is not finite"};
          lr[uk] = 0;
          continue;
        }
        coef[uk] = std::min(1.0, clip / (n + 1e-6));
        for (auto& p : method_parameters(*rs))
          if (p.grad().defined()) p.grad().mul_(coef[uk]);
      }
      auto coef_t = torch::tensor(coef, torch::kDouble).to(g.params.front().options()).view({K, 1});
      for (auto& p : g.params)
        if (p.grad().defined()) p.grad().view({K, -1}).mul_(coef_t);
    }
    fused_sgd_step(g, lr, wd);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(live.size());
    for (auto* rs : live) {
      if (rs->pending_failure) continue;
      auto& st = rs->stages[rs->stage_of(epoch).first];
      if (st.optimizer) st.optimizer->step();
      const auto uk = static_cast<size_t>(rs->fused_index);
      for (size_t t = 0; t < terms[uk].size(); ++t) rs->term_sums[terms[uk][t].name] += values[uk][t];
      rs->total_sum += totals[uk];
      rs->correct += logits[uk].argmax(1).eq(y).sum().item<int64_t>();
      rs->seen += y.size(0);
      rs->steps += 1;
      rs->seconds += dt;
      rs->images += y.size(0);
    }
  };

  for (int64_t epoch = 0; epoch < max_epochs; ++epoch) {
    // Set up each active run's stage for this epoch.
    std::vector<RunState*> active;
    for (auto& rs : runs) {
      if (rs.done || epoch >= rs.total_epochs) continue;
      auto [si, se] = rs.stage_of(epoch);
      StageState& st = rs.stages[si];
      if (se == 0) {
        std::vector<torch::Tensor> params;
        if (rs.fused_group >= 0) {
          // the student's weights are in the fused model; this optimizer holds the method's own only
        } else if (st.spec.train_until_tap.empty()) {
          params = rs.student->parameters();
        } else {
          params = parameters_upstream_of(*rs.student, st.spec.train_until_tap, probe_x);
        }
        for (auto& p : method_parameters(rs)) params.push_back(p);
        st.optimizer = params.empty() ? nullptr : make_optimizer(rs.spec->recipe, params);
        if (si > 0) rs.stages[si - 1].optimizer.reset();
      }
      rs.term_sums.clear();
      rs.total_sum = 0;
      rs.correct = rs.seen = rs.steps = 0;
      rs.student->train();
      if (rs.method_module) rs.method_module->train();
      active.push_back(&rs);
    }
    if (active.empty()) break;
    std::vector<RunState*> laned;  // runs stepped one by one on the lanes (the rest are fused)
    for (auto* rs : active)
      if (rs->fused_group < 0) laned.push_back(rs);

    // Which teachers (and taps) this epoch needs.
    std::map<std::string, std::set<std::string>> needed;
    for (auto* rs : active) {
      auto [si, se] = rs->stage_of(epoch);
      (void)si;
      (void)se;
      for (size_t t = 0; t < rs->member->teachers.size(); ++t)
        for (const auto& tap : rs->teacher_taps[t]) needed[rs->member->teachers[t]->run_id].insert(tap);
    }

    loader.start_epoch(epoch);
    // Without random augmentation a sample is the same tensor whenever it is drawn: teacher outputs can come
    // from the whole-split cache.
    const bool cacheable = opts.teacher_cache && !lo.augment_options.random_crop &&
                           !lo.augment_options.horizontal_flip && !lo.augment_options.random_resized_crop;
    double teacher_seconds = 0;    // the shared teacher forward passes of this epoch
    double data_wait_seconds = 0;  // time the training thread waited for the loader
    auto epoch_start = Clock::now();
    Batch batch;
    int64_t step = 0;
    for (;;) {
      auto wait_start = Clock::now();
      if (!loader.next(batch)) break;
      data_wait_seconds += std::chrono::duration<double>(Clock::now() - wait_start).count();
      auto x = batch.x.to(device, /*non_blocking=*/true);
      auto y = batch.y.to(device, /*non_blocking=*/true);
      if (opts.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      // One teacher forward per batch, shared by every run of the group.
      std::map<std::string, TapMap> teacher_out;
      if (!needed.empty()) {
        auto teacher_start = Clock::now();
        for (auto& [id, taps] : needed) {
          const TeacherHandle& t = *teachers.at(id);
          TapMap keep;
          if (cacheable && opts.teacher_cache->lookup(t, taps, batch.indices, data, device, &keep, lanes)) {
            teacher_out[id] = std::move(keep);
            continue;
          }
          // The batch in a fixed number of chunks (independent of the group's size, so the numbers are too),
          // one forward each, spread over the lanes.
          keep = forward_on_lanes(*t.model, x, opts.teacher_chunks, lanes, taps, [&](const std::function<void()>& fn) {
            AutocastScope autocast(opts.bf16, device.type());  // per thread, as grad mode is
            fn();
          });
          teacher_out[id] = std::move(keep);
        }
        teacher_seconds += std::chrono::duration<double>(Clock::now() - teacher_start).count();
      }
      // Each lane (thread) steps its share of the runs; failures are handled here, after the join.
      for_each_lane(laned, lanes, [&](RunState& rs) {
        if (!rs.done) step_run(rs, epoch, step, x, y, teacher_out);
      });
      for (auto& g : fused) step_fused(g, epoch, step, x, y, teacher_out);
      for (auto* rsp : active)
        if (rsp->pending_failure) {
          auto f = *rsp->pending_failure;
          rsp->pending_failure.reset();
          fail(*rsp, epoch, step, f.stage, f.term, f.message);
        }
      if (opts.progress) {
        double work = 0;
        for (auto* rs : active) work += training_cost_per_image(rs->outcome.macs);
        opts.progress->advance(static_cast<double>(y.size(0)) * work,
                               static_cast<double>(y.size(0)) * static_cast<double>(active.size()));
      }
      ++step;
      crash_point("train_step");
    }

    const double group_train_seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    // Fused students go back into their own models for evaluation, best-epoch snapshots and checkpoints.
    for (auto& g : fused)
      for (auto* rs : g.runs)
        if (!rs->done) unfuse_into(*g.model, rs->fused_index, static_cast<int64_t>(g.runs.size()), *rs->student);
    // End of epoch: validation for each run (teacher val logits are cached once per teacher).
    auto eval_start = Clock::now();
    for_each_lane(active, lanes, [&](RunState& rs) {
      if (rs.done) return;
      if (rs.method_module) rs.method_module->eval();
      rs.val_logits = predict(*rs.student, data.val, data, rs.spec->recipe.eval_batch_size, device, 1);
    });
    const double eval_seconds = std::chrono::duration<double>(Clock::now() - eval_start).count();
    std::vector<RunState*> finishing;  // runs whose last epoch this was
    for (auto* rsp : active) {
      RunState& rs = *rsp;
      if (rs.done) continue;
      auto [si, se] = rs.stage_of(epoch);
      const std::string& stage = rs.stages[si].spec.name;
      if (rs.method_module) rs.method_module->eval();
      torch::Tensor tval = rs.member->teachers.empty() ? torch::Tensor() : rs.member->teachers[0]->val_logits;
      EvalMetrics v = metrics_from_logits(rs.val_logits, data.val->all_labels(), tval);
      rs.val_logits = torch::Tensor();
      auto& E = rs.outcome.epochs;
      auto put = [&](const std::string& name, double value) { E.push_back({stage, epoch, name, value}); };
      for (const auto& [name, sum] : rs.term_sums) put("loss." + name, sum / std::max<int64_t>(1, rs.steps));
      put("loss.total", rs.total_sum / std::max<int64_t>(1, rs.steps));
      put("train.top1", rs.seen ? 100.0 * rs.correct / rs.seen : 0);
      put("val.top1", v.top1);
      put("val.top5", v.top5);
      put("val.nll", v.nll);
      put("val.ece", v.ece);
      if (v.agreement >= 0) put("val.agreement", v.agreement);
      put("lr",
          learning_rate(rs.spec->recipe, rs.stages[si].epochs, static_cast<double>(se) + 1.0 - 1e-9, steps_per_epoch));
      put("seconds", rs.seconds);
      put("teacher_seconds", teacher_seconds);
      put("group_seconds", group_train_seconds);
      put("group_runs", static_cast<double>(active.size()));
      put("group_data_wait_seconds", data_wait_seconds);
      put("group_eval_seconds", eval_seconds);
      put("images_per_second", rs.seconds > 0 ? rs.images / rs.seconds : 0);
      if (opts.progress)
        opts.progress->note(fmt::format("{:<14} {:<28} seed {} epoch {}/{} [{}] loss {:.4f} train {:.2f}% val {:.2f}%",
                                        rs.spec->name, rs.spec->setting.dump(), rs.spec->seed, epoch + 1,
                                        rs.total_epochs, stage, rs.total_sum / std::max<int64_t>(1, rs.steps),
                                        rs.seen ? 100.0 * rs.correct / rs.seen : 0.0, v.top1));
      // Best epoch on VALIDATION (only in the final stage: earlier stages train a partial objective).
      if (si + 1 == rs.stages.size() && v.top1 > rs.best_val) {
        rs.best_val = v.top1;
        rs.best_epoch = epoch;
        rs.best_val_metrics = v;
        rs.best_state = snapshot(*rs.student);
      }
      if (epoch + 1 == rs.total_epochs) {
        rs.final_val = v;
        finishing.push_back(&rs);
      }
    }
    // Runs that finished: test with the final weights and with the best-on-validation weights (the same
    // logits when the best epoch is the last), the runs spread over the lanes.
    for_each_lane(finishing, lanes, [&](RunState& rs) {
      rs.test_logits = predict(*rs.student, data.test, data, rs.spec->recipe.eval_batch_size, device, 1);
      rs.bestval_test_logits = rs.test_logits;
      if (!rs.best_state.empty() && rs.best_epoch != epoch) {
        auto final_state = snapshot(*rs.student);
        restore(*rs.student, rs.best_state);
        rs.bestval_test_logits = predict(*rs.student, data.test, data, rs.spec->recipe.eval_batch_size, device, 1);
        restore(*rs.student, final_state);
      }
    });
    for (auto* rsp : finishing) {
      RunState& rs = *rsp;
      torch::Tensor ttest = rs.member->teachers.empty() ? torch::Tensor() : rs.member->teachers[0]->test_logits;
      record_finals(rs.outcome.finals, "final", rs.final_val,
                    metrics_from_logits(rs.test_logits, data.test->all_labels(), ttest));
      if (!rs.best_state.empty()) {
        record_finals(rs.outcome.finals, "bestval", rs.best_val_metrics,
                      metrics_from_logits(rs.bestval_test_logits, data.test->all_labels(), ttest));
        rs.outcome.finals["bestval.epoch"] = static_cast<double>(rs.best_epoch);
      }
      rs.test_logits = rs.bestval_test_logits = torch::Tensor();
      rs.outcome.wall_seconds = rs.seconds;
      rs.outcome.images_per_second = rs.seconds > 0 ? rs.images / rs.seconds : 0;
      rs.outcome.ok = true;
      rs.outcome.model = rs.student;
      if (!rs.member->checkpoint_path.empty()) {
        auto student = rs.student;
        auto module = rs.method_module;
        write_atomically(
            rs.member->checkpoint_path, [&](const std::string& tmp) { save_model(*student, tmp); }, "checkpoint");
        if (module)
          write_atomically(
              rs.member->checkpoint_path + ".method", [&](const std::string& tmp) { torch::save(module, tmp); },
              "checkpoint");
        rs.outcome.checkpoint = rs.member->checkpoint_path;
      }
      rs.done = true;
      rs.student->eval();
      if (opts.on_done) opts.on_done(*rs.member, rs.outcome);
      rs.student.reset();
      rs.best_state.clear();
      rs.method.reset();
    }
    if (opts.on_epoch) opts.on_epoch();
  }
}

}  // namespace kd
