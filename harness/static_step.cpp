#include "harness/static_step.h"

#include <chrono>
#include <cmath>

#include "base/log.h"
#include "harness/autocast.h"
#include "harness/fused_sgd.h"

namespace kd {

namespace {

using Clock = std::chrono::steady_clock;

// Eager steps before a capture: lazy initialisation (cuDNN plans, the autograd graph's buffers, momentum
// buffers, the teacher-output cache's fill) happens there, outside the graph.
constexpr int kWarmupSteps = 2;

torch::Tensor scalar_column(const std::vector<double>& v, torch::Device device) {
  return torch::tensor(v, torch::kDouble).to(torch::TensorOptions().dtype(torch::kFloat).device(device)).view({-1, 1});
}

void zero_grads(const std::vector<torch::Tensor>& params) {
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().zero_();
}

// The squared L2 norm of the gradients of `params` (a 0-d double tensor on `device`).
torch::Tensor grad_norm2(const std::vector<torch::Tensor>& params, torch::Device device) {
  torch::Tensor n2 = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  for (const auto& p : params)
    if (p.grad().defined()) n2 = n2 + p.grad().to(torch::kDouble).pow(2).sum();
  return n2;
}

// The terms of one run's method on its taps: the weighted total, and the values as a float vector.
struct BodyLoss {
  torch::Tensor total;
  std::vector<torch::Tensor> values;
  std::vector<std::string> names;
};

BodyLoss body_loss(RunState& rs, const TapMap& staps, const StepBatch& b,
                   const std::map<std::string, TapMap>& teacher_out) {
  auto [si, se] = rs.stage_of(b.epoch);
  static const TapMap kNone;
  std::vector<const TapMap*> teachers;
  for (const auto* t : rs.member->teachers) {
    auto it = teacher_out.find(t->run_id);
    teachers.push_back(it == teacher_out.end() ? &kNone : &it->second);
  }
  MethodInput in{staps, teachers, b.y, b.indices, static_cast<int>(si), b.epoch, se, b.step, b.steps_per_epoch};
  BodyLoss out;
  for (const auto& term : rs.method->compute(in)) {
    auto w = term.value.to(torch::kFloat) * term.weight;
    out.total = out.total.defined() ? out.total + w : w;
    out.values.push_back(term.value.detach().to(torch::kFloat).reshape({1}));
    out.names.push_back(term.name);
  }
  if (!out.total.defined())
    throw std::logic_error("method '" + rs.spec->method + "' returned no loss terms (run " + rs.spec->id + ")");
  return out;
}

// [values..., total, norm, correct] of one run's step.
torch::Tensor step_out(const BodyLoss& loss, const torch::Tensor& norm, const torch::Tensor& logits,
                       const torch::Tensor& y) {
  std::vector<torch::Tensor> parts = loss.values;
  parts.push_back(loss.total.detach().to(torch::kFloat).reshape({1}));
  parts.push_back(norm.to(torch::kFloat).reshape({1}));
  parts.push_back(logits.detach().argmax(1).eq(y).sum().to(torch::kFloat).reshape({1}));
  return torch::cat(parts);
}

}  // namespace

void start_static_stage(RunState& rs, size_t si, std::vector<torch::Tensor> params, torch::Device device) {
  StaticRunStep& ss = rs.static_step;
  ss.stage = si;
  ss.params = std::move(params);
  ss.momentum.clear();
  ss.lr = scalar_column({0.0}, device);
  ss.wd = scalar_column({rs.stages[si].recipe.weight_decay}, device);
  ss.out = torch::Tensor();
}

void start_static_fused(FusedGroup& g, torch::Device device) {
  std::vector<double> wd, clip;
  for (auto* rs : g.runs) {
    wd.push_back(rs->spec->recipe.weight_decay);
    clip.push_back(rs->spec->recipe.grad_clip);
  }
  g.lr = scalar_column(std::vector<double>(g.runs.size(), 0.0), device);
  g.wd = scalar_column(wd, device);
  g.clip = scalar_column(clip, device);
  g.any_wd = false;
  for (double v : wd) g.any_wd |= v != 0;
}

StaticGroupStep::StaticGroupStep(bool capture, TeacherOutputs teachers)
    : capture_(capture), teachers_(std::move(teachers)) {}

bool StaticGroupStep::supports(const std::vector<RunState*>& active) {
  for (const auto* rs : active)
    if (rs->spec->recipe.optimizer != "sgd" || !rs->method || !rs->method->graph_safe()) return false;
  return true;
}

void StaticGroupStep::body_run(RunState& rs, const StepBatch& b, const std::map<std::string, TapMap>& teacher_out) {
  StaticRunStep& ss = rs.static_step;
  zero_grads(ss.params);
  TapMap staps;
  BodyLoss loss;
  torch::Tensor logits;
  {
    AutocastScope autocast(b.bf16, b.device.type());
    logits = rs.student->forward_taps(b.x, &staps);
    staps["logits"] = logits;
    loss = body_loss(rs, staps, b, teacher_out);
  }
  loss.total.backward();
  const Recipe& r = rs.spec->recipe;
  torch::Tensor norm = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(b.device));
  if (r.grad_clip > 0) {
    torch::NoGradGuard ng;
    norm = grad_norm2(ss.params, b.device).sqrt();
    auto coef = (r.grad_clip / (norm + 1e-6)).clamp_max(1.0).to(torch::kFloat);
    for (const auto& p : ss.params)
      if (p.grad().defined()) p.grad().mul_(coef);
  }
  sgd_step_blocks(ss.params, ss.momentum, ss.lr, ss.wd, r.weight_decay != 0, r.momentum, r.nesterov);
  ss.out = step_out(loss, norm, logits, b.y);
  ss.terms = loss.names;
}

