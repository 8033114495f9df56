#include "harness/runner.h"

#include <signal.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "base/errors.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "datasets/dataset.h"
#include "git_commit.h"  // generated at build time (cmake/git_commit.cmake)
#include "harness/distributed.h"
#include "harness/progress.h"
#include "harness/teacher_source.h"
#include "harness/trainer.h"
#include "pybridge/plugins.h"
#include "store/store.h"
#include "store/sweep_layout.h"

namespace fs = std::filesystem;

namespace kd {

namespace {

std::string hostname() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown";
}

// A run 'running' under an owner that is gone: same host and the pid no longer exists.
bool owner_is_dead(const std::string& owner) {
  auto p = owner.rfind(':');
  if (p == std::string::npos) return false;
  if (owner.substr(0, p) != hostname()) return false;
  long pid = std::stol(owner.substr(p + 1));
  return pid != ::getpid() && !process_alive(pid);
}

std::vector<EpochMetric> epochs_from_json(const json& j) {
  std::vector<EpochMetric> v;
  for (const auto& e : j) v.push_back({e.at(0).get<std::string>(), e.at(1).get<int64_t>(), e.at(2), e.at(3)});
  return v;
}

json epochs_to_json(const std::vector<EpochMetric>& v) {
  json j = json::array();
  for (const auto& e : v) j.push_back(json::array({e.stage, e.epoch, e.name, e.value}));
  return j;
}

class SweepRun {
 public:
  SweepRun(const SweepConfig& cfg, const SweepOptions& opts) : cfg_(cfg), opts_(opts) {}

