#include "harness/step.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "base/errors.h"
#include "harness/autocast.h"
#include "harness/fused_sgd.h"
#include "harness/schedule.h"

namespace kd {

namespace {
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

const std::string& stage_name(const RunState& rs, int64_t epoch) {
  return rs.stages[rs.stage_of(epoch).first].spec.name;
}
}  // namespace

double step_learning_rate(const RunState& rs, const StepBatch& b) {
  auto [si, se] = rs.stage_of(b.epoch);
  return learning_rate(rs.stages[si].recipe, rs.stages[si].epochs,
                       static_cast<double>(se) + static_cast<double>(b.step) / static_cast<double>(b.steps_per_epoch),
                       b.steps_per_epoch);
}

std::optional<StepLoss> run_loss(RunState& rs, const TapMap& student_taps, const StepBatch& b) {
  auto [si, se] = rs.stage_of(b.epoch);
  static const TapMap kNone;  // a teacher the method asked nothing of in this stage
  std::vector<const TapMap*> teachers;
  for (const auto* t : rs.member->teachers) {
    auto it = b.teacher_out.find(t->run_id);
    teachers.push_back(it == b.teacher_out.end() ? &kNone : &it->second);
  }
  MethodInput in{student_taps, teachers, b.y, b.indices, static_cast<int>(si), b.epoch, se, b.step, b.steps_per_epoch};
  StepLoss loss;
  try {
    loss.terms = rs.method->compute(in);
  } catch (const MethodError& e) {  // the method's own code failed (a Python exception): this run fails, not the group
    rs.pending_failure = Failure{rs.stages[si].spec.name, "", e.what()};
    return std::nullopt;
  }
  for (const auto& term : loss.terms) {
    auto w = term.value.to(torch::kFloat) * term.weight;
    loss.total = loss.total.defined() ? loss.total + w : w;
  }
  const std::string& stage = rs.stages[si].spec.name;
  if (!loss.total.defined()) {
    rs.pending_failure = Failure{stage, "", "method returned no loss terms"};
    return std::nullopt;
  }
  loss.values.reserve(loss.terms.size());
  for (const auto& term : loss.terms) loss.values.push_back(term.value.item<double>());
  loss.total_value = loss.total.item<double>();
  std::vector<std::string> names;
  for (const auto& term : loss.terms) names.push_back(term.name);
  if (auto f = nonfinite_loss(stage, names, loss.values, loss.total_value)) {
    rs.pending_failure = *f;
    return std::nullopt;
  }
  return loss;
}

std::optional<Failure> nonfinite_loss(const std::string& stage, const std::vector<std::string>& names,
                                      const std::vector<double>& values, double total) {
  if (std::isfinite(total)) return std::nullopt;
  std::string bad = "total";
  for (size_t k = 0; k < names.size() && k < values.size(); ++k)
    if (!std::isfinite(values[k])) {
      bad = names[k];
      break;
    }
  return Failure{stage, bad, std::string("loss is ") + (std::isnan(total) ? "NaN" : "inf")};
}

namespace {
// KDBENCH_TRACE_STEPS=FILE: every step of every run appended to FILE as one JSON line (run id, epoch, step, each
// term's unweighted value, the weighted total), with 17 significant digits. For comparing two implementations of a
// method step by step (tests/test_pybridge_twins.cpp, scripts/twin-check); off (and free) when unset.
class StepTrace {
 public:
  static StepTrace& instance() {
    static StepTrace t;
    return t;
  }
  bool on() const { return file_ != nullptr; }
  void write(const std::string& run, int64_t epoch, int64_t step, const std::vector<std::string>& names,
             const std::vector<double>& values, double total) {
    std::string line = fmt::format(R"({{"run":"{}","epoch":{},"step":{},"terms":{{)", run, epoch, step);
    for (size_t k = 0; k < names.size(); ++k)
      line += fmt::format(R"({}"{}":{:.17g})", k ? "," : "", names[k], values[k]);
    line += fmt::format(R"(}},"total":{:.17g}}})", total) + "\n";
    std::lock_guard<std::mutex> lock(mu_);
    std::fputs(line.c_str(), file_);
    std::fflush(file_);
  }

