#include "harness/runner.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <thread>
#include <tuple>

#include "base/errors.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "datasets/dataset.h"
#include "harness/distributed.h"
#include "harness/group_channel.h"
#include "harness/heartbeat.h"
#include "harness/progress.h"
#include "harness/sweep_device.h"
#include "harness/sweep_models.h"
#include "harness/trainer.h"
#include "store/store.h"
#include "store/sweep_layout.h"

namespace fs = std::filesystem;

namespace kd {

namespace {

// A run 'running' under an owner that is gone: same host and the pid no longer exists.
bool owner_is_dead(const std::string& owner) {
  auto p = owner.rfind(':');
  if (p == std::string::npos) return false;
  if (owner.substr(0, p) != host_name()) return false;
  long pid = std::stol(owner.substr(p + 1));
  return pid != ::getpid() && !process_alive(pid);
}

enum class Dependencies { Done, Waiting, Failed };
// Whether the runs run `r` learns from are done, one of them failed, or it must wait.
Dependencies teachers_state(const RunSpec& r, const std::map<std::string, RunRecord>& recs) {
  Dependencies state = Dependencies::Done;
  for (const auto& tid : r.teacher_ids) {
    auto it = recs.find(tid);
    if (it == recs.end()) return Dependencies::Waiting;
    if (it->second.status == RunStatus::Failed) return Dependencies::Failed;
    if (it->second.status != RunStatus::Done) state = Dependencies::Waiting;
  }
  return state;
}

// The next lockstep group: among the runs that can start, those of the lowest level with the seed and batch
// size of the first of them (at most `lockstep` runs), each claimed atomically; runs another worker claims
// first are left out. Tries the next (seed, batch size) when another worker got all of one.
std::vector<RunSpec*> claim_group(const std::vector<RunSpec*>& ready, int64_t lockstep, ResultsStore& store,
                                  const std::string& owner, double stale_seconds) {
  std::vector<std::tuple<int, int64_t, int64_t>> keys;
  for (const auto* r : ready) {
    auto k = std::make_tuple(r->level, r->seed, r->recipe.batch_size);
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  }
  std::stable_sort(keys.begin(), keys.end(),
                   [](const auto& a, const auto& b) { return std::get<0>(a) < std::get<0>(b); });
  const size_t chunk = lockstep > 0 ? static_cast<size_t>(lockstep) : ready.size();
  for (const auto& k : keys) {
    std::vector<RunSpec*> group;
    for (auto* r : ready) {
      if (group.size() >= chunk) break;
      if (std::make_tuple(r->level, r->seed, r->recipe.batch_size) != k) continue;
      if (store.claim_run(r->id, owner, stale_seconds)) group.push_back(r);
    }
    if (!group.empty()) return group;
  }
  return {};
}

// Work still to do (every pending run's epochs x training-split size x its model's cost per image), for
// the progress bar's ETA.
double pending_work(const Plan& plan, const std::set<std::string>& mine, const ResultsStore& store,
                    const SweepModels& models, const DataSplits& data) {
  double work = 0;
  std::map<std::string, int64_t> macs;
  for (const auto& r : plan.runs) {
    if (!mine.count(r.id)) continue;
    auto rec = store.run(r.id);
    if (!rec || is_finished(rec->status)) continue;
    if (r.teacher && (!r.teacher->trained() || models.cached(r.id))) continue;
    const int64_t epochs = r.total_epochs;
    if (!macs.count(r.model)) {
      ModelPtr m = create_model(ModelSpec{r.model, data.num_classes, data.channels, data.image_size});
      macs[r.model] = count_macs(*m, data.channels, data.image_size);
    }
    work += static_cast<double>(epochs) * static_cast<double>(data.train->size()) *
            training_cost_per_image(macs[r.model]);
  }
  return work;
}

// A sweep in one process: the claim loop over its share of the runs, with its parts each in a file of its own
// (sweep_device: where it runs; heartbeat: its claims kept alive; group_channel: the data-parallel leader and
// followers; sweep_models: the models runs learn from, the teacher cache, evaluation and latency; trainer: a
// lockstep group).
class SweepRun {
 public:
  SweepRun(const SweepConfig& cfg, const SweepOptions& opts) : cfg_(cfg), opts_(opts) {}

