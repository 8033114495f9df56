#include "harness/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <tuple>

#include "base/errors.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "harness/group_teachers.h"
#include "harness/lanes.h"
#include "harness/run_builder.h"
#include "harness/run_records.h"
#include "harness/run_state.h"
#include "harness/static_step.h"
#include "harness/step.h"
#include "store/sweep_layout.h"

namespace kd {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string error_record(int64_t epoch, int64_t step, const std::string& stage, const std::string& term,
                         const std::string& message) {
  return json{{"epoch", epoch}, {"step", step}, {"stage", stage}, {"term", term}, {"message", message}}.dump();
}

// The loader a group trains from: its first run's batch size and seed (every run of a group shares them), the data
// set's augmentation; a data-parallel replica's share of every batch.
LoaderOptions group_loader(const RunSpec& first, const DataSplits& data, const TrainOptions& opts) {
  LoaderOptions lo;
  lo.batch_size = first.recipe.batch_size;
  lo.shuffle = true;
  lo.drop_last = false;
  lo.seed = static_cast<uint64_t>(first.seed);
  lo.augment = true;
  lo.augment_options = parse_augment(data.augment, "dataset.augment");
  lo.norm = data.norm;
  lo.image_size = data.image_size;
  lo.workers = opts.workers;
  lo.prefetch = 4;
  lo.pin_memory = opts.pin_memory && opts.device.is_cuda();
  if (opts.replicas) {
    if (opts.lanes != 1 || opts.fuse) throw std::logic_error("data-parallel training needs one lane and no fusion");
    lo.part_index = opts.replicas->rank();
    lo.part_count = opts.replicas->size();
  }
  return lo;
}

// Horizontal fusion: eligible runs of one architecture (and momentum, Nesterov, length) become one
// fused model built from their own initial weights.
std::vector<FusedGroup> fuse_runs(std::vector<RunState>& runs, const DataSplits& data, const TrainOptions& opts) {
  std::vector<FusedGroup> fused;
  // Students fused together share one updater: the same optimizer, momentum and betas (harness/updater.h).
  std::map<std::tuple<std::string, std::string, double, bool, double, double, int64_t>, std::vector<RunState*>> by;
  for (auto& rs : runs) {
    const Recipe& r = rs.spec->recipe;
    if (rs.done || rs.stages.size() != 1 || !rs.stages[0].spec.train_until_tap.empty() ||
        !rs.stages[0].spec.train_student || !supports_fusion(rs.spec->model))
      continue;
    by[{rs.spec->model, r.optimizer, r.momentum, r.nesterov, r.beta1, r.beta2, rs.total_epochs}].push_back(&rs);
  }
  for (auto& [key, members] : by) {
    if (members.size() < 2) continue;
    FusedGroup g;
    g.runs = members;
    std::vector<ModelPtr> students;
    for (auto* rs : members) students.push_back(rs->student);
    g.model = fuse_models(students, ModelSpec{std::get<0>(key), data.num_classes, data.channels, data.image_size});
    g.model->to(opts.device);
    if (opts.channels_last) to_channels_last(*g.model);
    g.model->train();
    std::vector<Recipe> recipes;  // block k: student k's own weight decay and clipping norm
    for (auto* rs : members) recipes.push_back(rs->stages[0].recipe);
    g.updater = std::make_unique<Updater>(g.model->parameters(), recipes);
    for (size_t k = 0; k < members.size(); ++k) {
      members[k]->fused_group = static_cast<int>(fused.size());
      members[k]->fused_index = static_cast<int64_t>(k);
    }
    log::info("training {} runs of {} as one horizontally fused model", members.size(), std::get<0>(key));
    fused.push_back(std::move(g));
  }
  return fused;
}

// A group of runs of one seed trained in lockstep. Phases: set_up (loader, teachers, runs, fusion), then per
// epoch begin_epoch (stages and optimizers), for each batch teacher_outputs + one step per run, end_epoch
// (validation, epoch metrics, best-on-validation), and finish for the runs whose last epoch it was.
class LockstepGroup {
 public:
  LockstepGroup(const std::vector<GroupMember>& members, const DataSplits& data, const TrainOptions& opts)
      : members_(members), data_(data), opts_(opts), device_(opts.device) {}

  void train() {
    set_up();
    int64_t max_epochs = 0;
    for (auto& rs : runs_) max_epochs = std::max(max_epochs, rs.total_epochs);
    for (int64_t epoch = 0; epoch < max_epochs; ++epoch) {
      std::vector<RunState*> active = begin_epoch(epoch);
      if (active.empty()) break;
      EpochTimes times = train_epoch(epoch, active);
      end_epoch(epoch, active, times);
      if (opts_.on_epoch) opts_.on_epoch();
    }
  }

