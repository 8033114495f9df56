#include "reports/report_tables.h"

#include <fmt/format.h>

#include <algorithm>

#include "reports/format.h"
#include "reports/stats.h"
#include "reports/writers.h"

namespace kd {

using nlohmann::json;

RunIndex::RunIndex(std::vector<RunRecord> runs) : runs_(std::move(runs)) {
  for (size_t i = 0; i < runs_.size(); ++i) index_[runs_[i].id] = i;
}

const RunRecord* RunIndex::find(const std::string& id) const {
  auto it = index_.find(id);
  return it == index_.end() ? nullptr : &runs_[it->second];
}

std::string RunIndex::seed_link(const std::string& id) const {
  const RunRecord* r = find(id);
  if (!r) return "";
  std::string t = "s" + std::to_string(r->seed) +
                  (r->status == RunStatus::Done ? "" : std::string(" (") + to_string(r->status) + ")");
  return "<a href=\"#row-" + html_escape(r->id) + "\">" + html_escape(t) + "</a>";
}

std::string RunIndex::seed_links(const std::vector<std::string>& ids) const {
  std::string h;
  for (const auto& id : ids)
    if (find(id)) h += (h.empty() ? "" : " ") + seed_link(id);
  return h;
}

namespace {

Cell mean_std_cell(const std::vector<double>& v) {
  return Cell(format_mean_std(v), mean_or_none(v));
}

Cell ci_cell(const std::vector<double>& v) {
  auto ci = stats::ci_half_width(v);
  return ci ? Cell("± " + fixed(*ci), *ci) : Cell("n/a");
}

// The reference row has no gain, gap or p ("-"); another row without one has "n/a".
Cell versus_reference(const std::optional<double>& v, const std::string& text, bool reference) {
  return v ? Cell(text, *v) : Cell(reference ? "-" : "n/a");
}

void add_teacher_rows(Table& t, const ReportData& d, const RunIndex& runs) {
  for (const auto& teacher : d.teachers) {
    const bool done = teacher.status == RunStatus::Done, failed = teacher.status == RunStatus::Failed;
    t.add({teacher.model, "teacher " + teacher.name, "-", "-",
           teacher.val ? Cell(fixed(*teacher.val) + " ± n/a", *teacher.val) : Cell("n/a"),
           teacher.test ? Cell(fixed(*teacher.test) + " ± n/a", *teacher.test) : Cell("n/a"), "n/a", "-", "-", "-", "-",
           Cell(done ? "1" : "0", done ? 1 : 0), "-", Cell(failed ? "1" : "0", failed ? 1 : 0),
           Cell::link(runs.seed_link(teacher.run_id))},
          "", "teacher-" + teacher.name);
  }
}

}  // namespace

Table comparison_table(const ReportData& d, const RunIndex& runs) {
  Table t;
  t.name = "comparison";
  t.title =
      "Test top-1 (%) of each method at its best setting, chosen on the validation split; mean ± std "
      "over seeds (final epoch)";
  t.columns = {Column::text("Student").key_column(),
               Column::text("Method").key_column().wrapped(),
               Column::text("Teacher(s)").wrapped(),
               Column::text("Best setting (by val)").wrapped(),
               Column::number("Val top-1"),
               Column::number("Test top-1").bold_max_in_group().key_column(),
               Column::number("95% CI"),
               Column::number("Test top-1 (best-val epoch)").bold_max_in_group(),
               Column::number("Gain").bold_max_in_group().key_column(),
               Column::number("Gap closed").bold_max_in_group(),
               Column::number("p (Welch)").key_column(),
               Column::number("Seeds"),
               Column::number("Extra params"),
               Column::number("Failed"),
               Column::links("Runs")};
  add_teacher_rows(t, d, runs);
  for (const auto& row : d.rows) {
    const auto& s = row.best;
    const bool ref = s.reference;
    std::string settings_note = row.settings > 1 ? " (of " + std::to_string(row.settings) + ")" : "";
    std::string unfinished = row.incomplete ? " (+" + std::to_string(row.incomplete) + " unfinished)" : "";
    t.add({s.model, method_text(s), s.teachers.empty() ? "-" : s.teachers, setting_text(s.setting) + settings_note,
           mean_std_cell(s.val), mean_std_cell(s.test), ci_cell(s.test), mean_std_cell(s.bestval_test),
           versus_reference(row.gain, row.gain ? fmt::format("{:+.2f}", *row.gain) : "", ref),
           versus_reference(row.gap_closed, row.gap_closed ? fixed(*row.gap_closed, 1) + "%" : "", ref),
           versus_reference(row.p_value, row.p_value ? fmt::format("{:.3g}", *row.p_value) : "", ref),
           Cell::integer(static_cast<int64_t>(s.test.size())), Cell::integer(s.method_params),
           Cell(std::to_string(row.failed) + unfinished, row.failed), Cell::link(runs.seed_links(s.run_ids))},
          "student " + s.model, "method-" + std::to_string(row.best_index));
  }
  return t;
}

Table settings_table(const ReportData& d, const RunIndex& runs) {
  Table t;
  t.name = "settings";
  t.title =
      "Every setting: top-1 (%) mean ± std over seeds; final epoch, and the test top-1 at the "
      "best-validation epoch";
  t.columns = {Column::text("Student").key_column(),
               Column::text("Method").key_column().wrapped(),
               Column::text("Teacher(s)").wrapped(),
               Column::text("Setting").key_column().wrapped(),
               Column::number("Val top-1").bold_max_in_group().key_column(),
               Column::number("Test top-1").bold_max_in_group().key_column(),
               Column::number("95% CI"),
               Column::number("Test top-1 (best-val epoch)").bold_max_in_group(),
               Column::number("n"),
               Column::number("Failed"),
               Column::text("Selected (by val)"),
               Column::links("Runs")};
  // The published line each entry reproduces, when the sweep's config names one ("provenance").
  const bool provenance =
      std::any_of(d.settings.begin(), d.settings.end(), [](const SettingStats& s) { return !s.provenance.is_null(); });
  if (provenance) t.columns.push_back(Column::text("Reproduces").wrapped());
  const auto selected = selected_settings(d);
  for (size_t i = 0; i < d.settings.size(); ++i) {
    const auto& s = d.settings[i];
    std::vector<Cell> row{s.model,
                          method_text(s),
                          s.teachers.empty() ? "-" : s.teachers,
                          setting_text(s.setting),
                          mean_std_cell(s.val),
                          mean_std_cell(s.test),
                          ci_cell(s.test),
                          mean_std_cell(s.bestval_test),
                          Cell::integer(static_cast<int64_t>(s.test.size())),
                          Cell::integer(s.failed),
                          selected.count(i) ? "yes" : "",
                          Cell::link(runs.seed_links(s.run_ids))};
    if (provenance) row.push_back(s.provenance.is_null() ? "-" : provenance_text(s.provenance));
    t.add(row, s.model + "\x1f" + s.teachers + "\x1f" + s.label, "setting-" + std::to_string(i));
  }
  return t;
}

Table runs_table(const ResultsStore& store, const RunIndex& runs) {
  Table t;
  t.name = "runs";
  t.title = "Every run";
  t.columns = {Column::text("Run"),
               Column::text("Role"),
               Column::text("Name").wrapped(),
               Column::text("Method").wrapped(),
               Column::text("Model"),
               Column::text("Setting").wrapped(),
               Column::number("Seed"),
               Column::text("Status"),
               Column::number("Val top-1"),
               Column::number("Test top-1"),
               Column::number("Test top-1 (best-val epoch)"),
               Column::number("Seconds"),
               Column::number("Images/s"),
               Column::number("Params"),
               Column::number("Extra params"),
               Column::text("Checkpoint").wrapped()};
  for (const auto& r : runs.runs()) {
    const auto finals = store.finals(r.id);
    auto final_cell = [&](const char* key) {
      auto v = finite_final(finals, key);
      return v ? Cell(fixed(*v), *v) : Cell("-");
    };
    std::string id12 = r.id.substr(0, 12);
    t.add({Cell(id12, std::nullopt, "<a href=\"#run-" + html_escape(r.id) + "\">" + html_escape(id12) + "</a>"),
           to_string(r.role), r.name, r.method, r.model, setting_text(r.setting), Cell::integer(r.seed),
           to_string(r.status), final_cell("final.val.top1"), final_cell("final.test.top1"),
           final_cell("bestval.test.top1"), Cell(fixed(r.wall_seconds, 1), r.wall_seconds),
           Cell(fixed(r.images_per_second, 0), r.images_per_second), Cell::integer(r.params),
           Cell::integer(r.method_params), r.checkpoint.empty() ? "-" : r.checkpoint},
          "", "row-" + r.id);
  }
  return t;
}

RunError parse_run_error(const std::string& error) {
  json e = parse_json_or(error, json::object());
  RunError out;
  auto field = [&](const char* k) {
    if (!e.is_object() || !e.contains(k) || e[k].is_null()) return std::string("-");
    return e[k].is_string() ? e[k].get<std::string>() : e[k].dump();
  };
  out.epoch = field("epoch");
  out.step = field("step");
  out.term = field("term");
  out.message = e.is_object() && e.contains("message") ? field("message") : (error.empty() ? "-" : error);
  return out;
}

Table failed_table(const RunIndex& runs) {
  Table t;
  t.name = "failed";
  t.title = "Failed runs (each is also counted in the Failed column of its rows)";
  t.empty_note = "No run failed.";
  t.columns = {Column::text("Run"),
               Column::text("Role"),
               Column::text("Name"),
               Column::text("Model"),
               Column::text("Setting").wrapped(),
               Column::number("Seed"),
               Column::number("Epoch"),
               Column::number("Step"),
               Column::text("Term"),
               Column::text("Message").wrapped()};
  for (const auto& r : runs.runs()) {
    if (r.status != RunStatus::Failed) continue;
    RunError e = parse_run_error(r.error);
    std::string id12 = r.id.substr(0, 12);
    auto number = [](const std::string& s) {
      json v = parse_json_or(s, json());
      return Cell(s, v.is_number() ? std::optional<double>(v.get<double>()) : std::nullopt);
    };
    t.add({Cell(id12, std::nullopt, "<a href=\"#row-" + html_escape(r.id) + "\">" + html_escape(id12) + "</a>"),
           to_string(r.role), r.name, r.model, setting_text(r.setting), Cell::integer(r.seed), number(e.epoch),
           number(e.step), e.term, e.message},
          "", "failed-" + r.id);
  }
  return t;
}

ReportTables report_tables(const ResultsStore& store, const ReportData& d, const RunIndex& runs) {
  return {comparison_table(d, runs), settings_table(d, runs), runs_table(store, runs), failed_table(runs)};
}

}  // namespace kd