void StaticGroupStep::body_fused(FusedGroup& g, const StepBatch& b, const std::map<std::string, TapMap>& teacher_out) {
  const auto K = static_cast<int64_t>(g.runs.size());
  zero_grads(g.params);
  std::vector<RunState*> live;
  for (auto* rs : g.runs)
    if (!rs->done) {
      live.push_back(rs);
      zero_grads(rs->static_step.params);
    }
  std::vector<BodyLoss> losses(live.size());
  std::vector<torch::Tensor> logits(live.size());
  torch::Tensor sum;
  {
    AutocastScope autocast(b.bf16, b.device.type());
    TapMap ftaps;
    auto flogits = g.model->forward_taps(b.x, &ftaps);
    for (size_t i = 0; i < live.size(); ++i) {
      RunState& rs = *live[i];
      TapMap staps;
      for (const auto& tap : rs.student_taps) staps[tap] = fused_part(ftaps.at(tap), rs.fused_index, K);
      logits[i] = fused_part(flogits, rs.fused_index, K);
      staps["logits"] = logits[i];
      losses[i] = body_loss(rs, staps, b, teacher_out);
      sum = sum.defined() ? sum + losses[i].total : losses[i].total;
    }
  }
  sum.backward();
  torch::NoGradGuard ng;
  // Per-student gradient norms: student k's slices of the fused gradients and its method's own.
  auto dopt = torch::TensorOptions().dtype(torch::kDouble).device(b.device);
  torch::Tensor norm2 = torch::zeros({K}, dopt);
  for (const auto& p : g.params)
    if (p.grad().defined()) norm2 = norm2 + p.grad().view({K, -1}).to(torch::kDouble).pow(2).sum(1);
  std::vector<torch::Tensor> own(static_cast<size_t>(K), torch::zeros({}, dopt));
  for (auto* rs : live) own[static_cast<size_t>(rs->fused_index)] = grad_norm2(rs->static_step.params, b.device);
  torch::Tensor norm = (norm2 + torch::stack(own)).sqrt();
  bool any_clip = false;
  for (auto* rs : live) any_clip |= rs->spec->recipe.grad_clip > 0;
  if (any_clip) {
    auto clip = g.clip.view({K}).to(torch::kDouble);
    auto coef = torch::where(clip > 0, (clip / (norm + 1e-6)).clamp_max(1.0), torch::ones_like(clip)).to(torch::kFloat);
    for (const auto& p : g.params)
      if (p.grad().defined()) p.grad().view({K, -1}).mul_(coef.view({K, 1}));
    for (auto* rs : live)
      for (const auto& p : rs->static_step.params)
        if (p.grad().defined()) p.grad().mul_(coef[rs->fused_index]);
  }
  sgd_step_blocks(g.params, g.momentum, g.lr, g.wd, g.any_wd, g.momentum_coef, g.nesterov);
  for (size_t i = 0; i < live.size(); ++i) {
    RunState& rs = *live[i];
    const Recipe& r = rs.spec->recipe;
    StaticRunStep& ss = rs.static_step;
    sgd_step_blocks(ss.params, ss.momentum, ss.lr, ss.wd, r.weight_decay != 0, r.momentum, r.nesterov);
    const torch::Tensor n = r.grad_clip > 0 ? norm[rs.fused_index] : torch::zeros({}, dopt);
    ss.out = step_out(losses[i], n, logits[i], b.y);
    ss.terms = losses[i].names;
  }
}

void StaticGroupStep::body(const std::vector<RunState*>& laned, std::vector<FusedGroup*>& fused, const StepBatch& b) {
  const std::map<std::string, TapMap> teacher_out = teachers_(b.x, b.indices);
  for (auto* rs : laned) body_run(*rs, b, teacher_out);
  for (auto* g : fused) body_fused(*g, b, teacher_out);
}