 private:
  // ---- set-up ------------------------------------------------------------------------------------
  void set_up() {
    lanes_ = std::max(1, std::min<int>(opts_.lanes, static_cast<int>(members_.size())));
    const LoaderOptions lo = group_loader(*members_.front().spec, data_, opts_);
    loader_ = std::make_unique<Loader>(data_.train, lo);
    steps_per_epoch_ = loader_->batches_per_epoch();
    // A probe batch for tap shapes and upstream-parameter discovery.
    loader_->start_epoch(0);
    Batch probe;
    if (!loader_->next(probe)) throw DataError(data_.source, "the training split is empty");
    probe_x_ = probe.x.narrow(0, 0, std::min<int64_t>(2, probe.x.size(0))).to(device_);

    // Without random augmentation a sample is the same tensor whenever it is drawn: teacher outputs can come
    // from the whole-split cache.
    const bool cacheable =
        !lo.augment_options.random_crop && !lo.augment_options.horizontal_flip && !lo.augment_options.random_resized_crop;
    teachers_ = std::make_unique<GroupTeachers>(members_, data_, opts_, lanes_, cacheable, probe_x_);
    runs_ = std::vector<RunState>(members_.size());
    for (size_t i = 0; i < members_.size(); ++i) set_up_run(runs_[i], members_[i]);
    // A run whose method failed to prepare (an exception in a Python method's prepare) fails alone.
    for (auto& rs : runs_)
      if (!rs.setup_failure.empty()) fail(rs, 0, 0, rs.stages.front().spec.name, "", rs.setup_failure);
    if (opts_.fuse) fused_ = fuse_runs(runs_, data_, opts_);
    // The static step (CUDA graphs) for the whole group, when every run can take it.
    std::vector<RunState*> all;
    for (auto& rs : runs_)
      if (!rs.done) all.push_back(&rs);
    if (!opts_.replicas && (opts_.static_step || (opts_.cuda_graphs && device_.is_cuda())) &&
        StaticGroupStep::supports(all)) {
      static_step_ = std::make_unique<StaticGroupStep>(opts_.cuda_graphs && device_.is_cuda(),
                                                       [this](const torch::Tensor& x, const torch::Tensor& indices) {
                                                         return teachers_->outputs(indices, x);
                                                       });
      for (auto& g : fused_) start_static_fused(g, device_);
    } else if (opts_.cuda_graphs && device_.is_cuda()) {
      log::info(
          "CUDA graphs: not used for this group (a run uses a method that is not graph-safe, or the run is "
          "data-parallel)");
    }
    if (opts_.replicas) start_replicas_equal();
  }

  // Data-parallel: every replica starts from rank 0's weights and buffers (as DistributedDataParallel's
  // constructor makes them; the seeded initialisation already agrees, this makes sure).
  void start_replicas_equal() {
    for (auto& rs : runs_) {
      if (!rs.student) continue;  // failed at its start (released)
      std::vector<torch::Tensor> state;
      for (auto& p : rs.student->parameters()) state.push_back(p.detach());
      for (auto& b : rs.student->buffers()) state.push_back(b);
      if (rs.method_module) {
        for (auto& p : rs.method_module->parameters()) state.push_back(p.detach());
        for (auto& b : rs.method_module->buffers()) state.push_back(b);
      }
      torch::NoGradGuard ng;
      opts_.replicas->broadcast_from_first(state);
    }
  }

  // A run built from its plan (harness/run_builder.h) against the group's teachers and probe batch.
  void set_up_run(RunState& rs, const GroupMember& member) {
    rs.member = &member;
    rs.spec = member.spec;
    const RunSpec& first = *members_.front().spec;
    if (rs.spec->seed != first.seed || rs.spec->recipe.batch_size != first.recipe.batch_size)
      throw std::logic_error("lockstep group mixes seeds or batch sizes");
    std::vector<BuildTeacher> teachers;
    for (size_t t = 0; t < member.teachers.size(); ++t) {
      const TeacherHandle& th = *member.teachers[t];
      teachers.push_back({th.model, teachers_->shapes(th.run_id), "teacher " + std::to_string(t)});
    }
    BuiltRun built = build_run(*rs.spec, teachers, BuildSite{&data_, device_, probe_x_, opts_.channels_last});
    rs.student = std::move(built.student);
    rs.method = std::move(built.method.method);
    rs.method_module = std::move(built.method.module);
    rs.student_taps = std::move(built.method.student_taps);
    rs.teacher_taps = std::move(built.method.teacher_taps);
    rs.setup_failure = std::move(built.method.prepare_failure);
    for (const auto& st : rs.spec->stages) {
      StageState s;
      s.spec = st;
      s.epochs = st.epochs;
      s.recipe = rs.spec->recipe;
      if (st.lr > 0) s.recipe.lr = st.lr;
      rs.stages.push_back(std::move(s));
    }
    rs.total_epochs = rs.spec->total_epochs;
    rs.outcome.params = built.params;
    rs.outcome.macs = built.macs;
    rs.outcome.method_params = built.method_params;
  }

