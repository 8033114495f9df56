// "obtain": "checkpoint": a zoo model in a kdbench checkpoint (what a sweep or `kdbench train` wrote).
#include "harness/model_state.h"
#include "harness/teacher_source.h"

namespace kd {
namespace {

class CheckpointSource : public FileTeacherSource {
 public:
  const char* name() const override { return "checkpoint"; }
  bool kdbench_checkpoint() const override { return true; }
  void parse(ObjectReader& rd, TeacherSpec& t) const override {
    t.model = rd.string("model", std::nullopt);
    check_zoo_model(t.model, rd.path("model"));
    t.file = rd.string("file", std::nullopt);
  }
  ModelPtr load(const TeacherSpec& t, const DataSplits& data) const override {
    ModelPtr m = create_seeded_model(t.model, data, 0);
    load_model(*m, t.file);
    return m;
  }
};

}  // namespace

const TeacherSource& checkpoint_teacher_source() {
  static const CheckpointSource source;
  return source;
}

}  // namespace kd
