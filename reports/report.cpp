#include "reports/report.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "base/fsutil.h"
#include "base/log.h"
#include "reports/stats.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace kd {

namespace {

json parse_or(const std::string& s, json def) {
  if (s.empty()) return def;
  try {
    return json::parse(s);
  } catch (...) {
    return def;
  }
}

// "temperature=4, alpha=0.9" (or "defaults" for an empty setting).
std::string setting_text(const std::string& setting_json) {
  json j = parse_or(setting_json, json::object());
  if (!j.is_object() || j.empty()) return "defaults";
  std::string s;
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string v = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
    s += (s.empty() ? "" : ", ") + it.key() + "=" + v;
  }
  return s;
}

std::string num(double v, int digits = 2) {
  return fmt::format("{:.{}f}", v, digits);
}
std::optional<double> opt_mean(const std::vector<double>& v) {
  return v.empty() ? std::optional<double>() : stats::mean(v);
}
json opt_json(const std::optional<double>& v) {
  return v ? json(*v) : json();
}
json summary_json(const std::vector<double>& v) {
  auto s = stats::summarize(v);
  return {
      {"n", s.n}, {"mean", v.empty() ? json() : json(s.mean)}, {"std", opt_json(s.std)}, {"ci95", opt_json(s.ci95)}};
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

std::string tex_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '_':
        o += "\\_";
        break;
      case '%':
        o += "\\%";
        break;
      case '&':
        o += "\\&";
        break;
      case '#':
        o += "\\#";
        break;
      case '{':
        o += "\\{";
        break;
      case '}':
        o += "\\}";
        break;
      case '$':
        o += "\\$";
        break;
      case '~':
        o += "\\textasciitilde{}";
        break;
      case '^':
        o += "\\textasciicircum{}";
        break;
      case '\\':
        o += "\\textbackslash{}";
        break;
      default:
        o += c;
    }
  }
  // The one non-ASCII character the tables use.
  const std::string pm = "±";
  size_t p;
  while ((p = o.find(pm)) != std::string::npos) o.replace(p, pm.size(), "$\\pm$");
  return o;
}

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

std::string md_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '|')
      o += "\\|";
    else if (c == '\n')
      o += ' ';
    else
      o += c;
  }
  return o;
}

std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

// One table cell: its text, the number it stands for (for "best in column"), and optional HTML.
struct Cell {
  std::string text;
  std::optional<double> value;
  std::string html;  // raw HTML for the HTML table ("" = escaped text)
  Cell(std::string t = "", std::optional<double> v = std::nullopt, std::string h = "")  // NOLINT: implicit on purpose
      : text(std::move(t)), value(v), html(std::move(h)) {}
  Cell(const char* t) : text(t) {}  // NOLINT
};

