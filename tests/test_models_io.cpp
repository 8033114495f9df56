// Model checkpoints (save/load round trip and every refusal) and TorchScript teachers exported from Python.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <functional>

#include "base/errors.h"
#include "models/model.h"
#include "test_util.h"

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

TEST(ModelsIo, SaveLoadRoundTripGivesIdenticalOutputs) {
  const std::string dir = kd::test::make_temp_dir("models");
  for (const char* name : {"resnet8", "wrn_16_1", "mobilenetv2", "shufflenetv2"}) {
    SCOPED_TRACE(name);
    auto a = kd::create_model({name, 10, 3, 32});
    auto b = kd::create_model({name, 10, 3, 32});
    // A few training-mode forwards move a's BN running statistics away from their initial values,
    // so the round trip must carry buffers as well as parameters.
    {
      torch::NoGradGuard ng;
      a->train();
      for (int i = 0; i < 3; ++i) a->forward(torch::randn({4, 3, 32, 32}) * 2 + 1);
    }
    a->eval();
    b->eval();
    auto x = torch::randn({2, 3, 32, 32});
    torch::NoGradGuard ng;
    EXPECT_FALSE(torch::allclose(a->forward(x), b->forward(x)));
    const std::string path = dir + "/" + name + ".pt";
    kd::save_model(*a, path);
    kd::load_model(*b, path);
    EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
    auto pa = a->named_buffers(), pb = b->named_buffers();
    ASSERT_EQ(pa.size(), pb.size());
    for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  }
}

TEST(ModelsIo, LoadRefusesOtherArchitecturesShapesAndFiles) {
  const std::string dir = kd::test::make_temp_dir("models");
  auto a = kd::create_model({"resnet8", 10, 3, 32});
  kd::save_model(*a, dir + "/a.pt");

  auto other = kd::create_model({"resnet14", 10, 3, 32});
  std::string e = data_error([&] { kd::load_model(*other, dir + "/a.pt"); });
  EXPECT_TRUE(contains(e, dir + "/a.pt: checkpoint is a 'resnet8', expected a 'resnet14'")) << e;

  // Same architecture, 100 classes instead of 10: the classifier's shape differs. The model is unchanged.
  auto wide = kd::create_model({"resnet8", 100, 3, 32});
  auto before = wide->named_parameters()["fc.weight"].clone();
  auto stem_before = wide->named_parameters()["conv1.weight"].clone();
  e = data_error([&] { kd::load_model(*wide, dir + "/a.pt"); });
  EXPECT_TRUE(contains(e, dir + "/a.pt")) << e;
  EXPECT_TRUE(contains(e, "tensor 'fc.weight' has shape [10, 64] in the checkpoint, the model's is [100, 64]")) << e;
  EXPECT_TRUE(torch::equal(wide->named_parameters()["fc.weight"], before));
  EXPECT_TRUE(torch::equal(wide->named_parameters()["conv1.weight"], stem_before)) << "partial load";

  // One input channel instead of three: the stem's shape differs.
  auto gray = kd::create_model({"resnet8", 10, 1, 32});
  e = data_error([&] { kd::load_model(*gray, dir + "/a.pt"); });
  EXPECT_TRUE(contains(e, "tensor 'conv1.weight' has shape [16, 3, 3, 3] in the checkpoint")) << e;

  kd::test::write_file(dir + "/junk.pt", "not a checkpoint");
  e = data_error([&] { kd::load_model(*a, dir + "/junk.pt"); });
  EXPECT_TRUE(contains(e, dir + "/junk.pt: cannot read model checkpoint")) << e;

  e = data_error([&] { kd::load_model(*a, dir + "/missing.pt"); });
  EXPECT_TRUE(contains(e, dir + "/missing.pt")) << e;

  // A torch::save of a module without kdbench's architecture record.
  torch::save(a, dir + "/plain.pt");
  e = data_error([&] { kd::load_model(*a, dir + "/plain.pt"); });
  EXPECT_TRUE(contains(e, dir + "/plain.pt: not a kdbench model checkpoint")) << e;

  e = data_error([&] { kd::save_model(*a, dir + "/no/such/dir/a.pt"); });
  EXPECT_TRUE(contains(e, dir + "/no/such/dir/a.pt: cannot write")) << e;
}

// Scripted teachers are written by the venv's python at test time (KDBENCH_PYTHON).
class ModelsTorchScript : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = kd::test::make_temp_dir("ts");
    kd::test::write_file(dir_ + "/make.py",
                         "import sys, torch\n"
                         "from typing import Dict, Tuple\n"
                         "class Net(torch.nn.Module):\n"
                         "    def __init__(self):\n"
                         "        super().__init__()\n"
                         "        self.c1 = torch.nn.Conv2d(1, 4, 3, padding=1)\n"
                         "        self.c2 = torch.nn.Conv2d(4, 8, 3, stride=2, padding=1)\n"
                         "        self.fc = torch.nn.Linear(8, 10)\n"
                         "    def feats(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:\n"
                         "        f1 = torch.relu(self.c1(x))\n"
                         "        f2 = torch.relu(self.c2(f1))\n"
                         "        return f1, f2, self.fc(f2.mean((2, 3)))\n"
                         "class AsTuple(Net):\n"
                         "    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:\n"
                         "        f1, f2, y = self.feats(x)\n"
                         "        return y, f1, f2\n"
                         "class AsDict(Net):\n"
                         "    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:\n"
                         "        f1, f2, y = self.feats(x)\n"
                         "        return {'logits': y, 'block1': f1, 'block2': f2}\n"
                         "class AsTensor(Net):\n"
                         "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
                         "        return self.feats(x)[2]\n"
                         "torch.manual_seed(0)\n"
                         "x = torch.randn(2, 1, 28, 28)\n"
                         "for cls in (AsDict, AsTensor, AsTuple):\n"
                         "    m = torch.jit.script(cls().eval())\n"
                         "    torch.jit.save(m, sys.argv[1] + '/' + cls.__name__ + '.pt')\n"
                         "torch.save({'x': x}, sys.argv[1] + '/x.pt')\n"
                         "with torch.no_grad(): y = m(x)[0]\n"
                         "torch.jit.save(torch.jit.script(torch.nn.Module()), sys.argv[1] + '/empty.pt')\n"
                         "open(sys.argv[1] + '/y.txt', 'w').write(' '.join(repr(float(v)) for v in y.flatten()))\n");
    auto r = kd::test::run_command(std::string(KDBENCH_PYTHON) + " " + dir_ + "/make.py " + dir_ + " 2>&1");
    ok_ = r.exit_code == 0;
    why_ = r.output;
  }
  void SetUp() override {
    if (!ok_) GTEST_SKIP() << "python with torch unavailable: " << why_;
  }
  static std::string dir_, why_;
  static bool ok_;
};
std::string ModelsTorchScript::dir_, ModelsTorchScript::why_;
bool ModelsTorchScript::ok_ = false;

