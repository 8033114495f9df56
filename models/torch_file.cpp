// torch.save files without Python (see torch_file.h for why not torch::pickle_load / pickle_save).
//
// Reading. Two layouts: the zip format (torch >= 1.6: <archive>/data.pkl, one record data/<key> per
// storage, <archive>/byteorder) and the legacy format (five things in a row: a pickled magic number, a
// pickled protocol version, a pickled system-info dict, the object's pickle, a pickled list of storage
// keys, then each storage as an int64 element count and its raw bytes). In both, tensors are pickled as
// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) where the storage is a persistent
// id ('storage', torch.<Type>Storage, key, location, numel[, view]). The interpreter below builds inert
// values (None, bool, int, float, str, bytes, tuple, list, dict, tensor, opaque object); storages are
// read once the pickle is parsed, then every tensor is made as a strided view of its storage after
// checking that it lies inside it.
//
// Writing. torch.save's own layout for an OrderedDict of tensors: protocol 2, one storage per tensor, a
// zip written by LibTorch's PyTorchStreamWriter (the writer torch.save itself uses), with a byteorder
// record.
#include "models/torch_file.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "base/errors.h"
#include "base/fsutil.h"

namespace kd {

namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------- values

struct Storage {
  torch::Dtype dtype = torch::kFloat;
  int64_t numel = 0;
  std::string key;
  torch::Tensor data;  // 1-D, `numel` elements of `dtype`, once read
};
using StoragePtr = std::shared_ptr<Storage>;

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Tensor, Storage, Global, Object, Mark };
  Kind kind = Kind::None;
  int64_t i = 0;
  double f = 0;
  std::string s;                // Str, Bytes; Global: "module.name"
  std::vector<ValuePtr> items;  // Tuple, List; Dict: key, value, key, value, ...
  StoragePtr storage;           // Storage; Tensor: its storage
  int64_t offset = 0;           // Tensor: storage offset, size, stride
  std::vector<int64_t> size, stride;
  torch::Tensor tensor;  // Tensor, once its storage is read
};

ValuePtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}
ValuePtr make_int(int64_t i) {
  auto v = make(Value::Kind::Int);
  v->i = i;
  return v;
}
ValuePtr make_str(Value::Kind k, std::string s) {
  auto v = make(k);
  v->s = std::move(s);
  return v;
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::None:
      return "None";
    case Value::Kind::Bool:
      return "a bool";
    case Value::Kind::Int:
      return "an int";
    case Value::Kind::Float:
      return "a float";
    case Value::Kind::Str:
      return "a string";
    case Value::Kind::Bytes:
      return "bytes";
    case Value::Kind::Tuple:
      return "a tuple";
    case Value::Kind::List:
      return "a list";
    case Value::Kind::Dict:
      return "a dict";
    case Value::Kind::Tensor:
      return "a tensor";
    case Value::Kind::Storage:
      return "a storage";
    case Value::Kind::Global:
      return "a class or function";
    case Value::Kind::Object:
      return "an object";
    case Value::Kind::Mark:
      return "a mark";
  }
  return "?";
}

// torch.<Name>Storage -> dtype.
bool storage_dtype(const std::string& global, torch::Dtype& dtype) {
  static const std::map<std::string, torch::Dtype> types{{"torch.FloatStorage", torch::kFloat},
                                                         {"torch.DoubleStorage", torch::kDouble},
                                                         {"torch.HalfStorage", torch::kHalf},
                                                         {"torch.BFloat16Storage", torch::kBFloat16},
                                                         {"torch.LongStorage", torch::kLong},
                                                         {"torch.IntStorage", torch::kInt},
                                                         {"torch.ShortStorage", torch::kShort},
                                                         {"torch.CharStorage", torch::kChar},
                                                         {"torch.ByteStorage", torch::kByte},
                                                         {"torch.BoolStorage", torch::kBool},
                                                         {"torch.UntypedStorage", torch::kByte},
                                                         {"torch.ComplexFloatStorage", torch::kComplexFloat},
                                                         {"torch.ComplexDoubleStorage", torch::kComplexDouble}};
  // Tensors saved from a GPU by old PyTorch name torch.cuda.<Type>Storage; they are read onto the CPU.
  const std::string cuda = "torch.cuda.";
  auto it = types.find(global.rfind(cuda, 0) == 0 ? "torch." + global.substr(cuda.size()) : global);
  if (it == types.end()) return false;
  dtype = it->second;
  return true;
}