// A table rendered as Markdown, CSV, LaTeX booktabs and HTML. In `bold_max_columns` the largest value
// among the rows of the same group (e.g. the same student model) is bold.
struct Table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<Cell>> rows;
  std::vector<std::string> groups;   // per row ("" = not compared)
  std::vector<std::string> row_ids;  // HTML ids (optional)
  std::set<size_t> bold_max_columns;
  std::set<size_t> html_only_columns;  // e.g. links
  std::set<size_t> left_columns{0};    // text columns (the others are numbers, right-aligned)

  void add(std::vector<Cell> row, std::string group = "", std::string id = "") {
    rows.push_back(std::move(row));
    groups.push_back(std::move(group));
    row_ids.push_back(std::move(id));
  }
  bool bold(size_t r, size_t c) const {
    if (!bold_max_columns.count(c) || groups[r].empty() || c >= rows[r].size() || !rows[r][c].value) return false;
    for (size_t o = 0; o < rows.size(); ++o)
      if (groups[o] == groups[r] && c < rows[o].size() && rows[o][c].value && *rows[o][c].value > *rows[r][c].value)
        return false;
    return true;
  }
  std::vector<size_t> columns(bool html) const {
    std::vector<size_t> cs;
    for (size_t c = 0; c < header.size(); ++c)
      if (html || !html_only_columns.count(c)) cs.push_back(c);
    return cs;
  }
  // The same table without its HTML-only columns (for pages where their links would dangle).
  Table standalone() const {
    Table t = *this;
    t.header.clear();
    t.bold_max_columns.clear();
    t.html_only_columns.clear();
    t.left_columns.clear();
    auto cs = columns(false);
    for (size_t i = 0; i < cs.size(); ++i) {
      t.header.push_back(header[cs[i]]);
      if (left_columns.count(cs[i])) t.left_columns.insert(i);
      if (bold_max_columns.count(cs[i])) t.bold_max_columns.insert(i);
    }
    for (size_t r = 0; r < rows.size(); ++r) {
      t.rows[r].clear();
      for (size_t c : cs) t.rows[r].push_back(Cell(cell(r, c), c < rows[r].size() ? rows[r][c].value : std::nullopt));
    }
    return t;
  }
  std::string page() const {
    return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
           "</title></head><body>\n" + standalone().html("table") + "</body></html>\n";
  }
  std::string cell(size_t r, size_t c) const { return c < rows[r].size() ? rows[r][c].text : ""; }

  std::string markdown() const {
    auto cs = columns(false);
    std::string s = "|";
    for (size_t c : cs) s += " " + md_escape(header[c]) + " |";
    s += "\n|";
    for (size_t c : cs) s += left_columns.count(c) ? " --- |" : " ---: |";
    s += "\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      s += "|";
      for (size_t c : cs) {
        std::string t = md_escape(cell(r, c));
        s += " " + (bold(r, c) ? "**" + t + "**" : t) + " |";
      }
      s += "\n";
    }
    return s;
  }
  std::string csv() const {
    auto cs = columns(false);
    std::string s;
    for (size_t i = 0; i < cs.size(); ++i) s += (i ? "," : "") + csv_escape(header[cs[i]]);
    s += "\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      for (size_t i = 0; i < cs.size(); ++i) s += (i ? "," : "") + csv_escape(cell(r, cs[i]));
      s += "\n";
    }
    return s;
  }
  // A tabular body for \input{} inside a table/table* environment (needs \usepackage{booktabs}).
  std::string latex() const {
    auto cs = columns(false);
    std::string spec;
    for (size_t c : cs) spec += left_columns.count(c) ? "l" : "r";
    std::string comment = title;
    for (size_t p; (p = comment.find("±")) != std::string::npos;) comment.replace(p, std::string("±").size(), "+/-");
    std::string s = "% " + comment + "\n% kdbench report; needs \\usepackage{booktabs}\n\\begin{tabular}{" + spec +
                    "}\n\\toprule\n";
    for (size_t i = 0; i < cs.size(); ++i) s += (i ? " & " : "") + tex_escape(header[cs[i]]);
    s += " \\\\\n\\midrule\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      if (r > 0 && groups[r] != groups[r - 1]) s += "\\midrule\n";
      for (size_t i = 0; i < cs.size(); ++i) {
        std::string t = tex_escape(cell(r, cs[i]));
        s += (i ? " & " : "") + (bold(r, cs[i]) ? "\\textbf{" + t + "}" : t);
      }
      s += " \\\\\n";
    }
    return s + "\\bottomrule\n\\end{tabular}\n";
  }
  std::string html(const std::string& id) const {
    std::string s = "<table id=\"" + id + "\">\n<caption>" + html_escape(title) + "</caption>\n<thead><tr>";
    for (size_t c = 0; c < header.size(); ++c)
      s += (left_columns.count(c) ? "<th class=\"l\">" : "<th>") + html_escape(header[c]) + "</th>";
    s += "</tr></thead>\n<tbody>\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      s += row_ids[r].empty() ? "<tr>" : "<tr id=\"" + html_escape(row_ids[r]) + "\">";
      for (size_t c = 0; c < header.size(); ++c) {
        std::string t = c < rows[r].size() && !rows[r][c].html.empty() ? rows[r][c].html : html_escape(cell(r, c));
        s += (left_columns.count(c) ? "<td class=\"l\">" : "<td>") + (bold(r, c) ? "<b>" + t + "</b>" : t) + "</td>";
      }
      s += "</tr>\n";
    }
    return s + "</tbody>\n</table>\n";
  }
};

std::optional<double> get(const std::map<std::string, double>& f, const std::string& k) {
  auto it = f.find(k);
  if (it == f.end() || !std::isfinite(it->second)) return std::nullopt;
  return it->second;
}

}  // namespace

std::string format_mean_std(const std::vector<double>& v) {
  if (v.empty()) return "n/a";
  auto s = stats::stddev(v);
  return num(stats::mean(v)) + " ± " + (s ? num(*s) : "n/a");
}

