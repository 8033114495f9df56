// torch.save files from other people (issue 24, cases 3, 4 and 9): the pickle and zip reader of
// models/torch_file.cpp has explicit limits (nesting depth, stack, memo, values per byte of the file, the
// inflated size of a record), each broken limit is one DataError naming the file and the limit, nothing a
// file controls drives a recursion deep (freeing the values included), and `numel * element size` is checked.
// The hostile files are made here (tests/hostile_files.h), a few MB at most; the first two are the ones the
// issue reproduced with the real binary (a stack overflow, and 0.9 GB from a 10 KB file).
#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "base/errors.h"
#include "hostile_files.h"
#include "models/torch_file.h"
#include "test_util.h"

namespace {

namespace p = kd::test::pickle;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// What reading `path` throws: the DataError's message, or what else came out.
std::string read_error(const std::string& path, const std::string& key = "") {
  try {
    kd::read_torch_state_dict(path, key);
  } catch (const kd::DataError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(not a DataError) ") + e.what();
  }
  return "(no error)";
}

std::string put(const std::string& name, const std::string& bytes) {
  static const std::string dir = kd::test::make_temp_dir("hostile");
  const std::string path = dir + "/" + name;
  kd::test::write_file(path, bytes);
  return path;
}

// The field `key` (kB) of /proc/self/status.
int64_t status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::string(key).size()));
  return -1;
}

// How far this process's resident memory rose above where it stood while `f` ran (bytes): freed memory goes back
// to the kernel first (malloc_trim, so that `f` cannot reuse pages already resident), then the peak (VmHWM) is
// reset by writing 5 to /proc/self/clear_refs (Linux 4.0+). -1 where the kernel refuses the reset.
int64_t peak_growth(const std::function<void()>& f) {
  ::malloc_trim(0);
  {
    std::ofstream reset("/proc/self/clear_refs");
    reset << "5";
    reset.flush();
    if (!reset) return -1;
  }
  const int64_t before = status_kb("VmRSS:");
  f();
  const int64_t peak = status_kb("VmHWM:");
  return before < 0 || peak < 0 ? -1 : (peak - before) * 1024;
}

