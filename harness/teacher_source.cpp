#include "harness/teacher_source.h"

#include <filesystem>
#include <stdexcept>

#include "base/errors.h"
#include "datasets/download.h"
#include "harness/model_state.h"
#include "models/pytorch_io.h"
#include "models/torch_file.h"

namespace kd {

ModelPtr load_teacher_model(const TeacherSpec& t, const DataSplits& data, std::string* sha256) {
  if (t.obtain == "train")
    throw std::logic_error("load_teacher_model: teacher '" + t.name + "' is trained, not loaded");
  // The file's digest before anything of it is read as a model: a pinned file that differs is never loaded. (A
  // file that is not there is left to the loaders, which say so in their own words.)
  if (std::filesystem::is_regular_file(t.file)) {
    const std::string digest = file_digest(t.file, "sha256");
    if (!t.sha256.empty() && digest != t.sha256)
      throw DataError(t.file, "its SHA-256 is " + digest + ", not the " + t.sha256 + " that teachers." + t.name +
                                  ".sha256 pins: another file than the config names; nothing was loaded");
    if (sha256) *sha256 = digest;
  }
  if (t.obtain == "torchscript") return load_torchscript_model(t.file, t.taps);
  if (t.obtain == "export") return load_exported_model(t.file, t.taps);
  ModelPtr m = create_seeded_model(t.model, data, 0);
  if (t.obtain == "checkpoint") {
    load_model(*m, t.file);
  } else if (t.obtain == "pytorch") {
    load_state_dict(*m, read_torch_state_dict(t.file, t.key), t.name_map, t.file);
  } else {
    throw std::logic_error("load_teacher_model: teacher '" + t.name + "' is obtained in an unknown way");
  }
  return m;
}

}  // namespace kd
