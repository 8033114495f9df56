#include "reports/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "harness/log.h"
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

std::string num(double v, int digits = 2) { return fmt::format("{:.{}f}", v, digits); }

// Writes `text` to `path` through a temporary file and a rename.
void write_text(const std::string& path, const std::string& text, std::vector<std::string>& written) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream o(tmp, std::ios::binary);
    o << text;
    o.flush();
    if (!o) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw std::runtime_error(path + ": write failed (disk full or not writable?)");
    }
  }
  fs::rename(tmp, path);
  written.push_back(path);
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string tex_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '_': o += "\\_"; break;
      case '%': o += "\\%"; break;
      case '&': o += "\\&"; break;
      case '#': o += "\\#"; break;
      case '{': o += "\\{"; break;
      case '}': o += "\\}"; break;
      case '$': o += "\\$"; break;
      default: o += c;
    }
  }
  return o;
}

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

// A table: header, rows of display cells, and optional numbers for "best in column" bolding.
struct Table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<std::optional<double>>> values;  // same shape as rows (may be empty)
  std::set<size_t> bold_max_columns;                       // columns whose largest value is bold
  std::vector<std::string> row_ids;                        // HTML anchors (optional)

  // Rows that hold the column maximum.
  std::set<size_t> best_rows(size_t col) const {
    std::set<size_t> out;
    double best = -INFINITY;
    for (size_t r = 0; r < values.size(); ++r)
      if (col < values[r].size() && values[r][col] && *values[r][col] > best) best = *values[r][col];
    for (size_t r = 0; r < values.size(); ++r)
      if (col < values[r].size() && values[r][col] && *values[r][col] == best) out.insert(r);
    return out;
  }
  bool bold(size_t r, size_t c) const { return bold_max_columns.count(c) && best_rows(c).count(r); }

  std::string markdown() const {
    std::string s = "| " ;
    for (size_t c = 0; c < header.size(); ++c) s += header[c] + " |" + (c + 1 < header.size() ? " " : "");
    s += "\n|";
    for (size_t c = 0; c < header.size(); ++c) s += c == 0 ? " --- |" : " ---: |";
    s += "\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      s += "|";
      for (size_t c = 0; c < rows[r].size(); ++c) s += " " + (bold(r, c) ? "**" + rows[r][c] + "**" : rows[r][c]) + " |";
      s += "\n";
    }
    return s;
  }
  std::string csv() const {
    std::string s;
    for (size_t c = 0; c < header.size(); ++c) s += (c ? "," : "") + csv_escape(header[c]);
    s += "\n";
    for (const auto& row : rows) {
      for (size_t c = 0; c < row.size(); ++c) s += (c ? "," : "") + csv_escape(row[c]);
      s += "\n";
    }
    return s;
  }
  std::string latex() const {
    std::string cols = "l";
    for (size_t c = 1; c < header.size(); ++c) cols += "r";
    std::string s = "% " + title + " (kdbench; needs \\usepackage{booktabs})\n\\begin{tabular}{" + cols + "}\n\\toprule\n";
    for (size_t c = 0; c < header.size(); ++c) s += (c ? " & " : "") + tex_escape(header[c]);
    s += " \\\\\n\\midrule\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      for (size_t c = 0; c < rows[r].size(); ++c) {
        std::string cell = tex_escape(rows[r][c]);
        size_t p;
        while ((p = cell.find("±")) != std::string::npos) cell.replace(p, std::string("±").size(), "$\\pm$");
        s += (c ? " & " : "") + (bold(r, c) ? "\\textbf{" + cell + "}" : cell);
      }
      s += " \\\\\n";
    }
    s += "\\bottomrule\n\\end{tabular}\n";
    return s;
  }
  std::string html(const std::string& id) const {
    std::string s = "<table id=\"" + id + "\"><caption>" + html_escape(title) + "</caption>\n<thead><tr>";
    for (const auto& h : header) s += "<th>" + html_escape(h) + "</th>";
    s += "</tr></thead>\n<tbody>\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      s += r < row_ids.size() && !row_ids[r].empty() ? "<tr id=\"" + row_ids[r] + "\">" : "<tr>";
      for (size_t c = 0; c < rows[r].size(); ++c) {
        std::string cell = html_escape(rows[r][c]);
        s += std::string("<td>") + (bold(r, c) ? "<b>" + cell + "</b>" : cell) + "</td>";
      }
      s += "</tr>\n";
    }
    return s + "</tbody></table>\n";
  }
};