  SweepSummary run() {
    out_ = sweep_output_dir(cfg_, opts_);
    site_ = set_up_sweep_device(cfg_, opts_);
    if (auto replica = replica_env_from_environment()) {
      replicas_ = std::make_unique<DataParallel>(*replica, site_.device);
      channel_ = std::make_unique<GroupChannel>(*replicas_);
    }
    plan_ = plan_sweep(cfg_);
    data_ = open_dataset(cfg_.dataset, "dataset");
    models_ = std::make_unique<SweepModels>(plan_, data_, site_.device, opts_.workers, cfg_.cache_dir);
    if (!leader()) return follow_leader();
    log::info("data: {} ({} train / {} val / {} test, {} classes) from {}", data_.name, data_.train->size(),
              data_.val->size(), data_.test->size(), data_.num_classes, data_.source);
    const std::string location = open_results();
    log::info("results store: {}{}", store_->path(),
              opts_.worker_index >= 0 ? fmt::format(" (worker {})", opts_.worker_index) : std::string());
    take_share();
    progress_ = std::make_unique<TerminalProgress>("img");
    progress_->add_work(pending_work(plan_, mine_, *store_, *models_, data_));
    {
      Heartbeat heartbeat(open_store(location), owner_, opts_.heartbeat_seconds);  // stops when the loop ends
      heartbeat_ = &heartbeat;
      work_until_done();
      heartbeat_ = nullptr;
    }
    if (channel_) channel_->end();
    progress_->finish();
    for (const auto& r : plan_.runs) {
      if (!mine_.count(r.id)) continue;
      auto rec = store_->run(r.id);
      if (rec && rec->status == RunStatus::Done) ++summary_.done;
      if (rec && rec->status == RunStatus::Failed) ++summary_.failed;
    }
    return summary_;
  }

 private:
  // The sweep folder, the config's copy, the results store with the sweep and its planned runs, and the
  // environment record (device, store without secrets, worker, replicas, shard). Returns the store's location.
  std::string open_results() {
    const SweepLayout layout(out_);
    fs::create_directories(out_);
    fs::create_directories(layout.checkpoints());
    write_text_atomically(layout.config_copy(), cfg_.raw.dump(2) + "\n", "config");
    remove_stale_temporaries(layout.checkpoints());
    remove_stale_temporaries((fs::path(cfg_.cache_dir) / "teachers").string());
    const std::string location = sweep_store_location(cfg_, opts_);
    store_ = open_store(location);
    json env = json::parse(site_.environment);
    env["store"] = redact_store_url(location);
    if (opts_.worker_index >= 0) env["worker_index"] = opts_.worker_index;
    if (replicas_) env["data_parallel"] = {{"replicas", replicas_->size()}, {"backend", replicas_->backend()}};
    if (opts_.shard.count > 1)
      env["shard"] = std::to_string(opts_.shard.index) + "/" + std::to_string(opts_.shard.count);
    env_ = env.dump();
    store_->put_sweep(plan_.sweep_id, cfg_.name, cfg_.raw.dump(), env_);
    for (const auto& r : plan_.runs) store_->add_run(make_run_record(r, plan_.sweep_id));
    owner_ = process_owner();
    return location;
  }

  // This process's share of the runs: runs left running by a process that is gone start again, failed runs too
  // with --retry-failed; done runs are skipped.
  void take_share() {
    for (const auto* r : shard_runs(plan_, opts_.shard)) mine_.insert(r->id);
    for (const auto& r : plan_.runs) {
      if (!mine_.count(r.id)) continue;
      auto rec = store_->run(r.id);
      if (!rec) continue;
      if (rec->status == RunStatus::Running && owner_is_gone(*rec)) {
        log::info("run {} was left running by {} (gone): restarting it", r.id.substr(0, 8), rec->owner);
        store_->reset_run(r.id);
      }
      if (rec->status == RunStatus::Failed && opts_.retry_failed) store_->reset_run(r.id);
      if (rec->status == RunStatus::Done) ++summary_.skipped;
    }
    summary_.output_dir = out_;
    summary_.total = static_cast<int>(mine_.size());
  }

