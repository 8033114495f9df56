#include "reports/figures.h"

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/log.h"
#include "kd_source_dir.h"
#include "reports/report.h"

namespace fs = std::filesystem;

namespace kd {

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

std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

// Runs reports/figures.py; returns "" on success or why no figures were made.
std::string run_figure_script(const ReportOptions& opts, const std::string& out_dir) {
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

FigureSet make_figures(const ReportOptions& opts, const std::string& out_dir) {
  FigureSet set;
  auto path = [&](const std::string& f) { return (fs::path(out_dir) / f).string(); };
  std::error_code ec;
  fs::remove(path("figures.json"), ec);  // never show a previous report's figures
  if (!opts.figures) {
    set.note = "figures were not requested";
    return set;
  }
  set.note = run_figure_script(opts, out_dir);
  if (!set.note.empty()) {
    log::warn("report: tables written, figures skipped: {}", set.note);
    return set;
  }
  if (!fs::exists(path("figures.json"))) return set;
  std::ifstream in(path("figures.json"));
  nlohmann::json listed = nlohmann::json::parse(in, nullptr, false);
  if (!listed.is_array()) return set;
  for (const auto& f : listed)
    if (f.is_object() && f.contains("name") && f["name"].is_string() &&
        fs::exists(path(f["name"].get<std::string>() + ".png"))) {
      set.figures.push_back(f);
      for (const char* ext : {".pdf", ".svg", ".png"}) set.files.push_back(path(f["name"].get<std::string>() + ext));
    }
  return set;
}

}  // namespace kd