TEST_F(ModelsTorchScript, TupleOutputsAreNamedTaps) {
  auto m = kd::load_torchscript_model(dir_ + "/AsTuple.pt", {"logits", "block1", "block2"});
  EXPECT_EQ(m->arch(), "torchscript:" + dir_ + "/AsTuple.pt");
  EXPECT_EQ(m->tap_names(), (std::vector<std::string>{"logits", "block1", "block2"}));
  // conv1 4*1*9+4 = 40, conv2 8*4*9+8 = 296, fc 8*10+10 = 90
  EXPECT_EQ(kd::count_parameters(*m), 40 + 296 + 90);
  kd::TapMap taps;
  auto out = m->forward_taps(torch::randn({2, 1, 28, 28}), &taps);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_EQ(taps.at("block1").sizes(), (std::vector<int64_t>{2, 4, 28, 28}));
  EXPECT_EQ(taps.at("block2").sizes(), (std::vector<int64_t>{2, 8, 14, 14}));
  EXPECT_TRUE(taps.at("logits").is_same(out));
}

TEST_F(ModelsTorchScript, GivesPythonsOutputs) {
  auto m = kd::load_torchscript_model(dir_ + "/AsTuple.pt", {"logits", "block1", "block2"});
  // The same input Python used (torch.save of a dict, read back with torch::pickle_load).
  std::ifstream in(dir_ + "/x.pt", std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto x = torch::pickle_load(bytes).toGenericDict().at("x").toTensor();
  std::ifstream yf(dir_ + "/y.txt");
  std::vector<float> want;
  for (double v; yf >> v;) want.push_back(static_cast<float>(v));
  ASSERT_EQ(want.size(), 20u);
  torch::NoGradGuard ng;
  auto got = m->forward(x).flatten();
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i].item<float>(), want[i], 1e-5) << i;
}

TEST_F(ModelsTorchScript, DictAndTensorOutputs) {
  auto d = kd::load_torchscript_model(dir_ + "/AsDict.pt", {"logits", "block2"});
  kd::TapMap taps;
  auto out = d->forward_taps(torch::randn({1, 1, 28, 28}), &taps);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 10}));
  EXPECT_EQ(taps.at("block2").sizes(), (std::vector<int64_t>{1, 8, 14, 14}));
  auto t = kd::load_torchscript_model(dir_ + "/AsTensor.pt", {"logits"});
  EXPECT_EQ(t->forward(torch::randn({3, 1, 28, 28})).sizes(), (std::vector<int64_t>{3, 10}));
}

TEST_F(ModelsTorchScript, MissingTapsAndFilesAreDataErrors) {
  auto tuple = kd::load_torchscript_model(dir_ + "/AsTuple.pt", {"logits", "block1", "block2", "block3"});
  std::string e = data_error([&] { tuple->forward_taps(torch::randn({1, 1, 28, 28}), nullptr); });
  EXPECT_TRUE(contains(e, dir_ + "/AsTuple.pt")) << e;
  EXPECT_TRUE(contains(e, "block3")) << e;

  auto dict = kd::load_torchscript_model(dir_ + "/AsDict.pt", {"logits", "block7"});
  e = data_error([&] { dict->forward_taps(torch::randn({1, 1, 28, 28}), nullptr); });
  EXPECT_TRUE(contains(e, dir_ + "/AsDict.pt")) << e;
  EXPECT_TRUE(contains(e, "'block7'")) << e;

  e = data_error([&] { kd::load_torchscript_model(dir_ + "/AsTuple.pt", {"out", "block1"}); });
  EXPECT_TRUE(contains(e, dir_ + "/AsTuple.pt")) << e;
  EXPECT_TRUE(contains(e, "logits")) << e;

  e = data_error([&] { kd::load_torchscript_model(dir_ + "/nope.pt", {"logits"}); });
  EXPECT_TRUE(contains(e, dir_ + "/nope.pt")) << e;
  EXPECT_TRUE(contains(e, "not found")) << e;

  kd::test::write_file(dir_ + "/junk.pt", "garbage");
  e = data_error([&] { kd::load_torchscript_model(dir_ + "/junk.pt", {"logits"}); });
  EXPECT_TRUE(contains(e, dir_ + "/junk.pt: cannot load TorchScript module")) << e;

  e = data_error([&] { kd::load_torchscript_model(dir_ + "/empty.pt", {"logits"}); });
  EXPECT_TRUE(contains(e, dir_ + "/empty.pt")) << e;
  EXPECT_TRUE(contains(e, "forward")) << e;
}

}  // namespace
