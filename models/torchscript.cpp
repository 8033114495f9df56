// A teacher exported from Python with torch.jit.save, wrapped as a TapModel. Its forward may return
// a tensor (the logits), a tuple or list (element i is the tap tap_outputs[i]) or a dict from tap name
// to tensor (the taps named in tap_outputs must be among its keys). tap_outputs must name "logits".
// The module's parameters and buffers are registered with the wrapper (dots in their names become
// underscores), so count_parameters, to() and the optimizer-free teacher code see them; they are the
// same tensors the scripted module uses. Every error names the file.
#include <torch/script.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "base/errors.h"
#include "models/model.h"

namespace kd {

namespace {

class ScriptedModel : public TapModel {
 public:
  ScriptedModel(torch::jit::script::Module m, std::vector<std::string> taps, std::string path)
      : module_(std::move(m)), taps_(std::move(taps)), path_(std::move(path)) {
    for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
      register_parameter(flat_name(p.name), p.value, p.value.requires_grad());
    }
    for (const auto& b : module_.named_buffers(/*recurse=*/true)) register_buffer(flat_name(b.name), b.value);
  }

  torch::Tensor forward_taps(const torch::Tensor& x, TapMap* taps) override {
    c10::IValue out;
    try {
      out = module_.forward({x});
    } catch (const std::exception& e) {
      throw DataError(path_,
                      "TorchScript teacher failed on an input of shape " + shape_of(x) + ": " + first_line(e.what()));
    }
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
      if (elems.size() < taps_.size()) {
        throw DataError(path_, "TorchScript teacher returns " + std::to_string(elems.size()) + " outputs but " +
                                   std::to_string(taps_.size()) + " taps are named, so '" + taps_[elems.size()] +
                                   "' is missing");
      }
      for (size_t i = 0; i < taps_.size(); ++i) {
        if (!elems[i].isTensor()) {
          throw DataError(path_, "TorchScript output " + std::to_string(i) + " ('" + taps_[i] + "') is not a tensor");
        }
        got[taps_[i]] = elems[i].toTensor();
      }
    } else if (out.isGenericDict()) {
      for (const auto& kv : out.toGenericDict()) {
        if (kv.key().isString() && kv.value().isTensor()) got[kv.key().toStringRef()] = kv.value().toTensor();
      }
    } else {
      throw DataError(path_, "TorchScript teacher returns neither a tensor, a tuple/list nor a dict");
    }
    for (const auto& t : taps_) {
      if (!got.count(t)) throw DataError(path_, "TorchScript teacher has no output named '" + t + "' (a named tap)");
    }
    if (taps) {
      for (const auto& t : taps_) (*taps)[t] = got.at(t);
    }
    return got.at("logits");
  }
  std::vector<std::string> tap_names() const override { return taps_; }
  std::string arch() const override { return "torchscript:" + path_; }
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking) override {
    TapModel::to(device, dtype, non_blocking);
    module_.to(device, dtype, non_blocking);
  }
  void to(torch::Dtype dtype, bool non_blocking) override {
    TapModel::to(dtype, non_blocking);
    module_.to(dtype, non_blocking);
  }
  void to(torch::Device device, bool non_blocking) override {
    TapModel::to(device, non_blocking);
    module_.to(device, non_blocking);
  }
  void train(bool on) override {
    TapModel::train(on);
    module_.train(on);
  }

 private:
  static std::string shape_of(const torch::Tensor& x) {
    std::ostringstream s;
    s << x.sizes();
    return s.str();
  }
  torch::jit::script::Module module_;
  std::vector<std::string> taps_;
  std::string path_;
};

}  // namespace

ModelPtr load_torchscript_model(const std::string& path, const std::vector<std::string>& tap_outputs) {
  if (!std::filesystem::exists(path)) throw DataError(path, "TorchScript file not found");
  if (std::find(tap_outputs.begin(), tap_outputs.end(), "logits") == tap_outputs.end()) {
    throw DataError(path, "the taps named for this TorchScript teacher must include 'logits'");
  }
  torch::jit::script::Module m;
  try {
    m = torch::jit::load(path);
  } catch (const std::exception& e) {
    throw DataError(path, "cannot load TorchScript module: " + first_line(e.what()));
  }
  if (!m.find_method("forward")) throw DataError(path, "TorchScript module has no forward method");
  m.eval();
  return std::make_shared<ScriptedModel>(std::move(m), tap_outputs, path);
}

}  // namespace kd
