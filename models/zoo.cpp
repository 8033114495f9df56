// The model zoo's table and its utilities. Each model family lives in its own file (cnn.cpp,
// resnet.cpp, wrn.cpp, vgg.cpp, mobilenetv2.cpp, shufflenet.cpp) and adds its factories through one
// add_*_models() function called here, so the table is complete without static registration tricks
// (kd_models is a static library). Also here: parameter and multiply-accumulate counting, and
// checkpoints (torch::save of parameters and buffers plus the architecture name; loading checks the
// name, every tensor's presence and shape, and names the file in any error).
#include <cmath>
#include <sstream>

#include "base/errors.h"
#include "models/layers.h"
#include "models/model.h"

namespace kd {

namespace models {

thread_local int64_t* g_mac_counter = nullptr;

const std::string ZooModel::kStem = "stem";
const std::string ZooModel::kPool = "pool";
const std::string ZooModel::kLogits = "logits";

ZooModel::ZooModel(std::string arch, int num_blocks, bool raw_taps) : arch_(std::move(arch)) {
  tap_names_.push_back(kStem);
  for (int i = 1; i <= num_blocks; ++i) {
    if (raw_taps) {
      raw_names_.push_back("raw_block" + std::to_string(i));
      tap_names_.push_back(raw_names_.back());
    }
    preact_names_.push_back("preact_block" + std::to_string(i));
    block_names_.push_back("block" + std::to_string(i));
    tap_names_.push_back(preact_names_.back());
    tap_names_.push_back(block_names_.back());
  }
  tap_names_.push_back(kPool);
  tap_names_.push_back(kLogits);
}

void init_convs_fan_out(torch::nn::Module& m) {
  torch::NoGradGuard ng;
  for (auto& sub : m.modules(/*include_self=*/false)) {
    if (auto* c = sub->as<torch::nn::Conv2dImpl>()) {
      torch::nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
      if (c->bias.defined()) c->bias.zero_();
    }
  }
}

void init_linears_normal(torch::nn::Module& m, double std) {
  torch::NoGradGuard ng;
  for (auto& sub : m.modules(/*include_self=*/false)) {
    if (auto* l = sub->as<torch::nn::LinearImpl>()) {
      l->weight.normal_(0, std);
      if (l->bias.defined()) l->bias.zero_();
    }
  }
}

void zero_linear_biases(torch::nn::Module& m) {
  torch::NoGradGuard ng;
  for (auto& sub : m.modules(/*include_self=*/false))
    if (auto* l = sub->as<torch::nn::LinearImpl>())
      if (l->bias.defined()) l->bias.zero_();
}

GroupedLinearImpl::GroupedLinearImpl(int64_t k, int64_t in_features, int64_t out_features)
    : groups(k), in(in_features), out(out_features) {
  // Each slice as torch's Linear: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = register_parameter("weight", torch::empty({groups, out, in}).uniform_(-bound, bound));
  bias = register_parameter("bias", torch::empty({groups, out}).uniform_(-bound, bound));
}

torch::Tensor GroupedLinearImpl::forward(const torch::Tensor& x) {
  if (g_mac_counter) *g_mac_counter += groups * in * out;
  const int64_t B = x.size(0);
  // [K, B, in] x [K, in, out] -> [K, B, out], + bias, -> [B, K*out]
  auto y = torch::baddbmm(bias.unsqueeze(1), x.view({B, groups, in}).transpose(0, 1), weight.transpose(1, 2));
  return y.transpose(0, 1).reshape({B, groups * out});
}

void add(ZooTable& table, const std::string& name, const std::string& description, int default_image_size,
         Factory make) {
  table[name] = ZooEntry{ModelInfo{name, description, default_image_size}, std::move(make)};
}

}  // namespace models

namespace {

const models::ZooTable& zoo() {
  static const models::ZooTable table = [] {
    models::ZooTable t;
    models::add_cnn_models(t);
    models::add_resnet_models(t);
    models::add_wrn_models(t);
    models::add_vgg_models(t);
    models::add_mobilenet_models(t);
    models::add_shufflenet_models(t);
    return t;
  }();
  return table;
}

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// (model tensor, checkpoint tensor) pairs, copied only once every tensor has been checked, so a
// failed load leaves the model as it was.
using Assignments = std::vector<std::pair<torch::Tensor, torch::Tensor>>;

// Reads one tensor of a module's archive, checking presence and shape.
void read_checked(torch::serialize::InputArchive& a, const std::string& key, const std::string& full_name,
                  const torch::Tensor& dst, bool is_buffer, const std::string& path, Assignments& out) {
  torch::Tensor t;
  bool found = false;
  try {
    found = a.try_read(key, t, is_buffer);
  } catch (const std::exception&) {
    found = false;
  }
  if (!found || !t.defined()) throw DataError(path, "checkpoint has no tensor '" + full_name + "'");
  if (t.sizes() != dst.sizes()) {
    throw DataError(path, "tensor '" + full_name + "' has shape " + shape_str(t) +
                              " in the checkpoint, the model's is " + shape_str(dst));
  }
  out.emplace_back(dst, t);
}

// Mirrors torch::nn::Module::load (one archive per module, nested by child name) with checks.
void load_checked(torch::nn::Module& m, torch::serialize::InputArchive& a, const std::string& prefix,
                  const std::string& path, Assignments& out) {
  for (auto& p : m.named_parameters(/*recurse=*/false)) {
    read_checked(a, p.key(), prefix + p.key(), p.value(), false, path, out);
  }
  for (auto& b : m.named_buffers(/*recurse=*/false)) {
    read_checked(a, b.key(), prefix + b.key(), b.value(), true, path, out);
  }
  for (const auto& c : m.named_children()) {
    torch::serialize::InputArchive sub;
    bool found = false;
    try {
      found = a.try_read(c.key(), sub);
    } catch (const std::exception&) {
      found = false;
    }
    if (!found) throw DataError(path, "checkpoint has no module '" + prefix + c.key() + "'");
    load_checked(*c.value(), sub, prefix + c.key() + ".", path, out);
  }
}

const char* kArchKey = "kdbench_arch";

}  // namespace

ModelPtr create_model(const ModelSpec& spec) {
  const auto& z = zoo();
  auto it = z.find(spec.name);
  if (it == z.end()) {
    std::string known;
    for (const auto& [name, entry] : z) known += (known.empty() ? "" : ", ") + name;
    throw ConfigError("", "unknown model '" + spec.name + "' (known: " + known + ")");
  }
  if (spec.fused > 1 && !supports_fusion(spec.name))
    throw ConfigError("", "model '" + spec.name + "' cannot be horizontally fused (only the cnn_* models and ResNets)");
  if (spec.fused < 1) throw ConfigError("", "fusion factor must be >= 1");
  return it->second.make(spec);
}

bool supports_fusion(const std::string& name) {
  return has_model(name) && (name.rfind("cnn_", 0) == 0 || name.rfind("resnet", 0) == 0);
}

namespace {

// Every parameter and buffer by its full name (the same names in a plain and in a fused model).
std::vector<std::pair<std::string, torch::Tensor>> named_state(torch::nn::Module& m) {
  std::vector<std::pair<std::string, torch::Tensor>> v;
  for (auto& p : m.named_parameters()) v.emplace_back(p.key(), p.value());
  for (auto& b : m.named_buffers()) v.emplace_back(b.key(), b.value());
  return v;
}

// Student k's slice of fused tensor `f` whose plain counterpart has the shape of `s`: a block of dim 0
// (convolutions, batch norm), a slice of a stacked dim 0 (the grouped classifier), or the tensor itself
// (scalars such as num_batches_tracked).
torch::Tensor part_of(const torch::Tensor& f, const torch::Tensor& s, int64_t k, int64_t K, const std::string& name) {
  if (s.dim() == 0) return f;
  if (f.dim() == s.dim() + 1 && f.size(0) == K) return f[k];
  if (f.dim() == s.dim() && f.size(0) == K * s.size(0)) return f.narrow(0, k * s.size(0), s.size(0));
  throw std::logic_error("fused tensor '" + name + "' " + shape_str(f) + " does not hold " + std::to_string(K) +
                         " copies of " + shape_str(s));
}

}  // namespace

ModelPtr fuse_models(const std::vector<ModelPtr>& students, const ModelSpec& spec) {
  if (students.empty()) throw std::invalid_argument("fuse_models: no students");
  ModelSpec fs = spec;
  fs.fused = static_cast<int>(students.size());
  ModelPtr fused = create_model(fs);
  auto params = students.front()->parameters();
  if (!params.empty()) fused->to(params.front().device());
  torch::NoGradGuard ng;
  auto dst = named_state(*fused);
  const auto K = static_cast<int64_t>(students.size());
  for (int64_t k = 0; k < K; ++k) {
    if (students[static_cast<size_t>(k)]->arch() != spec.name)
      throw std::invalid_argument("fuse_models: a '" + students[static_cast<size_t>(k)]->arch() + "' among '" +
                                  spec.name + "' students");
    auto src = named_state(*students[static_cast<size_t>(k)]);
    if (src.size() != dst.size()) throw std::logic_error("fuse_models: state sizes differ for " + spec.name);
    for (size_t i = 0; i < src.size(); ++i)
      part_of(dst[i].second, src[i].second, k, K, dst[i].first).copy_(src[i].second);
  }
  return fused;
}

void unfuse_into(TapModel& fused, int64_t k, int64_t K, TapModel& student) {
  torch::NoGradGuard ng;
  auto src = named_state(fused);
  auto dst = named_state(student);
  if (src.size() != dst.size()) throw std::logic_error("unfuse_into: state sizes differ");
  for (size_t i = 0; i < src.size(); ++i)
    dst[i].second.copy_(part_of(src[i].second, dst[i].second, k, K, src[i].first));
}

torch::Tensor fused_part(const torch::Tensor& t, int64_t k, int64_t K) {
  const int64_t c = t.size(1) / K;
  return t.narrow(1, k * c, c);
}

std::vector<ModelInfo> list_models() {
  std::vector<ModelInfo> v;
  for (const auto& [name, entry] : zoo()) v.push_back(entry.info);
  return v;
}

bool has_model(const std::string& name) {
  return zoo().count(name) > 0;
}

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

int64_t count_macs(TapModel& m, int in_channels, int image_size) {
  // Every zoo convolution and linear layer adds its multiply-accumulates to the counter during one
  // forward of a single input in eval mode (see models/layers.h). A model with no counting layers
  // (a TorchScript teacher) counts 0.
  torch::NoGradGuard ng;
  const bool training = m.is_training();
  m.eval();
  int64_t macs = 0;
  models::g_mac_counter = &macs;
  try {
    auto params = m.parameters();
    auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
    m.forward(torch::zeros({1, in_channels, image_size, image_size}, torch::TensorOptions().device(device)));
  } catch (...) {
    models::g_mac_counter = nullptr;
    m.train(training);
    throw;
  }
  models::g_mac_counter = nullptr;
  m.train(training);
  return macs;
}

void save_model(TapModel& m, const std::string& path) {
  torch::serialize::OutputArchive a;
  const std::string arch = m.arch();
  a.write(kArchKey, torch::tensor(std::vector<int64_t>(arch.begin(), arch.end()), torch::kInt64));
  m.save(a);
  try {
    a.save_to(path);
  } catch (const std::exception& e) {
    std::string w = e.what();
    throw DataError(path, "cannot write model checkpoint: " + w.substr(0, w.find('\n')));
  }
}

void load_model(TapModel& m, const std::string& path) {
  torch::serialize::InputArchive a;
  try {
    a.load_from(path);
  } catch (const std::exception& e) {
    std::string w = e.what();
    throw DataError(path, "cannot read model checkpoint: " + w.substr(0, w.find('\n')));
  }
  torch::Tensor arch;
  bool has_arch = false;
  try {
    has_arch = a.try_read(kArchKey, arch);
  } catch (const std::exception&) {
    has_arch = false;
  }
  if (!has_arch || arch.dim() != 1 || arch.scalar_type() != torch::kInt64) {
    throw DataError(path, "not a kdbench model checkpoint (no architecture name)");
  }
  std::string name;
  auto acc = arch.accessor<int64_t, 1>();
  for (int64_t i = 0; i < arch.size(0); ++i) name += static_cast<char>(acc[i]);
  if (name != m.arch()) throw DataError(path, "checkpoint is a '" + name + "', expected a '" + m.arch() + "'");
  Assignments assignments;
  load_checked(m, a, "", path, assignments);
  torch::NoGradGuard ng;
  for (auto& [dst, src] : assignments) dst.copy_(src);
}

}  // namespace kd
