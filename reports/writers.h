// One writer per table format behind one small interface (as Google Benchmark's reporters are): each turns
// a Table (reports/table.h) into the text of one file or of one part of the page.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "reports/table.h"

namespace kd {

class TableWriter {
 public:
  virtual ~TableWriter() = default;
  // The file name's ending, with its dot (".md").
  virtual std::string extension() const = 0;
  virtual std::string write(const Table& table) const = 0;
};

// "## title", then a pipe table; best values in **bold**; HTML-only columns left out; the empty note when
// there are no rows. Text is escaped: no raw HTML ('<' and '&' as entities), no links ('[' and ']'), no code.
class MarkdownWriter : public TableWriter {
 public:
  std::string extension() const override { return ".md"; }
  std::string write(const Table& table) const override;
};

// RFC 4180: a header line, then one line per row (cells as csv_cell makes them); HTML-only columns left out.
class CsvWriter : public TableWriter {
 public:
  std::string extension() const override { return ".csv"; }
  std::string write(const Table& table) const override;
};

// A booktabs tabular body for \input{} inside a table/table* environment (needs \usepackage{booktabs}):
// escaped, ± as $\pm$, best values in \textbf, a \midrule between groups; HTML-only columns left out.
class LatexWriter : public TableWriter {
 public:
  std::string extension() const override { return ".tex"; }
  std::string write(const Table& table) const override;
};

// The table as a part of a page: <table id="table-NAME" class="sortable">, key columns first, each sortable
// column's header clickable (html_sort_script()), data-value on cells that stand for a number, long text
// wrapped with the full text on hover. Needs html_style() and html_sort_script() on the page.
class HtmlTableWriter : public TableWriter {
 public:
  std::string extension() const override { return ".html"; }
  std::string write(const Table& table) const override;
};

// The table alone on a page of its own (no HTML-only columns: their links point into index.html).
class HtmlPageWriter : public TableWriter {
 public:
  std::string extension() const override { return ".html"; }
  std::string write(const Table& table) const override;
};

// The writers of a table's files: Markdown, CSV, LaTeX, and the standalone HTML page when `with_page`.
std::vector<std::unique_ptr<TableWriter>> file_writers(bool with_page);

std::string html_escape(const std::string& s);
// One CSV cell (RFC 4180 quoting); a cell a spreadsheet would run as a formula (it starts with =, +, -, @, a tab
// or a carriage return, and is not a number such as -1.25 or a lone "-") gets a leading single quote and is
// quoted, as OWASP's "CSV Injection" page recommends.
std::string csv_cell(const std::string& s);
// The CSS every page of the report uses (tables that fit the window, wrapped long text, sortable headers).
std::string html_style();
// The inline script (no network) that sorts a table by the header cell clicked (or Enter/Space on it):
// numbers by their data-value, text by its text; a second click reverses; cells without a value go last.
std::string html_sort_script();

}  // namespace kd