ReportData aggregate(const ResultsStore& store) {
  ReportData d;
  const auto runs = store.runs();
  std::map<std::string, const RunRecord*> by_id;
  for (const auto& r : runs) by_id[r.id] = &r;
  for (const auto& s : store.sweeps())
    d.sweeps.push_back({{"id", s.id},
                        {"name", s.name},
                        {"config", parse_or(s.config, json::object())},
                        {"environment", parse_or(s.environment, json::object())}});

  std::map<std::string, std::optional<double>> teacher_acc_by_id;
  for (const auto& r : runs) {
    if (r.role != RunRole::Teacher) continue;
    TeacherStats t;
    t.run_id = r.id;
    t.name = r.name;
    t.model = r.model;
    t.status = to_string(r.status);
    t.params = r.params;
    t.macs = r.macs;
    if (r.status == RunStatus::Done) {
      auto f = store.finals(r.id);
      t.test = get(f, "final.test.top1");
      t.val = get(f, "final.val.top1");
      if (t.test) d.teacher_top1[r.name] = *t.test;
    }
    teacher_acc_by_id[r.id] = t.test;
    d.teachers.push_back(t);
  }
  // Test top-1 of the strongest teacher behind a run id (following assistant chains).
  std::function<std::optional<double>(const std::string&, int)> teacher_acc = [&](const std::string& id,
                                                                                  int depth) -> std::optional<double> {
    auto it = by_id.find(id);
    if (it == by_id.end() || depth > 64) return std::nullopt;
    if (it->second->role == RunRole::Teacher) return teacher_acc_by_id[id];
    std::optional<double> best;
    for (const auto& t : parse_or(it->second->teachers, json::array()))
      if (t.is_string())
        if (auto a = teacher_acc(t.get<std::string>(), depth + 1); a && (!best || *a > *best)) best = a;
    return best;
  };

  // The pair's teacher side, by identity rather than run id: a teacher-assistant is trained once per seed
  // (a different run each time) but is the same assistant, so "cnn_large -> TA cnn_medium".
  std::function<std::string(const std::string&, int)> describe = [&](const std::string& id, int depth) {
    auto it = by_id.find(id);
    if (it == by_id.end()) return id.substr(0, 12);
    const RunRecord& t = *it->second;
    if (t.role != RunRole::Assistant || depth > 64) return t.name;
    std::string up;
    for (const auto& u : parse_or(t.teachers, json::array()))
      if (u.is_string()) up += (up.empty() ? "" : "+") + describe(u.get<std::string>(), depth + 1);
    std::string st = setting_text(t.setting);
    return (up.empty() ? "" : up + " -> ") + "TA " + t.name +
           (st == "defaults" || t.method.empty() ? "" : " (" + t.method + ": " + st + ")");
  };

  std::map<std::string, size_t> index;  // group key -> settings index
  for (const auto& r : runs) {
    if (r.role != RunRole::Student) continue;
    json tj = parse_or(r.teachers, json::array());
    std::string teachers;
    for (const auto& tid : tj)
      if (tid.is_string()) teachers += (teachers.empty() ? "" : ", ") + describe(tid.get<std::string>(), 0);
    std::string key =
        r.model + "\x1f" + teachers + "\x1f" + r.name + "\x1f" + parse_or(r.setting, json::object()).dump();
    if (!index.count(key)) {
      SettingStats s;
      s.model = r.model;
      s.label = r.name;
      s.method = r.method;
      s.reference = r.reference;
      s.setting = r.setting;
      s.teachers = teachers;
      for (const auto& tid : tj)
        if (tid.is_string()) s.teacher_ids.push_back(tid.get<std::string>());
      index[key] = d.settings.size();
      d.settings.push_back(s);
    }
    SettingStats& s = d.settings[index[key]];
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
    if (auto v = get(f, "final.val.top1")) s.val.push_back(*v);
    if (auto v = get(f, "final.test.top1")) s.test.push_back(*v);
    if (auto v = get(f, "bestval.test.top1")) s.bestval_test.push_back(*v);
    if (auto v = get(f, "latency_ms")) s.latency_ms.push_back(*v);
  }

  // One row per (pair, method entry): its best setting on VALIDATION.
  std::vector<std::string> order;
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < d.settings.size(); ++i) {
    const auto& s = d.settings[i];
    std::string k = s.model + "\x1f" + s.teachers + "\x1f" + s.label;
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
      row.failed += d.settings[i].failed;
      row.incomplete += d.settings[i].incomplete;
      if (d.settings[i].val.empty()) continue;
      double m = stats::mean(d.settings[i].val);
      if (m > best_val) {  // strict: a tie keeps the setting that came first
        best_val = m;
        best = i;
      }
    }
    row.best = d.settings[best];
    row.best_index = best;
    row.settings = static_cast<int>(idx.size());
    for (const auto& tid : row.best.teacher_ids)
      if (auto a = teacher_acc(tid, 0); a && (!row.teacher_top1 || *a > *row.teacher_top1)) row.teacher_top1 = a;
    rows.push_back(row);
  }
  std::map<std::string, size_t> baseline_of;  // student model -> row
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i].best.reference && !baseline_of.count(rows[i].best.model)) baseline_of[rows[i].best.model] = i;
  for (auto& row : rows) {
    auto it = baseline_of.find(row.best.model);
    if (it == baseline_of.end() || row.best.reference) continue;
    const auto& b = rows[it->second].best.test;
    if (row.best.test.empty() || b.empty()) continue;
    double mb = stats::mean(b);
    row.gain = stats::mean(row.best.test) - mb;
    if (row.teacher_top1 && *row.teacher_top1 > mb) row.gap_closed = *row.gain / (*row.teacher_top1 - mb) * 100.0;
    if (auto w = stats::welch_t_test(row.best.test, b)) row.p_value = w->p;
  }
  // Student models in order of first appearance; within one, the baseline first, then the sweep's order.
  std::vector<std::string> models;
  for (const auto& s : d.settings)
    if (std::find(models.begin(), models.end(), s.model) == models.end()) models.push_back(s.model);
  for (const auto& m : models) {
    for (const auto& r : rows)
      if (r.best.model == m && r.best.reference) d.rows.push_back(r);
    for (const auto& r : rows)
      if (r.best.model == m && !r.best.reference) d.rows.push_back(r);
  }
  return d;
}