  // A run left 'running' whose owner is gone: on a store only this host uses, a process of this host that no
  // longer exists; on a shared store, only a heartbeat older than the stale limit tells (claim_run checks it).
  bool owner_is_gone(const RunRecord& rec) const { return !store_->spans_hosts() && owner_is_dead(rec.owner); }

  // ---- the claim loop ----------------------------------------------------------------------------
  // Claims a lockstep group of runs that can start (their teachers done) and trains it, until every run of
  // this process's share is finished; when nothing can start, waits for the runs other workers train (or
  // for their claims to go stale).
  void work_until_done() {
    bool said_waiting = false;
    for (;;) {
      std::map<std::string, RunRecord> recs;
      for (auto& rec : store_->runs()) recs[rec.id] = std::move(rec);
      std::vector<RunSpec*> ready;
      bool unfinished = false;
      for (auto& r : plan_.runs) {
        if (!mine_.count(r.id)) continue;
        auto it = recs.find(r.id);
        if (it == recs.end() || is_finished(it->second.status)) continue;
        unfinished = true;
        if (it->second.status == RunStatus::Running && it->second.owner == owner_) continue;
        if (it->second.status == RunStatus::Running && owner_is_gone(it->second)) store_->reset_run(r.id);
        switch (teachers_state(r, recs)) {
          case Dependencies::Done:
            ready.push_back(&r);
            break;
          case Dependencies::Failed:
            fail_for_teacher(r, recs);
            break;
          case Dependencies::Waiting:
            break;
        }
      }
      if (!unfinished) return;
      std::vector<RunSpec*> group = claim_group(ready, cfg_.lockstep, *store_, owner_, opts_.stale_seconds);
      if (group.empty()) {
        if (!said_waiting) log::info("waiting for runs other workers are training...");
        said_waiting = true;
        std::this_thread::sleep_for(std::chrono::duration<double>(opts_.poll_seconds));
        continue;
      }
      said_waiting = false;
      std::vector<RunSpec*> to_train;
      for (auto* r : group)
        if (!(r->role == RunRole::Teacher && obtain_without_training(*r))) to_train.push_back(r);
      if (to_train.empty()) continue;
      for (const auto* r : to_train) models_->latency_of(r->model);
      if (channel_) announce_group(to_train);
      std::vector<std::string> ids;
      for (const auto* r : to_train) ids.push_back(r->id);
      heartbeat_->set_training(ids);
      train_group(to_train);
      heartbeat_->set_training({});
    }
  }

  bool obtain_without_training(const RunSpec& r) {
    RunRecord rec = make_run_record(r, plan_.sweep_id);
    rec.environment = env_;
    rec.owner = owner_;
    return models_->obtain_without_training(r, std::move(rec), *store_);
  }

  // A run whose teacher failed fails too (once: the claim makes sure of it).
  void fail_for_teacher(const RunSpec& r, const std::map<std::string, RunRecord>& recs) {
    if (!store_->claim_run(r.id, owner_, opts_.stale_seconds)) return;
    std::string failed;
    for (const auto& tid : r.teacher_ids)
      if (recs.at(tid).status == RunStatus::Failed) failed = tid;
    const RunSpec* dep = plan_.find(failed);
    store_->fail_run(
        r.id, owner_,
        json{{"message", "its teacher run " + failed.substr(0, 8) + " (" + (dep ? dep->name : "?") + ") failed"}}
            .dump(),
        {});
  }

  // ---- data-parallel: rank 0 leads, the other replicas follow the groups it trains ------------------
  bool leader() const { return !replicas_ || replicas_->rank() == 0; }

  // Tells the other replicas which runs to train next and where the checkpoints of their teachers are.
  void announce_group(const std::vector<RunSpec*>& runs) {
    AnnouncedGroup g;
    for (const auto* r : runs) {
      g.runs.push_back(r->id);
      for (const auto& tid : r->teacher_ids) {
        auto rec = store_->run(tid);
        g.teachers[tid] = rec ? rec->checkpoint : "";
      }
    }
    channel_->announce(g);
  }

