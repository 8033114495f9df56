// Teachers from PyTorch: torch.save state dicts (RepDistiller checkpoints, torchvision weights, the legacy
// format) loaded into zoo models, the one error for tensors that do not fit, name maps, and state dicts
// written for torch.load. (Compiled .pt2 teachers are tested in test_cli_export.cpp, where `kdbench
// export` makes one: AOTInductor compiles for about a minute, so the suites compile one model only.)
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/errors.h"
#include "models/model.h"
#include "models/pytorch_io.h"
#include "models/torch_file.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string data_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const kd::DataError& e) {
    return e.what();
  }
  return "(no DataError)";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

size_t count_of(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t p = s.find(part); p != std::string::npos; p = s.find(part, p + 1)) ++n;
  return n;
}

std::string fixtures() {
  return kd::test::source_dir() + "/tests/data/repdistiller";
}

std::string sha256_hex(const std::string& text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(text.data(), text.size(), md, &n, EVP_sha256(), nullptr);
  std::ostringstream o;
  for (unsigned int i = 0; i < n; ++i) o << std::hex << (md[i] >> 4) << (md[i] & 15);
  return o.str();
}

// The input the fixtures' logits were computed on: x.flatten()[i] = sin(0.37 * i).
torch::Tensor sine_input(std::vector<int64_t> shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return torch::sin(0.37 * torch::arange(n, torch::kFloat)).view(shape);
}

std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> v;
  for (auto& [name, t] : kd::model_state_dict(m)) v.push_back(t.clone());
  return v;
}

bool same_state(torch::nn::Module& m, const std::vector<torch::Tensor>& saved) {
  auto now = kd::model_state_dict(m);
  if (now.size() != saved.size()) return false;
  for (size_t i = 0; i < saved.size(); ++i)
    if (!torch::equal(now[i].second, saved[i])) return false;
  return true;
}

kd::StateDict renamed(kd::StateDict sd, const std::string& from, const std::string& to) {
  for (auto& [name, t] : sd)
    if (name == from) name = to;
  return sd;
}

// ---- without Python ------------------------------------------------------------------------------

// The zoo's CIFAR models take RepDistiller's parameter and buffer names and shapes as they are: the
// listing of every model is compared with the one made from RepDistiller's own model code
// (tests/data/repdistiller/make_fixtures.py: entry count and SHA-256 of the sorted "name:shape" lines).
TEST(ModelsPytorch, ZooCifarModelsHaveRepDistillersNames) {
  std::ifstream in(fixtures() + "/state_dict_names.json");
  json want = json::parse(in);
  ASSERT_GE(want.size(), 19u);
  for (auto it = want.begin(); it != want.end(); ++it) {
    SCOPED_TRACE(it.key());
    auto m = kd::create_model({it.key(), 100, 3, 32});
    std::vector<std::string> lines;
    for (auto& [name, t] : kd::model_state_dict(*m)) {
      std::string shape;
      for (int64_t d = 0; d < t.dim(); ++d) shape += (d ? "," : "") + std::to_string(t.size(d));
      lines.push_back(name + ":" + shape + "\n");
    }
    std::sort(lines.begin(), lines.end());
    std::string text;
    for (const auto& l : lines) text += l;
    EXPECT_EQ(lines.size(), it.value()["entries"].get<size_t>());
    EXPECT_EQ(sha256_hex(text), it.value()["sha256"].get<std::string>()) << "kdbench's listing:\n" << text;
  }
}

TEST(ModelsPytorch, RepDistillerCheckpointGivesItsLogits) {
  const std::string path = fixtures() + "/resnet8_cifar100.pth";
  auto sd = kd::read_torch_state_dict(path, "model");
  EXPECT_EQ(sd.size(), 56u);  // the optimizer state, epoch and accuracy beside it are skipped
  auto m = kd::create_model({"resnet8", 100, 3, 32});
  kd::load_state_dict(*m, sd, {}, path);
  std::ifstream in(fixtures() + "/resnet8_cifar100_logits.json");
  json want = json::parse(in);
  m->eval();
  torch::NoGradGuard ng;
  auto got = m->forward(sine_input({4, 3, 32, 32}));
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{4, 100}));
  double worst = 0;
  const auto rows = want["logits"].get<std::vector<std::vector<float>>>();
  for (size_t r = 0; r < rows.size(); ++r)
    worst = std::max(worst, (got[static_cast<int64_t>(r)] - torch::tensor(rows[r])).abs().max().item<double>());
  EXPECT_LT(worst, 1e-4);
}