std::string opt_num(const std::optional<double>& v, int digits = 2, const std::string& suffix = "") {
  return v ? num(*v, digits) + suffix : "n/a";
}

}  // namespace

std::string format_mean_std(const std::vector<double>& v) {
  if (v.empty()) return "n/a";
  auto s = stats::stddev(v);
  return num(stats::mean(v)) + " ± " + (s ? num(*s) : "n/a");
}

ReportData aggregate(const ResultsStore& store) {
  ReportData d;
  auto runs = store.runs();
  std::map<std::string, RunRecord> by_id;
  for (const auto& r : runs) by_id[r.id] = r;
  auto sweeps = store.sweeps();
  if (!sweeps.empty())
    d.sweep = {{"name", sweeps.front().name},
               {"config", parse_or(sweeps.front().config, json::object())},
               {"environment", parse_or(sweeps.front().environment, json::object())}};
  for (const auto& r : runs)
    if (r.role == "teacher" && r.status == "done") d.teacher_top1[r.name] = store.finals(r.id)["final.test.top1"];

  // The root teacher of a run (following assistants up the chain).
  std::function<const RunRecord*(const std::string&)> root = [&](const std::string& id) -> const RunRecord* {
    auto it = by_id.find(id);
    if (it == by_id.end()) return nullptr;
    if (it->second.role == "teacher") return &it->second;
    auto t = parse_or(it->second.teachers, json::array());
    return t.empty() ? nullptr : root(t[0].get<std::string>());
  };

  std::map<std::string, size_t> index;  // group key -> settings index
  std::map<std::string, std::string> first_teacher;  // group key -> root teacher name
  for (const auto& r : runs) {
    if (r.role != "student") continue;
    std::string key = r.model + "\x1f" + r.name + "\x1f" + r.setting;
    if (!index.count(key)) {
      SettingStats s;
      s.model = r.model;
      s.label = r.name;
      s.method = r.method;
      s.setting = r.setting;
      auto t = parse_or(r.teachers, json::array());
      for (const auto& tid : t) {
        auto it = by_id.find(tid.get<std::string>());
        std::string n = it == by_id.end() ? "?" : (it->second.role == "assistant" ? "TA " : "") + it->second.name;
        s.teachers += (s.teachers.empty() ? "" : ", ") + n;
      }
      if (!t.empty())
        if (const RunRecord* rt = root(t[0].get<std::string>())) first_teacher[key] = rt->name;
      index[key] = d.settings.size();
      d.settings.push_back(s);
    }
    SettingStats& s = d.settings[index[key]];
    s.run_ids.push_back(r.id);
    if (r.status == "failed") {
      ++s.failed;
      continue;
    }
    if (r.status != "done") continue;
    auto f = store.finals(r.id);
    s.seeds.push_back(r.seed);
    s.val.push_back(f["final.val.top1"]);
    s.test.push_back(f["final.test.top1"]);
    s.bestval_test.push_back(f.count("bestval.test.top1") ? f["bestval.test.top1"] : f["final.test.top1"]);
    s.method_params = r.method_params;
    s.params = r.params;
    s.macs = r.macs;
  }

  // One row per (model, label): the best setting on validation.
  std::vector<std::pair<std::string, std::string>> order;
  std::map<std::pair<std::string, std::string>, std::vector<size_t>> groups;
  for (size_t i = 0; i < d.settings.size(); ++i) {
    auto k = std::make_pair(d.settings[i].model, d.settings[i].label);
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(i);
  }
  std::map<std::string, const SettingStats*> baseline_of;  // model -> baseline's best
  std::vector<MethodRow> rows;
  for (const auto& k : order) {
    const auto& idx = groups[k];
    size_t best = idx.front();
    double best_val = -INFINITY;
    int failed = 0;
    for (size_t i : idx) {
      failed += d.settings[i].failed;
      if (d.settings[i].val.empty()) continue;
      double m = stats::mean(d.settings[i].val);
      if (m > best_val) {  // strict: ties keep the earlier setting
        best_val = m;
        best = i;
      }
    }
    MethodRow row;
    row.best = d.settings[best];
    row.best.failed = failed;  // failures of every setting of this method count in its row
    row.settings = static_cast<int>(idx.size());
    std::string key = row.best.model + "\x1f" + row.best.label + "\x1f" + row.best.setting;
    if (first_teacher.count(key) && d.teacher_top1.count(first_teacher[key]))
      row.teacher_top1 = d.teacher_top1[first_teacher[key]];
    rows.push_back(row);
  }
  for (auto& row : rows)
    if (row.best.method == "baseline" && !baseline_of.count(row.best.model)) baseline_of[row.best.model] = &row.best;
  // If no explicit teacher, use the sweep's best teacher for the gap.
  double any_teacher = -1;
  for (auto& [n, v] : d.teacher_top1) any_teacher = std::max(any_teacher, v);
  for (auto& row : rows) {
    auto it = baseline_of.find(row.best.model);
    if (it == baseline_of.end() || row.best.method == "baseline" || row.best.test.empty() || it->second->test.empty())
      continue;
    const auto& b = it->second->test;
    row.gain = stats::mean(row.best.test) - stats::mean(b);
    double teacher = row.teacher_top1 >= 0 ? row.teacher_top1 : any_teacher;
    if (teacher > stats::mean(b)) row.gap_closed = *row.gain / (teacher - stats::mean(b)) * 100.0;
    if (auto w = stats::welch_t_test(row.best.test, b)) row.p_value = w->p;
  }
  // baseline first, then the others in config order
  std::stable_partition(rows.begin(), rows.end(), [](const MethodRow& r) { return r.best.method == "baseline"; });
  d.rows = rows;
  return d;
}

