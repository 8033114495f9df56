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
// Limits. A file may come from someone else, so what it can make kdbench do is bounded by its size: the values
// the interpreter makes (at most 65536 + 16 per byte of the file), the stack and the marks, the memo, how deeply
// containers nest, the dimensions of a tensor, and the bytes inflated from the zip (no record is inflated past
// what deflate can give for its compressed size, a record other than data.pkl and the storages past 64 KiB, and
// a storage's record only as far as the storage the pickle declares). Each limit broken is one DataError naming
// the file and the limit. Values live in one arena per file and hold each other by plain pointers, so nothing
// recurses over them, however deeply a file nests them (freeing them included), and values that contain each
// other through the memo are no leak. Every `numel * element size` is computed with an overflow check.
//
// Writing. torch.save's own layout for an OrderedDict of tensors: protocol 2, one storage per tensor, a
// zip written by LibTorch's PyTorchStreamWriter (the writer torch.save itself uses), with a byteorder
// record.
#include "models/torch_file.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "base/errors.h"
#include "base/fsutil.h"

namespace kd {

namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------- limits

constexpr size_t kMaxNesting = 1000;           // containers in containers (state dicts and checkpoints: under 10)
constexpr size_t kMaxStack = size_t{1} << 20;  // values on the pickle's stack, and marks (pickle batches by 1000)
constexpr size_t kMaxMemo = size_t{1} << 20;   // memo entries (a few per tensor)
constexpr uint64_t kMinValues = uint64_t{1} << 16, kValuesPerByte = 16;  // values from a file: 65536 + 16 per byte
constexpr uint64_t kMaxDeflateRatio = 1032;                              // deflate gives at most 258 bytes per 2 bits
constexpr uint64_t kMaxSmallRecord = uint64_t{1} << 16;  // zip records besides data.pkl and the storages
constexpr size_t kMaxDims = 64;                          // dimensions of one tensor
constexpr size_t kMaxGlobalName = 1024;                  // characters of a class or function's module or name

std::string limit_note() {
  return " (kdbench's limit)";
}

// ---------------------------------------------------------------------------------------------- values

struct Storage {
  torch::Dtype dtype = torch::kFloat;
  int64_t numel = 0;
  std::string key;
  torch::Tensor data;  // 1-D, `numel` elements of `dtype`, once read
};
using StoragePtr = std::shared_ptr<Storage>;

// A value of the pickle. Values belong to the file's arena (Values) and refer to each other by plain pointers.
struct Value {
  enum class Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Tensor, Storage, Global, Object, Mark };
  Kind kind = Kind::None;
  int64_t i = 0;
  double f = 0;
  std::string s;              // Str, Bytes; Global: "module.name"
  std::vector<Value*> items;  // Tuple, List; Dict: key, value, key, value, ...
  StoragePtr storage;         // Storage; Tensor: its storage
  int64_t offset = 0;         // Tensor: storage offset, size, stride
  std::vector<int64_t> size, stride;
  torch::Tensor tensor;  // Tensor, once its storage is read
  size_t depth = 0;      // how many containers deep its contents go, as far as the interpreter saw them added
};

// Every value of one file, freed together in one flat pass; at most `limit` of them.
class Values {
 public:
  explicit Values(uint64_t file_size) : file_size_(file_size), limit_(kMinValues + kValuesPerByte * file_size) {}
  bool full() const { return values_.size() >= limit_; }
  Value* add(Value::Kind k) {
    values_.emplace_back();
    values_.back().kind = k;
    return &values_.back();
  }
  uint64_t limit() const { return limit_; }
  uint64_t file_size() const { return file_size_; }

 private:
  std::deque<Value> values_;  // a deque: a value's address never changes
  uint64_t file_size_, limit_;
};

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

// Interprets one pickle stream from `data` starting at `pos` (advanced past its STOP), making its values in
// `values`.
class Unpickler {
 public:
  Unpickler(const std::string& path, const std::vector<char>& data, size_t& pos, Values& values,
            std::map<std::string, StoragePtr>& storages)
      : path_(path), data_(data), pos_(pos), values_(values), storages_(storages) {}