// ------------------------------------------------------------------------------------------ unpickler

// Interprets one pickle stream from `data` starting at `pos` (advanced past its STOP).
class Unpickler {
 public:
  Unpickler(const std::string& path, const std::vector<char>& data, size_t& pos,
            std::map<std::string, StoragePtr>& storages)
      : path_(path), data_(data), pos_(pos), storages_(storages) {}

  ValuePtr run() {
    while (true) {
      const size_t at = pos_;
      const uint8_t op = u8();
      if (op == '.') break;  // STOP
      step(op, at);
    }
    if (stack_.size() != 1) fail("the pickle ends with " + std::to_string(stack_.size()) + " values on its stack");
    return stack_.back();
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw DataError(path_, "not a readable torch.save file: " + what);
  }
  void need(size_t n) const {
    if (n > data_.size() - pos_) fail("truncated at byte " + std::to_string(pos_));
  }
  uint8_t u8() {
    need(1);
    return static_cast<uint8_t>(data_[pos_++]);
  }
  template <typename T>
  T le() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string bytes(uint64_t n) {
    if (n > data_.size() - pos_) fail("truncated at byte " + std::to_string(pos_));
    std::string s(data_.data() + pos_, n);
    pos_ += n;
    return s;
  }
  std::string line() {
    std::string s;
    while (true) {
      const char c = static_cast<char>(u8());
      if (c == '\n') return s;
      s += c;
    }
  }
  ValuePtr pop() {
    if (stack_.empty()) fail("stack underflow at byte " + std::to_string(pos_));
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  // The values above the topmost mark, which is removed.
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("no mark at byte " + std::to_string(pos_));
    const size_t start = marks_.back();
    marks_.pop_back();
    if (start > stack_.size()) fail("bad mark at byte " + std::to_string(pos_));
    std::vector<ValuePtr> v(stack_.begin() + static_cast<long>(start), stack_.end());
    stack_.resize(start);
    return v;
  }
  ValuePtr& top() {
    if (stack_.empty()) fail("stack underflow at byte " + std::to_string(pos_));
    return stack_.back();
  }
  ValuePtr tuple(std::vector<ValuePtr> items) {
    auto t = make(Value::Kind::Tuple);
    t->items = std::move(items);
    return t;
  }
  void memo_put(uint64_t id) { memo_[id] = top(); }
  ValuePtr memo_get(uint64_t id) {
    auto it = memo_.find(id);
    if (it == memo_.end()) fail("unknown memo entry " + std::to_string(id));
    return it->second;
  }
  // A little-endian two's complement integer of n bytes (LONG1 / LONG4); longer than 8 bytes: a string
  // of the bytes (only the legacy format's magic number is that long).
  ValuePtr long_int(uint64_t n) {
    std::string b = bytes(n);
    if (n > 8) return make_str(Value::Kind::Bytes, b);
    uint64_t u = 0;
    for (size_t i = 0; i < n; ++i) u |= static_cast<uint64_t>(static_cast<uint8_t>(b[i])) << (8 * i);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) u |= ~uint64_t{0} << (8 * n);
    return make_int(static_cast<int64_t>(u));
  }
  void append_to(const ValuePtr& container, std::vector<ValuePtr> items) {
    if (container->kind == Value::Kind::List) {
      for (auto& v : items) container->items.push_back(std::move(v));
    }  // appending to an opaque object (a set, a deque...) keeps it opaque
  }
  void set_items(const ValuePtr& container, std::vector<ValuePtr> kv) {
    if (kv.size() % 2) fail("odd number of dict items at byte " + std::to_string(pos_));
    if (container->kind != Value::Kind::Dict) return;
    for (auto& v : kv) container->items.push_back(std::move(v));
  }

  void step(uint8_t op, size_t at) {
    using K = Value::Kind;
    switch (op) {
      case 0x80:
        u8();
        break;  // PROTO
      case 0x95:
        le<uint64_t>();
        break;  // FRAME
      case '(':
        marks_.push_back(stack_.size());
        break;  // MARK
      case 'N':
        stack_.push_back(make(K::None));
        break;
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        auto v = make(K::Bool);
        v->i = op == 0x88;
        stack_.push_back(v);
      } break;
      case 'K':
        stack_.push_back(make_int(u8()));
        break;  // BININT1
      case 'M':
        stack_.push_back(make_int(le<uint16_t>()));
        break;  // BININT2
      case 'J':
        stack_.push_back(make_int(le<int32_t>()));
        break;  // BININT
      case 0x8a:
        stack_.push_back(long_int(u8()));
        break;      // LONG1
      case 0x8b: {  // LONG4
        const int32_t n = le<int32_t>();
        if (n < 0) fail("negative length at byte " + std::to_string(at));
        stack_.push_back(long_int(static_cast<uint64_t>(n)));
      } break;
      case 'G': {  // BINFLOAT, big-endian
        auto b = bytes(8);
        std::reverse(b.begin(), b.end());
        auto v = make(K::Float);
        std::memcpy(&v->f, b.data(), 8);
        stack_.push_back(v);
      } break;
      case 'X':
        stack_.push_back(make_str(K::Str, bytes(le<uint32_t>())));
        break;  // BINUNICODE
      case 0x8c:
        stack_.push_back(make_str(K::Str, bytes(u8())));
        break;  // SHORT_BINUNICODE
      case 0x8d:
        stack_.push_back(make_str(K::Str, bytes(le<uint64_t>())));
        break;  // BINUNICODE8
      case 'U':
        stack_.push_back(make_str(K::Str, bytes(u8())));
        break;  // SHORT_BINSTRING
      case 'T':
        stack_.push_back(make_str(K::Str, bytes(le<uint32_t>())));
        break;  // BINSTRING
      case 'C':
        stack_.push_back(make_str(K::Bytes, bytes(u8())));
        break;  // SHORT_BINBYTES
      case 'B':
        stack_.push_back(make_str(K::Bytes, bytes(le<uint32_t>())));
        break;  // BINBYTES
      case 0x8e:
      case 0x96:  // BINBYTES8, BYTEARRAY8
        stack_.push_back(make_str(K::Bytes, bytes(le<uint64_t>())));
        break;
      case ')':
        stack_.push_back(tuple({}));
        break;  // EMPTY_TUPLE
      case 0x85:
        stack_.push_back(tuple({pop()}));
        break;      // TUPLE1
      case 0x86: {  // TUPLE2
        auto b = pop();
        auto a = pop();
        stack_.push_back(tuple({a, b}));
      } break;
      case 0x87: {  // TUPLE3
        auto c = pop();
        auto b = pop();
        auto a = pop();
        stack_.push_back(tuple({a, b, c}));
      } break;
      case 't':
        stack_.push_back(tuple(pop_mark()));
        break;  // TUPLE
      case ']':
        stack_.push_back(make(K::List));
        break;     // EMPTY_LIST
      case 'l': {  // LIST
        auto l = make(K::List);
        l->items = pop_mark();
        stack_.push_back(l);
      } break;
      case '}':
        stack_.push_back(make(K::Dict));
        break;     // EMPTY_DICT
      case 'd': {  // DICT
        auto d = make(K::Dict);
        auto kv = pop_mark();
        stack_.push_back(d);
        set_items(d, std::move(kv));
      } break;
      case 0x8f:
        stack_.push_back(make(K::Object));
        break;  // EMPTY_SET
      case 0x90:
        pop_mark();
        break;  // ADDITEMS (sets stay opaque)
      case 0x91:
        pop_mark();
        stack_.push_back(make(K::Object));
        break;     // FROZENSET
      case 'a': {  // APPEND
        auto v = pop();
        append_to(top(), {v});
      } break;
      case 'e': {  // APPENDS
        auto items = pop_mark();
        append_to(top(), std::move(items));
      } break;
      case 's': {  // SETITEM
        auto v = pop();
        auto k = pop();
        set_items(top(), {k, v});
      } break;
      case 'u': {  // SETITEMS
        auto kv = pop_mark();
        set_items(top(), std::move(kv));
      } break;
      case 'q':
        memo_put(u8());
        break;  // BINPUT
      case 'r':
        memo_put(le<uint32_t>());
        break;  // LONG_BINPUT
      case 0x94:
        memo_put(memo_.size());
        break;  // MEMOIZE
      case 'h':
        stack_.push_back(memo_get(u8()));
        break;  // BINGET
      case 'j':
        stack_.push_back(memo_get(le<uint32_t>()));
        break;  // LONG_BINGET
      case '0':
        pop();
        break;  // POP
      case '1':
        pop_mark();
        break;  // POP_MARK
      case '2':
        stack_.push_back(top());
        break;     // DUP
      case 'c': {  // GLOBAL
        auto module = line();
        auto name = line();
        stack_.push_back(make_str(K::Global, module + "." + name));
      } break;
      case 0x93: {  // STACK_GLOBAL
        auto name = pop();
        auto module = pop();
        stack_.push_back(make_str(K::Global, module->s + "." + name->s));
      } break;
      case 'R': {  // REDUCE
        auto args = pop();
        auto callable = pop();
        stack_.push_back(reduce(callable, args, 0));
      } break;
      case 0x81: {  // NEWOBJ
        pop();
        pop();
        stack_.push_back(make(K::Object));
      } break;
      case 0x92: {  // NEWOBJ_EX
        pop();
        pop();
        pop();
        stack_.push_back(make(K::Object));
      } break;
      case 'b':
        pop();
        break;  // BUILD: the state of an object (an OrderedDict's _metadata) is not needed
      case 'Q':
        stack_.push_back(persistent(pop()));
        break;  // BINPERSID
      default: {
        std::ostringstream o;
        o << "unsupported pickle opcode 0x" << std::hex << static_cast<int>(op) << std::dec << " at byte " << at;
        fail(o.str());
      }
    }
  }

  // The callables torch.save files use; anything else is an opaque object, never called.
  ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args, int depth) {
    using K = Value::Kind;
    if (depth > 4) fail("tensor subclasses nested too deeply");
    const std::string f = callable->kind == K::Global ? callable->s : "";
    const auto& a = args->items;
    if (f == "collections.OrderedDict") {
      auto d = make(K::Dict);
      return d;  // its items come with SETITEMS
    }
    if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor") {
      if (args->kind != K::Tuple || a.size() < 4 || a[0]->kind != K::Storage || a[1]->kind != K::Int)
        fail("a tensor with unexpected arguments");
      auto t = make(K::Tensor);
      t->storage = a[0]->storage;
      t->offset = a[1]->i;
      t->size = int_tuple(a[2]);
      t->stride = int_tuple(a[3]);
      if (t->size.size() != t->stride.size()) fail("a tensor whose size and stride differ in length");
      tensors_.push_back(t);
      return t;
    }
    if (f == "torch._utils._rebuild_parameter" || f == "torch._utils._rebuild_parameter_with_state") {
      if (args->kind == K::Tuple && !a.empty() && a[0]->kind == K::Tensor) return a[0];
      fail("a parameter with unexpected arguments");
    }
    if (f == "torch._tensor._rebuild_from_type_v2") {  // (func, type, args, state): a tensor subclass
      if (args->kind == K::Tuple && a.size() >= 3) return reduce(a[0], a[2], depth + 1);
      fail("a tensor subclass with unexpected arguments");
    }
    return make(K::Object);
  }

  std::vector<int64_t> int_tuple(const ValuePtr& v) {
    std::vector<int64_t> out;
    if (v->kind != Value::Kind::Tuple && v->kind != Value::Kind::List) fail("a tensor size that is not a tuple");
    for (const auto& e : v->items) {
      if (e->kind != Value::Kind::Int) fail("a tensor size with " + std::string(kind_name(e->kind)));
      out.push_back(e->i);
    }
    return out;
  }

  // ('storage', torch.<Type>Storage, key, location, numel[, view_metadata]).
  ValuePtr persistent(const ValuePtr& pid) {
    using K = Value::Kind;
    const auto& a = pid->items;
    if (pid->kind != K::Tuple || a.size() < 5 || a[0]->kind != K::Str || a[0]->s != "storage" ||
        a[1]->kind != K::Global || a[2]->kind != K::Str || a[4]->kind != K::Int)
      fail("a persistent id that is not a tensor storage");
    torch::Dtype dtype;
    if (!storage_dtype(a[1]->s, dtype)) fail("storages of type " + a[1]->s + " are not supported");
    auto& slot = storages_[a[2]->s];
    if (!slot) {
      slot = std::make_shared<Storage>();
      slot->dtype = dtype;
      slot->numel = a[4]->i;
      slot->key = a[2]->s;
    }
    auto v = make(K::Storage);
    v->storage = slot;
    // Legacy view: (view_key, offset, size) of the root storage.
    if (a.size() >= 6 && a[5]->kind == K::Tuple && a[5]->items.size() == 3) {
      const auto& view = a[5]->items;
      auto& vslot = storages_[view[0]->s];
      if (!vslot) {
        vslot = std::make_shared<Storage>();
        vslot->dtype = dtype;
        vslot->numel = view[2]->i;
        vslot->key = view[0]->s;
        views_.push_back({vslot, slot, view[1]->i});
      }
      v->storage = vslot;
    }
    return v;
  }

 public:
  struct View {
    StoragePtr view, root;
    int64_t offset;
  };
  const std::vector<ValuePtr>& tensors() const { return tensors_; }
  const std::vector<View>& views() const { return views_; }

 private:
  const std::string& path_;
  const std::vector<char>& data_;
  size_t& pos_;
  std::map<std::string, StoragePtr>& storages_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, ValuePtr> memo_;
  std::vector<ValuePtr> tensors_;
  std::vector<View> views_;
};

