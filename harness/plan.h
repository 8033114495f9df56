// Sweep configs and their expansion into runs. Plans are values: a run's id is a stable hash of its
// fully resolved config, so re-running a sweep finds what is already done. A planned run holds its method's
// name, resolved parameters and what the method declared (stages, chain); no method object: the run builder
// (harness/run_builder.h) makes the one instance that trains it, when it trains.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness/recipe.h"
#include "methods/method.h"
#include "models/pytorch_io.h"
#include "store/store.h"

namespace kd {

class TeacherSource;  // harness/teacher_source.h

// A teacher named in the config, and how it is obtained.
struct TeacherSpec {
  std::string name;
  std::string model;              // zoo name ("" allowed for torchscript and export)
  std::string obtain = "train";   // its teacher source's name (harness/teacher_source.h)
  std::string file;               // checkpoint, torch.save, TorchScript or .pt2 file
  std::string sha256;             // the file's SHA-256 (lower-case hex), checked before it is loaded ("" = any)
  std::vector<std::string> taps;  // torchscript, export: names of its outputs
  std::string key;                // pytorch: where the state dict is in the saved object ("" = the object)
  NameMap name_map;               // pytorch: the file's tensor names -> the zoo model's
  Recipe recipe;                  // train: its recipe
  int64_t seed = 0;               // train: its seed (one teacher per sweep, shared by every run)
  // How it comes in (the registry's source of `obtain`), and the two things about it that the planner and the
  // runner ask: kdbench trains it (else it is loaded from `file`); a model the zoo does not build, run as compiled.
  const TeacherSource& source() const;
  bool trained() const;
  bool is_compiled() const;
};

// One entry of "methods": a method, its fixed params and a grid over some of them.
struct MethodEntry {
  std::string method;
  std::string label;                  // display name (defaults to the method name)
  std::vector<std::string> teachers;  // teacher names; default: the first (or all, for multi-teacher)
  json params = json::object();       // fixed hyperparameters
  json grid = json::object();         // key -> list of values; the runs are the cartesian product
  std::vector<std::string> students;  // default: the sweep's students
  Recipe recipe;                      // the sweep's recipe with this entry's "recipe" keys over it
  json provenance;                    // where its setting is published (repo, commit, file, line, args); null = unsaid
  std::string path;                   // "methods[3]" for messages
  // Its settings, resolved once when the config is read: each grid point (in config order, last key fastest)
  // with the fixed params, as written (`values`, the runs' setting) and with every default filled in (`params`).
  struct Setting {
    json values, params;
  };
  std::vector<Setting> settings;
};

struct SweepConfig {
  std::string name;
  // Python method files (pybridge/), as the config names them (relative to the config's folder). They are loaded
  // and their methods registered before "methods" is read.
  std::vector<std::string> plugins;
  std::string output;     // sweep folder (default results/<name>)
  std::string cache_dir;  // teacher cache shared between sweeps (and between workers: a shared file system)
  std::string store;      // results store: "" = <output>/results.db; a postgresql:// URL (no password in it)
  json dataset;
  std::string device = "auto";  // auto | cpu | cuda
  int64_t threads = 0;          // 0 = all cores
  std::vector<int64_t> seeds;
  std::vector<std::string> students;
  std::vector<TeacherSpec> teachers;
  Recipe recipe;
  std::vector<MethodEntry> methods;
  int64_t lockstep = 0;            // max runs trained together behind one teacher forward; 0 = no limit
  std::string fuse = "auto";       // horizontal fusion of same-architecture students: auto (on CUDA) | on | off
  std::string precision = "fp32";  // fp32 | bf16 (autocast for forward passes and losses)
  // CUDA graphs for the training step: auto (on for CUDA) | on | off. Not part of run ids: a replayed step
  // computes what the eager step computes (the same kernels; floating-point summation order aside).
  std::string cuda_graphs = "auto";
  bool channels_last = false;       // NHWC convolutions (faster on GPUs with tensor cores)
  bool cudnn_benchmark = false;     // let cuDNN time its algorithms (faster; not bit-reproducible)
  int64_t teacher_cache_mb = 2048;  // memory for teacher outputs shared across seeds/epochs (0 = off)
  bool report = true;               // write the report when the sweep ends (`kdbench sweep --no-report` skips it)
  json raw;                         // the config as given, less "store" (where results go is not part of the sweep)
  std::string file;                 // where it was read from
};

// Validates everything that can be validated without the data: keys, types, ranges, model and
// method names, hyperparameters and grids (through the method registry), teacher references.
SweepConfig parse_sweep_config(const json& j, const std::string& file);
SweepConfig load_sweep_config(const std::string& path);

struct RunSpec {
  std::string id;
  RunRole role = RunRole::Student;
  std::string name;               // teacher name, or the entry's label
  std::string method;             // registry name (teachers: the reference method's)
  bool reference = false;         // a student of the reference method (the from-scratch student)
  json params = json::object();   // resolved hyperparameters
  json setting = json::object();  // what distinguishes it within its method (fixed params + grid point)
  int64_t seed = 0;
  std::string model;
  std::vector<std::string> teacher_ids;  // runs whose models are its teachers, in order
  Recipe recipe;
  const TeacherSpec* teacher = nullptr;  // for role teacher
  json config;                           // the resolved config that the id hashes
  int level = 0;                         // 0 = teachers; a run's level is 1 + its teachers' max level
  // What its method declared: its stages, epochs resolved against the recipe (none for teachers that are
  // loaded rather than trained), and their sum.
  std::vector<StageSpec> stages;
  int64_t total_epochs = 0;
};

// Resolves the run's stages against its recipe, from what its method (by name, with the run's params) declares.
// The planner does it for every run it trains; tests that build a RunSpec by hand call it too.
void resolve_stages(RunSpec& r);

// The store's record of a planned run (pending; what training adds is filled in later). The one place a
// run record is built from a plan.
RunRecord make_run_record(const RunSpec& r, const std::string& sweep_id);

struct Plan {
  std::string sweep_id;
  std::vector<RunSpec> runs;  // teachers first, then by level, then by config order
  const RunSpec* find(const std::string& id) const;
};

Plan plan_sweep(const SweepConfig& cfg);

// Stable 128-bit content hash of a JSON value (canonical dump), as 32 hex characters.
std::string content_hash(const json& j);

}  // namespace kd