  Value* run() {
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
  using K = Value::Kind;

  [[noreturn]] void fail(const std::string& what) const {
    throw DataError(path_, "not a readable torch.save file: " + what);
  }
  [[noreturn]] void over_limit(const std::string& what) const {
    fail(what + " at byte " + std::to_string(pos_) + limit_note());
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

  // ---- values, the stack, the marks and the memo, each within its limit
  Value* make(K k) {
    if (values_.full())
      over_limit("more than " + std::to_string(values_.limit()) + " values for a file of " +
                 std::to_string(values_.file_size()) + " bytes (65536 + 16 per byte of the file)");
    return values_.add(k);
  }
  Value* make_int(int64_t i) {
    Value* v = make(K::Int);
    v->i = i;
    return v;
  }
  Value* make_str(K k, std::string s) {
    Value* v = make(k);
    v->s = std::move(s);
    return v;
  }
  void push(Value* v) {
    if (stack_.size() >= kMaxStack)
      over_limit("more than " + std::to_string(kMaxStack) + " values on the pickle's stack");
    stack_.push_back(v);
  }
  void mark() {
    if (marks_.size() >= kMaxStack) over_limit("more than " + std::to_string(kMaxStack) + " marks");
    marks_.push_back(stack_.size());
  }
  Value* pop() {
    if (stack_.empty()) fail("stack underflow at byte " + std::to_string(pos_));
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  // The values above the topmost mark, which is removed.
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) fail("no mark at byte " + std::to_string(pos_));
    const size_t start = marks_.back();
    marks_.pop_back();
    if (start > stack_.size()) fail("bad mark at byte " + std::to_string(pos_));
    std::vector<Value*> v(stack_.begin() + static_cast<long>(start), stack_.end());
    stack_.resize(start);
    return v;
  }
  Value* top() {
    if (stack_.empty()) fail("stack underflow at byte " + std::to_string(pos_));
    return stack_.back();
  }
  // `item` goes into `container`: the container is at least one level deeper than the item.
  void contain(Value* container, const Value* item) {
    container->depth = std::max(container->depth, item->depth + 1);
    if (container->depth > kMaxNesting)
      over_limit("values nested deeper than " + std::to_string(kMaxNesting) + " levels");
  }
  Value* container(K k, std::vector<Value*> items) {
    Value* c = make(k);
    for (const Value* v : items) contain(c, v);
    c->items = std::move(items);
    return c;
  }
  void memo_put(uint64_t id) {
    if (memo_.size() >= kMaxMemo && !memo_.count(id))
      over_limit("more than " + std::to_string(kMaxMemo) + " memo entries");
    memo_[id] = top();
  }
  Value* memo_get(uint64_t id) {
    auto it = memo_.find(id);
    if (it == memo_.end()) fail("unknown memo entry " + std::to_string(id));
    return it->second;
  }
  // A little-endian two's complement integer of n bytes (LONG1 / LONG4); longer than 8 bytes: a string
  // of the bytes (only the legacy format's magic number is that long).
  Value* long_int(uint64_t n) {
    std::string b = bytes(n);
    if (n > 8) return make_str(K::Bytes, b);
    uint64_t u = 0;
    for (size_t i = 0; i < n; ++i) u |= static_cast<uint64_t>(static_cast<uint8_t>(b[i])) << (8 * i);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) u |= ~uint64_t{0} << (8 * n);
    return make_int(static_cast<int64_t>(u));
  }
  void append_to(Value* c, const std::vector<Value*>& items) {
    if (c->kind != K::List) return;  // appending to an opaque object (a set, a deque...) keeps it opaque
    for (Value* v : items) {
      contain(c, v);
      c->items.push_back(v);
    }
  }
  void set_items(Value* c, const std::vector<Value*>& kv) {
    if (kv.size() % 2) fail("odd number of dict items at byte " + std::to_string(pos_));
    if (c->kind != K::Dict) return;
    for (Value* v : kv) {
      contain(c, v);
      c->items.push_back(v);
    }
  }
  Value* global(const std::string& module, const std::string& name) {
    if (module.size() > kMaxGlobalName || name.size() > kMaxGlobalName)
      over_limit("a class or function name longer than " + std::to_string(kMaxGlobalName) + " characters");
    return make_str(K::Global, module + "." + name);
  }

