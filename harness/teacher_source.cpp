// The registry of teacher sources and what every loaded teacher goes through (the digest check).
#include "harness/teacher_source.h"

#include <filesystem>
#include <stdexcept>

#include "base/errors.h"
#include "datasets/download.h"

namespace kd {

std::vector<const TeacherSource*> teacher_sources() {
  // Listed here, not self-registered: the kinds live in a static library, whose unreferenced objects the linker
  // would drop together with their registrars.
  return {&train_teacher_source(), &checkpoint_teacher_source(), &pytorch_teacher_source(),
          &torchscript_teacher_source(), &export_teacher_source()};
}

const TeacherSource& teacher_source(const std::string& obtain, const std::string& path) {
  std::string known;
  for (const TeacherSource* s : teacher_sources()) {
    if (obtain == s->name()) return *s;
    known += std::string(known.empty() ? "" : ", ") + s->name();
  }
  throw ConfigError(path, "unknown way to obtain a teacher '" + obtain + "' (known: " + known + ")");
}

bool TeacherSpec::trained() const {
  return source().trained();
}

bool TeacherSpec::is_compiled() const {
  return source().compiled();
}

const TeacherSource& TeacherSpec::source() const {
  return teacher_source(obtain, "teachers." + name + ".obtain");
}

void FileTeacherSource::record(const TeacherSpec& t, json& config) const {
  config["file"] = t.file;
  config["taps"] = t.taps;
  if (!t.sha256.empty()) config["sha256"] = t.sha256;
  record_more(t, config);
}

void check_zoo_model(const std::string& name, const std::string& path) {
  if (has_model(name)) return;
  std::string known;
  for (const auto& m : list_models()) known += (known.empty() ? "" : ", ") + m.name;
  throw ConfigError(path, "unknown model '" + name + "' (known: " + known + ")");
}

ModelPtr load_teacher_model(const TeacherSpec& t, const DataSplits& data, std::string* sha256) {
  const TeacherSource& source = t.source();
  if (source.trained())
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
  return source.load(t, data);
}

}  // namespace kd