  // ---- per epoch ---------------------------------------------------------------------------------
  // The runs that train this epoch, each in its stage with that stage's optimizer and fresh accumulators.
  std::vector<RunState*> begin_epoch(int64_t epoch) {
    std::vector<RunState*> active;
    for (auto& rs : runs_) {
      if (rs.done || epoch >= rs.total_epochs) continue;
      auto [si, se] = rs.stage_of(epoch);
      if (se == 0) start_stage(rs, si);
      rs.acc = EpochAccumulators{};
      rs.acc.epoch = epoch;
      rs.student->train(rs.stages[si].spec.train_student);  // a frozen student keeps its batch-norm statistics
      rs.set_method_modes(rs.stages[si].spec);
      active.push_back(&rs);
    }
    return active;
  }

  // The optimizer of a stage over what the stage trains: the student (all of it, or up to a tap; a fused
  // student's weights are in its fused model and updated there) and the method's own parameters.
  void start_stage(RunState& rs, size_t si) {
    StageState& st = rs.stages[si];
    std::vector<torch::Tensor> params;
    if (rs.fused_group >= 0 || !st.spec.train_student) {
      // the student's weights are in the fused model, or frozen in this stage
    } else if (st.spec.train_until_tap.empty()) {
      params = rs.student->parameters();
    } else {
      params = parameters_upstream_of(*rs.student, st.spec.train_until_tap, probe_x_);
    }
    for (auto& p : rs.method_parameters(st.spec)) params.push_back(p);
    if (static_step_) start_static_stage(rs, si, device_);
    st.updater = params.empty() ? nullptr : std::make_unique<Updater>(std::move(params), st.recipe);
    if (si > 0) rs.stages[si - 1].updater.reset();
  }