  void step(uint8_t op, size_t at) {
    switch (op) {
      case 0x80:
        u8();
        break;  // PROTO
      case 0x95:
        le<uint64_t>();
        break;  // FRAME
      case '(':
        mark();
        break;  // MARK
      case 'N':
        push(make(K::None));
        break;
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        Value* v = make(K::Bool);
        v->i = op == 0x88;
        push(v);
      } break;
      case 'K':
        push(make_int(u8()));
        break;  // BININT1
      case 'M':
        push(make_int(le<uint16_t>()));
        break;  // BININT2
      case 'J':
        push(make_int(le<int32_t>()));
        break;  // BININT
      case 0x8a:
        push(long_int(u8()));
        break;      // LONG1
      case 0x8b: {  // LONG4
        const int32_t n = le<int32_t>();
        if (n < 0) fail("negative length at byte " + std::to_string(at));
        push(long_int(static_cast<uint64_t>(n)));
      } break;
      case 'G': {  // BINFLOAT, big-endian
        auto b = bytes(8);
        std::reverse(b.begin(), b.end());
        Value* v = make(K::Float);
        std::memcpy(&v->f, b.data(), 8);
        push(v);
      } break;
      case 'X':
        push(make_str(K::Str, bytes(le<uint32_t>())));
        break;  // BINUNICODE
      case 0x8c:
        push(make_str(K::Str, bytes(u8())));
        break;  // SHORT_BINUNICODE
      case 0x8d:
        push(make_str(K::Str, bytes(le<uint64_t>())));
        break;  // BINUNICODE8
      case 'U':
        push(make_str(K::Str, bytes(u8())));
        break;  // SHORT_BINSTRING
      case 'T':
        push(make_str(K::Str, bytes(le<uint32_t>())));
        break;  // BINSTRING
      case 'C':
        push(make_str(K::Bytes, bytes(u8())));
        break;  // SHORT_BINBYTES
      case 'B':
        push(make_str(K::Bytes, bytes(le<uint32_t>())));
        break;  // BINBYTES
      case 0x8e:
      case 0x96:  // BINBYTES8, BYTEARRAY8
        push(make_str(K::Bytes, bytes(le<uint64_t>())));
        break;
      case ')':
        push(container(K::Tuple, {}));
        break;  // EMPTY_TUPLE
      case 0x85:
        push(container(K::Tuple, {pop()}));
        break;      // TUPLE1
      case 0x86: {  // TUPLE2
        Value* b = pop();
        Value* a = pop();
        push(container(K::Tuple, {a, b}));
      } break;
      case 0x87: {  // TUPLE3
        Value* c = pop();
        Value* b = pop();
        Value* a = pop();
        push(container(K::Tuple, {a, b, c}));
      } break;
      case 't':
        push(container(K::Tuple, pop_mark()));
        break;  // TUPLE
      case ']':
        push(container(K::List, {}));
        break;  // EMPTY_LIST
      case 'l':
        push(container(K::List, pop_mark()));
        break;  // LIST
      case '}':
        push(container(K::Dict, {}));
        break;     // EMPTY_DICT
      case 'd': {  // DICT
        Value* d = make(K::Dict);
        auto kv = pop_mark();
        push(d);
        set_items(d, kv);
      } break;
      case 0x8f:
        push(make(K::Object));
        break;  // EMPTY_SET
      case 0x90:
        pop_mark();
        break;  // ADDITEMS (sets stay opaque)
      case 0x91:
        pop_mark();
        push(make(K::Object));
        break;     // FROZENSET
      case 'a': {  // APPEND
        Value* v = pop();
        append_to(top(), {v});
      } break;
      case 'e': {  // APPENDS
        auto items = pop_mark();
        append_to(top(), items);
      } break;
      case 's': {  // SETITEM
        Value* v = pop();
        Value* k = pop();
        set_items(top(), {k, v});
      } break;
      case 'u': {  // SETITEMS
        auto kv = pop_mark();
        set_items(top(), kv);
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
        push(memo_get(u8()));
        break;  // BINGET
      case 'j':
        push(memo_get(le<uint32_t>()));
        break;  // LONG_BINGET
      case '0':
        pop();
        break;  // POP
      case '1':
        pop_mark();
        break;  // POP_MARK
      case '2':
        push(top());
        break;     // DUP
      case 'c': {  // GLOBAL
        auto module = line();
        auto name = line();
        push(global(module, name));
      } break;
      case 0x93: {  // STACK_GLOBAL
        Value* name = pop();
        Value* module = pop();
        push(global(module->s, name->s));
      } break;
      case 'R': {  // REDUCE
        Value* args = pop();
        Value* callable = pop();
        push(reduce(callable, args, 0));
      } break;
      case 0x81: {  // NEWOBJ
        pop();
        pop();
        push(make(K::Object));
      } break;
      case 0x92: {  // NEWOBJ_EX
        pop();
        pop();
        pop();
        push(make(K::Object));
      } break;
      case 'b':
        pop();
        break;  // BUILD: the state of an object (an OrderedDict's _metadata) is not needed
      case 'Q':
        push(persistent(pop()));
        break;  // BINPERSID
      default: {
        std::ostringstream o;
        o << "unsupported pickle opcode 0x" << std::hex << static_cast<int>(op) << std::dec << " at byte " << at;
        fail(o.str());
      }
    }
  }