namespace {

std::string find_python(const ReportOptions& o) {
  if (!o.python.empty()) return o.python;
  if (const char* p = std::getenv("KDBENCH_PYTHON"); p && *p) return p;
  return KDBENCH_PYTHON;
}

std::string find_script(const ReportOptions& o) {
  if (!o.figure_script.empty()) return o.figure_script;
  if (const char* s = std::getenv("KDBENCH_SOURCE_DIR"); s && *s) return std::string(s) + "/reports/figures.py";
  return std::string(KDBENCH_SOURCE_DIR) + "/reports/figures.py";
}

// Per-epoch curves of the done runs of a setting: {"points": [[stage, epoch]...], "metrics": {name: [[v...]
// per seed]}}, every series aligned to the first run's points (null where a run lacks one).
json curves_for(const ResultsStore& store, const SettingStats& s) {
  std::vector<std::pair<std::string, int64_t>> points;
  std::map<std::string, std::vector<std::vector<std::optional<double>>>> metrics;
  for (size_t k = 0; k < s.done_run_ids.size(); ++k) {
    auto eps = store.epochs(s.done_run_ids[k]);
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
  for (const auto& [st, ep] : points) j["points"].push_back({st, ep});
  for (const auto& [name, per_seed] : metrics) {
    json a = json::array();
    for (const auto& v : per_seed) {
      json sv = json::array();
      for (const auto& x : v) sv.push_back(opt_json(x));
      a.push_back(sv);
    }
    j["metrics"][name] = a;
  }
  return j;
}

std::string row_link(const RunRecord& r) {
  std::string t =
      "s" + std::to_string(r.seed) + (r.status == RunStatus::Done ? "" : std::string(" (") + to_string(r.status) + ")");
  return "<a href=\"#row-" + html_escape(r.id) + "\">" + html_escape(t) + "</a>";
}

std::string run_links(const std::vector<std::string>& ids, const std::map<std::string, RunRecord>& by_id) {
  std::string h;
  for (const auto& id : ids) {
    auto it = by_id.find(id);
    if (it != by_id.end()) h += (h.empty() ? "" : " ") + row_link(it->second);
  }
  return h;
}

std::string method_text(const SettingStats& s) {
  return s.label == s.method ? s.label : s.label + " (" + s.method + ")";
}

// Runs reports/figures.py; returns "" on success or why no figures were made.
std::string make_figures(const ReportOptions& opts, const std::string& out_dir) {
  std::string py = find_python(opts), script = find_script(opts);
  if (py.empty()) return "no python interpreter configured (set KDBENCH_PYTHON)";
  if (py.find('/') != std::string::npos && !fs::exists(py))
    return "python interpreter not found: " + py + " (set KDBENCH_PYTHON)";
  if (!fs::exists(script)) return "figure script not found: " + script + " (set KDBENCH_SOURCE_DIR)";
  std::string log_path = (fs::path(out_dir) / "figures.log").string();
  std::string cmd = shell_quote(py) + " " + shell_quote(script) + " " + shell_quote(out_dir) + " > " +
                    shell_quote(log_path) + " 2>&1";
  int rc = std::system(cmd.c_str());
  int code = rc == -1 ? -1 : (WIFEXITED(rc) ? WEXITSTATUS(rc) : 128);
  if (code == 0) return "";
  std::ifstream lf(log_path);
  std::string last, line;
  while (std::getline(lf, line))
    if (!line.empty()) last = line;
  if (code == 127) return "python interpreter not found: " + py + " (set KDBENCH_PYTHON)";
  return "figures were not made: " + py + " " + script + " failed (" + last + "; see " + log_path + ")";
}

}  // namespace

ReportSummary write_report(const ResultsStore& store, const std::string& out_dir, const ReportOptions& opts) {
  ReportSummary summary;
  {
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec || !fs::is_directory(out_dir))
      throw std::runtime_error(out_dir + ": cannot create the report folder" + (ec ? ": " + ec.message() : ""));
    remove_stale_temporaries(out_dir);
    remove_stale_temporaries((fs::path(out_dir) / "figures").string());
  }
  ReportData d = aggregate(store);
  std::map<std::string, RunRecord> by_id;
  const auto all_runs = store.runs();
  for (const auto& r : all_runs) by_id[r.id] = r;
  auto path = [&](const std::string& f) { return (fs::path(out_dir) / f).string(); };
  auto write = [&](const std::string& f, const std::string& text) {
    write_text_atomically(path(f), text, "report");
    summary.files.push_back(path(f));
  };
  const std::string title = d.sweeps.empty() ? std::string("sweep") : d.sweeps[0].value("name", std::string("sweep"));