  // A replica other than rank 0: trains each group rank 0 announces, on its share of every batch, until the end.
  SweepSummary follow_leader() {
    log::set_level(log::Level::Warn);  // rank 0 tells the story
    while (auto g = channel_->next()) {
      for (const auto& [tid, checkpoint] : g->teachers) models_->load(tid, checkpoint);
      std::vector<RunSpec*> runs;
      for (const auto& id : g->runs) {
        const RunSpec* spec = plan_.find(id);
        if (!spec)
          throw std::runtime_error("data-parallel: rank 0 announced run " + id +
                                   ", which this replica's plan does not have (different configs?)");
        runs.push_back(const_cast<RunSpec*>(spec));
      }
      train_group(runs);
    }
    replicas_->leave();
    summary_.output_dir = out_;
    summary_.follower = true;
    return summary_;
  }

  // ---- a group -----------------------------------------------------------------------------------
  void train_group(const std::vector<RunSpec*>& runs) {
    const SweepLayout layout(out_);
    std::vector<GroupMember> members;
    for (auto* r : runs) {
      GroupMember m;
      m.spec = r;
      for (const auto& tid : r->teacher_ids) {
        const TeacherHandle* h = models_->handle(tid, *store_);
        if (!h) throw std::logic_error("teacher run " + tid + " is not available");
        m.teachers.push_back(h);
      }
      if (leader())  // only rank 0 writes checkpoints and the store
        m.checkpoint_path =
            r->role == RunRole::Teacher ? models_->teacher_cache_path(r->id) : layout.checkpoint(r->id);
      members.push_back(std::move(m));
    }
    if (leader())
      progress_->note(
          fmt::format("training {} run(s) in lockstep (seed {}, level {}{})", members.size(), runs.front()->seed,
                      runs.front()->level,
                      replicas_ ? fmt::format(", data-parallel over {} replicas", replicas_->size()) : std::string()));
    const torch::Device device = site_.device;
    const int threads = site_.threads;
    TrainOptions to;
    to.device = device;
    // Runs of a group are independent: spread them over the cores (one lane per core, one torch
    // thread per lane); a group with fewer runs than cores gives each lane more torch threads.
    // Data-parallel replicas step one run at a time (their collectives must come in the same order everywhere).
    to.lanes = device.is_cuda() || replicas_ ? 1 : std::min<int>(threads, static_cast<int>(members.size()));
    to.replicas = replicas_.get();
    torch::set_num_threads(std::max(1, threads / std::max(1, to.lanes)));
    to.workers = opts_.workers;
    to.teacher_chunks = device.is_cuda() ? 1 : threads;
    teacher_outputs_.set_budget(cfg_.teacher_cache_mb << 20);
    to.teacher_cache = cfg_.teacher_cache_mb > 0 ? &teacher_outputs_ : nullptr;
    to.fuse = !replicas_ && (cfg_.fuse == "on" || (cfg_.fuse == "auto" && device.is_cuda()));
    to.bf16 = cfg_.precision == "bf16";
    to.channels_last = cfg_.channels_last;
    to.cuda_graphs = site_.cuda_graphs;
    to.pin_memory = device.is_cuda();
    to.progress = leader() ? progress_.get() : nullptr;
    to.on_done = [&](const GroupMember& m, RunOutcome& o) { record_outcome(*m.spec, o); };
    train_lockstep(members, data_, to);
    torch::set_num_threads(threads);
  }

  // A run of a group finished (trained or failed): rank 0 records it in the store (a trained teacher in the
  // teacher cache too); every replica keeps what later groups learn from.
  void record_outcome(const RunSpec& r, RunOutcome& o) {
    if (!leader()) {
      if (o.ok && r.role != RunRole::Student) models_->keep(r, o.model);
      return;
    }
    if (!o.ok) {
      store_->fail_run(r.id, owner_, o.error_json, o.epochs);
      return;
    }
    RunRecord rec = make_run_record(r, plan_.sweep_id);
    rec.wall_seconds = o.wall_seconds;
    rec.images_per_second = o.images_per_second;
    rec.environment = env_;
    rec.checkpoint = o.checkpoint;
    rec.params = o.params;
    rec.macs = o.macs;
    rec.method_params = o.method_params;
    rec.owner = owner_;
    o.finals["latency_ms"] = models_->latency_of(r.model);
    if (r.role == RunRole::Teacher) SweepModels::record_teacher(r, o);
    if (!store_->finish_run(rec, o.epochs, o.finals)) {
      log::warn("run {} was claimed again by another worker while this one trained it: not recorded here",
                r.id.substr(0, 8));
      return;
    }
    ++summary_.trained;
    if (r.role != RunRole::Student) models_->keep(r, o.model);
    const auto val = o.finals.find("final.val.top1");
    progress_->note(fmt::format("done {:<14} {:<28} seed {}: test top-1 {:.2f}% (val {})", r.name, r.setting.dump(),
                                r.seed, o.finals["final.test.top1"],
                                val == o.finals.end() ? std::string("-") : fmt::format("{:.2f}%", val->second)));
  }

