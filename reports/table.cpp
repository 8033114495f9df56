#include "reports/table.h"

namespace kd {

const Cell& Table::cell(size_t r, size_t c) const {
  static const Cell empty;
  return c < rows[r].cells.size() ? rows[r].cells[c] : empty;
}

bool Table::is_best(size_t r, size_t c) const {
  if (c >= columns.size() || !columns[c].bold_max || rows[r].group.empty() || !cell(r, c).value) return false;
  for (size_t o = 0; o < rows.size(); ++o)
    if (rows[o].group == rows[r].group && cell(o, c).value && *cell(o, c).value > *cell(r, c).value) return false;
  return true;
}

Table Table::without_html_only() const {
  Table t = *this;
  t.columns.clear();
  std::vector<size_t> kept;
  for (size_t c = 0; c < columns.size(); ++c)
    if (!columns[c].html_only) {
      kept.push_back(c);
      t.columns.push_back(columns[c]);
    }
  for (size_t r = 0; r < rows.size(); ++r) {
    t.rows[r].cells.clear();
    for (size_t c : kept) t.rows[r].cells.push_back(Cell(cell(r, c).text, cell(r, c).value));
  }
  return t;
}

std::vector<size_t> Table::page_order() const {
  std::vector<size_t> order;
  for (size_t c = 0; c < columns.size(); ++c)
    if (columns[c].key) order.push_back(c);
  for (size_t c = 0; c < columns.size(); ++c)
    if (!columns[c].key) order.push_back(c);
  return order;
}

}  // namespace kd
