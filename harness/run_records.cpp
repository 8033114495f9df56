#include "harness/run_records.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/fsutil.h"
#include "harness/metrics.h"
#include "harness/model_state.h"
#include "harness/schedule.h"
#include "store/sweep_layout.h"

namespace kd {

namespace {

// Data-parallel: the epoch's training loss and accuracy over every replica's share.
void sum_over_replicas(EpochAccumulators& acc, ReplicaSync& replicas) {
  std::vector<double> v;
  for (const auto& [name, sum] : acc.term_sums) v.push_back(sum);
  v.push_back(acc.total_sum);
  v.push_back(static_cast<double>(acc.correct));
  v.push_back(static_cast<double>(acc.seen));
  v.push_back(static_cast<double>(acc.steps));
  replicas.sum(v);
  size_t k = 0;
  for (auto& [name, sum] : acc.term_sums) sum = v[k++];
  acc.total_sum = v[k++];
  acc.correct = static_cast<int64_t>(v[k++]);
  acc.seen = static_cast<int64_t>(v[k++]);
  acc.steps = static_cast<int64_t>(v[k++]);
}

}  // namespace

void record_epoch(RunState& rs, int64_t epoch, const EpochTimes& times, double group_runs, const RecordSite& site) {
  const DataSplits& data = site.data;
  if (site.replicas) sum_over_replicas(rs.acc, *site.replicas);
  auto [si, se] = rs.stage_of(epoch);
  const std::string& stage = rs.stages[si].spec.name;
  // Without a validation split (dataset.val_fraction 0) there is no validation metric and no best epoch.
  const bool val = has_validation(data);
  EvalMetrics v;
  if (val) {
    torch::Tensor tval = rs.member->teachers.empty() ? torch::Tensor() : rs.member->teachers[0]->val_logits;
    v = metrics_from_logits(rs.val_logits, data.val->all_labels(), tval);
  }
  rs.val_logits = torch::Tensor();
  const auto steps = std::max<int64_t>(1, rs.acc.steps);
  const double train_top1 = rs.acc.seen ? 100.0 * static_cast<double>(rs.acc.correct) / rs.acc.seen : 0.0;
  auto& E = rs.outcome.epochs;
  auto put = [&](const std::string& name, double value) { E.push_back({stage, epoch, name, value}); };
  for (const auto& [name, sum] : rs.acc.term_sums) put("loss." + name, sum / steps);
  put("loss.total", rs.acc.total_sum / steps);
  put("train.top1", train_top1);
  if (val) {
    put("val.top1", v.top1);
    put("val.top5", v.top5);
    put("val.nll", v.nll);
    put("val.ece", v.ece);
    if (v.agreement >= 0) put("val.agreement", v.agreement);
  }
  put("lr", learning_rate(rs.stages[si].recipe, rs.stages[si].epochs, static_cast<double>(se) + 1.0 - 1e-9,
                          site.steps_per_epoch));
  put("seconds", rs.seconds);
  put("teacher_seconds", times.teacher);
  put("group_seconds", times.train);
  put("group_runs", group_runs);
  put("group_data_wait_seconds", times.data_wait);
  put("group_eval_seconds", times.eval);
  put("images_per_second", rs.seconds > 0 ? rs.images / rs.seconds : 0);
  if (site.progress)
    site.progress->note(fmt::format("{:<14} {:<28} seed {} epoch {}/{} [{}] loss {:.4f} train {:.2f}% val {}",
                                     rs.spec->name, rs.spec->setting.dump(), rs.spec->seed, epoch + 1,
                                     rs.total_epochs, stage, rs.acc.total_sum / steps, train_top1,
                                     val ? fmt::format("{:.2f}%", v.top1) : std::string("-")));
  // Best epoch on VALIDATION (only in the final stage: earlier stages train a partial objective).
  if (val && si + 1 == rs.stages.size() && v.top1 > rs.best_val) {
    rs.best_val = v.top1;
    rs.best_epoch = epoch;
    rs.best_val_metrics = v;
    rs.best_state = snapshot(*rs.student);
  }
  if (epoch + 1 == rs.total_epochs) rs.final_val = v;
}

void record_outcome(RunState& rs, const DataSplits& data) {
  torch::Tensor ttest = rs.member->teachers.empty() ? torch::Tensor() : rs.member->teachers[0]->test_logits;
  const auto& labels = data.test->all_labels();
  record_finals(rs.outcome.finals, "final", rs.final_val, metrics_from_logits(rs.test_logits, labels, ttest),
                has_validation(data));
  if (!rs.best_state.empty()) {
    record_finals(rs.outcome.finals, "bestval", rs.best_val_metrics,
                  metrics_from_logits(rs.bestval_test_logits, labels, ttest));
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
    const std::string& path = rs.member->checkpoint_path;
    write_atomically(
        path, [&](const std::string& tmp) { save_model(*student, tmp); }, "checkpoint");
    if (module)
      write_atomically(
          method_checkpoint(path), [&](const std::string& tmp) { torch::save(module, tmp); }, "checkpoint");
    rs.outcome.checkpoint = path;
  }
}

}  // namespace kd
