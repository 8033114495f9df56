#include "harness/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>

#include "base/errors.h"
#include "models/model.h"
#include "harness/teacher_source.h"
#include "pybridge/plugins.h"
#include "store/store_url.h"

namespace kd {

std::string content_hash(const json& j) {
  const std::string s = j.dump();
  // Two independent 64-bit FNV-1a streams (different offset bases, second over the reversed text).
  uint64_t a = 1469598103934665603ULL, b = 0x84222325cbf29ce4ULL;
  for (unsigned char c : s) {
    a = (a ^ c) * 1099511628211ULL;
  }
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    b = (b ^ static_cast<unsigned char>(*it)) * 1099511628211ULL;
  }
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return buf;
}

const RunSpec* Plan::find(const std::string& id) const {
  for (const auto& r : runs)
    if (r.id == id) return &r;
  return nullptr;
}

namespace {

std::string default_cache_dir() {
  if (const char* c = std::getenv("KDBENCH_CACHE")) return c;
  if (const char* h = std::getenv("HOME")) return std::string(h) + "/.cache/kdbench";
  return ".kdbench-cache";
}

// A sweep's name goes into folder and file names, Slurm job names, Kubernetes object names and job files, so it is
// only ASCII letters, digits, '.', '_' and '-', starts and ends with a letter or digit, and is at most 64 long.
bool is_safe_name(const std::string& s) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (s.empty() || s.size() > 64 || !alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

// A teacher file's pinned SHA-256: 64 hexadecimal digits, as sha256sum prints them (kept in lower case).
std::string parse_sha256(const std::string& s, const std::string& path) {
  std::string hex;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c)))
      throw ConfigError(path, "expected the file's SHA-256 as 64 hexadecimal digits (as sha256sum prints it)");
    hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (hex.size() != 64)
    throw ConfigError(path, "expected the file's SHA-256 as 64 hexadecimal digits (as sha256sum prints it), got " +
                                std::to_string(hex.size()));
  return hex;
}

TeacherSpec parse_teacher(const std::string& name, const json& j, const std::string& path, const Recipe& base) {
  TeacherSpec t;
  t.name = name;
  ObjectReader rd(j, path);
  t.obtain = rd.string("obtain", std::string("train"));
  teacher_source(t.obtain, rd.path("obtain")).parse(rd, t);
  if (!t.file.empty() && rd.has("sha256"))
    t.sha256 = parse_sha256(rd.string("sha256", std::nullopt), rd.path("sha256"));
  t.recipe = rd.has("recipe") ? parse_recipe(rd.raw("recipe"), rd.path("recipe"), base) : base;
  t.seed = rd.integer("seed", 0, 0, INT32_MAX);
  rd.finish();
  return t;
}

// A method entry's grid may not expand to more settings than this (each one runs once per seed and student).
constexpr double kMaxGridPoints = 10000;

// Every combination of the grid's values, in config order (last key varies fastest).
std::vector<json> expand_grid(const json& grid) {
  std::vector<json> points{json::object()};
  for (auto it = grid.begin(); it != grid.end(); ++it) {
    std::vector<json> next;
    for (const auto& p : points)
      for (const auto& v : it.value()) {
        json q = p;
        q[it.key()] = v;
        next.push_back(q);
      }
    points = std::move(next);
  }
  return points;
}

// Where an entry's setting is published: {"repo", "commit", "file"} and optionally "line", "args", "note". Shown by
// the report; not part of any run's id (the same runs whatever the entry says it reproduces).
json parse_provenance(const json& j, const std::string& path) {
  ObjectReader rd(j, path);
  json p = json::object();
  for (const char* key : {"repo", "commit", "file"}) {
    p[key] = rd.string(key, std::nullopt);
    if (p[key].get<std::string>().empty()) throw ConfigError(rd.path(key), "must not be empty");
  }
  if (rd.has("line")) p["line"] = rd.integer("line", std::nullopt, 1, INT32_MAX);
  for (const char* key : {"args", "note"})
    if (rd.has(key)) p[key] = rd.string(key, std::nullopt);
  rd.finish();
  return p;
}