 private:
  StepTrace() {
    if (const char* p = std::getenv("KDBENCH_TRACE_STEPS"); p && *p) file_ = std::fopen(p, "a");
  }
  std::FILE* file_ = nullptr;
  std::mutex mu_;
};
}  // namespace

void account_values(RunState& rs, const std::vector<std::string>& names, const std::vector<double>& values,
                    double total, int64_t correct, int64_t seen, double seconds) {
  if (StepTrace::instance().on()) StepTrace::instance().write(rs.spec->id, rs.acc.epoch, rs.acc.steps, names, values, total);
  for (size_t k = 0; k < names.size(); ++k) rs.acc.term_sums[names[k]] += values[k];
  rs.acc.total_sum += total;
  rs.acc.correct += correct;
  rs.acc.seen += seen;
  rs.acc.steps += 1;
  rs.seconds += seconds;
  rs.images += seen;
}

void account_step(RunState& rs, const StepLoss& loss, const torch::Tensor& logits, const torch::Tensor& y,
                  double seconds) {
  std::vector<std::string> names;
  for (const auto& term : loss.terms) names.push_back(term.name);
  account_values(rs, names, loss.values, loss.total_value, logits.argmax(1).eq(y).sum().item<int64_t>(), y.size(0),
                 seconds);
}

void broadcast_buffers(ReplicaSync& replicas, torch::nn::Module& module) {
  std::vector<torch::Tensor> buffers = module.buffers();
  if (!buffers.empty()) replicas.broadcast_from_first(buffers);
}

namespace {
std::vector<torch::Tensor> optimizer_parameters(torch::optim::Optimizer& optimizer) {
  std::vector<torch::Tensor> ps;
  for (auto& g : optimizer.param_groups())
    for (auto& p : g.params()) ps.push_back(p);
  return ps;
}
}  // namespace

void step_on_lane(RunState& rs, const StepBatch& b) {
  auto t0 = Clock::now();
  StageState& st = rs.stages[rs.stage_of(b.epoch).first];
  set_lr(*st.optimizer, step_learning_rate(rs, b));
  if (b.replicas) {
    broadcast_buffers(*b.replicas, *rs.student);
    if (rs.method_module) broadcast_buffers(*b.replicas, *rs.method_module);
  }
  std::optional<StepLoss> loss;
  TapMap staps;
  {
    AutocastScope autocast(b.bf16, b.device.type());  // backward and the update outside, as torch.autocast is used
    auto logits = rs.student->forward_taps(b.x, &staps);
    staps["logits"] = logits;
    loss = run_loss(rs, staps, b);
  }
  if (!loss && !b.replicas) return;
  st.optimizer->zero_grad();
  if (loss) loss->total.backward();
  // Data-parallel: every replica joins the gradient all-reduce, a replica whose loss failed too, so all fail.
  if (b.replicas &&
      !b.replicas->average_gradients(optimizer_parameters(*st.optimizer), b.y.size(0), loss.has_value())) {
    if (!rs.pending_failure)
      rs.pending_failure = Failure{st.spec.name, "", "loss is not finite on another data-parallel replica"};
    return;
  }
  if (rs.spec->recipe.grad_clip > 0) {
    double norm = torch::nn::utils::clip_grad_norm_(optimizer_parameters(*st.optimizer), rs.spec->recipe.grad_clip);
    if (!std::isfinite(norm)) {
      rs.pending_failure = Failure{st.spec.name, "gradient", "gradient norm is not finite"};
      return;
    }
  }
  st.optimizer->step();
  account_step(rs, *loss, staps.at("logits"), b.y, seconds_since(t0));
}

namespace {
// Per-student gradient clipping of a fused group: the norm of student k's slices of the fused gradients and
// of its method's own; a run whose norm is not finite fails (its learning rate is set to 0).
void clip_fused(FusedGroup& g, const std::vector<RunState*>& live, int64_t epoch, std::vector<double>& lr) {
  bool any_clip = false;
  for (auto* rs : live) any_clip |= rs->spec->recipe.grad_clip > 0;
  if (!any_clip) return;
  const auto K = static_cast<int64_t>(g.runs.size());
  torch::NoGradGuard ng;
  auto norm2 = torch::zeros({K}, torch::TensorOptions().dtype(torch::kDouble).device(g.params.front().device()));
  for (auto& p : g.params)
    if (p.grad().defined()) norm2 += p.grad().view({K, -1}).to(torch::kDouble).pow(2).sum(1);
  auto n2 = norm2.cpu();
  std::vector<double> coef(static_cast<size_t>(K), 1.0);
  for (auto* rs : live) {
    const auto uk = static_cast<size_t>(rs->fused_index);
    double n = n2[rs->fused_index].item<double>();
    for (auto& p : rs->method_parameters())
      if (p.grad().defined()) n += p.grad().to(torch::kDouble).pow(2).sum().item<double>();
    n = std::sqrt(n);
    const double clip = rs->spec->recipe.grad_clip;
    if (clip <= 0) continue;
    if (!std::isfinite(n)) {
      rs->pending_failure = Failure{stage_name(*rs, epoch), "gradient", "gradient norm is not finite"};
      lr[uk] = 0;
      continue;
    }
    coef[uk] = std::min(1.0, clip / (n + 1e-6));
    for (auto& p : rs->method_parameters())
      if (p.grad().defined()) p.grad().mul_(coef[uk]);
  }
  auto coef_t = torch::tensor(coef, torch::kDouble).to(g.params.front().options()).view({K, 1});
  for (auto& p : g.params)
    if (p.grad().defined()) p.grad().view({K, -1}).mul_(coef_t);
}
}  // namespace

void step_fused(FusedGroup& g, const StepBatch& b) {
  auto t0 = Clock::now();
  const auto K = static_cast<int64_t>(g.runs.size());
  std::vector<double> lr(static_cast<size_t>(K), 0.0), wd(static_cast<size_t>(K), 0.0);
  std::vector<std::optional<StepLoss>> losses(static_cast<size_t>(K));
  std::vector<torch::Tensor> logits(static_cast<size_t>(K));
  std::vector<RunState*> live;
  torch::Tensor sum;
  {
    AutocastScope autocast(b.bf16, b.device.type());
    TapMap ftaps;
    auto flogits = g.model->forward_taps(b.x, &ftaps);
    for (int64_t k = 0; k < K; ++k) {
      RunState& rs = *g.runs[static_cast<size_t>(k)];
      if (rs.done) continue;
      const auto uk = static_cast<size_t>(k);
      StageState& st = rs.stages[rs.stage_of(b.epoch).first];
      lr[uk] = step_learning_rate(rs, b);
      if (st.optimizer) set_lr(*st.optimizer, lr[uk]);
      TapMap staps;
      for (const auto& tap : rs.student_taps) staps[tap] = fused_part(ftaps.at(tap), k, K);
      logits[uk] = fused_part(flogits, k, K);
      staps["logits"] = logits[uk];
      losses[uk] = run_loss(rs, staps, b);
      if (!losses[uk]) {
        lr[uk] = 0;
        continue;
      }
      wd[uk] = rs.spec->recipe.weight_decay;
      sum = sum.defined() ? sum + losses[uk]->total : losses[uk]->total;
      live.push_back(&rs);
    }
  }
  if (!sum.defined()) return;
  for (auto& p : g.params) p.mutable_grad() = torch::Tensor();
  for (auto* rs : live) {
    auto& st = rs->stages[rs->stage_of(b.epoch).first];
    if (st.optimizer) st.optimizer->zero_grad();
  }
  sum.backward();
  clip_fused(g, live, b.epoch, lr);
  fused_sgd_step(g, lr, wd);
  const double dt = seconds_since(t0) / static_cast<double>(live.size());
  for (auto* rs : live) {
    if (rs->pending_failure) continue;
    auto& st = rs->stages[rs->stage_of(b.epoch).first];
    if (st.optimizer) st.optimizer->step();
    const auto uk = static_cast<size_t>(rs->fused_index);
    account_step(*rs, *losses[uk], logits[uk], b.y, dt);
  }
}

}  // namespace kd
