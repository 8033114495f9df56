// "obtain": "export": a torch.export + AOTInductor package (.pt2), its outputs named by "taps". The package is a
// compiled shared library that LibTorch loads and runs: use files from people you trust, and pin them.
#include "harness/teacher_source_compiled.h"
#include "models/pytorch_io.h"

namespace kd {
namespace {

class ExportSource : public CompiledTeacherSource {
 public:
  const char* name() const override { return "export"; }
  ModelPtr load(const TeacherSpec& t, const DataSplits&) const override {
    return load_exported_model(t.file, t.taps);
  }
};

}  // namespace

const TeacherSource& export_teacher_source() {
  static const ExportSource source;
  return source;
}

}  // namespace kd
