#include "reports/writers.h"

#include <fmt/format.h>

#include <cmath>

#include "reports/format.h"

namespace kd {

namespace {

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
  return replace_all(o, "±", "$\\pm$");  // the one non-ASCII character the tables use
}

// A number as the tables print it (-1.25, +4.22, 21.5%, 1e-05): a spreadsheet reads it as a number, not a formula.
bool is_plain_number(const std::string& s) {
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
  };
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  bool any = digits();
  if (i < s.size() && s[i] == '.') {
    ++i;
    any = digits() || any;
  }
  if (!any) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  if (i < s.size() && s[i] == '%') ++i;
  return i == s.size();
}

std::string md_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '|':
      case '\\':
      case '`':
      case '[':
      case ']':
        o += '\\';
        o += c;
        break;
      case '\n':
      case '\r':
        o += ' ';
        break;
      case '<':  // no raw HTML from a label
        o += "&lt;";
        break;
      case '&':  // an entity in a label is shown as written
        o += "&amp;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

// The columns a file shows: all but the HTML-only ones.
std::vector<size_t> file_columns(const Table& t) {
  std::vector<size_t> cs;
  for (size_t c = 0; c < t.columns.size(); ++c)
    if (!t.columns[c].html_only) cs.push_back(c);
  return cs;
}

// Text past this many characters is cut on the page (the full text stays in the cell's title).
constexpr size_t kLongText = 120;

// `s` cut to at most `n` bytes at a UTF-8 character boundary, with "…" when cut.
std::string abbreviate(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  size_t cut = n;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut) + "…";
}

// Escaped text with a line-break opportunity (<wbr>) after "=", "/" and ",", so that long
// settings, names and paths wrap at their joints; a run of more than 16 characters without one (a hash in a
// file name) gets one every 16.
std::string html_wrappable(const std::string& s) {
  std::string o;
  size_t unbroken = 0;
  for (char c : s) {
    const bool lead_byte = (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // never break inside a UTF-8 character
    if (lead_byte && unbroken >= 16) {
      o += "<wbr>";
      unbroken = 0;
    }
    o += html_escape(std::string(1, c));
    unbroken = c == ' ' ? 0 : unbroken + (lead_byte ? 1 : 0);
    if (c == '=' || c == '/' || c == ',') {
      o += "<wbr>";
      unbroken = 0;
    }
  }
  return o;
}

std::string html_header_cell(const Column& col) {
  std::string cls = col.align == Column::Align::Left ? " class=\"l\"" : "";
  const std::string text = html_wrappable(col.header);
  if (col.sort == Column::SortBy::None) return "<th" + cls + ">" + text + "</th>";
  std::string by = col.sort == Column::SortBy::Value ? "num" : "text";
  return "<th" + cls + " data-sort=\"" + by + "\" tabindex=\"0\">" + text + "</th>";
}

// Where a number with a qualifier may break when the table needs the room: before the "±" of "72.05 ± 0.40"
// or the "(" of "0.0074 (paired)" (npos: nowhere).
size_t qualifier_break(const std::string& text) {
  for (const char* q : {" ± ", " ("})
    if (size_t at = text.find(q); at != std::string::npos && at > 0) return at;
  return std::string::npos;
}

std::string html_cell(const Column& col, const Cell& cell, bool bold) {
  const size_t at = col.wrap || !cell.html.empty() ? std::string::npos : qualifier_break(cell.text);
  std::string cls = col.align == Column::Align::Left ? "l" : "";
  if (at != std::string::npos) cls += cls.empty() ? "ms" : " ms";  // td.ms wraps, at its one breakable space
  std::string attrs = cls.empty() ? "" : " class=\"" + cls + "\"";
  if (cell.value && std::isfinite(*cell.value)) attrs += " data-value=\"" + fmt::format("{}", *cell.value) + "\"";
  std::string body = !cell.html.empty()        ? cell.html
                     : col.wrap                ? html_wrappable(abbreviate(cell.text, kLongText))
                     : at != std::string::npos ? html_escape(cell.text.substr(0, at)) + " " +
                                                     replace_all(html_escape(cell.text.substr(at + 1)), " ", "&nbsp;")
                                               : html_escape(cell.text);
  if (bold) body = "<b>" + body + "</b>";
  if (col.wrap) {
    std::string title = cell.html.empty() && !cell.text.empty() ? " title=\"" + html_escape(cell.text) + "\"" : "";
    body = "<div class=\"w\"" + title + ">" + body + "</div>";
  }
  return "<td" + attrs + ">" + body + "</td>";
}

}  // namespace

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

std::string csv_cell(const std::string& s) {
  const bool formula =
      !s.empty() && std::string("=+-@\t\r").find(s[0]) != std::string::npos && s != "-" && !is_plain_number(s);
  const std::string text = formula ? "'" + s : s;
  if (!formula && text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string o = "\"";
  for (char c : text) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

std::string MarkdownWriter::write(const Table& t) const {
  auto cs = file_columns(t);
  std::string s = "## " + md_escape(t.title) + "\n\n|";
  for (size_t c : cs) s += " " + md_escape(t.columns[c].header) + " |";
  s += "\n|";
  for (size_t c : cs) s += t.columns[c].align == Column::Align::Left ? " --- |" : " ---: |";
  s += "\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    s += "|";
    for (size_t c : cs) {
      std::string text = md_escape(t.cell(r, c).text);
      s += " " + (t.is_best(r, c) ? "**" + text + "**" : text) + " |";
    }
    s += "\n";
  }
  if (t.rows.empty() && !t.empty_note.empty()) s += "\n" + t.empty_note + "\n";
  return s;
}

std::string CsvWriter::write(const Table& t) const {
  auto cs = file_columns(t);
  std::string s;
  for (size_t i = 0; i < cs.size(); ++i) s += (i ? "," : "") + csv_cell(t.columns[cs[i]].header);
  s += "\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    for (size_t i = 0; i < cs.size(); ++i) s += (i ? "," : "") + csv_cell(t.cell(r, cs[i]).text);
    s += "\n";
  }
  return s;
}

