// "obtain": "pytorch": a torch.save state dict (RepDistiller's, torchvision's, ...) loaded into the zoo model of
// the same architecture: "key" says where the state dict is in the saved object, "name_map" (inline or a JSON
// file) renames the file's tensors to the zoo's. kdbench's own pickle reader reads it: nothing in it runs.
#include "harness/model_state.h"
#include "harness/teacher_source.h"
#include "models/pytorch_io.h"
#include "models/torch_file.h"

namespace kd {
namespace {

class PytorchSource : public FileTeacherSource {
 public:
  const char* name() const override { return "pytorch"; }
  void parse(ObjectReader& rd, TeacherSpec& t) const override {
    t.model = rd.string("model", std::nullopt);
    check_zoo_model(t.model, rd.path("model"));
    t.file = rd.string("file", std::nullopt);
    t.key = rd.string("key", std::string(""));
    if (rd.has("name_map")) {
      const json& m = rd.raw("name_map");
      // Inline, or the path of a JSON file holding the map.
      t.name_map = m.is_string() ? NameMap::from_json(load_json_file(m.get<std::string>()), m.get<std::string>())
                                 : NameMap::from_json(m, rd.path("name_map"));
    }
  }
  ModelPtr load(const TeacherSpec& t, const DataSplits& data) const override {
    ModelPtr m = create_seeded_model(t.model, data, 0);
    load_state_dict(*m, read_torch_state_dict(t.file, t.key), t.name_map, t.file);
    return m;
  }

 protected:
  void record_more(const TeacherSpec& t, json& config) const override {
    config["key"] = t.key;
    if (!t.name_map.empty()) config["name_map"] = t.name_map.to_json();
  }
};

}  // namespace

const TeacherSource& pytorch_teacher_source() {
  static const PytorchSource source;
  return source;
}

}  // namespace kd