TEST(ModelsPytorch, KeyThatIsMissingOrNotGivenListsTheKeys) {
  const std::string path = fixtures() + "/resnet8_cifar100.pth";
  std::string e = data_error([&] { kd::read_torch_state_dict(path, ""); });
  EXPECT_TRUE(contains(e, path + ": the saved object is a checkpoint, not a state dict; its keys: epoch, model, "
                                 "best_acc, optimizer"))
      << e;
  EXPECT_TRUE(contains(e, "give \"key\": \"model\"")) << e;
  e = data_error([&] { kd::read_torch_state_dict(path, "state_dict"); });
  EXPECT_TRUE(contains(e, "no entry 'state_dict' in the saved dict (its keys: epoch, model, best_acc, optimizer)"))
      << e;
  e = data_error([&] { kd::read_torch_state_dict(path, "epoch.x"); });
  EXPECT_TRUE(contains(e, "'epoch' is an int, not a dict")) << e;
}

// Mis-named, missing and mis-shaped tensors: each one error naming the file and every tensor concerned,
// and the model is left as it was.
TEST(ModelsPytorch, MisnamedMissingMisshapedTensorsAreEachOneError) {
  const std::string path = fixtures() + "/resnet8_cifar100.pth";
  const auto sd = kd::read_torch_state_dict(path, "model");
  auto m = kd::create_model({"resnet8", 100, 3, 32});
  const auto before = snapshot(*m);

  std::string e = data_error([&] { kd::load_state_dict(*m, renamed(sd, "fc.weight", "fc.weights"), {}, path); });
  EXPECT_TRUE(contains(e, path + ": the state dict does not fit the model 'resnet8': 1 missing ('fc.weight'); "
                                 "1 unexpected ('fc.weights')"))
      << e;
  EXPECT_TRUE(same_state(*m, before));

  auto missing = sd;
  missing.erase(std::remove_if(missing.begin(), missing.end(),
                               [](const auto& p) { return p.first.rfind("layer2.0.downsample.", 0) == 0; }),
                missing.end());
  e = data_error([&] { kd::load_state_dict(*m, missing, {}, path); });
  EXPECT_TRUE(contains(e,
                       "5 missing ('layer2.0.downsample.0.weight', 'layer2.0.downsample.1.bias', "
                       "'layer2.0.downsample.1.running_mean', 'layer2.0.downsample.1.running_var', "
                       "'layer2.0.downsample.1.weight')"))
      << e;  // num_batches_tracked may be missing (PyTorch < 0.4.1 did not save it)
  EXPECT_FALSE(contains(e, "unexpected")) << e;
  EXPECT_TRUE(same_state(*m, before));

  auto ten = kd::create_model({"resnet8", 10, 3, 32});
  const auto ten_before = snapshot(*ten);
  e = data_error([&] { kd::load_state_dict(*ten, sd, {}, path); });
  EXPECT_TRUE(contains(e,
                       "2 mis-shaped ('fc.weight' is [100, 64] in the file, [10, 64] in the model, 'fc.bias' is "
                       "[100] in the file, [10] in the model)"))
      << e;
  EXPECT_FALSE(contains(e, "missing")) << e;
  EXPECT_EQ(count_of(e, path), 1u) << e;
  EXPECT_TRUE(same_state(*ten, ten_before));
}

