#include "reports/report_json.h"

#include <algorithm>
#include <cmath>

#include "reports/format.h"
#include "reports/stats.h"

namespace kd {

using nlohmann::json;

namespace {

json summary_json(const std::vector<double>& v) {
  auto s = stats::summarize(v);
  return {{"n", s.n},
          {"mean", v.empty() ? json() : json(s.mean)},
          {"std", json_or_null(s.std)},
          {"ci95", json_or_null(s.ci95)}};
}

json teacher_json(const TeacherStats& t) {
  return {{"run_id", t.run_id},
          {"name", t.name},
          {"model", t.model},
          {"status", to_string(t.status)},
          {"test", json_or_null(t.test)},
          {"val", json_or_null(t.val)},
          {"params", t.params},
          {"macs", t.macs}};
}

json setting_json(const SettingStats& s) {
  return {{"dataset", s.dataset},
          {"model", s.model},
          {"label", s.label},
          {"method", s.method},
          {"reference", s.reference},
          {"teachers", s.teachers},
          {"teacher_ids", s.teacher_ids},
          {"setting", parse_json_or(s.setting, json::object())},
          {"seeds", s.seeds},
          {"val", s.val},
          {"test", s.test},
          {"bestval_test", s.bestval_test},
          {"val_summary", summary_json(s.val)},
          {"test_summary", summary_json(s.test)},
          {"bestval_test_summary", summary_json(s.bestval_test)},
          {"failed", s.failed},
          {"incomplete", s.incomplete},
          {"params", s.params},
          {"macs", s.macs},
          {"latency_ms", s.latency_ms.empty() ? json(nullptr) : json(stats::median(s.latency_ms))},
          {"method_params", s.method_params},
          {"provenance", s.provenance},
          {"chosen_share", json_or_null(s.chosen_share)},
          {"run_ids", s.run_ids}};
}

json comparison_json(const std::optional<Comparison>& c) {
  if (!c) return nullptr;
  return {{"test", c->paired ? "paired" : "welch"},
          {"n", c->n},
          {"n_reference", c->n_reference},
          {"difference", c->difference},
          {"ci95", c->ci95},
          {"t", c->t},
          {"dof", c->dof},
          {"p", c->p},
          {"p_holm", c->p_holm},
          {"family", c->family},
          {"verdict", c->verdict() > 0   ? "better"
                      : c->verdict() < 0 ? "worse"
                                         : "not shown"},
          {"sd", c->sd},
          {"detectable_difference", json_or_null(c->detectable)},
          {"seeds_needed", c->seeds_needed ? json(*c->seeds_needed) : json(nullptr)},
          {"alpha", kAlpha},
          {"power", kPower}};
}

json ranks_json(const std::optional<RankAnalysis>& a) {
  if (!a) return nullptr;
  return {{"blocks", a->blocks},
          {"methods", a->treatments},
          {"mean_ranks", a->mean_ranks},
          {"values", a->values},
          {"friedman", {{"chi2", a->chi2}, {"dof", a->dof}, {"p", a->p}}},
          {"nemenyi", {{"alpha", kAlpha}, {"q_alpha", a->q_alpha}, {"critical_difference", a->critical_difference}}},
          {"left_out", a->left_out}};
}

// Per-epoch curves of the done runs of a setting: {"points": [[stage, epoch]...], "metrics": {name: [[v...]
// per seed]}}, every series aligned to the first run's points (null where a run lacks one).
json curves_json(const ResultsStore& store, const SettingStats& s) {
  std::vector<std::pair<std::string, int64_t>> points;
  std::map<std::string, std::vector<std::vector<std::optional<double>>>> metrics;
  for (const auto& run_id : s.done_run_ids) {
    auto eps = store.epochs(run_id);
    if (points.empty())
      for (const auto& e : eps)
        if (std::find(points.begin(), points.end(), std::make_pair(e.stage, e.epoch)) == points.end())
          points.emplace_back(e.stage, e.epoch);
    std::map<std::string, std::vector<std::optional<double>>> mine;
    for (const auto& e : eps) {
      bool wanted = e.name == "val.top1" || e.name == "train.top1" || e.name.rfind("loss.", 0) == 0;
      auto p = std::find(points.begin(), points.end(), std::make_pair(e.stage, e.epoch));
      if (!wanted || p == points.end()) continue;
      auto& v = mine[e.name];
      v.resize(points.size());
      if (std::isfinite(e.value)) v[static_cast<size_t>(p - points.begin())] = e.value;
    }
    for (auto& [name, v] : mine) metrics[name].push_back(v);
  }
  json j = {{"points", json::array()}, {"metrics", json::object()}};
  for (const auto& [stage, epoch] : points) j["points"].push_back({stage, epoch});
  for (const auto& [name, per_seed] : metrics) {
    json a = json::array();
    for (const auto& v : per_seed) {
      json sv = json::array();
      for (const auto& x : v) sv.push_back(json_or_null(x));
      a.push_back(sv);
    }
    j["metrics"][name] = a;
  }
  return j;
}

json row_json(const ResultsStore& store, const MethodRow& row) {
  json j = setting_json(row.best);
  j["setting_index"] = row.best_index;
  j["settings_compared"] = row.settings;
  j["failed"] = row.failed;
  j["incomplete"] = row.incomplete;
  j["gain"] = json_or_null(row.gain);
  j["gap_closed_percent"] = json_or_null(row.gap_closed);
  j["comparison"] = comparison_json(row.comparison);
  j["stability"] = json_or_null(row.stability);
  j["teacher_top1"] = json_or_null(row.teacher_top1);
  j["curves"] = curves_json(store, row.best);
  return j;
}

json failed_run_json(const RunRecord& r) {
  return {{"run_id", r.id},
          {"role", to_string(r.role)},
          {"name", r.name},
          {"model", r.model},
          {"setting", parse_json_or(r.setting, json::object())},
          {"seed", r.seed},
          {"error", parse_json_or(r.error, json(r.error))}};
}

}  // namespace

json report_json(const ResultsStore& store, const ReportData& d, const std::vector<RunRecord>& runs) {
  json rj;
  rj["title"] = report_title(d);
  rj["sweeps"] = d.sweeps;
  rj["teachers"] = json::array();
  for (const auto& t : d.teachers) {
    json tj = teacher_json(t);
    // A teacher loaded from a file: which file, by its SHA-256 (recorded with its run).
    for (const auto& r : runs)
      if (r.id == t.run_id) {
        const json env = parse_json_or(r.environment, json::object());
        if (env.is_object() && env.contains("teacher_file") && env["teacher_file"].is_object()) {
          tj["file"] = env["teacher_file"].value("path", "");
          tj["sha256"] = env["teacher_file"].value("sha256", "");
        }
      }
    rj["teachers"].push_back(tj);
  }
  const auto selected = selected_settings(d);
  rj["settings"] = json::array();
  for (size_t i = 0; i < d.settings.size(); ++i) {
    json j = setting_json(d.settings[i]);
    j["selected"] = selected.count(i) > 0;
    rj["settings"].push_back(j);
  }
  rj["rows"] = json::array();
  for (const auto& row : d.rows) rj["rows"].push_back(row_json(store, row));
  rj["failed"] = json::array();
  for (const auto& r : runs)
    if (r.status == RunStatus::Failed) rj["failed"].push_back(failed_run_json(r));
  rj["status_counts"] = d.status_counts;
  rj["ranks"] = ranks_json(d.ranks);
  return rj;
}

}  // namespace kd
