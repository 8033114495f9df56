// libFuzzer target: the sweep-config path behind `kdbench plan|sweep CONFIG`, on arbitrary text.
//
// Covers kd::parse_json_text (JSON syntax -> "<file>:<line>:<column>" errors), kd::parse_sweep_config
// (every key, type and range check: recipes, teachers, model names, seeds, unknown keys) and, through
// it, kd::MethodRegistry::get/resolve for every method entry and every grid point (the methods register
// themselves from kd_methods' objects, linked whole), then kd::plan_sweep (grid expansion, the
// teacher-assistant chains of `progressive`, run ids and levels).
//
// Contract: an error a user can cause comes out as kd::ConfigError (or kd::DataError). Only those are
// caught; any other exception (std::out_of_range, nlohmann::json::exception, ...) escapes, terminates
// the process and libFuzzer reports it as a crash, as it does ASan/UBSan reports and leaks.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "base/errors.h"
#include "base/json_reader.h"
#include "fuzz_util.h"
#include "harness/plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const kd::json j = kd::parse_json_text(text, "fuzz.json");
    const kd::SweepConfig cfg = kd::parse_sweep_config(j, "fuzz.json");
    const kd::Plan plan = kd::plan_sweep(cfg);
    // A plan that validated must be usable: unique 32-hex ids, teachers planned at a lower level.
    if (plan.runs.empty()) kd::fuzz::fail("a valid config planned no runs");
    std::set<std::string> ids;
    for (const auto& r : plan.runs) {
      if (r.id.size() != 32 || !ids.insert(r.id).second) kd::fuzz::fail("bad or repeated run id " + r.id);
      for (const auto& t : r.teacher_ids) {
        const kd::RunSpec* tr = plan.find(t);
        if (!tr || tr->level >= r.level) kd::fuzz::fail("run " + r.id + " has an unplanned teacher " + t);
      }
    }
  } catch (const kd::ConfigError& e) {
    if (std::string(e.what()).empty()) kd::fuzz::fail("a ConfigError without a message");
  } catch (const kd::DataError& e) {
    if (std::string(e.what()).empty()) kd::fuzz::fail("a DataError without a message");
  }
  return 0;
}