// -------------------------------------------------------------------------------------------- reading

std::vector<char> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path, fs::exists(path) ? "cannot open the file" : "file not found");
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

size_t element_size(torch::Dtype d) {
  return c10::elementSize(d);
}

void fill_storage(Storage& s, const void* bytes, size_t nbytes, const std::string& path) {
  const size_t want = static_cast<size_t>(s.numel) * element_size(s.dtype);
  if (nbytes < want)
    throw DataError(path, "storage '" + s.key + "' has " + std::to_string(nbytes) + " bytes, its tensors need " +
                              std::to_string(want));
  s.data = torch::empty({s.numel}, torch::TensorOptions().dtype(s.dtype));
  if (want) std::memcpy(s.data.data_ptr(), bytes, want);
}

// Makes every tensor as a view of its storage, after checking it fits.
void materialise(const Unpickler& u, const std::string& path) {
  for (const auto& v : u.views()) {
    if (!v.root->data.defined()) throw DataError(path, "storage '" + v.root->key + "' is missing");
    if (v.offset < 0 || v.offset + v.view->numel > v.root->numel)
      throw DataError(path, "storage view '" + v.view->key + "' lies outside storage '" + v.root->key + "'");
    v.view->data = v.root->data.narrow(0, v.offset, v.view->numel);
  }
  for (const auto& t : u.tensors()) {
    const auto& s = *t->storage;
    if (!s.data.defined()) throw DataError(path, "storage '" + s.key + "' is missing");
    int64_t last = t->offset;  // the last element's index in the storage
    bool empty = false, overflow = false;
    for (size_t d = 0; d < t->size.size(); ++d) {
      if (t->size[d] < 0 || t->stride[d] < 0) throw DataError(path, "a tensor with a negative size or stride");
      if (t->size[d] == 0) empty = true;
      int64_t span = 0;
      overflow = overflow || __builtin_mul_overflow(t->size[d] - 1, t->stride[d], &span) ||
                 __builtin_add_overflow(last, span, &last);
    }
    if (!empty && (overflow || t->offset < 0 || last >= s.numel))
      throw DataError(path, "a tensor reaches past the end of storage '" + s.key + "'");
    t->tensor = empty ? torch::empty(t->size, torch::TensorOptions().dtype(s.dtype))
                      : s.data.as_strided(t->size, t->stride, t->offset);
  }
}

