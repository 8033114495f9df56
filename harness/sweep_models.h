// The models a sweep's runs learn from, and what the runner measures of models. Every finished teacher or
// assistant run's model is kept on the device with its validation and test logits (for the students' agreement),
// loaded once: a teacher from its file through its teacher source (harness/teacher_source.h), a trained teacher
// from the shared teacher cache (checked against the digest its metadata recorded), an assistant from its run's
// checkpoint. The leader and the data-parallel followers load through the same function. Teachers that need no
// training (loaded, or found in the cache) are recorded as done here. Batch-1 latency is measured once per zoo model.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "datasets/dataset.h"
#include "harness/plan.h"
#include "harness/teacher_cache.h"
#include "harness/trainer.h"
#include "store/store.h"

namespace kd {

class SweepModels {
 public:
  SweepModels(const Plan& plan, const DataSplits& data, torch::Device device, int workers, std::string cache_dir);

  // Where a trained teacher run's checkpoint goes in the teacher cache shared between sweeps and workers.
  std::string teacher_cache_path(const std::string& run_id) const;
  // Whether trained teacher run `run_id` has a finished checkpoint in the teacher cache.
  bool cached(const std::string& run_id) const;

  // The model of finished teacher/assistant run `id` with its logits: kept, else loaded from the checkpoint the
  // store records; nullptr when the store does not have it done.
  const TeacherHandle* handle(const std::string& id, const ResultsStore& store);
  // A data-parallel follower: run `id`'s model from `checkpoint` (as rank 0 announced it), unless kept.
  void load(const std::string& id, const std::string& checkpoint);
  // Keeps a trained teacher's or assistant's model for the runs that learn from it.
  void keep(const RunSpec& r, const ModelPtr& model);
  // A teacher run just trained: its metrics beside its checkpoint in the teacher cache, so other sweeps (and
  // workers) reuse both.
  static void record_teacher(const RunSpec& r, const RunOutcome& o);

  // A teacher run that needs no training (its source loads it from a file, or it was trained before and is in
  // the teacher cache): evaluated, recorded as done in `store` with `rec` (its record so far: environment,
  // owner) and kept. False: it must be trained.
  bool obtain_without_training(const RunSpec& r, RunRecord rec, ResultsStore& store);

  // Batch-1 inference latency of zoo model `model` on the sweep's device, in milliseconds (measured once).
  double latency_of(const std::string& model);

 private:
  std::unique_ptr<TeacherHandle> make_handle(const RunSpec& spec, const std::string& checkpoint);
  void fill_logits(TeacherHandle& h, const RunSpec& r);
  std::map<std::string, double> eval_finals(const TeacherHandle& h);

  const Plan& plan_;
  const DataSplits& data_;
  const torch::Device device_;
  const int workers_;
  const std::string cache_dir_;
  std::map<std::string, std::unique_ptr<TeacherHandle>> handles_;
  std::map<std::string, double> latency_;  // zoo model -> batch-1 inference milliseconds
};

}  // namespace kd