TEST(ModelsPytorch, NameMapRenamesAndDropsByPrefix) {
  const std::string path = fixtures() + "/resnet8_cifar100.pth";
  auto sd = kd::read_torch_state_dict(path, "model");
  kd::StateDict wrapped;
  for (auto& [name, t] : sd)
    wrapped.emplace_back("module." + (name.rfind("fc.", 0) == 0 ? "head." + name.substr(3) : name), t);
  wrapped.emplace_back("module.aux.weight", torch::zeros({3}));
  auto m = kd::create_model({"resnet8", 100, 3, 32});
  std::string e = data_error([&] { kd::load_state_dict(*m, wrapped, {}, path); });
  EXPECT_TRUE(contains(e, "every name starts with 'module.'")) << e;
  auto map = kd::NameMap::from_json(
      json::parse(R"({"rename": {"module.head.weight": "fc.weight"}, "prefix": {"module.": "", "module.head.": "fc.",
                      "module.aux.": null}})"),
      "teachers.t.name_map");
  kd::load_state_dict(*m, wrapped, map, path);
  EXPECT_TRUE(torch::equal(m->named_parameters()["fc.weight"], sd[54].second)) << sd[54].first;
  EXPECT_TRUE(torch::equal(m->named_parameters()["conv1.weight"], sd[0].second));

  try {
    kd::NameMap::from_json(json::parse(R"({"prefix": {"a.": 3}})"), "teachers.t.name_map");
    ADD_FAILURE() << "no ConfigError";
  } catch (const kd::ConfigError& ce) {
    EXPECT_EQ(ce.key_path(), "teachers.t.name_map.prefix.a.");
  }
  try {
    kd::NameMap::from_json(json::parse(R"({"renames": {}})"), "teachers.t.name_map");
    ADD_FAILURE() << "no ConfigError";
  } catch (const kd::ConfigError& ce) {
    EXPECT_TRUE(contains(ce.what(), "teachers.t.name_map.renames")) << ce.what();
  }
}

TEST(ModelsPytorch, WrittenStateDictReadsBackAndCorruptFilesAreDataErrors) {
  const std::string dir = kd::test::make_temp_dir("torchfile");
  auto m = kd::create_model({"mobilenetv2", 10, 3, 32});
  const auto sd = kd::model_state_dict(*m);
  kd::write_torch_state_dict(sd, dir + "/m.pt");
  auto back = kd::read_torch_state_dict(dir + "/m.pt", "");
  ASSERT_EQ(back.size(), sd.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    EXPECT_EQ(back[i].first, sd[i].first);
    EXPECT_TRUE(torch::equal(back[i].second, sd[i].second)) << sd[i].first;
  }
  // Truncated anywhere, or not a torch.save file at all: one DataError naming the file.
  std::ifstream in(dir + "/m.pt", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t cut : {size_t{10}, bytes.size() / 2, bytes.size() - 30}) {
    kd::test::write_file(dir + "/cut.pt", bytes.substr(0, cut));
    std::string e = data_error([&] { kd::read_torch_state_dict(dir + "/cut.pt", ""); });
    EXPECT_TRUE(contains(e, dir + "/cut.pt: ")) << cut << ": " << e;
  }
  kd::test::write_file(dir + "/text.pt", "hello, this is not a checkpoint\n");
  std::string e = data_error([&] { kd::read_torch_state_dict(dir + "/text.pt", ""); });
  EXPECT_TRUE(contains(e, dir + "/text.pt: not a")) << e;
  e = data_error([&] { kd::read_torch_state_dict(dir + "/none.pt", ""); });
  EXPECT_TRUE(contains(e, dir + "/none.pt: file not found")) << e;
}

// A kdbench checkpoint reopened as the model it holds (what `kdbench export` starts from).
TEST(ModelsPytorch, CheckpointReopensAsItsModel) {
  const std::string dir = kd::test::make_temp_dir("reopen");
  auto m = kd::create_model({"wrn_16_1", 7, 1, 32});
  kd::save_model(*m, dir + "/w.pt");
  auto back = kd::load_model_checkpoint(dir + "/w.pt");
  EXPECT_EQ(back->arch(), "wrn_16_1");
  m->eval();
  back->eval();
  auto x = torch::randn({2, 1, 32, 32});
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(m->forward(x), back->forward(x)));
}

