// "obtain": "train": a zoo model that kdbench trains once per sweep by its own recipe and seed (the sweep's
// recipe with the entry's "recipe" over it); its checkpoint goes to the teacher cache, shared between sweeps.
#include <stdexcept>

#include "harness/teacher_source.h"

namespace kd {
namespace {

class TrainSource : public TeacherSource {
 public:
  const char* name() const override { return "train"; }
  bool trained() const override { return true; }
  bool kdbench_checkpoint() const override { return true; }
  void parse(ObjectReader& rd, TeacherSpec& t) const override {
    t.model = rd.string("model", std::nullopt);
    check_zoo_model(t.model, rd.path("model"));
  }
  void record(const TeacherSpec& t, json& config) const override {
    config["recipe"] = t.recipe.to_json();
    config["seed"] = t.seed;
  }
  ModelPtr load(const TeacherSpec& t, const DataSplits&) const override {
    throw std::logic_error("teacher '" + t.name + "' is trained, not loaded");
  }
};

}  // namespace

const TeacherSource& train_teacher_source() {
  static const TrainSource source;
  return source;
}

}  // namespace kd