  // ---- (a) main comparison
  Table main;
  main.title =
      "Test top-1 (%) of each method at its best setting, chosen on the validation split; mean ± std "
      "over seeds (final epoch)";
  main.header = {"Student",      "Method",     "Teacher(s)", "Best setting (by val)",
                 "Val top-1",    "Test top-1", "95% CI",     "Test top-1 (best-val epoch)",
                 "Gain",         "Gap closed", "p (Welch)",  "Seeds",
                 "Extra params", "Failed",     "Runs"};
  main.bold_max_columns = {5, 7, 8, 9};
  main.html_only_columns = {14};
  main.left_columns = {0, 1, 2, 3, 14};
  for (const auto& t : d.teachers) {
    main.add({t.model, "teacher " + t.name, "-", "-", t.val ? num(*t.val) + " ± n/a" : "n/a",
              t.test ? num(*t.test) + " ± n/a" : "n/a", "n/a", "-", "-", "-", "-", t.status == "done" ? "1" : "0", "-",
              t.status == "failed" ? "1" : "0",
              Cell("", std::nullopt, by_id.count(t.run_id) ? row_link(by_id.at(t.run_id)) : "")},
             "", "teacher-" + t.name);
  }
  for (const auto& row : d.rows) {
    const auto& s = row.best;
    auto ci = stats::ci_half_width(s.test);
    std::string settings_note = row.settings > 1 ? " (of " + std::to_string(row.settings) + ")" : "";
    bool base = s.reference;
    main.add(
        {s.model, method_text(s), s.teachers.empty() ? "-" : s.teachers, setting_text(s.setting) + settings_note,
         format_mean_std(s.val), Cell(format_mean_std(s.test), opt_mean(s.test)), ci ? "± " + num(*ci) : "n/a",
         Cell(format_mean_std(s.bestval_test), opt_mean(s.bestval_test)),
         Cell(row.gain ? fmt::format("{:+.2f}", *row.gain) : (base ? "-" : "n/a"), row.gain),
         Cell(row.gap_closed ? num(*row.gap_closed, 1) + "%" : (base ? "-" : "n/a"), row.gap_closed),
         row.p_value ? fmt::format("{:.3g}", *row.p_value) : (base ? "-" : "n/a"), std::to_string(s.test.size()),
         std::to_string(s.method_params),
         std::to_string(row.failed) + (row.incomplete ? " (+" + std::to_string(row.incomplete) + " unfinished)" : ""),
         Cell("", std::nullopt, run_links(s.run_ids, by_id))},
        "student " + s.model, "method-" + std::to_string(row.best_index));
  }

  // ---- (b) every setting
  std::set<size_t> selected;
  for (const auto& row : d.rows) selected.insert(row.best_index);
  Table all;
  all.title =
      "Every setting: top-1 (%) mean ± std over seeds; final epoch, and the test top-1 at the "
      "best-validation epoch";
  all.header = {"Student",
                "Method",
                "Teacher(s)",
                "Setting",
                "Val top-1",
                "Test top-1",
                "95% CI",
                "Test top-1 (best-val epoch)",
                "n",
                "Failed",
                "Selected (by val)",
                "Runs"};
  all.bold_max_columns = {4, 5, 7};
  all.html_only_columns = {11};
  all.left_columns = {0, 1, 2, 3, 10, 11};
  for (size_t i = 0; i < d.settings.size(); ++i) {
    const auto& s = d.settings[i];
    auto ci = stats::ci_half_width(s.test);
    all.add({s.model, method_text(s), s.teachers.empty() ? "-" : s.teachers, setting_text(s.setting),
             Cell(format_mean_std(s.val), opt_mean(s.val)), Cell(format_mean_std(s.test), opt_mean(s.test)),
             ci ? "± " + num(*ci) : "n/a", Cell(format_mean_std(s.bestval_test), opt_mean(s.bestval_test)),
             std::to_string(s.test.size()), std::to_string(s.failed), selected.count(i) ? "yes" : "",
             Cell("", std::nullopt, run_links(s.run_ids, by_id))},
            s.model + "\x1f" + s.teachers + "\x1f" + s.label, "setting-" + std::to_string(i));
  }