std::string LatexWriter::write(const Table& t) const {
  auto cs = file_columns(t);
  std::string spec;
  for (size_t c : cs) spec += t.columns[c].align == Column::Align::Left ? "l" : "r";
  std::string s = "% " + replace_all(t.title, "±", "+/-") + "\n% kdbench report; needs \\usepackage{booktabs}\n" +
                  "\\begin{tabular}{" + spec + "}\n\\toprule\n";
  for (size_t i = 0; i < cs.size(); ++i) s += (i ? " & " : "") + tex_escape(t.columns[cs[i]].header);
  s += " \\\\\n\\midrule\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    if (r > 0 && t.rows[r].group != t.rows[r - 1].group) s += "\\midrule\n";
    for (size_t i = 0; i < cs.size(); ++i) {
      std::string text = tex_escape(t.cell(r, cs[i]).text);
      s += (i ? " & " : "") + (t.is_best(r, cs[i]) ? "\\textbf{" + text + "}" : text);
    }
    s += " \\\\\n";
  }
  return s + "\\bottomrule\n\\end{tabular}\n";
}

std::string HtmlTableWriter::write(const Table& t) const {
  if (t.rows.empty() && !t.empty_note.empty()) return "<p>" + html_escape(t.empty_note) + "</p>\n";
  const auto order = t.page_order();
  std::string s = "<div class=\"tw\"><table id=\"table-" + html_escape(t.name) + "\" class=\"sortable\">\n<caption>" +
                  html_escape(t.title) + "</caption>\n<thead><tr>";
  for (size_t c : order) s += html_header_cell(t.columns[c]);
  s += "</tr></thead>\n<tbody>\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    s += t.rows[r].id.empty() ? "<tr>" : "<tr id=\"" + html_escape(t.rows[r].id) + "\">";
    for (size_t c : order) s += html_cell(t.columns[c], t.cell(r, c), t.is_best(r, c));
    s += "</tr>\n";
  }
  return s + "</tbody>\n</table></div>\n";
}

std::string HtmlPageWriter::write(const Table& t) const {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(t.title) +
         "</title>\n<style>\n" + html_style() + "</style></head><body>\n" +
         HtmlTableWriter().write(t.without_html_only()) + html_sort_script() + "</body></html>\n";
}

std::vector<std::unique_ptr<TableWriter>> file_writers(bool with_page) {
  std::vector<std::unique_ptr<TableWriter>> w;
  w.push_back(std::make_unique<MarkdownWriter>());
  w.push_back(std::make_unique<CsvWriter>());
  w.push_back(std::make_unique<LatexWriter>());
  if (with_page) w.push_back(std::make_unique<HtmlPageWriter>());
  return w;
}

std::string html_style() {
  return "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:1em;max-width:1500px;color:#222}\n"
         ".tw{max-width:100%;overflow-x:auto}\n"
         "table{border-collapse:collapse;margin:1em 0;font-size:13px}\n"
         "th,td{border-bottom:1px solid #ccc;padding:3px 5px;text-align:right;vertical-align:top}\n"
         "th{vertical-align:bottom}\n"
         "td{white-space:nowrap}\n"
         "td.ms{white-space:normal}\n"
         "th.l,td.l{text-align:left}\n"
         "div.w{white-space:normal;min-width:4em;max-width:16em;overflow-wrap:break-word}\n"
         "th[data-sort]{cursor:pointer}\n"
         "th[aria-sort=ascending]::after{content:\" \\25B2\"}\n"
         "th[aria-sort=descending]::after{content:\" \\25BC\"}\n"
         "caption{font-weight:bold;text-align:left;padding:4px 0}\n"
         "tr:target{background:#fff3b0}\n";
}

std::string html_sort_script() {
  return "<script>\n"
         "function kdSortBy(th){\n"
         " var table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex,num=th.dataset.sort==='num';\n"
         " var was=th.getAttribute('aria-sort'),dir=was?(was==='ascending'?'descending':'ascending'):"
         "(num?'descending':'ascending');\n"
         " var heads=th.parentNode.cells;for(var i=0;i<heads.length;i++)heads[i].removeAttribute('aria-sort');\n"
         " th.setAttribute('aria-sort',dir);\n"
         " function key(row){var c=row.cells[col];if(!c)return null;if(!num)return c.textContent;\n"
         "  var v=c.getAttribute('data-value');return v===null?null:parseFloat(v);}\n"
         " var rows=Array.prototype.slice.call(body.rows);\n"
         " rows.sort(function(a,b){var x=key(a),y=key(b);if(x===null||y===null)return x===null?(y===null?0:1):-1;\n"
         "  var d=num?x-y:x.localeCompare(y,undefined,{numeric:true});return dir==='ascending'?d:-d;});\n"
         " rows.forEach(function(r){body.appendChild(r);});\n"
         "}\n"
         "document.addEventListener('click',function(e){var "
         "th=e.target.closest('th[data-sort]');if(th)kdSortBy(th);});\n"
         "document.addEventListener('keydown',function(e){var th=e.target.closest&&e.target.closest('th[data-sort]');"
         "if(th&&(e.key==='Enter'||e.key===' ')){e.preventDefault();kdSortBy(th);}});\n"
         "</script>\n";
}

}  // namespace kd