MethodEntry parse_method_entry(const json& j, const std::string& path, const SweepConfig& cfg) {
  MethodEntry e;
  e.path = path;
  ObjectReader rd(j, path);
  e.method = rd.string("method", std::nullopt);
  const MethodInfo& info = MethodRegistry::instance().get(e.method, rd.path("method"));
  e.label = rd.string("label", e.method);
  std::vector<std::string> teacher_names;
  for (const auto& t : cfg.teachers) teacher_names.push_back(t.name);
  std::vector<std::string> def_teachers;
  if (info.max_teachers > 0 && !teacher_names.empty()) {
    size_t n = std::min<size_t>(teacher_names.size(), static_cast<size_t>(info.max_teachers));
    def_teachers.assign(teacher_names.begin(), teacher_names.begin() + static_cast<long>(n));
  }
  e.teachers = rd.strings("teachers", def_teachers);
  for (size_t i = 0; i < e.teachers.size(); ++i)
    if (std::find(teacher_names.begin(), teacher_names.end(), e.teachers[i]) == teacher_names.end())
      throw ConfigError(
          rd.path("teachers") + "[" + std::to_string(i) + "]",
          "unknown teacher '" + e.teachers[i] + "' (this sweep's teachers are declared under \"teachers\")");
  int n = static_cast<int>(e.teachers.size());
  if (n < info.min_teachers || n > info.max_teachers)
    throw ConfigError(rd.path("teachers"),
                      "method '" + e.method + "' uses " + std::to_string(info.min_teachers) +
                          (info.min_teachers == info.max_teachers ? "" : " to " + std::to_string(info.max_teachers)) +
                          " teacher(s), got " + std::to_string(n));
  if (rd.has("params")) {
    e.params = rd.raw("params");
    if (!e.params.is_object())
      throw ConfigError(rd.path("params"), "expected an object, got " + json_type_name(e.params));
  }
  if (rd.has("grid")) {
    e.grid = rd.raw("grid");
    if (!e.grid.is_object()) throw ConfigError(rd.path("grid"), "expected an object, got " + json_type_name(e.grid));
    double points = 1;
    for (auto it = e.grid.begin(); it != e.grid.end(); ++it) {
      std::string gp = rd.path("grid") + "." + it.key();
      if (!info.find(it.key())) {
        std::vector<std::string> known;
        for (const auto& p : info.params) known.push_back(p.name);
        throw ConfigError(gp, "unknown hyperparameter of '" + e.method + "' (known: " + join_names(known) + ")");
      }
      if (!it.value().is_array() || it.value().empty())
        throw ConfigError(gp, "expected a non-empty array of values to sweep");
      if (e.params.contains(it.key())) throw ConfigError(gp, "is both fixed in params and swept in grid");
      points *= static_cast<double>(it.value().size());
    }
    if (points > kMaxGridPoints)
      throw ConfigError(rd.path("grid"), fmt::format("{:.0f} settings (the product of the value counts); at most {} "
                                                     "per method entry",
                                                     points, kMaxGridPoints));
  }
  e.students = rd.strings("students", cfg.students);
  for (size_t i = 0; i < e.students.size(); ++i)
    check_zoo_model(e.students[i], rd.path("students") + "[" + std::to_string(i) + "]");
  // A per-entry recipe (e.g. the published CIFAR-100 tables' lr 0.01 for MobileNetV2/ShuffleNet students):
  // its keys over the sweep's recipe; it is part of every run's resolved config, so of its id.
  e.recipe = rd.has("recipe") ? parse_recipe(rd.raw("recipe"), rd.path("recipe"), cfg.recipe) : cfg.recipe;
  if (rd.has("provenance")) e.provenance = parse_provenance(rd.raw("provenance"), rd.path("provenance"));
  rd.finish();
  // Resolve every grid point now (the planner takes them from here), so a bad value is reported before anything
  // trains.
  for (const auto& point : expand_grid(e.grid)) {
    json values = e.params;
    for (auto it = point.begin(); it != point.end(); ++it) values[it.key()] = it.value();
    // Errors for grid values name the grid key; for fixed values the params key.
    try {
      e.settings.push_back({values, MethodRegistry::instance().resolve(e.method, values, path + ".params").all()});
    } catch (const ConfigError& err) {
      std::string key = err.key_path().substr(err.key_path().rfind('.') + 1);
      if (e.grid.contains(key)) throw ConfigError(path + ".grid." + key, err.message());
      throw;
    }
  }
  return e;
}

}  // namespace