  SweepSummary run() {
    out_ = sweep_output_dir(cfg_, opts_);
    std::string device_name = opts_.device.empty() ? cfg_.device : opts_.device;
    int64_t threads = opts_.threads >= 0 ? opts_.threads : cfg_.threads;
    if (threads <= 0) threads = static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(static_cast<int>(threads));
    threads_ = static_cast<int>(threads);
    if (device_name == "auto") device_name = torch::cuda::is_available() ? "cuda" : "cpu";
    if (device_name == "cuda" && !torch::cuda::is_available())
      throw ConfigError("device", "CUDA was asked for but no CUDA device is available");
    device_ = device_name == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
    if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(cfg_.cudnn_benchmark);
    if (cfg_.cuda_graphs == "on" && !device_.is_cuda())
      throw ConfigError("cuda_graphs", "'on' needs a CUDA device (this sweep runs on the CPU); use auto or off");
    cuda_graphs_ = cfg_.cuda_graphs == "on" || (cfg_.cuda_graphs == "auto" && device_.is_cuda());
    env_ = environment_json(device_name, threads);
    {
      json env = json::parse(env_);
      env["cuda_graphs"] = cuda_graphs_;
      env_ = env.dump();
    }
    if (auto replica = replica_env_from_environment()) replicas_ = std::make_unique<DataParallel>(*replica, device_);

    plan_ = plan_sweep(cfg_);
    data_ = open_dataset(cfg_.dataset, "dataset");
    if (!leader()) return follow_leader();
    log::info("data: {} ({} train / {} val / {} test, {} classes) from {}", data_.name, data_.train->size(),
              data_.val->size(), data_.test->size(), data_.num_classes, data_.source);

    const SweepLayout layout(out_);
    fs::create_directories(out_);
    fs::create_directories(layout.checkpoints());
    write_text_atomically(layout.config_copy(), cfg_.raw.dump(2) + "\n", "config");
    remove_stale_temporaries(layout.checkpoints());
    remove_stale_temporaries((fs::path(cfg_.cache_dir) / "teachers").string());
    const std::string location = sweep_store_location(cfg_, opts_);
    store_ = open_store(location);
    heartbeat_store_ = open_store(location);  // its own connection, for the heartbeat thread
    json env = json::parse(env_);
    env["store"] = redact_store_url(location);
    if (opts_.worker_index >= 0) env["worker_index"] = opts_.worker_index;
    if (replicas_) env["data_parallel"] = {{"replicas", replicas_->size()}, {"backend", replicas_->backend()}};
    if (opts_.shard.count > 1)
      env["shard"] = std::to_string(opts_.shard.index) + "/" + std::to_string(opts_.shard.count);
    env_ = env.dump();
    log::info("results store: {}{}", store_->path(),
              opts_.worker_index >= 0 ? fmt::format(" (worker {})", opts_.worker_index) : std::string());
    store_->put_sweep(plan_.sweep_id, cfg_.name, cfg_.raw.dump(), env_);
    for (const auto& r : plan_.runs) store_->add_run(make_run_record(r, plan_.sweep_id));
    owner_ = process_owner();
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
    progress_ = std::make_unique<TerminalProgress>("img");
    progress_->add_work(pending_work());

    start_heartbeats();
    try {
      work_until_done();
    } catch (...) {
      stop_heartbeats();
      throw;
    }
    stop_heartbeats();
    if (replicas_) {
      replicas_->publish("group/" + std::to_string(groups_announced_), json{{"end", true}}.dump());
      replicas_->leave();
    }
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
  // A run left 'running' whose owner is gone: on a store only this host uses, a process of this host that no
  // longer exists; on a shared store, only a heartbeat older than the stale limit tells (claim_run checks it).
  bool owner_is_gone(const RunRecord& rec) const { return !store_->spans_hosts() && owner_is_dead(rec.owner); }

  // ---- heartbeats: a thread renews the claims of the runs this process trains ----------------------
  void start_heartbeats() {
    heartbeat_thread_ = std::thread([this] {
      std::unique_lock<std::mutex> l(heartbeat_mu_);
      while (!heartbeat_stop_) {
        heartbeat_cv_.wait_for(l, std::chrono::duration<double>(opts_.heartbeat_seconds));
        if (heartbeat_stop_) break;
        for (const auto& id : training_) {
          try {
            if (!heartbeat_store_->heartbeat(id, owner_) && lost_.insert(id).second)
              log::warn(
                  "run {} was claimed by another worker (this one's heartbeat came too late): its result here "
                  "will not be recorded",
                  id.substr(0, 8));
          } catch (const std::exception& e) {
            log::warn("heartbeat of run {} failed: {}", id.substr(0, 8), e.what());
          }
        }
      }
    });
  }
  void stop_heartbeats() {
    {
      std::lock_guard<std::mutex> l(heartbeat_mu_);
      heartbeat_stop_ = true;
    }
    heartbeat_cv_.notify_all();
    if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  }
  void set_training(const std::vector<RunSpec*>& runs) {
    std::lock_guard<std::mutex> l(heartbeat_mu_);
    training_.clear();
    for (const auto* r : runs) training_.insert(r->id);
  }

  // ---- the work loop -----------------------------------------------------------------------------
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
      std::vector<RunSpec*> group = claim_group(ready);
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
      for (const auto* r : to_train) latency_of(r->model);
      if (replicas_) announce_group(to_train);
      set_training(to_train);
      train_group(to_train);
      set_training({});
    }
  }

