#include "harness/static_step.h"

#include <chrono>
#include <cmath>

#include "base/log.h"
#include "harness/autocast.h"

namespace kd {

namespace {

using Clock = std::chrono::steady_clock;

// Eager steps before a capture: lazy initialisation (cuDNN plans, the autograd graph's buffers, momentum
// buffers, the teacher-output cache's fill) happens there, outside the graph.
constexpr int kWarmupSteps = 2;

torch::Tensor scalar_column(const std::vector<double>& v, const torch::TensorOptions& opts) {
  return torch::tensor(v, torch::kDouble).to(opts).view({-1, 1});
}

}  // namespace

void start_static_stage(RunState& rs, size_t si, torch::Device device) {
  StaticRunStep& ss = rs.static_step;
  ss.stage = si;
  ss.lr = torch::zeros({1, 1}, torch::TensorOptions().dtype(torch::kFloat).device(device));
  ss.out = torch::Tensor();
}

void start_static_fused(FusedGroup& g, torch::Device device) {
  g.lr = torch::zeros({static_cast<int64_t>(g.runs.size()), 1},
                      torch::TensorOptions().dtype(torch::kFloat).device(device));
}

StaticGroupStep::StaticGroupStep(bool capture, TeacherOutputs teachers)
    : capture_(capture), teachers_(std::move(teachers)) {}

bool StaticGroupStep::supports(const std::vector<RunState*>& active) {
  for (const auto* rs : active)
    if (!Updater::implements(rs->spec->recipe.optimizer) || !rs->method || !rs->method->graph_safe()) return false;
  return true;
}

void StaticGroupStep::body(const std::vector<RunState*>& laned, std::vector<FusedGroup*>& fused, const StepBatch& b) {
  const std::map<std::string, TapMap> teacher_out = teachers_(b.x, b.indices);
  StepBatch sb{b.epoch, b.step, b.steps_per_epoch, b.x, b.y, b.indices, teacher_out, b.bf16, b.device};
  for (auto* rs : laned) run_step(*rs, sb, StepMode::Static);
  for (auto* g : fused) fused_step(*g, sb, StepMode::Static);
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
    g.lr.copy_(scalar_column(lr, g.lr.options()));
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
