// Teachers that are loaded, not trained: the one place that knows every way a teacher file comes in.
#pragma once
#include "datasets/dataset.h"
#include "harness/plan.h"
#include "models/model.h"

namespace kd {

// The model of teacher `t` (obtain: checkpoint, pytorch, torchscript or export) for data set `data`:
//   checkpoint   a kdbench checkpoint of the zoo model t.model;
//   pytorch      a torch.save state dict (under t.key) loaded into the zoo model t.model with t.name_map;
//   torchscript  a torch.jit.save module, outputs named by t.taps;
//   export       a torch.export + AOTInductor package (.pt2), outputs named by t.taps.
// The file's SHA-256 is computed first: when t.sha256 pins one and it differs, DataError naming the file and both
// digests, and nothing is loaded; `sha256`, when given, receives it (for the run's record). Throws DataError
// naming the file for anything that does not fit.
ModelPtr load_teacher_model(const TeacherSpec& t, const DataSplits& data, std::string* sha256 = nullptr);

}  // namespace kd
