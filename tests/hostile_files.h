// Hostile torch.save files, made in the tests (nothing large is kept in the repository): pickles written opcode by
// opcode (the opcodes and their arguments as Python's Lib/pickletools.py documents them), in the zip format
// (LibTorch's PyTorchStreamWriter, the writer torch.save uses, which can also deflate a record as zip tools do)
// and in the legacy format (torch/serialization.py's _legacy_save: magic number, protocol version, system info,
// the object, the storage keys, then each storage as an int64 element count and its bytes).
#pragma once
#include <caffe2/serialize/inline_container.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace kd::test::pickle {

inline std::string bytes_of(const void* p, size_t n) {
  return std::string(static_cast<const char*>(p), n);
}
inline std::string proto2() {
  return std::string("\x80\x02", 2);
}
inline std::string stop() {
  return ".";
}
inline std::string u32(uint32_t v) {
  return bytes_of(&v, 4);
}
inline std::string i64(int64_t v) {
  return bytes_of(&v, 8);
}
inline std::string none() {
  return "N";
}
inline std::string binint1(uint8_t v) {
  return std::string{'K', static_cast<char>(v)};
}
inline std::string long8(int64_t v) {  // LONG1 with 8 bytes
  return std::string("\x8a\x08", 2) + i64(v);
}
inline std::string unicode(const std::string& s) {  // BINUNICODE
  return "X" + u32(static_cast<uint32_t>(s.size())) + s;
}
inline std::string global(const std::string& module, const std::string& name) {
  return "c" + module + "\n" + name + "\n";
}
inline std::string long_binput(uint32_t id) {
  return "r" + u32(id);
}
inline std::string long_binget(uint32_t id) {
  return "j" + u32(id);
}
inline std::string repeat(const std::string& s, size_t n) {
  std::string o;
  o.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) o += s;
  return o;
}

// ('storage', torch.<type>Storage, key, 'cpu', numel): a storage's persistent id, then BINPERSID.
inline std::string storage(const std::string& key, int64_t numel, const std::string& type = "FloatStorage") {
  return "(" + unicode("storage") + global("torch", type) + unicode(key) + unicode("cpu") + long8(numel) + "tQ";
}
// torch._utils._rebuild_tensor_v2(storage, offset, (size,), (1,), False, OrderedDict()).
inline std::string tensor_1d(const std::string& storage_pid, int64_t offset, int64_t size) {
  return global("torch._utils", "_rebuild_tensor_v2") + "(" + storage_pid + long8(offset) + "(" + long8(size) + "t(" +
         binint1(1) + "t\x89" + global("collections", "OrderedDict") + ")RtR";
}
// A whole pickle: OrderedDict {"w": float tensor of `size` elements at `offset` in storage "0" of `numel`}.
inline std::string state_dict(int64_t numel, int64_t size, int64_t offset = 0) {
  return proto2() + global("collections", "OrderedDict") + ")R(" + unicode("w") +
         tensor_1d(storage("0", numel), offset, size) + "u" + stop();
}

// A zip-format file of records (name, bytes, deflated?), as torch.save lays it out (PyTorchStreamWriter).
inline std::string zip_file(const std::vector<std::tuple<std::string, std::string, bool>>& records) {
  std::string out;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) -> size_t {
    out.append(static_cast<const char*>(buf), n);
    return n;
  });
  for (const auto& [name, data, deflate] : records) writer.writeRecord(name, data.data(), data.size(), deflate);
  writer.writeEndOfFile();
  return out;
}
// The zip format with `pickle` as data.pkl (deflated when `deflate`) and the given storage records.
inline std::string zip_torch_file(const std::string& pickle, bool deflate,
                                  const std::vector<std::pair<std::string, std::string>>& storages = {},
                                  bool deflate_storages = false) {
  std::vector<std::tuple<std::string, std::string, bool>> records{{"data.pkl", pickle, deflate},
                                                                  {"byteorder", "little", false}};
  for (const auto& [key, data] : storages) records.emplace_back("data/" + key, data, deflate_storages);
  return zip_file(records);
}

// The legacy format around the object's pickle; `storages`: (key, the element count its header declares, bytes).
inline std::string legacy_torch_file(const std::string& object_pickle,
                                     const std::vector<std::tuple<std::string, int64_t, std::string>>& storages = {}) {
  const std::string magic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);  // 0x1950a86a20f9469cfc6c
  const uint16_t version = 1001;
  std::string f = proto2() + "\x8a\x0a" + magic + stop();
  f += proto2() + "M" + bytes_of(&version, 2) + stop();
  f += proto2() + "}" + stop();
  f += object_pickle;
  f += proto2() + "(";
  for (const auto& s : storages) f += unicode(std::get<0>(s));
  f += "l" + stop();
  for (const auto& [key, numel, data] : storages) f += i64(numel) + data;
  return f;
}

}  // namespace kd::test::pickle