// kdbench's zoo in Python (python/kdbench_zoo.py: what `kdbench export --format export` rebuilds a student
// with, and what users can load exported state dicts into) computes what the C++ zoo computes: for one
// model of every family, the state dict written by kdbench loads strictly and gives the same logits and
// the same taps (under kdbench's names).
TEST(ModelsPytorch, PythonZooGivesTheCppZoosLogitsAndTaps) {
  const std::string dir = kd::test::make_temp_dir("pyzoo");
  struct Case {
    const char* name;
    int channels, size;
  };
  const std::vector<Case> cases{{"cnn_large", 1, 28},    {"resnet8x4", 3, 32},   {"wrn_16_2", 3, 32},
                                {"vgg8", 3, 32},         {"vgg11", 3, 64},       {"mobilenetv2", 3, 32},
                                {"shufflenetv1", 3, 32}, {"shufflenetv2", 3, 32}};
  std::map<std::string, kd::TapMap> want;
  torch::manual_seed(0);
  for (const auto& c : cases) {
    auto m = kd::create_model({c.name, 10, c.channels, c.size});
    {  // batch-norm statistics away from their initial values
      torch::NoGradGuard ng;
      m->train();
      for (int i = 0; i < 2; ++i) m->forward(torch::randn({4, c.channels, c.size, c.size}) * 2 + 0.5);
    }
    m->eval();
    kd::write_torch_state_dict(kd::model_state_dict(*m), dir + "/" + c.name + ".pt");
    torch::NoGradGuard ng;
    m->forward_taps(sine_input({2, c.channels, c.size, c.size}), &want[c.name]);
  }
  kd::test::write_file(dir + "/run.py", R"PY(
import sys, torch
sys.path.insert(0, sys.argv[1])
import kdbench_zoo
out = {}
for spec in sys.argv[3:]:
    name, channels, size = spec.split(":")
    channels, size = int(channels), int(size)
    m = kdbench_zoo.create(name, 10, in_channels=channels, taps=True)
    m.load_state_dict(torch.load("%s/%s.pt" % (sys.argv[2], name)), strict=True)
    x = torch.sin(0.37 * torch.arange(2 * channels * size * size, dtype=torch.float32)).view(2, channels, size, size)
    with torch.no_grad():
        for tap, t in m.eval()(x).items():
            out[name + "/" + tap] = t
torch.save(out, sys.argv[2] + "/python.pt")
)PY");
  std::string args;
  for (const auto& c : cases)
    args += std::string(" ") + c.name + ":" + std::to_string(c.channels) + ":" + std::to_string(c.size);
  auto r = kd::test::run_command(std::string(KDBENCH_PYTHON) + " " + dir + "/run.py " + kd::test::source_dir() +
                                 "/python " + dir + args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, torch::Tensor> got;
  for (auto& [k, t] : kd::read_torch_state_dict(dir + "/python.pt", "")) got[k] = t;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_FALSE(want[c.name].empty());
    for (const auto& [tap, t] : want[c.name]) {
      const std::string key = std::string(c.name) + "/" + tap;
      ASSERT_TRUE(got.count(key)) << key;
      ASSERT_EQ(got[key].sizes(), t.sizes()) << key;
      EXPECT_LT((got[key] - t).abs().max().item<double>(), 1e-4) << key;
    }
  }
}