SweepConfig parse_sweep_config(const json& j, const std::string& file) {
  SweepConfig c;
  c.raw = j;
  c.file = file;
  ObjectReader rd(j, "");
  c.name = rd.string("name", std::nullopt);
  if (!is_safe_name(c.name))
    throw ConfigError("name",
                      "must be 1 to 64 ASCII letters, digits, '.', '_' or '-', starting and ending with a "
                      "letter or digit (it names folders, job files, Slurm jobs and Kubernetes objects)");
  c.output = rd.string("output", "results/" + c.name);
  c.cache_dir = rd.string("cache_dir", default_cache_dir());
  c.store = rd.string("store", std::string());
  refuse_password_in_store_url(c.store, "store",
                               "a config is stored with the results; give it in PGPASSWORD or ~/.pgpass (or the "
                               "whole URL in the environment's KDBENCH_STORE)");
  c.dataset = rd.raw("dataset");
  if (!c.dataset.is_object()) throw ConfigError("dataset", "expected an object, got " + json_type_name(c.dataset));
  if (!c.dataset.contains("name") || !c.dataset["name"].is_string())
    throw ConfigError("dataset.name", "required key is missing (expected a string)");
  c.device = rd.string("device", std::string("auto"), {"auto", "cpu", "cuda"});
  c.threads = rd.integer("threads", 0, 0, 1024);
  c.seeds = rd.integers("seeds", std::vector<int64_t>{0}, 0, INT32_MAX);
  if (c.seeds.empty()) throw ConfigError("seeds", "needs at least one seed");
  {
    std::set<int64_t> uniq(c.seeds.begin(), c.seeds.end());
    if (uniq.size() != c.seeds.size()) throw ConfigError("seeds", "has a repeated seed");
  }
  c.students = rd.strings("student", std::nullopt);
  for (size_t i = 0; i < c.students.size(); ++i) check_zoo_model(c.students[i], "student");
  c.recipe = rd.has("recipe") ? parse_recipe(rd.raw("recipe"), "recipe") : Recipe{};
  Recipe teacher_base =
      rd.has("teacher_recipe") ? parse_recipe(rd.raw("teacher_recipe"), "teacher_recipe", c.recipe) : c.recipe;
  if (rd.has("teachers")) {
    const json& t = rd.raw("teachers");
    if (!t.is_object())
      throw ConfigError("teachers", "expected an object of name -> teacher, got " + json_type_name(t));
    // Keep the config's order: nlohmann's object is sorted, so read the order from the text of the raw dump
    // is not possible; teachers are ordered by name, and methods name theirs explicitly when order matters.
    for (auto it = t.begin(); it != t.end(); ++it)
      c.teachers.push_back(parse_teacher(it.key(), it.value(), "teachers." + it.key(), teacher_base));
  }
  c.plugins = rd.strings("plugins", std::vector<std::string>{});
  py::load_plugins(c.plugins, std::filesystem::path(file).parent_path().string(), "plugins");
  c.lockstep = rd.integer("lockstep", 0, 0, 100000);
  c.fuse = rd.string("fuse", std::string("auto"), {"auto", "on", "off"});
  c.precision = rd.string("precision", std::string("fp32"), {"fp32", "bf16"});
  c.cuda_graphs = rd.string("cuda_graphs", std::string("auto"), {"auto", "on", "off"});
  c.channels_last = rd.boolean("channels_last", false);
  c.cudnn_benchmark = rd.boolean("cudnn_benchmark", false);
  c.teacher_cache_mb = rd.integer("teacher_cache_mb", 2048, 0, 1 << 24);
  c.report = rd.boolean("report", true);
  const json& methods = rd.raw("methods");
  if (!methods.is_array() || methods.empty())
    throw ConfigError("methods", "expected a non-empty array of method entries");
  for (size_t i = 0; i < methods.size(); ++i)
    c.methods.push_back(parse_method_entry(methods[i], "methods[" + std::to_string(i) + "]", c));
  rd.finish();
  c.raw.erase("store");  // the same sweep (and run ids) whichever store it is written to
  return c;
}

SweepConfig load_sweep_config(const std::string& path) {
  return parse_sweep_config(load_json_file(path), path);
}

