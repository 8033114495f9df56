#include "reports/aggregate.h"

#include <algorithm>
#include <cmath>

#include "reports/compare.h"
#include "reports/format.h"
#include "reports/ranks.h"
#include "reports/stats.h"

namespace kd {

using nlohmann::json;

namespace {

// Who distils from whom: the runs by id, each teacher's test top-1, and chains through assistants.
class TeacherChains {
 public:
  explicit TeacherChains(const std::vector<RunRecord>& runs) {
    for (const auto& r : runs) by_id_[r.id] = &r;
  }
  void set_teacher_top1(const std::string& id, std::optional<double> top1) { teacher_top1_[id] = top1; }

  // Test top-1 of the strongest teacher behind a run id (following assistant chains).
  std::optional<double> strongest_teacher_top1(const std::string& id, int depth = 0) const {
    auto it = by_id_.find(id);
    if (it == by_id_.end() || depth > 64) return std::nullopt;
    if (it->second->role == RunRole::Teacher) {
      auto t = teacher_top1_.find(id);
      return t == teacher_top1_.end() ? std::nullopt : t->second;
    }
    std::optional<double> best;
    for (const auto& up : upstream(*it->second))
      if (auto a = strongest_teacher_top1(up, depth + 1); a && (!best || *a > *best)) best = a;
    return best;
  }

  // A run's teacher side by identity rather than run id: a teacher-assistant is trained once per seed (a
  // different run each time) but is the same assistant, so "cnn_large -> TA cnn_medium".
  std::string describe(const std::string& id, int depth = 0) const {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return id.substr(0, 12);
    const RunRecord& t = *it->second;
    if (t.role != RunRole::Assistant || depth > 64) return t.name;
    std::string up;
    for (const auto& u : upstream(t)) up += (up.empty() ? "" : "+") + describe(u, depth + 1);
    std::string st = setting_text(t.setting);
    return (up.empty() ? "" : up + " -> ") + "TA " + t.name +
           (st == "defaults" || t.method.empty() ? "" : " (" + t.method + ": " + st + ")");
  }

  // The first teacher at the root of a run's chain: the teacher itself, or the root of an assistant's first
  // upstream run ("" when there is none).
  std::string root_teacher(const std::string& id, int depth = 0) const {
    auto it = by_id_.find(id);
    if (it == by_id_.end() || depth > 64) return "";
    if (it->second->role == RunRole::Teacher) return it->second->name;
    const auto up = upstream(*it->second);
    return up.empty() ? "" : root_teacher(up.front(), depth + 1);
  }

  // The run ids a run distils from (its `teachers` JSON array).
  static std::vector<std::string> upstream(const RunRecord& r) {
    std::vector<std::string> ids;
    for (const auto& t : parse_json_or(r.teachers, json::array()))
      if (t.is_string()) ids.push_back(t.get<std::string>());
    return ids;
  }