// A compiled teacher's outputs are named from the package's output spec. The specs below are what torch
// 2.11's torch.utils._pytree.treespec_dumps writes (and AOTInductor stores) for a module returning a tensor,
// a tuple, a list and a dict; a package that returns a dict is compiled and run in test_cli_export.cpp.
TEST(ModelsPytorch, ExportedOutputsAreNamedFromTheOutputSpec) {
  const std::string leaf = R"({"type": null, "context": null, "children_spec": []})";
  EXPECT_TRUE(kd::exported_output_keys("[1, " + leaf + "]", "t.pt2").empty());
  EXPECT_TRUE(kd::exported_output_keys(R"([1, {"type": "builtins.tuple", "context": "null", "children_spec": [)" +
                                           leaf + ", " + leaf + "]}]",
                                       "t.pt2")
                  .empty());
  EXPECT_TRUE(kd::exported_output_keys(
                  R"([1, {"type": "builtins.list", "context": "null", "children_spec": [)" + leaf + "]}]", "t.pt2")
                  .empty());
  EXPECT_EQ(kd::exported_output_keys(R"([1, {"type": "builtins.dict", "context": "[\"logits\", \"block1\"]", )"
                                     R"("children_spec": [)" +
                                         leaf + ", " + leaf + "]}]",
                                     "t.pt2"),
            (std::vector<std::string>{"logits", "block1"}));
  std::string e = data_error([&] {
    kd::exported_output_keys(R"([1, {"type": "builtins.dict", "context": "[\"a\"]", "children_spec": [)"
                             R"({"type": "builtins.tuple", "context": "null", "children_spec": []}]}])",
                             "t.pt2");
  });
  EXPECT_TRUE(contains(e, "t.pt2: the package returns a dict of nested containers")) << e;
  e = data_error([&] { kd::exported_output_keys("not json", "t.pt2"); });
  EXPECT_TRUE(contains(e, "t.pt2: the package's output spec is not JSON")) << e;
}

// ---- with Python (the venv's torch and torchvision) ---------------------------------------------

// The venv's Python makes, in two parts: "torchvision": torchvision ResNet-18 and ResNet-50 with seeded
// random weights, saved as torchvision saves its weights (a bare state dict), with their logits on one
// input; "formats": a kdbench-zoo resnet8 checkpoint in the legacy format (also as a GPU-trained model was
// saved by PyTorch 1.x) and in the zip format, with what training scripts save beside the weights
// (optimizer momentum, a numpy scalar, an argparse.Namespace).
class ModelsPytorchPython : public ::testing::Test {
 protected:
  // Runs the script's part "torchvision" or "formats" once per process (CTest runs each test in its own).
  static void make(const std::string& part) {
    if (dir_.empty()) dir_ = kd::test::make_temp_dir("pytorch");
    if (fs::exists(dir_ + "/" + part + ".done")) return;
    kd::test::write_file(dir_ + "/make.py", R"PY(
import argparse, sys, torch, numpy, torchvision
out, part = sys.argv[1], sys.argv[3]
sys.path.insert(0, sys.argv[2])
import kdbench_zoo

# Seeded random weights; batch-norm statistics estimated on random batches, as training estimates them on
# data (so the logits have a trained network's scale, not thousands).
def randomise(model, size=64):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2); m.momentum = None
        model.train()
        for _ in range(2):
            model(torch.randn(8, 3, size, size))
    return model.eval()

torch.manual_seed(0)
x = torch.randn(2, 3, 64, 64)
result = {"x": x}
if part == "torchvision":
    for name in ("resnet18", "resnet50"):
        model = randomise(getattr(torchvision.models, name)(weights=None))
        torch.save(model.state_dict(), "%s/%s.pth" % (out, name))
        with torch.no_grad():
            result[name] = model(x)
    torch.save(result, out + "/expected_torchvision.pt")
    sys.exit(0)
m = randomise(kdbench_zoo.create("resnet8", 10), 32)
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
m.train(); m(torch.randn(2, 3, 32, 32)).sum().backward(); opt.step(); m.eval()
extra = {"epoch": 7, "model": m.state_dict(), "optimizer": opt.state_dict(), "best_acc": numpy.float64(61.5),
         "args": argparse.Namespace(lr=0.1, model="resnet8")}
torch.save(extra, out + "/legacy.pth", _use_new_zipfile_serialization=False)
# As PyTorch 1.x saved a model trained on a GPU (RepDistiller's teachers): storages named
# torch.cuda.FloatStorage at location cuda:0 (the pure-Python pickler lets the storage ids be rewritten).
import pickle, types
class GpuStoragePickler(pickle._Pickler):
    def save_pers(self, pid):
        if isinstance(pid, tuple) and pid and pid[0] == "storage":
            pid = ("storage", getattr(torch.cuda, pid[1].__name__), pid[2], "cuda:0") + tuple(pid[4:])
        super().save_pers(pid)
gpu_pickle = types.ModuleType("gpu_pickle")
gpu_pickle.Pickler, gpu_pickle.dump = GpuStoragePickler, pickle.dump
torch.save(extra, out + "/legacy_gpu.pth", _use_new_zipfile_serialization=False, pickle_module=gpu_pickle)
assert b"torch.cuda" in open(out + "/legacy_gpu.pth", "rb").read()
torch.save(extra, out + "/zip.pth")
view = {"w": torch.arange(12.0).view(3, 4)[1:, ::2], "n": torch.tensor(5)}  # offset 4, strides (4, 2)
torch.save(view, out + "/view_legacy.pt", _use_new_zipfile_serialization=False)
torch.save(view, out + "/view_zip.pt")
with torch.no_grad():
    result["resnet8"] = m(x[:, :, :32, :32])
torch.save(result, out + "/expected_formats.pt")
)PY");
    auto r = kd::test::run_command(std::string(KDBENCH_PYTHON) + " " + dir_ + "/make.py " + dir_ + " " +
                                   kd::test::source_dir() + "/python " + part);
    ASSERT_EQ(r.exit_code, 0) << "the venv's python failed to make the files:\n" << r.output;
    kd::test::write_file(dir_ + "/" + part + ".done", "");
  }
  static torch::Tensor expected(const std::string& part, const std::string& name) {
    for (auto& [k, t] : kd::read_torch_state_dict(dir_ + "/expected_" + part + ".pt", ""))
      if (k == name) return t;
    throw std::runtime_error("no " + name);
  }
  static std::string dir_;
};
std::string ModelsPytorchPython::dir_;

