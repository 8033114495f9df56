#include "harness/teacher_source.h"

#include <stdexcept>

#include "harness/model_state.h"
#include "models/pytorch_io.h"
#include "models/torch_file.h"

namespace kd {

ModelPtr load_teacher_model(const TeacherSpec& t, const DataSplits& data) {
  if (t.obtain == "torchscript") return load_torchscript_model(t.file, t.taps);
  if (t.obtain == "export") return load_exported_model(t.file, t.taps);
  ModelPtr m = create_seeded_model(t.model, data, 0);
  if (t.obtain == "checkpoint") {
    load_model(*m, t.file);
  } else if (t.obtain == "pytorch") {
    load_state_dict(*m, read_torch_state_dict(t.file, t.key), t.name_map, t.file);
  } else {
    throw std::logic_error("load_teacher_model: teacher '" + t.name + "' is trained, not loaded");
  }
  return m;
}

}  // namespace kd
