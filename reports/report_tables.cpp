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

std::string p_text(double p) {
  return p < 1e-3 ? fmt::format("{:.2g}", p) : fmt::format("{:.3g}", p);
}

std::string percent(double share) {
  return fmt::format("{:.0f}%", share * 100);
}

// The comparison's cells, in the table's order: gain with its 95% interval, gap closed, p with its test, p (Holm),
// verdict, detectable difference, seeds needed.
std::vector<Cell> comparison_cells(const MethodRow& row) {
  const auto& c = row.comparison;
  const bool reference = row.best.reference;
  Cell gain = versus_reference(row.gain, row.gain ? fmt::format("{:+.2f}", *row.gain) : "", reference);
  Cell gap = versus_reference(row.gap_closed, row.gap_closed ? fixed(*row.gap_closed, 1) + "%" : "", reference);
  if (!c) {
    std::vector<Cell> none(7, Cell(reference ? "-" : "n/a"));
    none[0] = gain;
    none[1] = gap;
    return none;
  }
  static const char* verdicts[] = {"worse", "n.s.", "better"};
  const int v = c->verdict();
  gain.text += " ± " + fixed(c->ci95);
  return {gain,
          gap,
          Cell(p_text(c->p) + (c->paired ? " (paired)" : " (Welch)"), c->p),
          Cell(p_text(c->p_holm), c->p_holm),
          Cell(verdicts[v + 1], v),
          c->detectable ? Cell(fixed(*c->detectable), *c->detectable) : Cell("n/a"),
          c->seeds_needed ? Cell::integer(static_cast<int64_t>(*c->seeds_needed))
                          : Cell("> " + std::to_string(kMaxSeeds), static_cast<double>(kMaxSeeds + 1))};
}

void add_teacher_rows(Table& t, const ReportData& d, const RunIndex& runs) {
  for (const auto& teacher : d.teachers) {
    const bool done = teacher.status == RunStatus::Done, failed = teacher.status == RunStatus::Failed;
    std::vector<Cell> cells = {teacher.model,
                               "teacher " + teacher.name,
                               "-",
                               "-",
                               "-",
                               teacher.val ? Cell(fixed(*teacher.val) + " ± n/a", *teacher.val) : Cell("n/a"),
                               teacher.test ? Cell(fixed(*teacher.test) + " ± n/a", *teacher.test) : Cell("n/a"),
                               "n/a",
                               "-"};
    for (int i = 0; i < 7; ++i) cells.push_back("-");  // gain (95% CI) .. seeds needed
    for (Cell c : {Cell(done ? "1" : "0", done ? 1 : 0), Cell("-"), Cell(failed ? "1" : "0", failed ? 1 : 0),
                   Cell::link(runs.seed_link(teacher.run_id))})
      cells.push_back(c);
    t.add(cells, "", "teacher-" + teacher.name);
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
               Column::number("Best-setting stability"),
               Column::number("Val top-1"),
               Column::number("Test top-1").bold_max_in_group().key_column(),
               Column::number("95% CI"),
               Column::number("Test top-1 (best-val epoch)").bold_max_in_group(),
               Column::number("Gain (95% CI)").bold_max_in_group().key_column(),
               Column::number("Gap closed").bold_max_in_group(),
               Column::number("p (test)"),
               Column::number("p (Holm)").key_column(),
               Column::text("Verdict").key_column(),
               Column::number("Detectable difference"),
               Column::number("Seeds needed"),
               Column::number("Seeds"),
               Column::number("Extra params"),
               Column::number("Failed"),
               Column::links("Runs")};
  add_teacher_rows(t, d, runs);
  for (const auto& row : d.rows) {
    const auto& s = row.best;
    std::string settings_note = row.settings > 1 ? " (of " + std::to_string(row.settings) + ")" : "";
    std::string unfinished = row.incomplete ? " (+" + std::to_string(row.incomplete) + " unfinished)" : "";
    std::vector<Cell> cells = {
        student_text(d, s),
        method_text(s),
        s.teachers.empty() ? "-" : s.teachers,
        setting_text(s.setting) + settings_note,
        row.stability ? Cell(percent(*row.stability), *row.stability) : Cell(row.settings > 1 ? "n/a" : "-"),
        mean_std_cell(s.val),
        mean_std_cell(s.test),
        ci_cell(s.test),
        mean_std_cell(s.bestval_test)};
    for (auto& c : comparison_cells(row)) cells.push_back(c);
    for (Cell c : {Cell::integer(static_cast<int64_t>(s.test.size())), Cell::integer(s.method_params),
                   Cell(std::to_string(row.failed) + unfinished, row.failed), Cell::link(runs.seed_links(s.run_ids))})
      cells.push_back(c);
    t.add(cells, "student " + student_text(d, s), "method-" + std::to_string(row.best_index));
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
               Column::number("Best in resamples"),
               Column::links("Runs")};
  // The published line each entry reproduces, when the sweep's config names one ("provenance").
  const bool provenance =
      std::any_of(d.settings.begin(), d.settings.end(), [](const SettingStats& s) { return !s.provenance.is_null(); });
  if (provenance) t.columns.push_back(Column::text("Reproduces").wrapped());
  const auto selected = selected_settings(d);
  for (size_t i = 0; i < d.settings.size(); ++i) {
    const auto& s = d.settings[i];
    std::vector<Cell> row{student_text(d, s),
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
                          s.chosen_share ? Cell(percent(*s.chosen_share), *s.chosen_share) : Cell("-"),
                          Cell::link(runs.seed_links(s.run_ids))};
    if (provenance) row.push_back(s.provenance.is_null() ? "-" : provenance_text(s.provenance));
    t.add(row, s.dataset_key + "\x1f" + s.model + "\x1f" + s.teachers + "\x1f" + s.label, "setting-" + std::to_string(i));
  }
  return t;
}

Table ranks_table(const ReportData& d) {
  Table t;
  t.name = "ranks";
  t.empty_note =
      "No ranks: they need two or more blocks (data sets, student models or root teachers) with two or more "
      "methods in common.";
  t.columns = {Column::text("Method").key_column(), Column::number("Mean rank").key_column()};
  if (!d.ranks) {
    t.title = "Mean ranks across data sets and teacher-student pairs";
    return t;
  }
  const RankAnalysis& a = *d.ranks;
  t.title = fmt::format(
      "Mean rank of each method over {} blocks (1 = the best mean test top-1 of a block, at the best setting on "
      "validation); Friedman chi2 = {:.3f} ({} dof), p = {}; Nemenyi critical difference at alpha {} = {:.3f} "
      "(q = {:.3f})",
      a.blocks.size(), a.chi2, static_cast<int>(a.dof), p_text(a.p), kAlpha, a.critical_difference, a.q_alpha);
  for (const auto& b : a.blocks) t.columns.push_back(Column::number(b).bold_max_in_group());
  for (size_t i = 0; i < a.treatments.size(); ++i) {
    std::vector<Cell> cells = {a.treatments[i], Cell(fixed(a.mean_ranks[i]), a.mean_ranks[i])};
    for (double v : a.values[i]) cells.push_back(Cell(fixed(v), v));
    t.add(cells, "ranks", "rank-" + std::to_string(i));
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
  return {comparison_table(d, runs), settings_table(d, runs), runs_table(store, runs), failed_table(runs),
          ranks_table(d)};
}

}  // namespace kd