// Runs the unpickler on a whole pickle and makes its tensors once `read_storages` has filled them.
template <typename ReadStorages>
ValuePtr unpickle(const std::string& path, const std::vector<char>& data, size_t& pos, ReadStorages read_storages) {
  std::map<std::string, StoragePtr> storages;
  Unpickler u(path, data, pos, storages);
  ValuePtr root = u.run();
  read_storages(storages);
  materialise(u, path);
  return root;
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

ValuePtr load_zip(const std::string& path) {
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (reader.hasRecord("byteorder")) {
      auto [ptr, n] = reader.getRecord("byteorder");
      std::string order(static_cast<const char*>(ptr.get()), n);
      if (order != "little") throw DataError(path, "stored " + order + "-endian; only little-endian files are read");
    }
    auto [ptr, n] = reader.getRecord("data.pkl");
    std::vector<char> pickle(static_cast<const char*>(ptr.get()), static_cast<const char*>(ptr.get()) + n);
    size_t pos = 0;
    return unpickle(path, pickle, pos, [&](std::map<std::string, StoragePtr>& storages) {
      for (auto& [key, s] : storages) {
        if (s->data.defined()) continue;
        const std::string record = "data/" + key;
        if (!reader.hasRecord(record)) throw DataError(path, "storage record '" + record + "' is missing");
        auto [data, size] = reader.getRecord(record);
        fill_storage(*s, data.get(), size, path);
      }
    });
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {
    throw DataError(path, "not a readable torch.save file: " + first_line(e.what()));
  }
}

// The legacy format (torch.save before 1.6, or with _use_new_zipfile_serialization=False).
ValuePtr load_legacy(const std::string& path, const std::vector<char>& bytes) {
  using K = Value::Kind;
  size_t pos = 0;
  auto no_storages = [](std::map<std::string, StoragePtr>&) {};
  // The magic number 0x1950a86a20f9469cfc6c, pickled as a 10-byte LONG1.
  ValuePtr magic = unpickle(path, bytes, pos, no_storages);
  const std::string kMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
  if (magic->kind != K::Bytes || magic->s != kMagic)
    throw DataError(path, "not a torch.save file (neither a zip archive nor the legacy format's magic number)");
  ValuePtr version = unpickle(path, bytes, pos, no_storages);
  if (version->kind != K::Int || version->i != 1001)
    throw DataError(path, "legacy torch.save file of an unknown protocol version");
  ValuePtr sys_info = unpickle(path, bytes, pos, no_storages);
  for (size_t i = 0; sys_info->kind == K::Dict && i + 1 < sys_info->items.size(); i += 2)
    if (sys_info->items[i]->s == "little_endian" && sys_info->items[i + 1]->kind == K::Bool &&
        !sys_info->items[i + 1]->i)
      throw DataError(path, "stored big-endian; only little-endian files are read");
  return unpickle(path, bytes, pos, [&](std::map<std::string, StoragePtr>& storages) {
    size_t kpos = pos;
    std::map<std::string, StoragePtr> none;
    Unpickler keys_reader(path, bytes, kpos, none);
    ValuePtr keys = keys_reader.run();
    pos = kpos;
    if (keys->kind != K::List) throw DataError(path, "legacy torch.save file without its list of storages");
    for (const auto& k : keys->items) {
      if (pos + 8 > bytes.size()) throw DataError(path, "truncated: storage '" + k->s + "' is missing");
      int64_t numel;
      std::memcpy(&numel, bytes.data() + pos, 8);
      pos += 8;
      auto it = storages.find(k->s);
      if (it == storages.end()) throw DataError(path, "storage '" + k->s + "' is listed but never used");
      const size_t n = static_cast<size_t>(std::max<int64_t>(numel, 0)) * element_size(it->second->dtype);
      if (numel < 0 || n > bytes.size() - pos) throw DataError(path, "truncated in storage '" + k->s + "'");
      it->second->numel = numel;
      fill_storage(*it->second, bytes.data() + pos, n, path);
      pos += n;
    }
  });
}

std::vector<std::string> dict_keys(const Value& d) {
  std::vector<std::string> keys;
  for (size_t i = 0; i + 1 < d.items.size(); i += 2)
    keys.push_back(d.items[i]->kind == Value::Kind::Str ? d.items[i]->s
                                                        : std::string("<") + kind_name(d.items[i]->kind) + ">");
  return keys;
}

// Whether a dict or list holds tensors, at any depth (a few levels are enough for checkpoints).
bool holds_tensors(const Value& v, int depth) {
  if (depth > 8 || (v.kind != Value::Kind::Dict && v.kind != Value::Kind::List && v.kind != Value::Kind::Tuple))
    return false;
  for (const auto& item : v.items)
    if (item->kind == Value::Kind::Tensor || holds_tensors(*item, depth + 1)) return true;
  return false;
}

const Value* dict_get(const Value& d, const std::string& key) {
  for (size_t i = 0; i + 1 < d.items.size(); i += 2)
    if (d.items[i]->kind == Value::Kind::Str && d.items[i]->s == key) return d.items[i + 1].get();
  return nullptr;
}

// ------------------------------------------------------------------------------------------- writing

class PickleWriter {
 public:
  void op(uint8_t c) { out_.push_back(static_cast<char>(c)); }
  void raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  void global(const std::string& module, const std::string& name) {
    op('c');
    out_ += module + "\n" + name + "\n";
  }
  void str(const std::string& s) {
    op('X');
    const auto n = static_cast<uint32_t>(s.size());
    raw(&n, 4);
    out_ += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      op(static_cast<uint8_t>(v));
    } else if (v >= 0 && v < 65536) {
      op('M');
      const auto u = static_cast<uint16_t>(v);
      raw(&u, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      const auto i = static_cast<int32_t>(v);
      raw(&i, 4);
    } else {
      op(0x8a);
      op(8);
      raw(&v, 8);
    }
  }
  void int_tuple(const std::vector<int64_t>& v) {
    op('(');
    for (auto x : v) integer(x);
    op('t');
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

const char* storage_class(torch::Dtype d, const std::string& name) {
  switch (d) {
    case torch::kFloat:
      return "FloatStorage";
    case torch::kDouble:
      return "DoubleStorage";
    case torch::kHalf:
      return "HalfStorage";
    case torch::kBFloat16:
      return "BFloat16Storage";
    case torch::kLong:
      return "LongStorage";
    case torch::kInt:
      return "IntStorage";
    case torch::kShort:
      return "ShortStorage";
    case torch::kChar:
      return "CharStorage";
    case torch::kByte:
      return "ByteStorage";
    case torch::kBool:
      return "BoolStorage";
    default:
      throw std::invalid_argument("write_torch_state_dict: tensor '" + name + "' has an unsupported dtype");
  }
}

}  // namespace

StateDict read_torch_state_dict(const std::string& path, const std::string& key) {
  using K = Value::Kind;
  std::vector<char> head(4, 0);
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw DataError(path, fs::exists(path) ? "cannot open the file" : "file not found");
    f.read(head.data(), 4);
  }
  const bool zip = std::string(head.data(), 4) == std::string("PK\x03\x04", 4);
  ValuePtr root = zip ? load_zip(path) : load_legacy(path, read_file_bytes(path));
  const Value* v = root.get();
  std::string where = "the saved object";
  if (!key.empty()) {
    std::string rest = key;
    where.clear();
    while (!rest.empty()) {
      const size_t dot = rest.find('.');
      const std::string part = rest.substr(0, dot);
      rest = dot == std::string::npos ? "" : rest.substr(dot + 1);
      if (v->kind != K::Dict)
        throw DataError(path, "\"key\": \"" + key + "\": " + (where.empty() ? "the saved object" : "'" + where + "'") +
                                  " is " + kind_name(v->kind) + ", not a dict");
      const Value* next = dict_get(*v, part);
      if (!next)
        throw DataError(path, "\"key\": \"" + key + "\": no entry '" + part + "' in " +
                                  (where.empty() ? "the saved dict" : "'" + where + "'") +
                                  " (its keys: " + join_names(dict_keys(*v)) + ")");
      where += (where.empty() ? "" : ".") + part;
      v = next;
    }
    where = "'" + where + "'";
  }
  if (v->kind != K::Dict) throw DataError(path, where + " is " + kind_name(v->kind) + ", not a state dict");
  StateDict out;
  for (size_t i = 0; i + 1 < v->items.size(); i += 2)
    if (v->items[i]->kind == K::Str && v->items[i + 1]->kind == K::Tensor)
      out.emplace_back(v->items[i]->s, v->items[i + 1]->tensor);
  // A checkpoint (weights under "model" beside an optimizer's state...) read without "key": say which key.
  bool nested = false;
  for (size_t i = 1; i < v->items.size(); i += 2) nested = nested || holds_tensors(*v->items[i], 0);
  if (out.empty() || (key.empty() && nested)) {
    std::string hint;
    for (const char* k : {"state_dict", "net", "model_state_dict", "model"})
      if (dict_get(*v, k)) hint = " (give \"key\": \"" + std::string(k) + "\" to read the weights under it)";
    throw DataError(path, where + (out.empty() ? " holds no tensors" : " is a checkpoint, not a state dict") +
                              "; its keys: " + join_names(dict_keys(*v)) + hint);
  }
  return out;
}

void write_torch_state_dict(const StateDict& state, const std::string& path) {
  PickleWriter p;
  p.op(0x80);
  p.op(2);
  p.global("collections", "OrderedDict");
  p.op(')');
  p.op('R');
  p.op('(');
  std::vector<torch::Tensor> storages;
  for (size_t i = 0; i < state.size(); ++i) {
    const auto& [name, tensor] = state[i];
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    const std::string key = std::to_string(i);
    p.str(name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op('(');
    p.op('(');
    p.str("storage");
    p.global("torch", storage_class(t.scalar_type(), name));
    p.str(key);
    p.str("cpu");
    p.integer(t.numel());
    p.op('t');
    p.op('Q');
    p.integer(0);
    p.int_tuple(t.sizes().vec());
    p.int_tuple(t.strides().vec());
    p.op(0x89);  // requires_grad = False
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');  // backward hooks: an empty OrderedDict
    p.op('t');
    p.op('R');
    storages.push_back(t);
  }
  p.op('u');
  p.op('.');
  try {
    write_atomically(
        path,
        [&](const std::string& tmp) {
          std::ofstream out(tmp, std::ios::binary);
          caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) -> size_t {
            out.write(static_cast<const char*>(buf), static_cast<std::streamsize>(n));
            return out ? n : 0;
          });
          writer.writeRecord("data.pkl", p.bytes().data(), p.bytes().size());
          writer.writeRecord("byteorder", "little", 6);
          for (size_t i = 0; i < storages.size(); ++i)
            writer.writeRecord("data/" + std::to_string(i), storages[i].data_ptr(),
                               static_cast<size_t>(storages[i].numel()) * storages[i].element_size());
          writer.writeEndOfFile();
          out.close();
          if (!out) throw std::runtime_error("write failed");
        },
        "state_dict");
  } catch (const std::exception& e) {
    throw DataError(path, std::string("cannot write the state dict: ") + first_line(e.what()));
  }
}

}  // namespace kd