  // The callables torch.save files use; anything else is an opaque object, never called.
  Value* reduce(const Value* callable, const Value* args, int depth) {
    if (depth > 4) fail("tensor subclasses nested too deeply");
    const std::string f = callable->kind == K::Global ? callable->s : "";
    const auto& a = args->items;
    if (f == "collections.OrderedDict") return make(K::Dict);  // its items come with SETITEMS
    if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor") {
      if (args->kind != K::Tuple || a.size() < 4 || a[0]->kind != K::Storage || a[1]->kind != K::Int)
        fail("a tensor with unexpected arguments");
      Value* t = make(K::Tensor);
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

  std::vector<int64_t> int_tuple(const Value* v) {
    if (v->kind != K::Tuple && v->kind != K::List) fail("a tensor size that is not a tuple");
    if (v->items.size() > kMaxDims)
      over_limit("a tensor of " + std::to_string(v->items.size()) + " dimensions, more than " +
                 std::to_string(kMaxDims));
    std::vector<int64_t> out;
    for (const Value* e : v->items) {
      if (e->kind != K::Int) fail("a tensor size with " + std::string(kind_name(e->kind)));
      out.push_back(e->i);
    }
    return out;
  }

  // ('storage', torch.<Type>Storage, key, location, numel[, view_metadata]).
  Value* persistent(const Value* pid) {
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
    Value* v = make(K::Storage);
    v->storage = slot;
    // Legacy view: (view_key, offset, size) of the root storage.
    if (a.size() >= 6 && a[5]->kind == K::Tuple && a[5]->items.size() == 3) {
      const auto& view = a[5]->items;
      if (view[0]->kind != K::Str || view[1]->kind != K::Int || view[2]->kind != K::Int)
        fail("a storage view that is not (key, offset, size)");
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
  const std::vector<Value*>& tensors() const { return tensors_; }
  const std::vector<View>& views() const { return views_; }

 private:
  const std::string& path_;
  const std::vector<char>& data_;
  size_t& pos_;
  Values& values_;
  std::map<std::string, StoragePtr>& storages_;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
  std::vector<Value*> tensors_;
  std::vector<View> views_;
};

// -------------------------------------------------------------------------------------------- reading

std::vector<char> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path, fs::exists(path) ? "cannot open the file" : "file not found");
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The bytes of storage `s`: its element count times its element size, checked.
size_t storage_bytes(const Storage& s, const std::string& path) {
  const size_t esize = c10::elementSize(s.dtype);
  size_t n = 0;
  if (s.numel < 0 || __builtin_mul_overflow(static_cast<size_t>(s.numel), esize, &n) ||
      n > static_cast<size_t>(INT64_MAX))
    throw DataError(path, "storage '" + s.key + "' of " + std::to_string(s.numel) + " elements of " +
                              std::to_string(esize) + " bytes: not a size a file can hold");
  return n;
}

void fill_storage(Storage& s, const void* bytes, size_t nbytes, const std::string& path) {
  const size_t want = storage_bytes(s, path);
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
    int64_t end = 0;
    if (v.offset < 0 || v.view->numel < 0 || __builtin_add_overflow(v.offset, v.view->numel, &end) ||
        end > v.root->numel)
      throw DataError(path, "storage view '" + v.view->key + "' lies outside storage '" + v.root->key + "'");
    v.view->data = v.root->data.narrow(0, v.offset, v.view->numel);
  }
  for (Value* t : u.tensors()) {
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
Value* unpickle(const std::string& path, const std::vector<char>& data, size_t& pos, Values& values,
                ReadStorages read_storages) {
  std::map<std::string, StoragePtr> storages;
  Unpickler u(path, data, pos, values, storages);
  Value* root = u.run();
  read_storages(storages);
  materialise(u, path);
  return root;
}

// ---- the zip format

uint64_t le_at(const std::string& b, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(b[at + i])) << (8 * i);
  return v;
}

std::string read_at(std::ifstream& f, uint64_t offset, uint64_t n) {
  std::string b(n, '\0');
  f.seekg(static_cast<std::streamoff>(offset));
  f.read(b.data(), static_cast<std::streamsize>(n));
  if (static_cast<uint64_t>(f.gcount()) != n) b.clear();
  return b;
}

// Checks the records a zip's central directory declares (zip64 included) before LibTorch's reader opens it,
// as that reader inflates some records whole (the version, the serialization id) while it opens the file: no
// record may declare more bytes than deflate can give for its compressed size, and none but data.pkl and the
// storages (data/<key>) more than kMaxSmallRecord. Throws DataError naming the file and the record.
void check_zip_directory(const std::string& path, uint64_t file_size) {
  std::ifstream f(path, std::ios::binary);
  const uint64_t tail = std::min<uint64_t>(file_size, 22 + 65535);
  const std::string end = tail >= 22 ? read_at(f, file_size - tail, tail) : std::string();
  size_t eocd = std::string::npos;
  for (size_t i = end.size() >= 22 ? end.size() - 22 + 1 : 0; i-- > 0;)
    if (le_at(end, i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  auto bad = [&](const std::string& what) { return DataError(path, "not a readable torch.save file: " + what); };
  if (eocd == std::string::npos) throw bad("a zip file without its end of central directory");
  uint64_t entries = le_at(end, eocd + 10, 2), cd_size = le_at(end, eocd + 12, 4), cd_offset = le_at(end, eocd + 16, 4);
  if ((entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) && eocd >= 20 &&
      le_at(end, eocd - 20, 4) == 0x07064b50) {  // zip64: the locator before the record points to its record
    const uint64_t at = le_at(end, eocd - 20 + 8, 8);
    const std::string z = at <= file_size && file_size - at >= 56 ? read_at(f, at, 56) : std::string();
    if (z.size() != 56 || le_at(z, 0, 4) != 0x06064b50) throw bad("a zip64 file without its end of central directory");
    entries = le_at(z, 32, 8);
    cd_size = le_at(z, 40, 8);
    cd_offset = le_at(z, 48, 8);
  }
  if (cd_offset > file_size || cd_size > file_size - cd_offset)
    throw bad("a zip central directory past the file's end");
  const std::string cd = read_at(f, cd_offset, cd_size);
  if (cd.size() != cd_size) throw bad("a zip central directory that cannot be read");
  size_t p = 0;
  for (uint64_t k = 0; k < entries; ++k) {
    if (cd.size() - p < 46 || le_at(cd, p, 4) != 0x02014b50) throw bad("a damaged zip central directory");
    uint64_t compressed = le_at(cd, p + 20, 4), size = le_at(cd, p + 24, 4);
    const size_t name_len = le_at(cd, p + 28, 2), extra_len = le_at(cd, p + 30, 2), comment_len = le_at(cd, p + 32, 2);
    if (cd.size() - p - 46 < name_len + extra_len + comment_len) throw bad("a damaged zip central directory");
    const std::string name = cd.substr(p + 46, name_len);
    // Zip64 sizes: in the extra field 0x0001, the uncompressed size first, then the compressed (each only when
    // its 32-bit field is 0xFFFFFFFF).
    for (size_t e = p + 46 + name_len, stop = e + extra_len; e + 4 <= stop;) {
      const uint64_t id = le_at(cd, e, 2), len = le_at(cd, e + 2, 2);
      if (e + 4 + len > stop) break;
      if (id == 0x0001) {
        size_t q = e + 4;
        if (size == 0xFFFFFFFF && q + 8 <= e + 4 + len) {
          size = le_at(cd, q, 8);
          q += 8;
        }
        if (compressed == 0xFFFFFFFF && q + 8 <= e + 4 + len) compressed = le_at(cd, q, 8);
      }
      e += 4 + len;
    }
    const std::string rel = name.find('/') == std::string::npos ? name : name.substr(name.find('/') + 1);
    const bool large_allowed = rel == "data.pkl" || rel.rfind("data/", 0) == 0;
    if (compressed > file_size || size / kMaxDeflateRatio > compressed + 64)
      throw DataError(path, "zip record '" + name + "' declares " + std::to_string(size) + " bytes from " +
                                std::to_string(compressed) + " compressed: more than deflate can give" + limit_note());
    if (!large_allowed && size > kMaxSmallRecord)
      throw DataError(path, "zip record '" + name + "' of " + std::to_string(size) + " bytes: records besides " +
                                "data.pkl and the storages are read up to " + std::to_string(kMaxSmallRecord) +
                                " bytes" + limit_note());
    p += 46 + name_len + extra_len + comment_len;
  }
}

// Reads the first `n` bytes of `record` into `dst`, inflating no more of it than that.
void read_record_prefix(caffe2::serialize::PyTorchStreamReader& reader, const std::string& record, void* dst,
                        size_t n) {
  const size_t chunk = std::min<size_t>(n, size_t{1} << 20);
  auto it = reader.createChunkReaderIter(record, n, chunk);
  size_t got = 0;
  while (got < n) {
    const size_t step = it.next(static_cast<char*>(dst) + got);
    if (step == 0) break;
    got += step;
  }
  if (got != n) throw std::runtime_error("record '" + record + "' ends after " + std::to_string(got) + " bytes");
}

Value* load_zip(const std::string& path, Values& values) {
  try {
    const uint64_t file_size = values.file_size();
    check_zip_directory(path, file_size);
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (reader.hasRecord("byteorder")) {
      auto [ptr, n] = reader.getRecord("byteorder");
      std::string order(static_cast<const char*>(ptr.get()), n);
      if (order != "little") throw DataError(path, "stored " + order + "-endian; only little-endian files are read");
    }
    auto [ptr, n] = reader.getRecord("data.pkl");
    std::vector<char> pickle(static_cast<const char*>(ptr.get()), static_cast<const char*>(ptr.get()) + n);
    ptr.clear();
    size_t pos = 0;
    return unpickle(path, pickle, pos, values, [&](std::map<std::string, StoragePtr>& storages) {
      // All storages together may take no more than deflate can give for the whole file (records of a zip can
      // share their compressed bytes).
      uint64_t budget = kMaxDeflateRatio * file_size;
      for (auto& [key, s] : storages) {
        if (s->data.defined()) continue;
        const std::string record = "data/" + key;
        if (!reader.hasRecord(record)) throw DataError(path, "storage record '" + record + "' is missing");
        const size_t want = storage_bytes(*s, path);
        if (want > budget)
          throw DataError(path, "storage '" + key + "' needs " + std::to_string(want) + " bytes, more than a file of " +
                                    std::to_string(file_size) + " bytes holds (deflate gives at most " +
                                    std::to_string(kMaxDeflateRatio) + " bytes per byte)" + limit_note());
        budget -= want;
        const size_t have = reader.getRecordSize(record);
        if (have < want)
          throw DataError(path, "storage '" + key + "' has " + std::to_string(have) + " bytes, its tensors need " +
                                    std::to_string(want));
        s->data = torch::empty({s->numel}, torch::TensorOptions().dtype(s->dtype));
        if (want) read_record_prefix(reader, record, s->data.data_ptr(), want);
      }
    });
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {
    throw DataError(path, "not a readable torch.save file: " + first_line(e.what()));
  }
}

// ---- the legacy format (torch.save before 1.6, or with _use_new_zipfile_serialization=False)

Value* load_legacy(const std::string& path, const std::vector<char>& bytes, Values& values) {
  using K = Value::Kind;
  size_t pos = 0;
  auto no_storages = [](std::map<std::string, StoragePtr>&) {};
  // The magic number 0x1950a86a20f9469cfc6c, pickled as a 10-byte LONG1.
  Value* magic = unpickle(path, bytes, pos, values, no_storages);
  const std::string kMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
  if (magic->kind != K::Bytes || magic->s != kMagic)
    throw DataError(path, "not a torch.save file (neither a zip archive nor the legacy format's magic number)");
  Value* version = unpickle(path, bytes, pos, values, no_storages);
  if (version->kind != K::Int || version->i != 1001)
    throw DataError(path, "legacy torch.save file of an unknown protocol version");
  Value* sys_info = unpickle(path, bytes, pos, values, no_storages);
  for (size_t i = 0; sys_info->kind == K::Dict && i + 1 < sys_info->items.size(); i += 2)
    if (sys_info->items[i]->s == "little_endian" && sys_info->items[i + 1]->kind == K::Bool &&
        !sys_info->items[i + 1]->i)
      throw DataError(path, "stored big-endian; only little-endian files are read");
  return unpickle(path, bytes, pos, values, [&](std::map<std::string, StoragePtr>& storages) {
    size_t kpos = pos;
    std::map<std::string, StoragePtr> none;
    Unpickler keys_reader(path, bytes, kpos, values, none);
    Value* keys = keys_reader.run();
    pos = kpos;
    if (keys->kind != K::List) throw DataError(path, "legacy torch.save file without its list of storages");
    for (const Value* k : keys->items) {
      if (bytes.size() - pos < 8) throw DataError(path, "truncated: storage '" + k->s + "' is missing");
      int64_t numel;
      std::memcpy(&numel, bytes.data() + pos, 8);
      pos += 8;
      auto it = storages.find(k->s);
      if (it == storages.end()) throw DataError(path, "storage '" + k->s + "' is listed but never used");
      it->second->numel = numel;
      const size_t n = storage_bytes(*it->second, path);
      if (n > bytes.size() - pos) throw DataError(path, "truncated in storage '" + k->s + "'");
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

// Whether any of `roots` (dicts, lists or tuples) holds tensors within a few levels (enough for checkpoints): one
// search that visits each value once, however the values contain each other.
bool holds_tensors(const std::vector<const Value*>& roots) {
  using K = Value::Kind;
  std::vector<std::pair<const Value*, int>> todo;
  std::unordered_set<const Value*> seen;
  for (const Value* r : roots)
    if (seen.insert(r).second) todo.push_back({r, 0});
  while (!todo.empty()) {
    const auto [v, depth] = todo.back();
    todo.pop_back();
    if (depth > 8 || (v->kind != K::Dict && v->kind != K::List && v->kind != K::Tuple)) continue;
    for (const Value* item : v->items) {
      if (item->kind == K::Tensor) return true;
      if (seen.insert(item).second) todo.push_back({item, depth + 1});
    }
  }
  return false;
}

const Value* dict_get(const Value& d, const std::string& key) {
  for (size_t i = 0; i + 1 < d.items.size(); i += 2)
    if (d.items[i]->kind == Value::Kind::Str && d.items[i]->s == key) return d.items[i + 1];
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

namespace {

StateDict read_state_dict(const std::string& path, const std::string& key) {
  using K = Value::Kind;
  std::vector<char> head(4, 0);
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw DataError(path, fs::exists(path) ? "cannot open the file" : "file not found");
    f.read(head.data(), 4);
  }
  const bool zip = std::string(head.data(), 4) == std::string("PK\x03\x04", 4);
  std::unique_ptr<Values> values;
  const Value* v = nullptr;
  if (zip) {
    values = std::make_unique<Values>(fs::file_size(path));
    v = load_zip(path, *values);
  } else {
    const std::vector<char> bytes = read_file_bytes(path);
    values = std::make_unique<Values>(bytes.size());
    v = load_legacy(path, bytes, *values);
  }
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
  std::vector<const Value*> entries;
  for (size_t i = 1; i < v->items.size(); i += 2) entries.push_back(v->items[i]);
  const bool nested = holds_tensors(entries);
  if (out.empty() || (key.empty() && nested)) {
    std::string hint;
    for (const char* k : {"state_dict", "net", "model_state_dict", "model"})
      if (dict_get(*v, k)) hint = " (give \"key\": \"" + std::string(k) + "\" to read the weights under it)";
    throw DataError(path, where + (out.empty() ? " holds no tensors" : " is a checkpoint, not a state dict") +
                              "; its keys: " + join_names(dict_keys(*v)) + hint);
  }
  return out;
}

}  // namespace

StateDict read_torch_state_dict(const std::string& path, const std::string& key) {
  try {
    return read_state_dict(path, key);
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {  // LibTorch's own errors (a size it cannot allocate...) name the file too
    throw DataError(path, "not a readable torch.save file: " + first_line(e.what()));
  }
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
