// "obtain": "torchscript": a torch.jit.save module, its outputs named by "taps" (a tuple in that order, or a
// dict with those keys). It holds code that LibTorch runs: use files from people you trust, and pin them.
// Also the keys both compiled sources share (CompiledTeacherSource).
#include "harness/teacher_source_compiled.h"

#include <algorithm>

#include "base/errors.h"
#include "models/pytorch_io.h"

namespace kd {

void CompiledTeacherSource::parse(ObjectReader& rd, TeacherSpec& t) const {
  t.file = rd.string("file", std::nullopt);
  t.taps = rd.strings("taps", std::vector<std::string>{"logits"});
  if (std::find(t.taps.begin(), t.taps.end(), "logits") == t.taps.end())
    throw ConfigError(rd.path("taps"), "must name the output that holds the logits (\"logits\")");
  t.model = rd.string("model", std::string(""));
  if (!t.model.empty()) check_zoo_model(t.model, rd.path("model"));
}

namespace {

class TorchscriptSource : public CompiledTeacherSource {
 public:
  const char* name() const override { return "torchscript"; }
  ModelPtr load(const TeacherSpec& t, const DataSplits&) const override {
    return load_torchscript_model(t.file, t.taps);
  }
};

}  // namespace

const TeacherSource& torchscript_teacher_source() {
  static const TorchscriptSource source;
  return source;
}

}  // namespace kd
