#include "reports/page.h"

#include <algorithm>

#include "reports/format.h"
#include "reports/writers.h"

namespace kd {

using nlohmann::json;

namespace {

std::string page_head(const std::string& title) {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>kdbench report: " +
         html_escape(title) + "</title>\n<style>\n" + html_style() +
         "#table-runs,#table-failed{font-size:12px}\n"  // the detail tables: 16 columns in 1280 px
         // the comparison: 21 columns in 1280 px
         "#table-comparison{font-size:12px}#table-comparison th,#table-comparison td{padding:3px}\n"
         "figure{display:inline-block;margin:0.5em;vertical-align:top}figure img{max-width:min(700px,100%)}\n"
         "pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}\n"
         ".warn{color:#a00}\n"
         "</style></head><body>\n<h1>kdbench report: " +
         html_escape(title) + "</h1>\n";
}

std::string page_intro(const ReportData& d) {
  std::string h = "<p>Runs: ";
  for (const auto& [status, n] : d.status_counts) h += html_escape(status) + " " + std::to_string(n) + "; ";
  h += "</p>\n<p>Each method's best setting is chosen on the <b>validation</b> split (mean final val top-1 over "
       "seeds; ties keep the first setting); <i>best-setting stability</i> is the share of 2000 bootstrap "
       "resamples of the seeds in which that setting stays best. Test numbers are mean ± sample std over seeds "
       "(n/a for one seed), with the 95% Student-t interval. <i>Gain</i> is against the reference method (the "
       "student trained alone) of the same student model and data set, with its 95% interval; gap closed = "
       "(method - reference) / (teacher - reference).</p>\n"
       "<p><i>p (test)</i>: where a method and the reference ran the same seeds, the seeds pair them (runs of a "
       "seed start from the same weights and see the same batches), and the gain's interval and p are the paired "
       "t-test's on the per-seed differences; otherwise Welch's. <i>p (Holm)</i> corrects p for the number of methods "
       "compared with the same reference (Holm-Bonferroni); the <i>verdict</i> is <i>better</i> or <i>worse</i> "
       "only where that corrected p is below 0.05, else <i>n.s.</i> (not shown). <i>Detectable difference</i> "
       "is the smallest gain this comparison finds with probability 0.8 at alpha 0.05 (from the observed std of "
       "the paired differences, or the pooled std for Welch's); <i>seeds needed</i> is how many seeds would find "
       "the observed gain so. The numbers are one replication on one machine: another CPU rounds differently "
       "and gives other numbers, within the intervals. Click a column's header to sort by it.</p>\n";
  // Runs without a validation split (dataset.val_fraction 0, the published protocol of the CIFAR-100 tables).
  const bool any_val = std::any_of(d.settings.begin(), d.settings.end(), [](const auto& s) { return !s.val.empty(); });
  const bool any_test =
      std::any_of(d.settings.begin(), d.settings.end(), [](const auto& s) { return !s.test.empty(); });
  if (any_test && !any_val)
    h += "<p class=\"warn\">No validation split (dataset.val_fraction 0: trained on the whole training set, as the "
         "published tables are): every number is the <b>final epoch's</b> test top-1; no setting and no epoch is "
         "selected (Val top-1 and the best-val-epoch columns are empty; an entry with several settings shows its "
         "first setting in the comparison, all of them under Every setting).</p>\n";
  h += "<nav><a href=\"#comparison\">Comparison</a> | <a href=\"#ranks\">Ranks</a> | "
       "<a href=\"#failed\">Failed runs</a> | "
       "<a href=\"#figures\">Figures</a> | <a href=\"#settings\">Every setting</a> | <a href=\"#runs\">Runs</a> | "
       "<a href=\"#run-details\">Run details</a> | <a href=\"#environment\">Software and hardware</a> | "
       "<a href=\"#config\">Sweep config</a></nav>\n";
  return h;
}

std::string figures_section(const FigureSet& figures) {
  std::string h = "<h2 id=\"figures\">Figures</h2>\n";
  if (figures.figures.empty())
    h += "<p class=\"warn\">No figures: " + html_escape(figures.note.empty() ? "nothing to plot" : figures.note) +
         "</p>\n";
  for (const auto& f : figures.figures) {
    std::string n = html_escape(f["name"].get<std::string>());
    std::string cap = html_escape(f.value("caption", f["name"].get<std::string>()));
    h += "<figure id=\"fig-" + n + "\"><img src=\"" + n + ".png\" alt=\"" + cap + "\"><figcaption>" + cap +
         " (<a href=\"" + n + ".pdf\">PDF</a>, <a href=\"" + n + ".svg\">SVG</a>)</figcaption></figure>\n";
  }
  return h;
}

// Ranks across data sets and pairs, with the critical-difference diagram beside them when it was drawn.
std::string ranks_section(const ReportData& d, const Table& ranks, const FigureSet& figures) {
  std::string h = "<h2 id=\"ranks\">Across data sets and teacher-student pairs</h2>\n";
  if (!d.ranks) return h + "<p>" + html_escape(ranks.empty_note) + "</p>\n";
  h += "<p>A block is one data set, student model and root teacher, with the student alone in it; methods are "
       "ranked within each block by mean test top-1 at their best setting (1 = best). Friedman's test asks whether "
       "the mean ranks differ at all; two methods whose mean ranks differ by less than Nemenyi's critical "
       "difference (CD) are not shown to differ (Demsar 2006). The diagram joins such methods with a bar.</p>\n";
  h += HtmlTableWriter().write(ranks);
  if (!d.ranks->left_out.empty()) {
    std::string left;
    for (const auto& l : d.ranks->left_out) left += (left.empty() ? "" : "; ") + l;
    h += "<p>Not ranked (not in every block): " + html_escape(left) + ".</p>\n";
  }
  for (const auto& f : figures.figures)
    if (f["name"] == "critical_difference")
      h += "<p><a href=\"#fig-critical_difference\">The critical-difference diagram</a> is with the figures.</p>\n";
  return h;
}

std::string run_details(const ResultsStore& store, const RunIndex& runs) {
  std::string h = "<h2 id=\"run-details\">Run details</h2>\n";
  for (const auto& r : runs.runs()) {
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
                    {"error", parse_json_or(r.error, json(r.error.empty() ? json() : json(r.error)))},
                    {"config", parse_json_or(r.config, json(r.config))}};
    const json env = parse_json_or(r.environment, json::object());
    if (env.is_object() && env.contains("teacher_file")) details["teacher_file"] = env["teacher_file"];
    h += "<details id=\"run-" + html_escape(r.id) + "\"><summary>" +
         html_escape(r.id.substr(0, 12) + " " + to_string(r.role) + " " + r.name + " " + r.model + " " +
                     setting_text(r.setting) + " seed " + std::to_string(r.seed) + ": " + to_string(r.status)) +
         " (<a href=\"#row-" + html_escape(r.id) + "\">row</a>)</summary>\n<pre>" + html_escape(details.dump(2)) +
         "</pre></details>\n";
  }
  return h;
}

// Software and hardware: each distinct runs.environment, with how many runs ran on it; then each sweep's.
std::string environment_section(const ReportData& d, const RunIndex& runs) {
  std::string h = "<h2 id=\"environment\">Software and hardware</h2>\n";
  std::vector<std::pair<std::string, size_t>> envs;
  for (const auto& r : runs.runs()) {
    if (!is_finished(r.status)) continue;
    std::string e = parse_json_or(r.environment, json(r.environment)).dump(2);
    auto it = std::find_if(envs.begin(), envs.end(), [&](const auto& p) { return p.first == e; });
    if (it == envs.end())
      envs.push_back({e, 1});
    else
      ++it->second;
  }
  if (envs.empty()) h += "<p>No run has finished yet.</p>\n";
  for (const auto& [e, n] : envs)
    h += "<p>" + std::to_string(n) + " run(s) ran on:</p>\n<pre>" + html_escape(e) + "</pre>\n";
  for (const auto& s : d.sweeps)
    if (!s["environment"].empty())
      h += "<p>Sweep " + html_escape(s.value("name", std::string())) + " was planned on:</p>\n<pre>" +
           html_escape(s["environment"].dump(2)) + "</pre>\n";
  return h;
}

std::string config_section(const ReportData& d) {
  std::string h = "<h2 id=\"config\">Sweep config</h2>\n";
  for (const auto& s : d.sweeps)
    h += "<p>" + html_escape(s.value("name", std::string()) + " (" + s.value("id", std::string()) + ")") +
         "</p>\n<pre>" + html_escape(s["config"].dump(2)) + "</pre>\n";
  return h;
}

std::string page_end() {
  return "<p>Tables as files: comparison (<a href=\"comparison.md\">Markdown</a>, <a href=\"comparison.csv\">CSV</a>, "
         "<a href=\"comparison.tex\">LaTeX</a>), every setting (<a href=\"settings.md\">Markdown</a>, "
         "<a href=\"settings.csv\">CSV</a>, <a href=\"settings.tex\">LaTeX</a>), runs (<a "
         "href=\"runs.md\">Markdown</a>, "
         "<a href=\"runs.csv\">CSV</a>, <a href=\"runs.tex\">LaTeX</a>), failed runs (<a "
         "href=\"failed.md\">Markdown</a>, "
         "<a href=\"failed.csv\">CSV</a>, <a href=\"failed.tex\">LaTeX</a>); all data: "
         "<a href=\"report.json\">report.json</a>.</p>\n" +
         html_sort_script() +
         // Self-check (inline, no network): marks each figure loaded or not and says so on the console, so a
         // headless browser can tell that every figure file is there and decodes.
         "<script>window.addEventListener('load',function(){for(var i=0;i<document.images.length;i++){"
         "var m=document.images[i],ok=m.complete&&m.naturalWidth>0;m.setAttribute('data-loaded',ok?'yes':'no');"
         "if(!ok)console.error('figure failed to load: '+m.getAttribute('src'));}});</script>\n</body></html>\n";
}

}  // namespace

std::string index_html(const ResultsStore& store, const ReportData& d, const RunIndex& runs, const ReportTables& tables,
                       const FigureSet& figures) {
  const HtmlTableWriter table;
  return page_head(report_title(d)) + page_intro(d) + "<h2 id=\"comparison\">Comparison</h2>\n" +
         table.write(tables.comparison) + ranks_section(d, tables.ranks, figures) +
         "<h2 id=\"failed\">Failed runs</h2>\n" + table.write(tables.failed) + figures_section(figures) +
         "<h2 id=\"settings\">Every setting</h2>\n" + table.write(tables.settings) + "<h2 id=\"runs\">Runs</h2>\n" +
         table.write(tables.runs) + run_details(store, runs) + environment_section(d, runs) + config_section(d) +
         page_end();
}

}  // namespace kd