  // ---- (c) every run, and the failed ones
  Table runs;
  runs.title = "Every run";
  runs.header = {"Run",
                 "Role",
                 "Name",
                 "Method",
                 "Model",
                 "Setting",
                 "Seed",
                 "Status",
                 "Val top-1",
                 "Test top-1",
                 "Test top-1 (best-val epoch)",
                 "Seconds",
                 "Images/s",
                 "Params",
                 "Extra params",
                 "Checkpoint"};
  runs.left_columns = {0, 1, 2, 3, 4, 5, 7, 15};
  Table failed;
  failed.title = "Failed runs (each is also counted in the Failed column of its rows)";
  failed.header = {"Run", "Role", "Name", "Model", "Setting", "Seed", "Epoch", "Step", "Term", "Message"};
  failed.left_columns = {0, 1, 2, 3, 4, 8, 9};
  std::map<std::string, int> status_count;
  for (const auto& r : all_runs) {
    ++status_count[to_string(r.status)];
    auto f = store.finals(r.id);
    auto fin = [&](const char* k) {
      auto v = get(f, k);
      return v ? num(*v) : std::string("-");
    };
    std::string id12 = r.id.substr(0, 12);
    runs.add({Cell(id12, std::nullopt, "<a href=\"#run-" + html_escape(r.id) + "\">" + html_escape(id12) + "</a>"),
              to_string(r.role), r.name, r.method, r.model, setting_text(r.setting), std::to_string(r.seed),
              to_string(r.status), fin("final.val.top1"), fin("final.test.top1"), fin("bestval.test.top1"),
              num(r.wall_seconds, 1), num(r.images_per_second, 0), std::to_string(r.params),
              std::to_string(r.method_params), r.checkpoint.empty() ? "-" : r.checkpoint},
             "", "row-" + r.id);
    if (r.status == RunStatus::Failed) {
      json e = parse_or(r.error, json::object());
      auto field = [&](const char* k) {
        if (!e.is_object() || !e.contains(k) || e[k].is_null()) return std::string("-");
        return e[k].is_string() ? e[k].get<std::string>() : e[k].dump();
      };
      std::string msg = e.is_object() && e.contains("message") ? field("message") : (r.error.empty() ? "-" : r.error);
      failed.add({Cell(id12, std::nullopt, "<a href=\"#row-" + html_escape(r.id) + "\">" + html_escape(id12) + "</a>"),
                  to_string(r.role), r.name, r.model, setting_text(r.setting), std::to_string(r.seed), field("epoch"),
                  field("step"), field("term"), msg},
                 "", "failed-" + r.id);
    }
  }

  auto md = [](const Table& t) { return "## " + t.title + "\n\n" + t.markdown(); };
  write("comparison.md", md(main));
  write("comparison.csv", main.csv());
  write("comparison.tex", main.latex());
  write("comparison.html", main.page());
  write("settings.md", md(all));
  write("settings.csv", all.csv());
  write("settings.tex", all.latex());
  write("settings.html", all.page());
  write("runs.md", md(runs));
  write("runs.csv", runs.csv());
  write("runs.tex", runs.latex());
  write("failed.md", md(failed) + (failed.rows.empty() ? "\nNo run failed.\n" : ""));
  write("failed.csv", failed.csv());
  write("failed.tex", failed.latex());

