// libFuzzer target: torch.save files (teachers' state dicts from PyTorch: "obtain": "pytorch").
//
// Covers kd::read_torch_state_dict on the input as a file: the zip format (LibTorch's PyTorchStreamReader,
// then kdbench's pickle interpreter and storage checks) and the legacy format (five pickles in a row and
// raw storages), with no key and with "model" (a checkpoint's weights). Whatever comes back must be named
// tensors whose data can be read. Only kd::DataError is caught.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/errors.h"
#include "fuzz_util.h"
#include "models/torch_file.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kd::fuzz::MemFile file("fuzz_torch_file");
  const std::string& path = file.set(reinterpret_cast<const char*>(data), size);
  for (const char* key : {"", "model"}) {
    try {
      for (const auto& [name, t] : kd::read_torch_state_dict(path, key)) {
        if (name.empty() && !t.defined()) kd::fuzz::fail("empty entry");
        if (t.numel() > 0) (void)t.sum().item<double>();  // touches every element of the view
      }
    } catch (const kd::DataError&) {
    }
  }
  return 0;
}
