#include "harness/runner.h"

#include <signal.h>
#include <torch/version.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "base/errors.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "datasets/dataset.h"
#include "git_commit.h"  // generated at build time (cmake/git_commit.cmake)
#include "harness/progress.h"
#include "harness/teacher_source.h"
#include "harness/trainer.h"
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

constexpr double kStaleSeconds = 15 * 60;  // a run whose heartbeat is older than this is orphaned

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
    env_ = environment_json(device_name, threads);

    plan_ = plan_sweep(cfg_);
    data_ = open_dataset(cfg_.dataset, "dataset");
    log::info("data: {} ({} train / {} val / {} test, {} classes) from {}", data_.name, data_.train->size(),
              data_.val->size(), data_.test->size(), data_.num_classes, data_.source);

    const SweepLayout layout(out_);
    fs::create_directories(out_);
    fs::create_directories(layout.checkpoints());
    write_text_atomically(layout.config_copy(), cfg_.raw.dump(2) + "\n", "config");
    remove_stale_temporaries(layout.checkpoints());
    remove_stale_temporaries((fs::path(cfg_.cache_dir) / "teachers").string());
    store_ = open_store(layout.store());
    store_->put_sweep(plan_.sweep_id, cfg_.name, cfg_.raw.dump(), env_);
    for (const auto& r : plan_.runs) store_->add_run(make_run_record(r, plan_.sweep_id));
    owner_ = process_owner();
    for (const auto& r : plan_.runs) {
      auto rec = store_->run(r.id);
      if (!rec) continue;
      if (rec->status == RunStatus::Running && owner_is_dead(rec->owner)) {
        log::info("run {} was left running by {} (gone): restarting it", r.id.substr(0, 8), rec->owner);
        store_->reset_run(r.id);
      }
      if (rec->status == RunStatus::Failed && opts_.retry_failed) store_->reset_run(r.id);
    }
    summary_.output_dir = out_;
    summary_.total = static_cast<int>(plan_.runs.size());
    progress_ = std::make_unique<TerminalProgress>("img");
    progress_->add_work(pending_work());

    int max_level = 0;
    for (const auto& r : plan_.runs) max_level = std::max(max_level, r.level);
    for (int level = 0; level <= max_level; ++level) run_level(level);
    progress_->finish();
    for (const auto& r : plan_.runs) {
      auto rec = store_->run(r.id);
      if (rec && rec->status == RunStatus::Done) ++summary_.done;
      if (rec && rec->status == RunStatus::Failed) ++summary_.failed;
    }
    return summary_;
  }

 private:
  // Waits until every run in `ids` is finished (done or failed) by whichever process owns it.
  void wait_for(const std::vector<std::string>& ids) {
    bool said = false;
    for (;;) {
      bool all = true;
      for (const auto& id : ids) {
        auto rec = store_->run(id);
        if (rec && !is_finished(rec->status)) {
          if (rec->status == RunStatus::Running && owner_is_dead(rec->owner)) store_->reset_run(id);
          all = false;
        }
      }
      if (all) return;
      if (!said) log::info("waiting for runs another process is training...");
      said = true;
      std::this_thread::sleep_for(std::chrono::seconds(2));
    }
  }

  // The model of a finished teacher/assistant run, with its eval-split logits (cached).
  const TeacherHandle* handle(const std::string& id) {
    auto it = handles_.find(id);
    if (it != handles_.end()) return it->second.get();
    const RunSpec* spec = plan_.find(id);
    auto rec = store_->run(id);
    if (!spec || !rec || rec->status != RunStatus::Done) return nullptr;
    auto h = std::make_unique<TeacherHandle>();
    h->run_id = id;
    if (spec->teacher && spec->teacher->obtain != "train") {
      h->model = load_teacher_model(*spec->teacher, data_);
    } else {
      h->model = create_seeded_model(spec->model, data_, spec->seed);
      load_model(*h->model, rec->checkpoint);
    }
    h->model->to(device_);
    h->model->eval();
    fill_logits(*h, *spec);
    auto* raw = h.get();
    handles_[id] = std::move(h);
    return raw;
  }

  // Work still to do (every pending run's epochs x training-split size x its model's cost per image), for
  // the progress bar's ETA.
  double pending_work() {
    double work = 0;
    std::map<std::string, int64_t> macs;
    for (const auto& r : plan_.runs) {
      auto rec = store_->run(r.id);
      if (!rec || is_finished(rec->status)) continue;
      if (r.teacher && (r.teacher->obtain != "train" || fs::exists(teacher_cache_path(r.id) + ".json"))) continue;
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
    if (h.val_logits.size(1) != data_.num_classes)
      throw ConfigError("teachers." + r.name, "teacher has " + std::to_string(h.val_logits.size(1)) +
                                                  " classes but the data set has " + std::to_string(data_.num_classes));
  }

  std::map<std::string, double> eval_finals(const TeacherHandle& h) {
    std::map<std::string, double> f;
    EvalMetrics v = metrics_from_logits(h.val_logits, data_.val->all_labels());
    EvalMetrics t = metrics_from_logits(h.test_logits, data_.test->all_labels());
    for (const char* which : {"final", "bestval"}) record_finals(f, which, v, t);
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
    if (t.obtain != "train") {
      h->model = load_teacher_model(t, data_);
      rec.checkpoint = fs::absolute(t.file).string();
    } else {
      std::string cached = teacher_cache_path(r.id);
      if (!fs::exists(cached) || !fs::exists(cached + ".json")) return false;
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
    store_->finish_run(rec, epochs, finals);
    log::info("teacher '{}': test top-1 {:.2f}%", t.name, finals["final.test.top1"]);
    handles_[r.id] = std::move(h);
    return true;
  }

  void run_level(int level) {
    // Runs of this level this process claims; the rest are done or owned by another process.
    std::vector<RunSpec*> mine;
    for (auto& r : plan_.runs) {
      if (r.level != level) continue;
      auto rec = store_->run(r.id);
      if (!rec || is_finished(rec->status)) {
        if (rec && rec->status == RunStatus::Done) ++summary_.skipped;
        continue;
      }
      if (!store_->claim_run(r.id, owner_, kStaleSeconds)) continue;
      // Dependencies: all must be done.
      std::string missing;
      wait_for(r.teacher_ids);
      for (const auto& tid : r.teacher_ids) {
        auto trec = store_->run(tid);
        if (!trec || trec->status != RunStatus::Done) missing = tid;
      }
      if (!missing.empty()) {
        const RunSpec* dep = plan_.find(missing);
        store_->fail_run(
            r.id,
            json{{"message", "its teacher run " + missing.substr(0, 8) + " (" + (dep ? dep->name : "?") + ") failed"}}
                .dump(),
            {});
        continue;
      }
      if (r.role == RunRole::Teacher && obtain_without_training(r)) continue;
      mine.push_back(&r);
    }
    for (const auto* r : mine) latency_of(r->model);
    // Group by (seed, batch size); each group trains in lockstep behind one teacher forward per batch.
    std::map<std::pair<int64_t, int64_t>, std::vector<RunSpec*>> groups;
    for (auto* r : mine) groups[{r->seed, r->recipe.batch_size}].push_back(r);
    for (auto& [key, runs] : groups) {
      size_t chunk = cfg_.lockstep > 0 ? static_cast<size_t>(cfg_.lockstep) : runs.size();
      for (size_t i = 0; i < runs.size(); i += chunk) {
        std::vector<RunSpec*> part(runs.begin() + static_cast<long>(i),
                                   runs.begin() + static_cast<long>(std::min(runs.size(), i + chunk)));
        train_group(part);
      }
    }
  }

  void train_group(const std::vector<RunSpec*>& runs) {
    const SweepLayout layout(out_);
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
      m.checkpoint_path = r->role == RunRole::Teacher ? teacher_cache_path(r->id) : layout.checkpoint(r->id);
      members.push_back(std::move(m));
    }
    progress_->note(fmt::format("training {} run(s) in lockstep (seed {}, level {})", members.size(),
                                runs.front()->seed, runs.front()->level));
    TrainOptions to;
    to.device = device_;
    // Runs of a group are independent: spread them over the cores (one lane per core, one torch
    // thread per lane); a group with fewer runs than cores gives each lane more torch threads.
    to.lanes = device_.is_cuda() ? 1 : std::min<int>(threads_, static_cast<int>(members.size()));
    torch::set_num_threads(std::max(1, threads_ / std::max(1, to.lanes)));
    to.workers = opts_.workers;
    to.teacher_chunks = device_.is_cuda() ? 1 : threads_;
    teacher_outputs_.set_budget(cfg_.teacher_cache_mb << 20);
    to.teacher_cache = cfg_.teacher_cache_mb > 0 ? &teacher_outputs_ : nullptr;
    to.fuse = cfg_.fuse == "on" || (cfg_.fuse == "auto" && device_.is_cuda());
    to.bf16 = cfg_.precision == "bf16";
    to.channels_last = cfg_.channels_last;
    to.pin_memory = device_.is_cuda();
    to.progress = progress_.get();
    to.on_epoch = [&] {
      for (const auto* r : runs) store_->heartbeat(r->id, owner_);
    };
    to.on_done = [&](const GroupMember& m, RunOutcome& o) {
      const RunSpec& r = *m.spec;
      if (!o.ok) {
        store_->fail_run(r.id, o.error_json, o.epochs);
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
      o.finals["latency_ms"] = latency_of(r.model);
      if (r.role == RunRole::Teacher) {
        // Cache the teacher's metrics beside its checkpoint, so other sweeps reuse both.
        json meta{{"epochs", epochs_to_json(o.epochs)},
                  {"finals", o.finals},
                  {"wall_seconds", o.wall_seconds},
                  {"images_per_second", o.images_per_second},
                  {"config", r.config}};
        write_text_atomically(o.checkpoint + ".json", meta.dump() + "\n", "teacher_meta");
      }
      store_->finish_run(rec, o.epochs, o.finals);
      ++summary_.trained;
      if (r.role != RunRole::Student) {
        // Keep the model for the runs that learn from it.
        auto h = std::make_unique<TeacherHandle>();
        h->run_id = r.id;
        h->model = o.model;
        h->model->eval();
        fill_logits(*h, r);
        handles_[r.id] = std::move(h);
      }
      progress_->note(fmt::format("done {:<14} {:<28} seed {}: test top-1 {:.2f}% (val {:.2f}%)", r.name,
                                  r.setting.dump(), r.seed, o.finals["final.test.top1"], o.finals["final.val.top1"]));
    };
    train_lockstep(members, data_, to);
    members.clear();
    for (auto* r : runs) r->method_instance.reset();  // trained (or failed): its method is no longer needed
    torch::set_num_threads(threads_);
  }

  const SweepConfig& cfg_;
  SweepOptions opts_;
  std::string out_, env_, owner_;
  torch::Device device_ = torch::kCPU;
  int threads_ = 1;
  Plan plan_;
  DataSplits data_;
  std::unique_ptr<ResultsStore> store_;
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