TEST_F(ModelsPytorchPython, TorchvisionWeightsGiveTorchvisionsLogits) {
  ASSERT_NO_FATAL_FAILURE(make("torchvision"));
  const auto x = expected("torchvision", "x");
  for (const char* name : {"resnet18", "resnet50"}) {
    SCOPED_TRACE(name);
    const std::string path = dir_ + "/" + name + ".pth";
    auto m = kd::create_model({name, 1000, 3, 224});
    kd::load_state_dict(*m, kd::read_torch_state_dict(path, ""), {}, path);
    m->eval();
    torch::NoGradGuard ng;
    const double diff = (m->forward(x) - expected("torchvision", name)).abs().max().item<double>();
    EXPECT_LT(diff, 1e-4);
    std::cout << name << ": max |kdbench - torchvision| = " << diff << "\n";
  }
}

TEST_F(ModelsPytorchPython, LegacyFormatAndTrainingStateBesideTheWeights) {
  ASSERT_NO_FATAL_FAILURE(make("formats"));
  const auto x = expected("formats", "x").narrow(2, 0, 32).narrow(3, 0, 32);
  for (const char* file : {"legacy.pth", "legacy_gpu.pth", "zip.pth"}) {
    SCOPED_TRACE(file);
    const std::string path = dir_ + "/" + file;
    auto m = kd::create_model({"resnet8", 10, 3, 32});
    kd::load_state_dict(*m, kd::read_torch_state_dict(path, "model"), {}, path);
    m->eval();
    torch::NoGradGuard ng;
    EXPECT_LT((m->forward(x) - expected("formats", "resnet8")).abs().max().item<double>(), 1e-5);
    // The optimizer's state holds tensors too: under a key, any dict of tensors can be read.
    std::string e = data_error([&] { kd::read_torch_state_dict(path, "optimizer"); });
    EXPECT_TRUE(contains(e, "'optimizer' holds no tensors; its keys: state, param_groups")) << e;
  }
  // Tensors that are strided views of their storage (an offset, a step) come back as PyTorch saved them.
  for (const char* file : {"view_legacy.pt", "view_zip.pt"}) {
    SCOPED_TRACE(file);
    auto sd = kd::read_torch_state_dict(dir_ + "/" + file, "");
    ASSERT_EQ(sd.size(), 2u);
    EXPECT_TRUE(torch::equal(sd[0].second, torch::tensor({{4.0f, 6.0f}, {8.0f, 10.0f}})));
    EXPECT_EQ(sd[1].second.item<int64_t>(), 5);
  }
}

}  // namespace
