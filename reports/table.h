// The table model every report table is built in, and that every writer (reports/writers.h) renders:
// columns (header, alignment, how to sort, which to bold, which to show first on the page) and rows of
// cells (text, the number the text stands for, optional HTML).
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace kd {

// One column. Text columns are left-aligned and sort by text; number columns are right-aligned and sort by
// their cells' values. The chained setters read as a declaration: Column::number("Gain").bold_max().key().
struct Column {
  enum class Align { Left, Right };
  enum class SortBy { Text, Value, None };

  std::string header;
  Align align = Align::Right;
  SortBy sort = SortBy::Value;
  bool bold_max = false;   // the largest value among the rows of one group (e.g. one student model) is bold
  bool html_only = false;  // links: left out of Markdown, CSV, LaTeX and the standalone pages
  bool key = false;        // the page shows key columns first (in their order), then the others
  bool wrap = false;       // long text: wraps on the page (the full text on hover), never stretches the table

  static Column text(std::string header) { return Column{std::move(header), Align::Left, SortBy::Text}; }
  static Column number(std::string header) { return Column{std::move(header), Align::Right, SortBy::Value}; }
  static Column links(std::string header) {
    Column c{std::move(header), Align::Left, SortBy::None};
    c.html_only = true;
    c.wrap = true;
    return c;
  }
  Column& bold_max_in_group() {
    bold_max = true;
    return *this;
  }
  Column& key_column() {
    key = true;
    return *this;
  }
  Column& wrapped() {
    wrap = true;
    return *this;
  }
};

// One table cell: its text, the number it stands for (sorting, "best in column"), and optional raw HTML
// for the page ("" = the escaped text).
struct Cell {
  std::string text;
  std::optional<double> value;
  std::string html;
  Cell(std::string t = "", std::optional<double> v = std::nullopt, std::string h = "")  // NOLINT: implicit on purpose
      : text(std::move(t)), value(v), html(std::move(h)) {}
  Cell(const char* t) : text(t) {}  // NOLINT
  static Cell integer(int64_t n) { return Cell(std::to_string(n), static_cast<double>(n)); }
  static Cell link(std::string html) { return Cell("", std::nullopt, std::move(html)); }
};

struct Row {
  std::vector<Cell> cells;
  std::string group;  // rows of one group are compared for bold_max and ruled apart in LaTeX ("" = none)
  std::string id;     // HTML id ("" = none)
};

struct Table {
  std::string name;        // file stem and HTML id ("comparison" -> comparison.md, id "table-comparison")
  std::string title;       // caption
  std::string empty_note;  // said instead of rows when there are none ("" = an empty table)
  std::vector<Column> columns;
  std::vector<Row> rows;

  void add(std::vector<Cell> cells, std::string group = "", std::string id = "") {
    rows.push_back({std::move(cells), std::move(group), std::move(id)});
  }
  // Cell (r, c), or an empty cell where a row is short.
  const Cell& cell(size_t r, size_t c) const;
  // Whether cell (r, c) holds the largest value of its column among the rows of its group.
  bool is_best(size_t r, size_t c) const;
  // The same table without its HTML-only columns (for files where their links would dangle).
  Table without_html_only() const;
  // Column indices in the page's order: key columns first, then the rest, each in declaration order.
  std::vector<size_t> page_order() const;
};

}  // namespace kd