 private:
  std::map<std::string, const RunRecord*> by_id_;
  std::map<std::string, std::optional<double>> teacher_top1_;
};

json sweeps_json(const ResultsStore& store) {
  json sweeps = json::array();
  for (const auto& s : store.sweeps())
    sweeps.push_back({{"id", s.id},
                      {"name", s.name},
                      {"config", parse_json_or(s.config, json::object())},
                      {"environment", parse_json_or(s.environment, json::object())}});
  return sweeps;
}

void collect_teachers(const ResultsStore& store, const std::vector<RunRecord>& runs, ReportData& d,
                      TeacherChains& chains) {
  for (const auto& r : runs) {
    if (r.role != RunRole::Teacher) continue;
    TeacherStats t;
    t.run_id = r.id;
    t.name = r.name;
    t.model = r.model;
    t.status = r.status;
    t.params = r.params;
    t.macs = r.macs;
    if (r.status == RunStatus::Done) {
      auto f = store.finals(r.id);
      t.test = finite_final(f, "final.test.top1");
      t.val = finite_final(f, "final.val.top1");
      if (t.test) d.teacher_top1[r.name] = *t.test;
    }
    chains.set_teacher_top1(r.id, t.test);
    d.teachers.push_back(t);
  }
}

// Student runs into (pair, method entry, setting) groups, in store order of first appearance.
void collect_settings(const ResultsStore& store, const std::vector<RunRecord>& runs, const TeacherChains& chains,
                      std::vector<SettingStats>& settings) {
  std::map<std::string, size_t> index;  // group key -> settings index
  for (const auto& r : runs) {
    if (r.role != RunRole::Student) continue;
    const auto teacher_ids = TeacherChains::upstream(r);
    std::string teachers;
    for (const auto& tid : teacher_ids) teachers += (teachers.empty() ? "" : ", ") + chains.describe(tid);
    const json dataset = parse_json_or(r.config, json::object()).value("dataset", json::object());
    const std::string dataset_key = dataset.is_object() && !dataset.empty() ? dataset.dump() : "";
    std::string key = dataset_key + "\x1f" + r.model + "\x1f" + teachers + "\x1f" + r.name + "\x1f" +
                      parse_json_or(r.setting, json::object()).dump();
    if (!index.count(key)) {
      SettingStats s;
      s.dataset = dataset.is_object() && dataset.contains("name") && dataset["name"].is_string()
                      ? dataset["name"].get<std::string>()
                      : "";
      s.dataset_key = dataset_key;
      if (!teacher_ids.empty()) s.root_teacher = chains.root_teacher(teacher_ids.front());
      s.model = r.model;
      s.label = r.name;
      s.method = r.method;
      s.reference = r.reference;
      s.setting = r.setting;
      s.teachers = teachers;
      s.teacher_ids = teacher_ids;
      index[key] = settings.size();
      settings.push_back(s);
    }
    SettingStats& s = settings[index[key]];
    s.run_ids.push_back(r.id);
    s.method_params = std::max(s.method_params, r.method_params);
    if (r.params) s.params = r.params;
    if (r.macs) s.macs = r.macs;
    if (r.status == RunStatus::Failed) {
      ++s.failed;
      continue;
    }
    if (r.status != RunStatus::Done) {
      ++s.incomplete;
      continue;
    }
    auto f = store.finals(r.id);
    s.seeds.push_back(r.seed);
    s.done_run_ids.push_back(r.id);
    if (auto v = finite_final(f, "final.val.top1")) {
      s.val.push_back(*v);
      s.val_seeds.push_back(r.seed);
    }
    if (auto v = finite_final(f, "final.test.top1")) {
      s.test.push_back(*v);
      s.test_seeds.push_back(r.seed);
    }
    if (auto v = finite_final(f, "bestval.test.top1")) s.bestval_test.push_back(*v);
    if (auto v = finite_final(f, "latency_ms")) s.latency_ms.push_back(*v);
  }
}

// Each setting's provenance: the "provenance" of the sweep config's method entry with its label whose students
// (the entry's, else the sweep's) include its student model.
void attach_provenance(const json& sweeps, std::vector<SettingStats>& settings) {
  auto names = [](const json& v) {
    std::vector<std::string> out;
    if (v.is_string()) out.push_back(v.get<std::string>());
    if (v.is_array())
      for (const auto& x : v)
        if (x.is_string()) out.push_back(x.get<std::string>());
    return out;
  };
  for (const auto& sweep : sweeps) {
    const json cfg = sweep.value("config", json::object());
    if (!cfg.is_object() || !cfg.contains("methods") || !cfg["methods"].is_array()) continue;
    for (const auto& e : cfg["methods"]) {
      if (!e.is_object() || !e.contains("provenance") || !e["method"].is_string()) continue;
      const json label = e.value("label", e["method"]);
      const auto students = names(e.contains("students") ? e["students"] : cfg.value("student", json()));
      for (auto& s : settings)
        if (s.provenance.is_null() && label == s.label &&
            std::find(students.begin(), students.end(), s.model) != students.end())
          s.provenance = e["provenance"];
    }
  }
}

// One row per (pair, method entry): its best setting on VALIDATION (a tie keeps the setting that came first).
std::vector<MethodRow> best_settings(const std::vector<SettingStats>& settings, const TeacherChains& chains) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < settings.size(); ++i) {
    const auto& s = settings[i];
    std::string k = s.dataset_key + "\x1f" + s.model + "\x1f" + s.teachers + "\x1f" + s.label;
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(i);
  }
  std::vector<MethodRow> rows;
  for (const auto& k : order) {
    MethodRow row;
    const auto& idx = groups[k];
    size_t best = idx.front();
    double best_val = -INFINITY;
    for (size_t i : idx) {
      row.failed += settings[i].failed;
      row.incomplete += settings[i].incomplete;
      if (settings[i].val.empty()) continue;
      double m = stats::mean(settings[i].val);
      if (m > best_val) {  // strict: a tie keeps the setting that came first
        best_val = m;
        best = i;
      }
    }
    row.best = settings[best];
    row.best_index = best;
    row.setting_indices = idx;
    row.settings = static_cast<int>(idx.size());
    for (const auto& tid : row.best.teacher_ids)
      if (auto a = chains.strongest_teacher_top1(tid); a && (!row.teacher_top1 || *a > *row.teacher_top1))
        row.teacher_top1 = a;
    rows.push_back(row);
  }
  return rows;
}