  // ---- report.json: everything aggregated, for figures.py and anyone else
  json rj;
  rj["title"] = title;
  rj["sweeps"] = d.sweeps;
  rj["teachers"] = json::array();
  for (const auto& t : d.teachers)
    rj["teachers"].push_back({{"run_id", t.run_id},
                              {"name", t.name},
                              {"model", t.model},
                              {"status", t.status},
                              {"test", opt_json(t.test)},
                              {"val", opt_json(t.val)},
                              {"params", t.params},
                              {"macs", t.macs}});
  auto setting_json = [&](const SettingStats& s) {
    return json{{"model", s.model},
                {"label", s.label},
                {"method", s.method},
                {"reference", s.reference},
                {"teachers", s.teachers},
                {"teacher_ids", s.teacher_ids},
                {"setting", parse_or(s.setting, json::object())},
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
                {"run_ids", s.run_ids}};
  };
  rj["settings"] = json::array();
  for (size_t i = 0; i < d.settings.size(); ++i) {
    json j = setting_json(d.settings[i]);
    j["selected"] = selected.count(i) > 0;
    rj["settings"].push_back(j);
  }
  rj["rows"] = json::array();
  for (const auto& row : d.rows) {
    json j = setting_json(row.best);
    j["setting_index"] = row.best_index;
    j["settings_compared"] = row.settings;
    j["failed"] = row.failed;
    j["incomplete"] = row.incomplete;
    j["gain"] = opt_json(row.gain);
    j["gap_closed_percent"] = opt_json(row.gap_closed);
    j["p_welch"] = opt_json(row.p_value);
    j["teacher_top1"] = opt_json(row.teacher_top1);
    j["curves"] = curves_for(store, row.best);
    rj["rows"].push_back(j);
  }
  rj["failed"] = json::array();
  for (const auto& r : all_runs)
    if (r.status == RunStatus::Failed)
      rj["failed"].push_back({{"run_id", r.id},
                              {"role", to_string(r.role)},
                              {"name", r.name},
                              {"model", r.model},
                              {"setting", parse_or(r.setting, json::object())},
                              {"seed", r.seed},
                              {"error", parse_or(r.error, json(r.error))}});
  rj["status_counts"] = status_count;
  write("report.json", rj.dump(1));

  // ---- figures
  std::vector<json> figures;
  std::error_code ec;
  fs::remove(path("figures.json"), ec);  // never show a previous report's figures
  if (opts.figures) {
    summary.figures_note = make_figures(opts, out_dir);
    if (!summary.figures_note.empty()) log::warn("report: tables written, figures skipped: {}", summary.figures_note);
  } else {
    summary.figures_note = "figures were not requested";
  }
  if (summary.figures_note.empty() && fs::exists(path("figures.json"))) {
    std::ifstream in(path("figures.json"));
    json fj = json::parse(in, nullptr, false);
    if (fj.is_array())
      for (const auto& f : fj)
        if (f.is_object() && f.contains("name") && fs::exists(path(f["name"].get<std::string>() + ".png"))) {
          figures.push_back(f);
          for (const char* ext : {".pdf", ".svg", ".png"})
            summary.files.push_back(path(f["name"].get<std::string>() + ext));
        }
  }