  const SweepConfig& cfg_;
  SweepOptions opts_;
  SweepDevice site_;
  std::unique_ptr<DataParallel> replicas_;  // this process's data-parallel group (none: trains alone)
  std::unique_ptr<GroupChannel> channel_;   // its announcements of groups
  std::string out_, env_, owner_;
  Plan plan_;
  DataSplits data_;
  std::unique_ptr<SweepModels> models_;
  std::unique_ptr<ResultsStore> store_;
  Heartbeat* heartbeat_ = nullptr;  // while the claim loop runs
  std::set<std::string> mine_;      // the runs of this process's shard
  std::unique_ptr<TerminalProgress> progress_;
  TeacherOutputCache teacher_outputs_;  // teachers' outputs over the training split, shared by all groups
  SweepSummary summary_;
};

}  // namespace

std::string sweep_output_dir(const SweepConfig& cfg, const SweepOptions& opts) {
  return opts.output.empty() ? cfg.output : opts.output;
}

std::string sweep_store_location(const SweepConfig& cfg, const SweepOptions& opts) {
  if (!opts.store.empty()) return opts.store;
  if (!cfg.store.empty()) return cfg.store;
  return SweepLayout(sweep_output_dir(cfg, opts)).store();
}

ShardSpec parse_shard(const std::string& text, const std::string& key) {
  ShardSpec s;
  char slash = 0, extra = 0;
  if (std::sscanf(text.c_str(), "%d%c%d%c", &s.index, &slash, &s.count, &extra) != 3 || slash != '/' || s.count < 1 ||
      s.index < 0 || s.index >= s.count)
    throw ConfigError(key, "expected i/n with 0 <= i < n (e.g. 0/4), got '" + text + "'");
  return s;
}

std::vector<const RunSpec*> shard_runs(const Plan& plan, const ShardSpec& shard) {
  if (shard.count <= 1) {
    std::vector<const RunSpec*> all;
    for (const auto& r : plan.runs) all.push_back(&r);
    return all;
  }
  std::vector<const RunSpec*> students;
  for (const auto& r : plan.runs)
    if (r.role == RunRole::Student) students.push_back(&r);
  std::stable_sort(students.begin(), students.end(),
                   [](const RunSpec* a, const RunSpec* b) { return a->seed < b->seed; });
  const size_t n = students.size(), k = static_cast<size_t>(shard.count), i = static_cast<size_t>(shard.index);
  std::set<std::string> keep;
  std::vector<std::string> todo;
  for (size_t s = n * i / k; s < n * (i + 1) / k; ++s) todo.push_back(students[s]->id);
  while (!todo.empty()) {  // the runs they learn from, transitively
    std::string id = todo.back();
    todo.pop_back();
    if (!keep.insert(id).second) continue;
    if (const RunSpec* r = plan.find(id))
      for (const auto& t : r->teacher_ids) todo.push_back(t);
  }
  // A sweep of teachers only: those go to shard 0.
  if (n == 0 && shard.index == 0)
    for (const auto& r : plan.runs) keep.insert(r.id);
  std::vector<const RunSpec*> out;
  for (const auto& r : plan.runs)
    if (keep.count(r.id)) out.push_back(&r);
  return out;
}

SweepSummary run_sweep(const SweepConfig& cfg, const SweepOptions& opts) {
  SweepRun run(cfg, opts);
  return run.run();
}

}  // namespace kd
