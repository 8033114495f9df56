// What the two compiled teacher sources (torchscript, export) share: their entry's keys. A compiled model is not
// the zoo's: "taps" names its outputs (one of them "logits"), "model" is optional (a zoo name, for the record).
#pragma once
#include "harness/teacher_source.h"

namespace kd {

class CompiledTeacherSource : public FileTeacherSource {
 public:
  bool compiled() const override { return true; }
  void parse(ObjectReader& rd, TeacherSpec& t) const override;
};

}  // namespace kd
