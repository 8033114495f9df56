// A teacher exported from Python with torch.jit.save, wrapped as a TapModel.
#include <torch/script.h>

#include <filesystem>

#include "harness/errors.h"
#include "harness/model.h"

namespace kd {

namespace {

class ScriptedModel : public TapModel {
 public:
  ScriptedModel(torch::jit::script::Module m, std::vector<std::string> taps, std::string path)
      : module_(std::move(m)), taps_(std::move(taps)), path_(std::move(path)) {}

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    c10::IValue out = module_.forward({x});
    TapMap got;
    if (out.isTensor()) {
      got["logits"] = out.toTensor();
    } else if (out.isTuple() || out.isList()) {
      std::vector<c10::IValue> elems;
      if (out.isTuple()) {
        for (const auto& e : out.toTupleRef().elements()) elems.push_back(e);
      } else {
        for (const auto& e : out.toListRef()) elems.push_back(e);
      }
      if (elems.size() < taps_.size())
        throw DataError(path_, "TorchScript teacher returns " + std::to_string(elems.size()) + " outputs but " +
                                   std::to_string(taps_.size()) + " taps are named (" + taps_.back() + " is missing)");
      for (size_t i = 0; i < taps_.size(); ++i) {
        if (!elems[i].isTensor()) throw DataError(path_, "output " + std::to_string(i) + " ('" + taps_[i] + "') is not a tensor");
        got[taps_[i]] = elems[i].toTensor();
      }
    } else if (out.isGenericDict()) {
      for (const auto& kv : out.toGenericDict()) {
        if (kv.key().isString() && kv.value().isTensor()) got[kv.key().toStringRef()] = kv.value().toTensor();
      }
    } else {
      throw DataError(path_, "TorchScript teacher returns neither a tensor, a tuple/list nor a dict");
    }
    for (const auto& t : taps_)
      if (!got.count(t)) throw DataError(path_, "TorchScript teacher has no output named '" + t + "' (named in taps)");
    if (!got.count("logits")) throw DataError(path_, "TorchScript teacher has no 'logits' output");
    if (taps)
      for (auto& [k, v] : got) (*taps)[k] = v;
    return got.at("logits");
  }
  std::vector<std::string> tap_names() const override { return taps_; }
  std::string arch() const override { return "torchscript:" + path_; }
  void to(torch::Device device, bool non_blocking) override {
    module_.to(device, non_blocking);
  }
  void train(bool on) override {
    TapModel::train(on);
    module_.train(on);
  }

 private:
  torch::jit::script::Module module_;
  std::vector<std::string> taps_;
  std::string path_;
};

}  // namespace

ModelPtr load_torchscript_model(const std::string& path, const std::vector<std::string>& tap_outputs) {
  if (!std::filesystem::exists(path)) throw DataError(path, "TorchScript file not found");
  torch::jit::script::Module m;
  try {
    m = torch::jit::load(path);
  } catch (const std::exception& e) {
    std::string w = e.what();
    throw DataError(path, "cannot load TorchScript module: " + w.substr(0, w.find('\n')));
  }
  m.eval();
  return std::make_shared<ScriptedModel>(std::move(m), tap_outputs, path);
}

}  // namespace kd