  enum class Dependencies { Done, Waiting, Failed };
  Dependencies teachers_state(const RunSpec& r, const std::map<std::string, RunRecord>& recs) const {
    Dependencies state = Dependencies::Done;
    for (const auto& tid : r.teacher_ids) {
      auto it = recs.find(tid);
      if (it == recs.end()) return Dependencies::Waiting;
      if (it->second.status == RunStatus::Failed) return Dependencies::Failed;
      if (it->second.status != RunStatus::Done) state = Dependencies::Waiting;
    }
    return state;
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

  // The next lockstep group: among the runs that can start, those of the lowest level with the seed and batch
  // size of the first of them (at most `lockstep` runs), each claimed atomically; runs another worker claims
  // first are left out. Tries the next (seed, batch size) when another worker got all of one.
  std::vector<RunSpec*> claim_group(const std::vector<RunSpec*>& ready) {
    std::vector<std::tuple<int, int64_t, int64_t>> keys;
    for (const auto* r : ready) {
      auto k = std::make_tuple(r->level, r->seed, r->recipe.batch_size);
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    }
    std::stable_sort(keys.begin(), keys.end(),
                     [](const auto& a, const auto& b) { return std::get<0>(a) < std::get<0>(b); });
    const size_t chunk = cfg_.lockstep > 0 ? static_cast<size_t>(cfg_.lockstep) : ready.size();
    for (const auto& k : keys) {
      std::vector<RunSpec*> group;
      for (auto* r : ready) {
        if (group.size() >= chunk) break;
        if (std::make_tuple(r->level, r->seed, r->recipe.batch_size) != k) continue;
        if (store_->claim_run(r->id, owner_, opts_.stale_seconds)) group.push_back(r);
      }
      if (!group.empty()) return group;
    }
    return {};
  }

  // ---- data-parallel: rank 0 leads, the other replicas follow the groups it trains ------------------
  bool leader() const { return !replicas_ || replicas_->rank() == 0; }

  // Tells the other replicas which runs to train next and where the checkpoints of their teachers are.
  void announce_group(const std::vector<RunSpec*>& runs) {
    json teachers = json::object();
    for (const auto* r : runs)
      for (const auto& tid : r->teacher_ids) {
        auto rec = store_->run(tid);
        teachers[tid] = rec ? rec->checkpoint : "";
      }
    json ids = json::array();
    for (const auto* r : runs) ids.push_back(r->id);
    replicas_->publish("group/" + std::to_string(groups_announced_++),
                       json{{"runs", ids}, {"teachers", teachers}}.dump());
  }

  // A replica other than rank 0: trains each group rank 0 announces, on its share of every batch, until the end.
  SweepSummary follow_leader() {
    log::set_level(log::Level::Warn);  // rank 0 tells the story
    for (int n = 0;; ++n) {
      json msg = json::parse(replicas_->receive("group/" + std::to_string(n)));
      if (msg.value("end", false)) break;
      for (const auto& [tid, checkpoint] : msg.at("teachers").items())
        if (!handles_.count(tid)) handles_[tid] = load_handle(tid, checkpoint.get<std::string>());
      std::vector<RunSpec*> runs;
      for (const auto& id : msg.at("runs")) {
        const RunSpec* spec = plan_.find(id.get<std::string>());
        if (!spec)
          throw std::runtime_error("data-parallel: rank 0 announced run " + id.get<std::string>() +
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

  // A data-parallel follower's teacher (or assistant) run `id`, whose checkpoint the leader announced.
  std::unique_ptr<TeacherHandle> load_handle(const std::string& id, const std::string& checkpoint) {
    const RunSpec* spec = plan_.find(id);
    if (!spec) throw std::runtime_error("data-parallel: unknown teacher run " + id);
    return make_handle(*spec, checkpoint);
  }

  // The model of a finished teacher/assistant run, with its eval-split logits (cached).
  const TeacherHandle* handle(const std::string& id) {
    auto it = handles_.find(id);
    if (it != handles_.end()) return it->second.get();
    const RunSpec* spec = plan_.find(id);
    auto rec = store_->run(id);
    if (!spec || !rec || rec->status != RunStatus::Done) return nullptr;
    auto* raw = (handles_[id] = make_handle(*spec, rec->checkpoint)).get();
    return raw;
  }

  // The model of finished run `spec`, with its eval-split logits, on the device: a teacher that is loaded comes
  // from its file through its teacher source; a trained teacher (checked against its digest) or an assistant from
  // the run's checkpoint. The leader and the data-parallel followers both come here.
  std::unique_ptr<TeacherHandle> make_handle(const RunSpec& spec, const std::string& checkpoint) {
    auto h = std::make_unique<TeacherHandle>();
    h->run_id = spec.id;
    if (spec.teacher && !spec.teacher->trained()) {
      h->model = load_teacher_model(*spec.teacher, data_);
    } else {
      if (spec.role == RunRole::Teacher) check_cached_teacher(checkpoint);
      h->model = create_seeded_model(spec.model, data_, spec.seed);
      load_model(*h->model, checkpoint);
    }
    h->model->to(device_);
    h->model->eval();
    fill_logits(*h, spec);
    return h;
  }

  // Work still to do (every pending run's epochs x training-split size x its model's cost per image), for
  // the progress bar's ETA.
  double pending_work() {
    double work = 0;
    std::map<std::string, int64_t> macs;
    for (const auto& r : plan_.runs) {
      if (!mine_.count(r.id)) continue;
      auto rec = store_->run(r.id);
      if (!rec || is_finished(rec->status)) continue;
      if (r.teacher && (!r.teacher->trained() || fs::exists(teacher_cache_path(r.id) + ".json"))) continue;
      const int64_t epochs = r.total_epochs;
      if (!macs.count(r.model)) {
        ModelPtr m = create_model(ModelSpec{r.model, data_.num_classes, data_.channels, data_.image_size});
        macs[r.model] = count_macs(*m, data_.channels, data_.image_size);
      }
      work += static_cast<double>(epochs) * static_cast<double>(data_.train->size()) *
              training_cost_per_image(macs[r.model]);
    }
    return work;
  }

  // The val/test logits of the model of run `r` (a teacher or an assistant; teacher runs carry their name).
  void fill_logits(TeacherHandle& h, const RunSpec& r) {
    const int64_t batch_size = r.recipe.eval_batch_size;
    h.val_logits = predict(*h.model, data_.val, data_, batch_size, device_, opts_.workers);
    h.test_logits = predict(*h.model, data_.test, data_, batch_size, device_, opts_.workers);
    if (h.test_logits.size(1) != data_.num_classes)
      throw ConfigError("teachers." + r.name, "teacher has " + std::to_string(h.test_logits.size(1)) +
                                                  " classes but the data set has " + std::to_string(data_.num_classes));
  }

  std::map<std::string, double> eval_finals(const TeacherHandle& h) {
    std::map<std::string, double> f;
    EvalMetrics v = metrics_from_logits(h.val_logits, data_.val->all_labels());
    EvalMetrics t = metrics_from_logits(h.test_logits, data_.test->all_labels());
    const bool with_val = data_.val->size() > 0;  // no validation split: test metrics only, no best epoch
    for (const char* which : {"final", "bestval"})
      if (with_val || std::string(which) == "final") record_finals(f, which, v, t, with_val);
    return f;
  }

  // Batch-1 inference latency of a zoo model on this sweep's device (measured once per model, with every
  // thread, before a group trains); recorded with each run as final "latency_ms" for the report's cost figure.
  double latency_of(const std::string& model) {
    auto it = latency_.find(model);
    if (it != latency_.end()) return it->second;
    ModelPtr m = create_seeded_model(model, data_, 0);
    m->to(device_);
    return latency_[model] = inference_latency_ms(*m, data_, device_);
  }

  std::string teacher_cache_path(const std::string& id) const {
    return (fs::path(cfg_.cache_dir) / "teachers" / (id + ".pt")).string();
  }

  // A cached teacher checkpoint (written by any worker into the shared cache) must have the digest its
  // metadata recorded when it was written. Throws DataError naming the file otherwise.
  static void check_cached_teacher(const std::string& checkpoint) {
    const std::string meta_path = checkpoint + ".json";
    if (!fs::exists(meta_path)) return;  // a checkpoint the store names but the cache never described
    const json meta = load_json_file(meta_path);
    if (!meta.contains("digest")) return;  // written before digests were recorded
    const std::string digest = file_digest(checkpoint);
    if (digest != meta.at("digest").get<std::string>())
      throw DataError(checkpoint, "teacher checkpoint does not match the digest in " + meta_path + " (" + digest +
                                      " != " + meta.at("digest").get<std::string>() +
                                      "): corrupt or replaced; delete both files to train the teacher again");
  }

  // Teachers that are loaded (checkpoint / TorchScript) or found in the cache need no training.
  bool obtain_without_training(const RunSpec& r) {
    RunRecord rec = make_run_record(r, plan_.sweep_id);
    rec.environment = env_;
    auto h = std::make_unique<TeacherHandle>();
    h->run_id = r.id;
    std::vector<EpochMetric> epochs;
    std::map<std::string, double> finals;
    json meta_finals;
    const TeacherSpec& t = *r.teacher;
    if (!t.trained()) {
      std::string sha256;
      h->model = load_teacher_model(t, data_, &sha256);
      rec.checkpoint = fs::absolute(t.file).string();
      json env = json::parse(env_);  // which file this teacher was: its digest, with the run
      env["teacher_file"] = {{"path", rec.checkpoint}, {"sha256", sha256}};
      rec.environment = env.dump();
    } else {
      std::string cached = teacher_cache_path(r.id);
      if (!fs::exists(cached) || !fs::exists(cached + ".json")) return false;
      check_cached_teacher(cached);
      h->model = create_seeded_model(t.model, data_, t.seed);
      load_model(*h->model, cached);
      json meta = load_json_file(cached + ".json");
      epochs = epochs_from_json(meta.at("epochs"));
      meta_finals = meta.value("finals", json::object());
      rec.wall_seconds = meta.value("wall_seconds", 0.0);
      rec.images_per_second = meta.value("images_per_second", 0.0);
      rec.checkpoint = cached;
      log::info("teacher '{}' ({}) found in the cache: {}", t.name, t.model, cached);
    }
    h->model->to(device_);
    h->model->eval();
    fill_logits(*h, r);
    finals = eval_finals(*h);
    if (meta_finals.is_object() && !meta_finals.empty()) {
      // A cached teacher's record is the one it got when trained (best-on-validation figures included);
      // its weights must still give the same final accuracy.
      double recorded = meta_finals.value("final.test.top1", -1.0);
      if (std::abs(recorded - finals["final.test.top1"]) > 1e-6)
        log::warn("teacher '{}' from the cache scores {:.2f}% on test, {:.2f}% when it was trained ({})", t.name,
                  finals["final.test.top1"], recorded, rec.checkpoint);
      finals = meta_finals.get<std::map<std::string, double>>();
    }
    if (!t.model.empty()) finals["latency_ms"] = latency_of(t.model);
    rec.params = count_parameters(*h->model);
    if (!t.model.empty()) rec.macs = count_macs(*h->model, data_.channels, data_.image_size);
    rec.owner = owner_;
    if (!store_->finish_run(rec, epochs, finals)) return true;  // another worker took it over and records it
    log::info("teacher '{}': test top-1 {:.2f}%", t.name, finals["final.test.top1"]);
    handles_[r.id] = std::move(h);
    return true;
  }

  void train_group(const std::vector<RunSpec*>& runs) {
    const SweepLayout layout(out_);
    const bool leader = this->leader();  // only rank 0 writes checkpoints and the store
    std::vector<GroupMember> members;
    for (auto* r : runs) {
      GroupMember m;
      m.spec = r;
      m.method = r->method_instance;
      for (const auto& tid : r->teacher_ids) {
        const TeacherHandle* h = handle(tid);
        if (!h) throw std::logic_error("teacher run " + tid + " is not available");
        m.teachers.push_back(h);
      }
      if (leader)
        m.checkpoint_path = r->role == RunRole::Teacher ? teacher_cache_path(r->id) : layout.checkpoint(r->id);
      members.push_back(std::move(m));
    }
    if (leader)
      progress_->note(
          fmt::format("training {} run(s) in lockstep (seed {}, level {}{})", members.size(), runs.front()->seed,
                      runs.front()->level,
                      replicas_ ? fmt::format(", data-parallel over {} replicas", replicas_->size()) : std::string()));
    TrainOptions to;
    to.device = device_;
    // Runs of a group are independent: spread them over the cores (one lane per core, one torch
    // thread per lane); a group with fewer runs than cores gives each lane more torch threads.
    // Data-parallel replicas step one run at a time (their collectives must come in the same order everywhere).
    to.lanes = device_.is_cuda() || replicas_ ? 1 : std::min<int>(threads_, static_cast<int>(members.size()));
    to.replicas = replicas_.get();
    torch::set_num_threads(std::max(1, threads_ / std::max(1, to.lanes)));
    to.workers = opts_.workers;
    to.teacher_chunks = device_.is_cuda() ? 1 : threads_;
    teacher_outputs_.set_budget(cfg_.teacher_cache_mb << 20);
    to.teacher_cache = cfg_.teacher_cache_mb > 0 ? &teacher_outputs_ : nullptr;
    to.fuse = !replicas_ && (cfg_.fuse == "on" || (cfg_.fuse == "auto" && device_.is_cuda()));
    to.bf16 = cfg_.precision == "bf16";
    to.channels_last = cfg_.channels_last;
    to.cuda_graphs = cuda_graphs_;
    to.pin_memory = device_.is_cuda();
    to.progress = leader ? progress_.get() : nullptr;
    to.on_done = [&](const GroupMember& m, RunOutcome& o) {
      const RunSpec& r = *m.spec;
      if (!leader) {  // a follower keeps what later groups learn from; rank 0 records
        if (o.ok && r.role != RunRole::Student) keep_handle(r, o.model);
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
      o.finals["latency_ms"] = latency_of(r.model);
      if (r.role == RunRole::Teacher) {
        // Cache the teacher's metrics beside its checkpoint, so other sweeps reuse both.
        json meta{{"epochs", epochs_to_json(o.epochs)},       {"finals", o.finals},
                  {"digest", file_digest(o.checkpoint)},      {"wall_seconds", o.wall_seconds},
                  {"images_per_second", o.images_per_second}, {"config", r.config}};
        write_text_atomically(o.checkpoint + ".json", meta.dump() + "\n", "teacher_meta");
      }
      if (!store_->finish_run(rec, o.epochs, o.finals)) {
        log::warn("run {} was claimed again by another worker while this one trained it: not recorded here",
                  r.id.substr(0, 8));
        return;
      }
      ++summary_.trained;
      if (r.role != RunRole::Student) keep_handle(r, o.model);
      const auto val = o.finals.find("final.val.top1");
      progress_->note(fmt::format("done {:<14} {:<28} seed {}: test top-1 {:.2f}% (val {})", r.name, r.setting.dump(),
                                  r.seed, o.finals["final.test.top1"],
                                  val == o.finals.end() ? std::string("-") : fmt::format("{:.2f}%", val->second)));
    };
    train_lockstep(members, data_, to);
    members.clear();
    for (auto* r : runs) r->method_instance.reset();  // trained (or failed): its method is no longer needed
    torch::set_num_threads(threads_);
  }

  // Keeps a trained teacher's or assistant's model for the runs that learn from it.
  void keep_handle(const RunSpec& r, const ModelPtr& model) {
    auto h = std::make_unique<TeacherHandle>();
    h->run_id = r.id;
    h->model = model;
    h->model->eval();
    fill_logits(*h, r);
    handles_[r.id] = std::move(h);
  }

  const SweepConfig& cfg_;
  SweepOptions opts_;
  std::unique_ptr<DataParallel> replicas_;  // this process's data-parallel group (none: trains alone)
  int groups_announced_ = 0;
  std::string out_, env_, owner_;
  torch::Device device_ = torch::kCPU;
  bool cuda_graphs_ = false;
  int threads_ = 1;
  Plan plan_;
  DataSplits data_;
  std::unique_ptr<ResultsStore> store_;
  std::unique_ptr<ResultsStore> heartbeat_store_;  // the heartbeat thread's own connection
  std::set<std::string> mine_;                     // the runs of this process's shard
  std::thread heartbeat_thread_;
  std::mutex heartbeat_mu_;
  std::condition_variable heartbeat_cv_;
  bool heartbeat_stop_ = false;
  std::set<std::string> training_, lost_;  // runs this process trains now; of those, runs claimed by another
  std::unique_ptr<TerminalProgress> progress_;
  std::map<std::string, std::unique_ptr<TeacherHandle>> handles_;
  TeacherOutputCache teacher_outputs_;     // teachers' outputs over the training split, shared by all groups
  std::map<std::string, double> latency_;  // zoo model -> batch-1 inference milliseconds
  SweepSummary summary_;
};

}  // namespace

std::string process_owner() {
  return hostname() + ":" + std::to_string(::getpid());
}

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

std::string environment_json(const std::string& device, int64_t threads) {
  json env{{"kdbench", "0.1.0"},
           {"libtorch", TORCH_VERSION},
           {"torch_wheel", KDBENCH_TORCH_VERSION},
           {"git_commit", KDBENCH_GIT_COMMIT},
           {"device", device},
           {"threads", threads},
           {"host", hostname()},
           {"cpu", cpu_model()},
           {"cores", std::thread::hardware_concurrency()},
           {"cuda_available", torch::cuda::is_available()},
           {"cuda_devices", torch::cuda::device_count()}};
  // Where Python methods ran: the interpreter (the venv) and its torch (absent when the sweep has no plugin).
  if (std::string python = py::python_environment(); !python.empty()) env["python"] = python;
#ifdef KDBENCH_WITH_CUDA
  env["build"] = "cuda";
#else
  env["build"] = "cpu";
#endif
  return env.dump();
}

SweepSummary run_sweep(const SweepConfig& cfg, const SweepOptions& opts) {
  SweepRun run(cfg, opts);
  return run.run();
}

}  // namespace kd
