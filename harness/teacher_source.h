// How a teacher comes in: the registry of teacher sources, one per value of a teacher entry's "obtain", each in
// its own file (harness/teacher_source_<kind>.cpp: train, checkpoint, pytorch, torchscript, export). A source says
// which keys its entry has, whether kdbench trains the teacher, what the teacher run's record holds (what its id
// hashes) and how the model is loaded. The planner, the runner (the leader's teachers and the data-parallel
// followers' alike), `kdbench plan` and `kdbench export` ask the source; no "obtain" string is compared elsewhere.
#pragma once
#include <string>
#include <vector>

#include "base/json_reader.h"
#include "datasets/dataset.h"
#include "harness/plan.h"
#include "models/model.h"

namespace kd {

class TeacherSource {
 public:
  virtual ~TeacherSource() = default;
  // The config's "obtain".
  virtual const char* name() const = 0;
  // kdbench trains this teacher (once per sweep, cached between sweeps); the others are loaded from a file.
  virtual bool trained() const { return false; }
  // A compiled model that the zoo does not build: its outputs are named by "taps" and "model" is optional.
  virtual bool compiled() const { return false; }
  // The teacher is a zoo model in a kdbench checkpoint, so `kdbench export` can write it for PyTorch.
  virtual bool kdbench_checkpoint() const { return false; }
  // Reads this kind's keys of a teacher entry into t ("model", "file", ...); the caller reads the keys every
  // kind shares ("sha256" of a file, "recipe", "seed") and finishes the reader.
  virtual void parse(ObjectReader& rd, TeacherSpec& t) const = 0;
  // What the teacher run's config holds beyond its role, model, "obtain" and data set: what its run id hashes.
  virtual void record(const TeacherSpec& t, json& config) const = 0;
  // The model from the teacher's file (the digest is checked before, by load_teacher_model). A trained source
  // throws std::logic_error: its checkpoint is the runner's.
  virtual ModelPtr load(const TeacherSpec& t, const DataSplits& data) const = 0;
};

// A teacher loaded from a file ("file", optionally pinned by "sha256"): the record every such kind shares.
class FileTeacherSource : public TeacherSource {
 public:
  // "file", "taps" and the pinned "sha256" (another pinned file is another teacher), then record_more().
  void record(const TeacherSpec& t, json& config) const final;

 protected:
  virtual void record_more(const TeacherSpec&, json&) const {}
};

// The source of "obtain": `obtain`; ConfigError at `path` listing the kinds for any other value.
const TeacherSource& teacher_source(const std::string& obtain, const std::string& path);
// Every kind, in the order the README lists them.
std::vector<const TeacherSource*> teacher_sources();

// Throws ConfigError at `path` when the zoo has no model `name` (listing the ones it has).
void check_zoo_model(const std::string& name, const std::string& path);

// The model of a teacher that is loaded, not trained, for data set `data`. The file's SHA-256 is computed first:
// when t.sha256 pins one and it differs, DataError naming the file and both digests, and nothing is loaded;
// `sha256`, when given, receives it (for the run's record). Throws DataError naming the file for anything that
// does not fit.
ModelPtr load_teacher_model(const TeacherSpec& t, const DataSplits& data, std::string* sha256 = nullptr);

// The one teacher source each kind's file defines (listed by teacher_sources()).
const TeacherSource& train_teacher_source();
const TeacherSource& checkpoint_teacher_source();
const TeacherSource& pytorch_teacher_source();
const TeacherSource& torchscript_teacher_source();
const TeacherSource& export_teacher_source();

}  // namespace kd