// Case 3: one None in a million one-element tuples (5.9 KB deflated) crashed kdbench with a stack overflow
// while the nested values were freed; the legacy format too. Lists and dicts nested through marks, and lists
// nested top-down (each appended into the one before it, found through the memo) are the other shapes.
TEST(ModelsHostile, DeeplyNestedValuesAreOneDataErrorNotACrash) {
  const size_t n = 1000000;
  const std::string tuples = p::proto2() + p::none() + std::string(n, '\x85') + p::stop();
  std::string top_down = p::proto2() + "]" + p::long_binput(0);
  for (uint32_t i = 1; i <= 200000; ++i) top_down += p::long_binget(i - 1) + "]" + p::long_binput(i) + "a0";
  top_down += p::stop();
  const struct {
    std::string name, bytes, message;
  } cases[] = {
      {"tuples_zip.pt", p::zip_torch_file(tuples, /*deflate=*/true), "values nested deeper than 1000 levels"},
      {"tuples_legacy.pt", p::legacy_torch_file(tuples), "values nested deeper than 1000 levels"},
      {"lists_legacy.pt",
       p::legacy_torch_file(p::proto2() + std::string(300000, '(') + "N" + std::string(300000, 'l') + p::stop()),
       "values nested deeper than 1000 levels"},
      {"dicts_legacy.pt",
       p::legacy_torch_file(p::proto2() + p::repeat("(" + p::binint1(1), 300000) + "N" + std::string(300000, 'd') +
                            p::stop()),
       "values nested deeper than 1000 levels"},
      // Built top-down no value is deeper than its parent when it is added; nothing recurses over it either.
      {"lists_top_down_legacy.pt", p::legacy_torch_file(top_down), "is a list, not a state dict"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = put(c.name, c.bytes);
    const std::string e = read_error(path);
    EXPECT_TRUE(contains(e, path + ": ")) << e;
    EXPECT_TRUE(contains(e, c.message)) << e;
  }
  std::cout << "a million nested tuples, deflated: " << p::zip_torch_file(tuples, true).size() << " bytes\n";
}

// The other limits of the pickle interpreter, each one DataError that names it.
TEST(ModelsHostile, StackMarksAndMemoHaveLimitsThatTheErrorNames) {
  const size_t over = (size_t{1} << 20) + 1;
  std::string memo = p::proto2() + p::none();
  for (uint32_t i = 0; i < over; ++i) memo += p::long_binput(i);
  memo += p::stop();
  const struct {
    std::string name, bytes, message;
  } cases[] = {
      {"stack.pt", p::legacy_torch_file(p::proto2() + std::string(over, 'N') + p::stop()),
       "more than 1048576 values on the pickle's stack"},
      {"marks.pt", p::legacy_torch_file(p::proto2() + std::string(over, '(') + p::stop()), "more than 1048576 marks"},
      {"memo.pt", p::legacy_torch_file(memo), "more than 1048576 memo entries"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = put(c.name, c.bytes);
    const std::string e = read_error(path);
    EXPECT_TRUE(contains(e, path + ": ")) << e;
    EXPECT_TRUE(contains(e, c.message)) << e;
    EXPECT_TRUE(contains(e, "kdbench's limit")) << e;
  }
}

// Case 4: a 9.8 KB file (five million one-byte opcodes, deflated) made five million values of about 180 bytes
// (0.5 -> 1.4 GB); a deflated storage record was inflated whole (499 KB -> 512 MB) before its size was compared
// with what the tensors need (next test). Now the values a file may make are bounded by its size.
TEST(ModelsHostile, MemoryIsBoundedByTheFileSize) {
  const std::string many = p::proto2() + std::string(5000000, 'N') + p::stop();
  const std::string path = put("values.pt", p::zip_torch_file(many, /*deflate=*/true));
  std::string e;
  const int64_t grew = peak_growth([&] { e = read_error(path); });
  EXPECT_TRUE(contains(e, path + ": ")) << e;
  EXPECT_TRUE(contains(e, "values for a file of")) << e;
  EXPECT_TRUE(contains(e, "kdbench's limit")) << e;
  if (grew >= 0) {
    EXPECT_LT(grew, 64 << 20) << "bytes of resident memory for a file of " << std::filesystem::file_size(path)
                              << " bytes";
  }
  std::cout << "resident memory grew by " << grew << " bytes (-1: not measurable here)\n";

  // A storage the pickle declares larger than any record of this file could inflate to: refused before
  // anything is allocated or inflated.
  const std::string huge = put("claims.pt", p::zip_torch_file(p::state_dict(int64_t{1} << 40, 4), false, {{"0", "x"}}));
  e = read_error(huge);
  EXPECT_TRUE(contains(e, huge + ": storage '0'")) << e;
}

// Case 4, the storage record: a storage of 4 floats whose record holds 64 MiB of zeros (deflated to about 64 KB)
// was inflated whole; now 16 bytes of it are.
TEST(ModelsHostile, AStorageRecordIsInflatedOnlyAsFarAsItsStorage) {
  const std::string zeros(64 << 20, '\0');
  const std::string big = put("record.pt", p::zip_torch_file(p::state_dict(4, 4), false, {{"0", zeros}}, true));
  kd::StateDict sd;
  const int64_t grew = peak_growth([&] { sd = kd::read_torch_state_dict(big, ""); });
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_TRUE(torch::equal(sd[0].second, torch::zeros({4})));
  if (grew >= 0) {
    EXPECT_LT(grew, 32 << 20) << "bytes of resident memory to read 16 bytes of a record";
  }
  std::cout << "resident memory grew by " << grew << " bytes (-1: not measurable here)\n";
}

// Case 9: the legacy format's storage size numel * element size wrapped around (a numel of 2^62 passed the
// bounds check) and ended in a raw LibTorch error (exit 1, a stack trace); a view's offset + size the same.
TEST(ModelsHostile, SizesThatOverflowAreOneDataError) {
  const std::string wrap = put("wrap.pt", p::legacy_torch_file(p::state_dict(4, 4), {{"0", int64_t{1} << 62, ""}}));
  std::string e = read_error(wrap);
  EXPECT_TRUE(contains(e, wrap + ": ")) << e;
  EXPECT_TRUE(contains(e, "storage '0'")) << e;

  const std::string pid_wrap =
      put("pid_wrap.pt", p::zip_torch_file(p::state_dict(int64_t{1} << 62, 4), false, {{"0", std::string(16, '\0')}}));
  e = read_error(pid_wrap);
  EXPECT_TRUE(contains(e, pid_wrap + ": storage '0'")) << e;

  // A legacy storage view (view key, offset, size) whose offset + size overflows.
  const std::string view_pid = "(" + p::unicode("storage") + p::global("torch", "FloatStorage") + p::unicode("0") +
                               p::unicode("cpu") + p::long8(4) + "(" + p::unicode("v") + p::long8(INT64_MAX - 1) +
                               p::long8(4) + "ttQ";
  const std::string view_pickle = p::proto2() + p::global("collections", "OrderedDict") + ")R(" + p::unicode("w") +
                                  p::tensor_1d(view_pid, 0, 4) + "u" + p::stop();
  const std::string view = put("view.pt", p::legacy_torch_file(view_pickle, {{"0", 4, std::string(16, '\0')}}));
  e = read_error(view);
  EXPECT_TRUE(contains(e, view + ": storage view 'v' lies outside storage '0'")) << e;

  // The files these were made from read as they should (the builders are right).
  const std::string ok = put("ok.pt", p::legacy_torch_file(p::state_dict(4, 3, 1), {{"0", 4, std::string(16, '\0')}}));
  auto sd = kd::read_torch_state_dict(ok, "");
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_EQ(sd[0].first, "w");
  EXPECT_EQ(sd[0].second.numel(), 3);
}

}  // namespace