  // ---- index.html: one page, no network (figures are files beside it, by relative path)
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>kdbench report: " +
       html_escape(title) +
       "</title>\n<style>\n"
       "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:2em;max-width:1500px;color:#222}\n"
       "table{border-collapse:collapse;margin:1em 0;font-size:13px}\n"
       "th,td{border-bottom:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}\n"
       "td{white-space:nowrap}\n"
       "th.l,td.l{text-align:left}\n"
       "caption{font-weight:bold;text-align:left;padding:4px 0}\n"
       "tr:target{background:#fff3b0}\n"
       "figure{display:inline-block;margin:0.5em;vertical-align:top}figure img{max-width:700px}\n"
       "pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}\n"
       ".warn{color:#a00}\n"
       "</style></head><body>\n";
  h += "<h1>kdbench report: " + html_escape(title) + "</h1>\n";
  h += "<p>Runs: ";
  for (const auto& [st, n] : status_count) h += html_escape(st) + " " + std::to_string(n) + "; ";
  h += "</p>\n<p>Each method's best setting is chosen on the <b>validation</b> split (mean final val top-1 over "
       "seeds; ties keep the first setting). Test numbers are mean ± sample std over seeds (n/a for one seed), "
       "with the 95% Student-t interval; gain and Welch's t-test are against the baseline of the same student; "
       "gap closed = (method - baseline) / (teacher - baseline).</p>\n";
  h += "<nav><a href=\"#comparison\">Comparison</a> | <a href=\"#failed\">Failed runs</a> | "
       "<a href=\"#figures\">Figures</a> | <a href=\"#settings\">Every setting</a> | <a href=\"#runs\">Runs</a> | "
       "<a href=\"#run-details\">Run details</a> | <a href=\"#environment\">Software and hardware</a> | "
       "<a href=\"#config\">Sweep config</a></nav>\n";
  h += "<h2 id=\"comparison\">Comparison</h2>\n" + main.html("table-comparison");
  h += "<h2 id=\"failed\">Failed runs</h2>\n";
  h += failed.rows.empty() ? "<p>No run failed.</p>\n" : failed.html("table-failed");
  h += "<h2 id=\"figures\">Figures</h2>\n";
  if (figures.empty())
    h += "<p class=\"warn\">No figures: " +
         html_escape(summary.figures_note.empty() ? "nothing to plot" : summary.figures_note) + "</p>\n";
  for (const auto& f : figures) {
    std::string n = html_escape(f["name"].get<std::string>());
    std::string cap = html_escape(f.value("caption", f["name"].get<std::string>()));
    h += "<figure id=\"fig-" + n + "\"><img src=\"" + n + ".png\" alt=\"" + cap + "\"><figcaption>" + cap +
         " (<a href=\"" + n + ".pdf\">PDF</a>, <a href=\"" + n + ".svg\">SVG</a>)</figcaption></figure>\n";
  }
  h += "<h2 id=\"settings\">Every setting</h2>\n" + all.html("table-settings");
  h += "<h2 id=\"runs\">Runs</h2>\n" + runs.html("table-runs");
  h += "<h2 id=\"run-details\">Run details</h2>\n";
  for (const auto& r : all_runs) {
    json details = {{"id", r.id},
                    {"role", to_string(r.role)},
                    {"status", to_string(r.status)},
                    {"owner", r.owner},
                    {"started_at", r.started_at},
                    {"finished_at", r.finished_at},
                    {"wall_seconds", r.wall_seconds},
                    {"images_per_second", r.images_per_second},
                    {"checkpoint", r.checkpoint},
                    {"finals", store.finals(r.id)},
                    {"error", parse_or(r.error, json(r.error.empty() ? json() : json(r.error)))},
                    {"config", parse_or(r.config, json(r.config))}};
    h += "<details id=\"run-" + html_escape(r.id) + "\"><summary>" +
         html_escape(r.id.substr(0, 12) + " " + to_string(r.role) + " " + r.name + " " + r.model + " " +
                     setting_text(r.setting) + " seed " + std::to_string(r.seed) + ": " + to_string(r.status)) +
         " (<a href=\"#row-" + html_escape(r.id) + "\">row</a>)</summary>\n<pre>" + html_escape(details.dump(2)) +
         "</pre></details>\n";
  }
  // Software and hardware: each distinct runs.environment, with the runs that ran on it.
  h += "<h2 id=\"environment\">Software and hardware</h2>\n";
  std::vector<std::pair<std::string, std::vector<std::string>>> envs;
  for (const auto& r : all_runs) {
    if (!is_finished(r.status)) continue;
    std::string e = parse_or(r.environment, json(r.environment)).dump(2);
    auto it = std::find_if(envs.begin(), envs.end(), [&](const auto& p) { return p.first == e; });
    if (it == envs.end())
      envs.push_back({e, {r.id}});
    else
      it->second.push_back(r.id);
  }
  if (envs.empty()) h += "<p>No run has finished yet.</p>\n";
  for (const auto& [e, ids] : envs)
    h += "<p>" + std::to_string(ids.size()) + " run(s) ran on:</p>\n<pre>" + html_escape(e) + "</pre>\n";
  for (const auto& s : d.sweeps)
    if (!s["environment"].empty())
      h += "<p>Sweep " + html_escape(s.value("name", std::string())) + " was planned on:</p>\n<pre>" +
           html_escape(s["environment"].dump(2)) + "</pre>\n";
  h += "<h2 id=\"config\">Sweep config</h2>\n";
  for (const auto& s : d.sweeps)
    h += "<p>" + html_escape(s.value("name", std::string()) + " (" + s.value("id", std::string()) + ")") +
         "</p>\n<pre>" + html_escape(s["config"].dump(2)) + "</pre>\n";
  h +=
      "<p>Tables as files: comparison (<a href=\"comparison.md\">Markdown</a>, <a href=\"comparison.csv\">CSV</a>, "
      "<a href=\"comparison.tex\">LaTeX</a>), every setting (<a href=\"settings.md\">Markdown</a>, "
      "<a href=\"settings.csv\">CSV</a>, <a href=\"settings.tex\">LaTeX</a>), runs (<a href=\"runs.md\">Markdown</a>, "
      "<a href=\"runs.csv\">CSV</a>, <a href=\"runs.tex\">LaTeX</a>), failed runs (<a href=\"failed.md\">Markdown</a>, "
      "<a href=\"failed.csv\">CSV</a>, <a href=\"failed.tex\">LaTeX</a>); all data: "
      "<a href=\"report.json\">report.json</a>.</p>\n"
      // Self-check (inline, no network): marks each figure loaded or not and says so on the console, so a
      // headless browser can tell that every figure file is there and decodes.
      "<script>window.addEventListener('load',function(){for(var i=0;i<document.images.length;i++){"
      "var m=document.images[i],ok=m.complete&&m.naturalWidth>0;m.setAttribute('data-loaded',ok?'yes':'no');"
      "if(!ok)console.error('figure failed to load: '+m.getAttribute('src'));}});</script>\n</body></html>\n";
  write("index.html", h);
  return summary;
}

}  // namespace kd
