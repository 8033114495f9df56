#include "harness/sweep_models.h"

#include <cmath>
#include <filesystem>

#include "base/errors.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "harness/metrics.h"
#include "harness/model_state.h"
#include "harness/teacher_source.h"

namespace fs = std::filesystem;

namespace kd {

namespace {

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

// A cached teacher checkpoint (written by any worker into the shared cache) must have the digest its
// metadata recorded when it was written. Throws DataError naming the file otherwise.
void check_cached_teacher(const std::string& checkpoint) {
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

}  // namespace

SweepModels::SweepModels(const Plan& plan, const DataSplits& data, torch::Device device, int workers,
                         std::string cache_dir)
    : plan_(plan), data_(data), device_(device), workers_(workers), cache_dir_(std::move(cache_dir)) {}

std::string SweepModels::teacher_cache_path(const std::string& run_id) const {
  return (fs::path(cache_dir_) / "teachers" / (run_id + ".pt")).string();
}

bool SweepModels::cached(const std::string& run_id) const {
  const std::string path = teacher_cache_path(run_id);
  return fs::exists(path) && fs::exists(path + ".json");
}

const TeacherHandle* SweepModels::handle(const std::string& id, const ResultsStore& store) {
  auto it = handles_.find(id);
  if (it != handles_.end()) return it->second.get();
  const RunSpec* spec = plan_.find(id);
  auto rec = store.run(id);
  if (!spec || !rec || rec->status != RunStatus::Done) return nullptr;
  auto* raw = (handles_[id] = make_handle(*spec, rec->checkpoint)).get();
  return raw;
}

// The model of finished run `spec`, with its eval-split logits, on the device: a teacher that is loaded comes
// from its file through its teacher source; a trained teacher (checked against its digest) or an assistant from
// the run's checkpoint. The leader and the data-parallel followers both come here.
std::unique_ptr<TeacherHandle> SweepModels::make_handle(const RunSpec& spec, const std::string& checkpoint) {
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

void SweepModels::load(const std::string& id, const std::string& checkpoint) {
  if (handles_.count(id)) return;
  const RunSpec* spec = plan_.find(id);
  if (!spec) throw std::runtime_error("data-parallel: unknown teacher run " + id);
  handles_[id] = make_handle(*spec, checkpoint);
}

void SweepModels::keep(const RunSpec& r, const ModelPtr& model) {
  auto h = std::make_unique<TeacherHandle>();
  h->run_id = r.id;
  h->model = model;
  h->model->eval();
  fill_logits(*h, r);
  handles_[r.id] = std::move(h);
}

void SweepModels::record_teacher(const RunSpec& r, const RunOutcome& o) {
  json meta{{"epochs", epochs_to_json(o.epochs)},       {"finals", o.finals},
            {"digest", file_digest(o.checkpoint)},      {"wall_seconds", o.wall_seconds},
            {"images_per_second", o.images_per_second}, {"config", r.config}};
  write_text_atomically(o.checkpoint + ".json", meta.dump() + "\n", "teacher_meta");
}

bool SweepModels::obtain_without_training(const RunSpec& r, RunRecord rec, ResultsStore& store) {
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
    json env = json::parse(rec.environment);  // which file this teacher was: its digest, with the run
    env["teacher_file"] = {{"path", rec.checkpoint}, {"sha256", sha256}};
    rec.environment = env.dump();
  } else {
    if (!cached(r.id)) return false;
    const std::string path = teacher_cache_path(r.id);
    check_cached_teacher(path);
    h->model = create_seeded_model(t.model, data_, t.seed);
    load_model(*h->model, path);
    json meta = load_json_file(path + ".json");
    epochs = epochs_from_json(meta.at("epochs"));
    meta_finals = meta.value("finals", json::object());
    rec.wall_seconds = meta.value("wall_seconds", 0.0);
    rec.images_per_second = meta.value("images_per_second", 0.0);
    rec.checkpoint = path;
    log::info("teacher '{}' ({}) found in the cache: {}", t.name, t.model, path);
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
  if (!store.finish_run(rec, epochs, finals)) return true;  // another worker took it over and records it
  log::info("teacher '{}': test top-1 {:.2f}%", t.name, finals["final.test.top1"]);
  handles_[r.id] = std::move(h);
  return true;
}

// The val/test logits of the model of run `r` (a teacher or an assistant; teacher runs carry their name).
void SweepModels::fill_logits(TeacherHandle& h, const RunSpec& r) {
  const int64_t batch_size = r.recipe.eval_batch_size;
  h.val_logits = predict(*h.model, data_.val, data_, batch_size, device_, workers_);
  h.test_logits = predict(*h.model, data_.test, data_, batch_size, device_, workers_);
  if (h.test_logits.size(1) != data_.num_classes)
    throw ConfigError("teachers." + r.name, "teacher has " + std::to_string(h.test_logits.size(1)) +
                                                " classes but the data set has " + std::to_string(data_.num_classes));
}

std::map<std::string, double> SweepModels::eval_finals(const TeacherHandle& h) {
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
double SweepModels::latency_of(const std::string& model) {
  auto it = latency_.find(model);
  if (it != latency_.end()) return it->second;
  ModelPtr m = create_seeded_model(model, data_, 0);
  m->to(device_);
  return latency_[model] = inference_latency_ms(*m, data_, device_);
}

}  // namespace kd