namespace {

std::string find_python(const ReportOptions& o) {
  if (!o.python.empty()) return o.python;
  if (const char* p = std::getenv("KDBENCH_PYTHON")) return p;
  return KDBENCH_PYTHON;
}

std::string find_script(const ReportOptions& o) {
  if (!o.figure_script.empty()) return o.figure_script;
  if (const char* s = std::getenv("KDBENCH_SOURCE_DIR")) return std::string(s) + "/reports/figures.py";
  return std::string(KDBENCH_SOURCE_DIR) + "/reports/figures.py";
}

json curves_for(const ResultsStore& store, const SettingStats& s) {
  // per metric -> per seed -> values by epoch (only the final stage's epochs for val; all for losses)
  json c = json::object();
  for (const auto& id : s.run_ids) {
    auto rec = store.run(id);
    if (!rec || rec->status != "done") continue;
    std::map<std::string, std::vector<double>> series;
    for (const auto& e : store.epochs(id))
      if (e.name == "val.top1" || e.name.rfind("loss.", 0) == 0) series[e.name].push_back(e.value);
    for (auto& [name, v] : series) c[name].push_back(v);
  }
  return c;
}

}  // namespace

ReportSummary write_report(const ResultsStore& store, const std::string& out_dir, const ReportOptions& opts) {
  ReportSummary summary;
  fs::create_directories(out_dir);
  ReportData d = aggregate(store);
  auto& W = summary.files;

  // ---- main comparison table
  Table main;
  main.title = "Test top-1 (%) of each method's best setting, chosen on the validation split";
  main.header = {"Student", "Method", "Teacher(s)", "Best setting (by val)", "Test top-1", "95% CI", "Gain",
                 "Gap closed", "p (Welch)", "Seeds", "Extra params", "Failed"};
  for (const auto& [name, acc] : d.teacher_top1) {
    main.rows.push_back({"-", "teacher " + name, "-", "-", num(acc) + " ± n/a", "n/a", "-", "-", "-", "1", "-", "0"});
    main.values.push_back({});
  }
  for (const auto& row : d.rows) {
    const auto& s = row.best;
    auto ci = stats::ci_half_width(s.test);
    main.rows.push_back({s.model, s.label, s.teachers.empty() ? "-" : s.teachers, setting_text(s.setting),
                         format_mean_std(s.test), ci ? "± " + num(*ci) : "n/a",
                         row.gain ? fmt::format("{:+.2f}", *row.gain) : "-", opt_num(row.gap_closed, 1, "%"),
                         row.p_value ? fmt::format("{:.3g}", *row.p_value) : "-", std::to_string(s.test.size()),
                         std::to_string(s.method_params), std::to_string(s.failed)});
    std::vector<std::optional<double>> v(main.header.size());
    if (!s.test.empty()) v[4] = stats::mean(s.test);
    v[6] = row.gain;
    v[7] = row.gap_closed;
    main.values.push_back(v);
  }
  main.bold_max_columns = {4, 6, 7};

  // ---- every setting
  Table all;
  all.title = "Every setting: validation and test top-1 (%) over seeds (final epoch; best-on-validation epoch)";
  all.header = {"Student", "Method", "Setting", "Val top-1", "Test top-1", "Test top-1 (best-val epoch)", "Seeds", "Failed"};
  for (const auto& s : d.settings) {
    all.rows.push_back({s.model, s.label, setting_text(s.setting), format_mean_std(s.val), format_mean_std(s.test),
                        format_mean_std(s.bestval_test), std::to_string(s.test.size()), std::to_string(s.failed)});
    all.values.push_back({std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                          s.test.empty() ? std::optional<double>() : stats::mean(s.test)});
  }
  all.bold_max_columns = {4};

  // ---- runs
  Table runs;
  runs.title = "Every run";
  runs.header = {"Run", "Role", "Name", "Model", "Setting", "Seed", "Status", "Val top-1", "Test top-1", "Seconds",
                 "Checkpoint", "Error"};
  std::vector<std::string> failed_lines;
  for (const auto& r : store.runs()) {
    auto f = store.finals(r.id);
    auto get = [&](const char* k) { return f.count(k) ? num(f[k]) : std::string("-"); };
    std::string ckpt = r.checkpoint.empty() ? "-" : r.checkpoint;
    runs.rows.push_back({r.id.substr(0, 12), r.role, r.name, r.model, setting_text(r.setting), std::to_string(r.seed),
                         r.status, get("final.val.top1"), get("final.test.top1"), num(r.wall_seconds, 1), ckpt,
                         r.error.empty() ? "" : r.error});
    runs.row_ids.push_back("run-" + r.id);
    if (r.status == "failed") failed_lines.push_back(r.id.substr(0, 12) + " " + r.name + " " + r.setting + ": " + r.error);
  }

  auto base = [&](const std::string& f) { return (fs::path(out_dir) / f).string(); };
  write_text(base("comparison.md"), "## " + main.title + "\n\n" + main.markdown(), W);
  write_text(base("comparison.csv"), main.csv(), W);
  write_text(base("comparison.tex"), main.latex(), W);
  write_text(base("settings.md"), "## " + all.title + "\n\n" + all.markdown(), W);
  write_text(base("settings.csv"), all.csv(), W);
  write_text(base("settings.tex"), all.latex(), W);
  write_text(base("runs.csv"), runs.csv(), W);

  // ---- data for the figures
  json rj;
  rj["sweep"] = d.sweep;
  rj["teachers"] = d.teacher_top1;
  rj["settings"] = json::array();
  for (const auto& s : d.settings)
    rj["settings"].push_back({{"model", s.model}, {"label", s.label}, {"method", s.method},
                              {"setting", parse_or(s.setting, json::object())}, {"seeds", s.seeds}, {"val", s.val},
                              {"test", s.test}, {"failed", s.failed}, {"params", s.params}, {"macs", s.macs}});
  rj["rows"] = json::array();
  for (const auto& row : d.rows) {
    auto ci = stats::ci_half_width(row.best.test);
    rj["rows"].push_back({{"model", row.best.model}, {"label", row.best.label}, {"method", row.best.method},
                          {"setting", parse_or(row.best.setting, json::object())}, {"test", row.best.test},
                          {"val", row.best.val}, {"ci", ci ? json(*ci) : json()}, {"params", row.best.params},
                          {"macs", row.best.macs}, {"curves", curves_for(store, row.best)}});
  }
  write_text(base("report.json"), rj.dump(1), W);

  // ---- figures
  if (opts.figures) {
    std::string py = find_python(opts), script = find_script(opts);
    if (!fs::exists(script)) {
      summary.figures_note = "figure script not found: " + script;
    } else {
      std::string cmd = "'" + py + "' '" + script + "' '" + out_dir + "' > '" + base("figures.log") + "' 2>&1";
      int rc = std::system(cmd.c_str());
      if (rc != 0) {
        std::ifstream lf(base("figures.log"));
        std::string last, line;
        while (std::getline(lf, line))
          if (!line.empty()) last = line;
        summary.figures_note = "figures were not made (" + py + " reports/figures.py failed: " + last + ")";
      }
    }
    if (!summary.figures_note.empty()) log::warn("{}", summary.figures_note);
  } else {
    summary.figures_note = "figures were not requested";
  }
  std::vector<std::string> figures;
  if (fs::exists(base("figures.json"))) {
    std::ifstream in(base("figures.json"));
    json fj = json::parse(in, nullptr, false);
    if (fj.is_array())
      for (const auto& f : fj) figures.push_back(f.get<std::string>());
  }

  // ---- index.html (self-contained apart from the figure files beside it)
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kdbench report: " +
       html_escape(d.sweep.value("name", std::string("sweep"))) + "</title>\n<style>\n"
       "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em;max-width:1400px;color:#222}\n"
       "table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border-bottom:1px solid #ccc;padding:3px 8px;"
       "text-align:right}th:first-child,td:first-child{text-align:left}caption{font-weight:bold;text-align:left;"
       "padding:4px 0}figure{display:inline-block;margin:0.5em;vertical-align:top}figure img{max-width:640px}"
       "pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}\n</style></head><body>\n";
  h += "<h1>kdbench report: " + html_escape(d.sweep.value("name", std::string("sweep"))) + "</h1>\n";
  h += "<p>Best settings are chosen on the validation split; test numbers are the final epoch's, mean ± sample std "
       "over seeds, with the 95% t interval and Welch's t-test against the baseline of the same student.</p>\n";
  h += "<h2>Comparison</h2>\n" + main.html("table-comparison");
  if (!failed_lines.empty()) {
    h += "<h2>Failed runs</h2>\n<ul>\n";
    for (const auto& l : failed_lines) h += "<li>" + html_escape(l) + "</li>\n";
    h += "</ul>\n";
  }
  h += "<h2>Figures</h2>\n";
  if (figures.empty()) h += "<p>No figures: " + html_escape(summary.figures_note) + "</p>\n";
  for (const auto& f : figures) {
    std::string stem = fs::path(f).stem().string();
    h += "<figure><img src=\"" + html_escape(f) + "\" alt=\"" + html_escape(stem) + "\"><figcaption>" +
         html_escape(stem) + " (<a href=\"" + html_escape(stem) + ".pdf\">PDF</a>, <a href=\"" + html_escape(stem) +
         ".svg\">SVG</a>)</figcaption></figure>\n";
  }
  h += "<h2>Every setting</h2>\n" + all.html("table-settings");
  h += "<h2>Runs</h2>\n" + runs.html("table-runs");
  h += "<h2>Software and hardware</h2>\n<pre>" + html_escape(d.sweep.value("environment", json::object()).dump(2)) +
       "</pre>\n";
  h += "<h2>Sweep config</h2>\n<pre>" + html_escape(d.sweep.value("config", json::object()).dump(2)) + "</pre>\n";
  h += "<p>Tables as files: <a href=\"comparison.md\">Markdown</a>, <a href=\"comparison.csv\">CSV</a>, "
       "<a href=\"comparison.tex\">LaTeX</a>; <a href=\"settings.csv\">every setting</a>; <a href=\"runs.csv\">every "
       "run</a>; <a href=\"report.json\">report.json</a>.</p>\n</body></html>\n";
  write_text(base("index.html"), h, W);
  return summary;
}

}  // namespace kd