  // Every batch of the epoch: the teachers' outputs once, then one step of every active run.
  EpochTimes train_epoch(int64_t epoch, const std::vector<RunState*>& active) {
    std::vector<RunState*> laned;  // runs stepped one by one on the lanes (the rest are fused)
    for (auto* rs : active)
      if (rs->fused_group < 0) laned.push_back(rs);
    teachers_->need_for(active);

    EpochTimes times;
    loader_->start_epoch(epoch);
    auto epoch_start = Clock::now();
    Batch batch;
    int64_t step = 0;
    for (;;) {
      auto wait_start = Clock::now();
      if (!loader_->next(batch)) break;
      times.data_wait += seconds_since(wait_start);
      auto x = batch.x.to(device_, /*non_blocking=*/true);
      auto y = batch.y.to(device_, /*non_blocking=*/true);
      auto indices = batch.indices.to(device_, /*non_blocking=*/true);
      if (opts_.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      if (static_step_) {
        // The teachers' forward is part of the (captured) step.
        static_step_->step(laned, fused_, epoch, step, steps_per_epoch_, x, y, indices, opts_.bf16);
      } else {
        auto teacher_start = Clock::now();
        std::map<std::string, TapMap> teacher_out = teachers_->outputs(batch.indices, x);
        if (teachers_->any_needed()) times.teacher += seconds_since(teacher_start);
        StepBatch b{epoch, step, steps_per_epoch_, x, y, indices, teacher_out, opts_.bf16, device_, opts_.replicas};
        // Each lane (thread) steps its share of the runs; failures are handled here, after the join.
        for_each_lane(laned, lanes_, [&](RunState& rs) {
          if (!rs.done) run_step(rs, b, StepMode::Eager);
        });
        for (auto& g : fused_) fused_step(g, b, StepMode::Eager);
      }
      for (auto* rs : active)
        if (rs->pending_failure) {
          auto f = *rs->pending_failure;
          rs->pending_failure.reset();
          fail(*rs, epoch, step, f.stage, f.term, f.message);
        }
      if (opts_.progress) {
        double work = 0;
        for (auto* rs : active) work += training_cost_per_image(rs->outcome.macs);
        opts_.progress->advance(static_cast<double>(y.size(0)) * work,
                                static_cast<double>(y.size(0)) * static_cast<double>(active.size()));
      }
      ++step;
      crash_point("train_step");
    }
    times.train = seconds_since(epoch_start);
    return times;
  }

  // Validation of every active run, its epoch's metrics, its best epoch on validation; then the runs whose
  // last epoch it was finish.
  void end_epoch(int64_t epoch, const std::vector<RunState*>& active, EpochTimes times) {
    // Fused students go back into their own models for evaluation, best-epoch snapshots and checkpoints.
    for (auto& g : fused_)
      for (auto* rs : g.runs)
        if (!rs->done) unfuse_into(*g.model, rs->fused_index, static_cast<int64_t>(g.runs.size()), *rs->student);
    auto eval_start = Clock::now();
    std::vector<RunState*> evaluated = active;
    // Data-parallel: evaluated (and saved) with rank 0's batch-norm statistics on every replica.
    if (opts_.replicas)
      for (auto* rs : evaluated)
        if (!rs->done) broadcast_buffers(*opts_.replicas, *rs->student);
    for_each_lane(evaluated, lanes_, [&](RunState& rs) {
      if (rs.done) return;
      if (rs.method_module) rs.method_module->eval();
      if (has_val())
        rs.val_logits = predict(*rs.student, data_.val, data_, rs.spec->recipe.eval_batch_size, device_, 1);
    });
    times.eval = seconds_since(eval_start);
    std::vector<RunState*> finishing;  // runs whose last epoch this was
    for (auto* rs : active) {
      if (rs->done) continue;
      record_epoch(*rs, epoch, times, static_cast<double>(active.size()),
                   RecordSite{data_, steps_per_epoch_, opts_.progress, opts_.replicas});
      if (epoch + 1 == rs->total_epochs) finishing.push_back(rs);
    }
    if (!finishing.empty()) finish(epoch, finishing);
  }

  // ---- finish ------------------------------------------------------------------------------------
  // Test with the final weights and with the best-on-validation weights (the same logits when the best
  // epoch is the last), the runs spread over the lanes; then each run's finals, checkpoint and on_done.
  void finish(int64_t epoch, std::vector<RunState*>& finishing) {
    for_each_lane(finishing, lanes_, [&](RunState& rs) {
      const int64_t eb = rs.spec->recipe.eval_batch_size;
      rs.test_logits = predict(*rs.student, data_.test, data_, eb, device_, 1);
      rs.bestval_test_logits = rs.test_logits;
      if (!rs.best_state.empty() && rs.best_epoch != epoch) {
        auto final_state = snapshot(*rs.student);
        restore(*rs.student, rs.best_state);
        rs.bestval_test_logits = predict(*rs.student, data_.test, data_, eb, device_, 1);
        restore(*rs.student, final_state);
      }
    });
    for (auto* rs : finishing) finish_run(*rs);
  }

  bool has_val() const { return has_validation(data_); }

  void finish_run(RunState& rs) {
    record_outcome(rs, data_);
    rs.done = true;
    rs.student->eval();
    if (opts_.on_done) opts_.on_done(*rs.member, rs.outcome);
    release(rs);
  }

  void fail(RunState& rs, int64_t epoch, int64_t step, const std::string& stage, const std::string& term,
            const std::string& message) {
    rs.failed = true;
    rs.done = true;
    rs.outcome.ok = false;
    rs.outcome.error_json = error_record(epoch, step, stage, term, message);
    log::warn("run {} ({} {}) failed at epoch {}, step {}, term '{}': {}", rs.spec->id.substr(0, 8), rs.spec->name,
              rs.spec->setting.dump(), epoch, step, term, message);
    if (opts_.progress)
      opts_.progress->advance(static_cast<double>(rs.total_epochs - epoch) * static_cast<double>(data_.train->size()) *
                                  training_cost_per_image(rs.outcome.macs),
                              0);
    if (opts_.on_done) opts_.on_done(*rs.member, rs.outcome);
    release(rs);
  }

  // A finished run lets go of its model, snapshots and method (the group may train on for a while).
  static void release(RunState& rs) {
    rs.student.reset();
    rs.best_state.clear();
    rs.method_module.reset();
    rs.method.reset();
  }

  const std::vector<GroupMember>& members_;
  const DataSplits& data_;
  const TrainOptions& opts_;
  const torch::Device device_;
  int lanes_ = 1;
  std::unique_ptr<Loader> loader_;
  int64_t steps_per_epoch_ = 1;
  torch::Tensor probe_x_;
  std::unique_ptr<GroupTeachers> teachers_;
  std::vector<RunState> runs_;
  std::vector<FusedGroup> fused_;
  std::unique_ptr<StaticGroupStep> static_step_;         // the static step (CUDA graphs), when used
};

}  // namespace

void train_lockstep(const std::vector<GroupMember>& members, const DataSplits& data, const TrainOptions& opts) {
  if (members.empty()) return;
  LockstepGroup(members, data, opts).train();
}

}  // namespace kd