namespace {

// What a method declares for given parameters (its stages and, for a chain of assistants, the chain), asked
// of an instance made for the purpose and let go: the instance that trains a run is made by the run builder.
struct Declared {
  std::vector<StageSpec> stages;
  std::vector<ChainLink> chain;
};

Declared declared_by(const std::string& method, const json& params) {
  std::unique_ptr<Method> m = MethodRegistry::instance().create(method, MethodParams(params));
  return {m->stages(), m->chain()};
}

// Resolves a run's stages against its recipe (0 epochs = the recipe's) and sums them.
void set_stages(RunSpec& r, std::vector<StageSpec> stages) {
  r.stages = std::move(stages);
  r.total_epochs = 0;
  for (auto& st : r.stages) {
    if (st.epochs <= 0) st.epochs = static_cast<int>(r.recipe.epochs);
    r.total_epochs += st.epochs;
  }
}

// Plans the runs of a sweep in order: teachers, then every method entry's runs (per seed, grid point and
// student), teacher-assistant links before the runs that learn from them. A method's declarations are asked
// once per distinct (method, parameters); a run planned again (the same id) is the same run.
class Planner {
 public:
  explicit Planner(const SweepConfig& cfg) : cfg_(cfg), reg_(MethodRegistry::instance()) {}

  Plan plan() {
    plan_.sweep_id = content_hash(json{{"name", cfg_.name}, {"config", cfg_.raw}});
    for (const auto& t : cfg_.teachers) add_teacher(t);
    for (const auto& e : cfg_.methods)
      for (int64_t seed : cfg_.seeds)
        for (const auto& setting : e.settings) add_entry_point(e, seed, setting);
    for (auto& s : students_) add(std::move(s));
    if (cfg_.precision != "fp32") rehash_for_precision();
    return std::move(plan_);
  }

 private:
  // Adds a run unless one with its id is planned; returns whether it was new.
  bool add(RunSpec r) {
    if (!seen_.insert(r.id).second) return false;
    plan_.runs.push_back(std::move(r));
    return true;
  }
  bool seen(const std::string& id) const { return seen_.count(id) > 0; }

  void add_teacher(const TeacherSpec& t) {
    const MethodInfo& ref = reg_.reference();
    RunSpec r;
    r.role = RunRole::Teacher;
    r.name = t.name;
    r.method = ref.name;
    MethodParams params = reg_.resolve(ref.name, json::object(), "teachers." + t.name);
    r.params = params.all();
    r.seed = t.seed;
    r.model = t.model;
    r.recipe = t.recipe;
    r.teacher = &t;
    r.config = json{{"role", "teacher"}, {"model", t.model}, {"obtain", t.obtain}, {"dataset", cfg_.dataset}};
    t.source().record(t, r.config);
    r.id = content_hash(r.config);
    teacher_id_[t.name] = r.id;
    // Only a teacher that may be trained has stages (a cached one is loaded, but may be missing).
    if (t.trained() && !seen(r.id)) set_stages(r, declared(r.method, r.params).stages);
    add(std::move(r));
  }

  // One setting (grid point) of a method entry for one seed: its chain's assistant runs, then a run per student.
  void add_entry_point(const MethodEntry& e, int64_t seed, const MethodEntry::Setting& setting) {
    std::vector<std::string> tids;
    for (const auto& tn : e.teachers) tids.push_back(teacher_id_.at(tn));
    const Declared& decl = declared(e.method, setting.params);
    int level = 1;
    for (const auto& link : decl.chain) {
      tids = {add_assistant(e, seed, link, tids, level)};
      ++level;
    }
    const bool reference = reg_.get(e.method).reference;
    for (const auto& student : e.students) {
      RunSpec r;
      r.role = RunRole::Student;
      r.name = e.label;
      r.method = e.method;
      r.reference = reference;
      r.params = setting.params;
      r.setting = setting.values;
      r.seed = seed;
      r.model = student;
      r.teacher_ids = tids;
      r.recipe = e.recipe;
      r.level = level;
      r.config =
          json{{"role", "student"}, {"model", student}, {"method", e.method},           {"params", r.params},
               {"teachers", tids},  {"seed", seed},     {"recipe", r.recipe.to_json()}, {"dataset", cfg_.dataset}};
      add_plugin(r.config, e.method);
      r.id = content_hash(r.config);
      if (seen(r.id) || std::any_of(students_.begin(), students_.end(), [&](const RunSpec& s) { return s.id == r.id; }))
        continue;
      set_stages(r, decl.stages);
      students_.push_back(std::move(r));
    }
  }