void StaticGroupStep::step(const std::vector<RunState*>& laned_all, std::vector<FusedGroup>& fused_all, int64_t epoch,
                           int64_t step, int64_t steps_per_epoch, const torch::Tensor& x, const torch::Tensor& y,
                           const torch::Tensor& indices, bool bf16) {
  auto t0 = Clock::now();
  static const std::map<std::string, TapMap> kNoTeacherOutputs;  // the body computes its own
  const torch::Device device = x.device();
  StepBatch b{epoch, step, steps_per_epoch, x, y, indices, kNoTeacherOutputs, bf16, device};
  // The live runs, their learning rates for this step, and what a captured graph would be for.
  std::vector<RunState*> laned, live;
  std::vector<FusedGroup*> fused;
  std::string key = std::to_string(epoch);
  int64_t full_batch = 0;
  for (auto* rs : laned_all) {
    if (rs->done) continue;
    laned.push_back(rs);
    live.push_back(rs);
    rs->static_step.lr.fill_(step_learning_rate(*rs, b));
    key += "|" + rs->spec->id + ":" + std::to_string(rs->static_step.stage);
    full_batch = rs->spec->recipe.batch_size;
  }
  for (auto& g : fused_all) {
    std::vector<double> lr(g.runs.size(), 0.0);
    bool any = false;
    for (size_t k = 0; k < g.runs.size(); ++k) {
      RunState* rs = g.runs[k];
      if (rs->done) continue;
      any = true;
      live.push_back(rs);
      lr[k] = step_learning_rate(*rs, b);
      rs->static_step.lr.fill_(lr[k]);
      key += "|" + rs->spec->id + ":" + std::to_string(rs->static_step.stage);
      full_batch = rs->spec->recipe.batch_size;
    }
    if (!any) continue;
    g.lr.copy_(scalar_column(lr, device));
    fused.push_back(&g);
  }
  if (live.empty()) return;

  const bool graphs = capture_ && device.is_cuda() && CapturedWork::available() && x.size(0) == full_batch;
  if (!graphs) {
    body(laned, fused, b);
  } else {
    if (key != graph_key_) {
      graph_.reset();
      graph_key_ = key;
      warm_steps_ = 0;
    }
    if (!graph_.captured() && warm_steps_ < kWarmupSteps) {
      on_side_stream([&] { body(laned, fused, b); });
      ++warm_steps_;
    } else {
      if (!x_.defined() || x_.sizes() != x.sizes() || x_.scalar_type() != x.scalar_type()) {
        x_ = torch::empty_like(x);
        y_ = torch::empty_like(y);
        indices_ = torch::empty_like(indices);
      }
      x_.copy_(x);
      y_.copy_(y);
      indices_.copy_(indices);
      bool replay = true;
      if (!graph_.captured()) {
        try {
          StepBatch sb{epoch, step, steps_per_epoch, x_, y_, indices_, kNoTeacherOutputs, bf16, device};
          graph_.capture([&] { body(laned, fused, sb); });
          ++captures_;
        } catch (const std::exception& e) {
          log::warn("CUDA graph capture failed, training this group without graphs: {}", e.what());
          capture_ = false;
          replay = false;
          body(laned, fused, b);
        }
      }
      if (replay) {
        graph_.replay();
        ++replays_;
      }
    }
  }
  account(live, b, std::chrono::duration<double>(Clock::now() - t0).count());
}

void StaticGroupStep::account(const std::vector<RunState*>& live, const StepBatch& b, double seconds) {
  std::vector<torch::Tensor> outs;
  for (auto* rs : live) outs.push_back(rs->static_step.out);
  const torch::Tensor all = torch::cat(outs).to(torch::kCPU, torch::kDouble).contiguous();
  const double* v = all.data_ptr<double>();
  const double share = seconds / static_cast<double>(live.size());
  for (auto* rs : live) {
    const StaticRunStep& ss = rs->static_step;
    const size_t n = ss.terms.size();
    std::vector<double> values(v, v + n);
    const double total = v[n], norm = v[n + 1], correct = v[n + 2];
    v += n + 3;
    const std::string& stage = rs->stages[rs->stage_of(b.epoch).first].spec.name;
    if (auto f = nonfinite_loss(stage, ss.terms, values, total)) {
      rs->pending_failure = *f;
    } else if (rs->spec->recipe.grad_clip > 0 && !std::isfinite(norm)) {
      rs->pending_failure = Failure{stage, "gradient", "gradient norm is not finite"};
    } else {
      account_values(*rs, ss.terms, values, total, static_cast<int64_t>(correct), b.y.size(0), share);
    }
  }
}

}  // namespace kd
