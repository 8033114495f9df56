#include "harness/step.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "base/errors.h"
#include "harness/autocast.h"
#include "harness/schedule.h"

namespace kd {

namespace {
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

double step_learning_rate(const RunState& rs, const StepBatch& b) {
  auto [si, se] = rs.stage_of(b.epoch);
  return learning_rate(rs.stages[si].recipe, rs.stages[si].epochs,
                       static_cast<double>(se) + static_cast<double>(b.step) / static_cast<double>(b.steps_per_epoch),
                       b.steps_per_epoch);
}

std::optional<RunLoss> method_loss(RunState& rs, const TapMap& student_taps, const StepBatch& b) {
  auto [si, se] = rs.stage_of(b.epoch);
  static const TapMap kNone;  // a teacher the method asked nothing of in this stage
  std::vector<const TapMap*> teachers;
  for (const auto* t : rs.member->teachers) {
    auto it = b.teacher_out.find(t->run_id);
    teachers.push_back(it == b.teacher_out.end() ? &kNone : &it->second);
  }
  MethodInput in{student_taps, teachers, b.y, b.indices, static_cast<int>(si), b.epoch, se, b.step, b.steps_per_epoch};
  LossTerms terms;
  try {
    terms = rs.method->compute(in);
  } catch (const MethodError& e) {  // the method's own code failed (a Python exception): this run fails, not the group
    rs.pending_failure = Failure{rs.stages[si].spec.name, "", e.what()};
    return std::nullopt;
  }
  if (terms.empty()) {
    rs.pending_failure = Failure{rs.stages[si].spec.name, "", "method returned no loss terms"};
    return std::nullopt;
  }
  RunLoss loss;
  std::vector<torch::Tensor> values;
  for (const auto& term : terms) {
    auto w = term.value.to(torch::kFloat) * term.weight;
    loss.total = loss.total.defined() ? loss.total + w : w;
    loss.names.push_back(term.name);
    values.push_back(term.value.detach().to(torch::kDouble).reshape({}));
  }
  values.push_back(loss.total.detach().to(torch::kDouble).reshape({}));
  loss.packed = torch::stack(values);
  return loss;
}

bool read_loss(RunState& rs, const RunLoss& loss, const StepBatch& b, std::vector<double>& values, double& total) {
  const torch::Tensor host = loss.packed.to(torch::kCPU).contiguous();
  const double* v = host.data_ptr<double>();
  values.assign(v, v + loss.names.size());
  total = v[loss.names.size()];
  if (auto f = nonfinite_loss(rs.stages[rs.stage_of(b.epoch).first].spec.name, loss.names, values, total)) {
    rs.pending_failure = *f;
    return false;
  }
  return true;
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

void broadcast_buffers(ReplicaSync& replicas, torch::nn::Module& module) {
  std::vector<torch::Tensor> buffers = module.buffers();
  if (!buffers.empty()) replicas.broadcast_from_first(buffers);
}

namespace {

const std::string& stage_name(const RunState& rs, int64_t epoch) {
  return rs.stages[rs.stage_of(epoch).first].spec.name;
}

const torch::Tensor& static_lr(const RunState& rs) {
  if (!rs.static_step.lr.defined()) throw std::logic_error("run " + rs.spec->id + " has no static step set up");
  return rs.static_step.lr;
}

// [values..., total, norm, correct] of a run's step (the static step's output, read after the step).
torch::Tensor pack_out(const RunLoss& loss, const torch::Tensor& norm, const torch::Tensor& logits,
                       const torch::Tensor& y) {
  return torch::cat({loss.packed, norm.to(torch::kDouble).reshape({1}),
                     logits.detach().argmax(1).eq(y).sum().to(torch::kDouble).reshape({1})});
}

int64_t correct_of(const torch::Tensor& logits, const torch::Tensor& y) {
  return logits.argmax(1).eq(y).sum().item<int64_t>();
}

}  // namespace

void run_step(RunState& rs, const StepBatch& b, StepMode mode) {
  auto t0 = Clock::now();
  const bool eager = mode == StepMode::Eager;
  StageState& st = rs.stages[rs.stage_of(b.epoch).first];
  if (!st.updater) throw std::logic_error("run " + rs.spec->id + ": stage '" + st.spec.name + "' trains nothing");
  Updater& up = *st.updater;
  const double lr = step_learning_rate(rs, b);
  if (b.replicas) {
    broadcast_buffers(*b.replicas, *rs.student);
    if (rs.method_module) broadcast_buffers(*b.replicas, *rs.method_module);
  }
  if (!eager) up.zero_grad();
  std::optional<RunLoss> loss;
  TapMap staps;
  torch::Tensor logits;
  {
    AutocastScope autocast(b.bf16, b.device.type());  // backward and the update outside, as torch.autocast is used
    logits = rs.student->forward_taps(b.x, &staps);
    staps["logits"] = logits;
    loss = method_loss(rs, staps, b);
  }
  if (!eager) {
    if (!loss) throw std::logic_error("run " + rs.spec->id + ": no loss in a static step (" +
                                      (rs.pending_failure ? rs.pending_failure->message : std::string()) + ")");
    loss->total.backward();
    torch::Tensor norm = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(b.device));
    if (up.clips()) {
      norm = up.grad_norm2().sqrt();
      up.clip(norm);
    }
    up.step(static_lr(rs));
    rs.static_step.out = pack_out(*loss, norm.reshape({}), logits, b.y);
    rs.static_step.terms = loss->names;
    return;
  }
  std::vector<double> values;
  double total = 0;
  const bool ok = loss && read_loss(rs, *loss, b, values, total);
  if (!ok && !b.replicas) return;
  up.zero_grad();
  if (ok) loss->total.backward();
  // Data-parallel: every replica joins the gradient all-reduce, a replica whose loss failed too, so all fail.
  if (b.replicas && !b.replicas->average_gradients(up.params(), b.y.size(0), ok)) {
    if (!rs.pending_failure)
      rs.pending_failure = Failure{st.spec.name, "", "loss is not finite on another data-parallel replica"};
    return;
  }
  if (up.clips()) {
    auto norm = up.grad_norm2().sqrt();
    if (!std::isfinite(norm.item<double>())) {
      rs.pending_failure = Failure{st.spec.name, "gradient", "gradient norm is not finite"};
      return;
    }
    up.clip(norm);
  }
  up.step(lr);
  account_values(rs, loss->names, values, total, correct_of(logits, b.y), b.y.size(0), seconds_since(t0));
}

void fused_step(FusedGroup& g, const StepBatch& b, StepMode mode) {
  auto t0 = Clock::now();
  const bool eager = mode == StepMode::Eager;
  const auto K = static_cast<int64_t>(g.runs.size());
  std::vector<double> lr(static_cast<size_t>(K), 0.0);
  std::vector<std::optional<RunLoss>> losses(static_cast<size_t>(K));
  std::vector<std::vector<double>> values(static_cast<size_t>(K));
  std::vector<double> totals(static_cast<size_t>(K), 0.0);
  std::vector<torch::Tensor> logits(static_cast<size_t>(K));
  std::vector<RunState*> live;
  auto own = [&](RunState& rs) -> Updater* { return rs.stages[rs.stage_of(b.epoch).first].updater.get(); };
  if (!eager) {
    g.updater->zero_grad();
    for (auto* rs : g.runs)
      if (!rs->done && own(*rs)) own(*rs)->zero_grad();
  }
  torch::Tensor sum;
  {
    AutocastScope autocast(b.bf16, b.device.type());
    TapMap ftaps;
    auto flogits = g.model->forward_taps(b.x, &ftaps);
    for (int64_t k = 0; k < K; ++k) {
      RunState& rs = *g.runs[static_cast<size_t>(k)];
      if (rs.done) continue;
      const auto uk = static_cast<size_t>(k);
      lr[uk] = step_learning_rate(rs, b);
      TapMap staps;
      for (const auto& tap : rs.student_taps) staps[tap] = fused_part(ftaps.at(tap), k, K);
      logits[uk] = fused_part(flogits, k, K);
      staps["logits"] = logits[uk];
      losses[uk] = method_loss(rs, staps, b);
      if (!eager && !losses[uk]) throw std::logic_error("run " + rs.spec->id + ": no loss in a static step");
      if (eager && (!losses[uk] || !read_loss(rs, *losses[uk], b, values[uk], totals[uk]))) {
        lr[uk] = 0;
        continue;
      }
      sum = sum.defined() ? sum + losses[uk]->total : losses[uk]->total;
      live.push_back(&rs);
    }
  }
  if (!sum.defined()) return;
  if (eager) {
    g.updater->zero_grad();
    for (auto* rs : live)
      if (own(*rs)) own(*rs)->zero_grad();
  }
  sum.backward();
  // Per-student clipping: the norm of student k's blocks of the fused gradients and of its method's own.
  torch::Tensor norm;
  if (g.updater->clips()) {
    torch::NoGradGuard ng;
    auto n2 = g.updater->grad_norm2();
    for (auto* rs : live)
      if (own(*rs)) n2[rs->fused_index] += own(*rs)->grad_norm2()[0];
    norm = n2.sqrt();
    if (eager) {
      auto host = norm.cpu();
      for (auto* rs : live)
        if (rs->spec->recipe.grad_clip > 0 && !std::isfinite(host[rs->fused_index].item<double>())) {
          rs->pending_failure = Failure{stage_name(*rs, b.epoch), "gradient", "gradient norm is not finite"};
          lr[static_cast<size_t>(rs->fused_index)] = 0;
        }
    }
    auto coef = g.updater->clip(norm);
    for (auto* rs : live)
      if (own(*rs)) Updater::scale_grads(own(*rs)->params(), coef[rs->fused_index]);
  }
  if (eager) {
    g.updater->step(lr);
  } else {
    g.updater->step(g.lr);
  }
  const double dt = seconds_since(t0) / static_cast<double>(live.size());
  for (auto* rs : live) {
    const auto uk = static_cast<size_t>(rs->fused_index);
    if (!eager) {
      if (own(*rs)) own(*rs)->step(static_lr(*rs));
      const torch::Tensor n = rs->spec->recipe.grad_clip > 0 && norm.defined()
                                  ? norm[rs->fused_index]
                                  : torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(b.device));
      rs->static_step.out = pack_out(*losses[uk], n, logits[uk], b.y);
      rs->static_step.terms = losses[uk]->names;
      continue;
    }
    if (rs->pending_failure) continue;
    if (own(*rs)) own(*rs)->step(lr[uk]);
    account_values(*rs, losses[uk]->names, values[uk], totals[uk], correct_of(logits[uk], b.y), b.y.size(0), dt);
  }
}

}  // namespace kd