std::string student_key(const SettingStats& s) {
  return s.dataset_key + "\x1f" + s.model;
}

// Gain, gap closed and the comparison (reports/compare.h) of every row against the reference row of the same
// student model and data set; then Holm over each reference's rows.
void compare_rows_with_references(std::vector<MethodRow>& rows) {
  std::map<std::string, size_t> reference_of;  // (data set, student model) -> row
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i].best.reference && !reference_of.count(student_key(rows[i].best)))
      reference_of[student_key(rows[i].best)] = i;
  for (auto& row : rows) {
    auto it = reference_of.find(student_key(row.best));
    if (it == reference_of.end() || row.best.reference) continue;
    const auto& ref = rows[it->second].best;
    if (row.best.test.empty() || ref.test.empty()) continue;
    double mean_ref = stats::mean(ref.test);
    row.gain = stats::mean(row.best.test) - mean_ref;
    if (row.teacher_top1 && *row.teacher_top1 > mean_ref)
      row.gap_closed = *row.gain / (*row.teacher_top1 - mean_ref) * 100.0;
    row.comparison = compare_with_reference(row.best, ref);
  }
  correct_for_multiple_comparisons(rows);
}

// Students (data set, model) in order of first appearance; within one, the reference first, then the sweep's
// order.
std::vector<MethodRow> reference_first(const std::vector<MethodRow>& rows, const std::vector<SettingStats>& settings) {
  std::vector<std::string> students;
  for (const auto& s : settings)
    if (std::find(students.begin(), students.end(), student_key(s)) == students.end())
      students.push_back(student_key(s));
  std::vector<MethodRow> ordered;
  for (const auto& m : students) {
    for (const auto& r : rows)
      if (student_key(r.best) == m && r.best.reference) ordered.push_back(r);
    for (const auto& r : rows)
      if (student_key(r.best) == m && !r.best.reference) ordered.push_back(r);
  }
  return ordered;
}

}  // namespace

std::optional<double> finite_final(const std::map<std::string, double>& finals, const std::string& key) {
  auto it = finals.find(key);
  if (it == finals.end() || !std::isfinite(it->second)) return std::nullopt;
  return it->second;
}

ReportData aggregate(const ResultsStore& store) {
  ReportData d;
  const auto runs = store.runs();
  d.sweeps = sweeps_json(store);
  for (const auto& r : runs) ++d.status_counts[to_string(r.status)];
  TeacherChains chains(runs);
  collect_teachers(store, runs, d, chains);
  collect_settings(store, runs, chains, d.settings);
  attach_provenance(d.sweeps, d.settings);
  std::set<std::string> datasets;
  for (const auto& s : d.settings) datasets.insert(s.dataset_key);
  d.several_datasets = datasets.size() > 1;
  auto rows = best_settings(d.settings, chains);
  compare_rows_with_references(rows);
  selection_stability(rows, d.settings);
  d.rows = reference_first(rows, d.settings);
  d.ranks = rank_across_blocks(d);
  return d;
}

std::set<size_t> selected_settings(const ReportData& d) {
  std::set<size_t> selected;
  for (const auto& row : d.rows) selected.insert(row.best_index);
  return selected;
}

std::string report_title(const ReportData& d) {
  return d.sweeps.empty() ? std::string("sweep") : d.sweeps[0].value("name", std::string("sweep"));
}

std::string provenance_text(const json& p) {
  if (!p.is_object()) return "";
  auto str = [&](const char* k) { return p.contains(k) && p[k].is_string() ? p[k].get<std::string>() : std::string(); };
  std::string t = str("repo") + "@" + str("commit").substr(0, 7) + " " + str("file");
  if (p.contains("line") && p["line"].is_number_integer()) t += ":" + std::to_string(p["line"].get<int64_t>());
  if (!str("args").empty()) t += " " + str("args");
  if (!str("note").empty()) t += " (" + str("note") + ")";
  return t;
}

std::string method_text(const SettingStats& s) {
  return s.label == s.method ? s.label : s.label + " (" + s.method + ")";
}

std::string student_text(const ReportData& d, const SettingStats& s) {
  return d.several_datasets ? s.model + " (" + (s.dataset.empty() ? "?" : s.dataset) + ")" : s.model;
}

}  // namespace kd