  // What `method` declares with resolved `params`, asked once per distinct pair.
  const Declared& declared(const std::string& method, const json& params) {
    const std::string key = method + "\n" + params.dump();
    auto it = declared_.find(key);
    if (it == declared_.end()) it = declared_.emplace(key, declared_by(method, params)).first;
    return it->second;
  }

  // A teacher-assistant run (shared by every setting and student that has the same link); returns its id.
  std::string add_assistant(const MethodEntry& e, int64_t seed, const ChainLink& link,
                            const std::vector<std::string>& tids, int level) {
    const std::string key = e.path + ".params." + link.key;
    check_zoo_model(link.model, key);
    MethodParams lp = reg_.resolve(link.method, link.params, key);
    RunSpec a;
    a.role = RunRole::Assistant;
    a.name = link.model;
    a.method = link.method;
    a.params = lp.all();
    a.setting = link.params;
    a.seed = seed;
    a.model = link.model;
    a.teacher_ids = tids;
    a.recipe = e.recipe;
    a.level = level;
    a.config = json{{"role", "assistant"},          {"model", a.model},          {"method", link.method},
                    {"params", a.params},           {"teachers", a.teacher_ids}, {"seed", seed},
                    {"recipe", a.recipe.to_json()}, {"dataset", cfg_.dataset}};
    add_plugin(a.config, link.method);
    a.id = content_hash(a.config);
    if (!seen(a.id)) set_stages(a, declared(a.method, a.params).stages);
    const std::string id = a.id;
    add(std::move(a));
    return id;
  }

  // A method from a plugin file: the run's config (so its id and its record) names the file and its content's
  // SHA-256, so a changed file gives new runs and an unchanged one resumes. Native methods add nothing.
  void add_plugin(json& config, const std::string& method) const {
    const MethodInfo& info = reg_.get(method);
    if (info.source_sha256.empty()) return;
    config["plugin"] = json{{"file", std::filesystem::path(info.source_path).filename().string()},
                            {"sha256", info.source_sha256}};
  }

  // Mixed precision changes the numbers, so it is part of what a trained run's id hashes (fp32 adds nothing,
  // keeping the ids of fp32 sweeps as they were).
  void rehash_for_precision() {
    std::map<std::string, std::string> renamed;  // old id -> new id; runs come in level order
    for (auto& r : plan_.runs) {
      const std::string old = r.id;
      if (!(r.role == RunRole::Teacher && r.teacher && !r.teacher->trained()))
        r.config["precision"] = cfg_.precision;
      for (auto& t : r.teacher_ids)
        if (renamed.count(t)) t = renamed[t];
      if (r.config.contains("teachers")) r.config["teachers"] = r.teacher_ids;
      r.id = content_hash(r.config);
      renamed[old] = r.id;
    }
  }

  const SweepConfig& cfg_;
  const MethodRegistry& reg_;
  Plan plan_;
  std::map<std::string, std::string> teacher_id_;  // teacher name -> run id
  std::set<std::string> seen_;
  std::vector<RunSpec> students_;                // added after every teacher and assistant
  std::map<std::string, Declared> declared_;  // method + "\n" + params -> what it declares
};

}  // namespace

void resolve_stages(RunSpec& r) {
  set_stages(r, declared_by(r.method, r.params).stages);
}

Plan plan_sweep(const SweepConfig& cfg) {
  return Planner(cfg).plan();
}

RunRecord make_run_record(const RunSpec& r, const std::string& sweep_id) {
  RunRecord rec;
  rec.id = r.id;
  rec.sweep_id = sweep_id;
  rec.role = r.role;
  rec.name = r.name;
  rec.method = r.method;
  rec.reference = r.reference;
  rec.setting = r.setting.dump();
  rec.seed = r.seed;
  rec.model = r.model.empty() && r.teacher ? r.teacher->obtain + ":" + r.teacher->file : r.model;
  rec.teachers = json(r.teacher_ids).dump();
  rec.config = r.config.dump();
  return rec;
}

}  // namespace kd
