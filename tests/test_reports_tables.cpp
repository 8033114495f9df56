// The table model and its writers on a small hand-made table: the same table in every format, columns
// left out where they are HTML-only, best values bold per group, the page's column order, sort keys and
// wrapped long text.
#include <gtest/gtest.h>

#include "reports/table.h"
#include "reports/writers.h"

namespace {

// Two groups (students a and b); "Acc" is bold-best per group and a key column; "Links" is HTML-only.
kd::Table small_table() {
  kd::Table t;
  t.name = "demo";
  t.title = "Demo ± table";
  t.columns = {kd::Column::text("Name"), kd::Column::text("Setting").wrapped(),
               kd::Column::number("Acc").bold_max_in_group().key_column(), kd::Column::number("n"),
               kd::Column::links("Links")};
  t.add({"a_1", "x=1", kd::Cell("70.00 ± 1.00", 70.0), kd::Cell::integer(3), kd::Cell::link("<a href=\"#r1\">s0</a>")},
        "a", "row-1");
  t.add({"a|2", "x=2", kd::Cell("75.50 ± n/a", 75.5), kd::Cell::integer(1), kd::Cell::link("")}, "a", "row-2");
  t.add({"b,3", std::string(130, 'y'), kd::Cell("60.00 ± 2.00", 60.0), kd::Cell::integer(2), kd::Cell::link("")}, "b");
  t.add({"b\"4", "x=4", "n/a", kd::Cell::integer(0), kd::Cell::link("")}, "b");
  return t;
}

TEST(Tables, MarkdownBoldsTheBestOfEachGroupAndLeavesOutHtmlOnlyColumns) {
  std::string md = kd::MarkdownWriter().write(small_table());
  EXPECT_EQ(md,
            "## Demo ± table\n\n"
            "| Name | Setting | Acc | n |\n"
            "| --- | --- | ---: | ---: |\n"
            "| a_1 | x=1 | 70.00 ± 1.00 | 3 |\n"
            "| a\\|2 | x=2 | **75.50 ± n/a** | 1 |\n"
            "| b,3 | " +
                std::string(130, 'y') +
                " | **60.00 ± 2.00** | 2 |\n"
                "| b\"4 | x=4 | n/a | 0 |\n");
  kd::Table empty = small_table();
  empty.rows.clear();
  empty.empty_note = "Nothing here.";
  EXPECT_NE(kd::MarkdownWriter().write(empty).find("| ---: |\n\nNothing here.\n"), std::string::npos);
}

TEST(Tables, CsvQuotesWhatNeedsQuoting) {
  std::string csv = kd::CsvWriter().write(small_table());
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "Name,Setting,Acc,n");
  EXPECT_NE(csv.find("\n\"b,3\","), std::string::npos) << csv;
  EXPECT_NE(csv.find("\n\"b\"\"4\",x=4,n/a,0\n"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("href"), std::string::npos);
}

TEST(Tables, LatexEscapesAndRulesBetweenGroups) {
  std::string tex = kd::LatexWriter().write(small_table());
  EXPECT_EQ(tex.rfind("% Demo +/- table\n", 0), 0u) << tex;
  EXPECT_NE(tex.find("\\begin{tabular}{llrr}"), std::string::npos) << tex;
  EXPECT_NE(tex.find("a\\_1 & x=1 & 70.00 $\\pm$ 1.00 & 3 \\\\\n"), std::string::npos) << tex;
  EXPECT_NE(tex.find("\\textbf{75.50 $\\pm$ n/a} & 1 \\\\\n\\midrule\nb,3"), std::string::npos) << tex;
}

TEST(Tables, HtmlPutsKeyColumnsFirstWithSortKeysAndWrapsLongText) {
  std::string html = kd::HtmlTableWriter().write(small_table());
  EXPECT_NE(html.find("<table id=\"table-demo\" class=\"sortable\">"), std::string::npos) << html;
  // Key column (Acc) first; then the others in order; links are not sortable.
  EXPECT_NE(html.find("<thead><tr><th data-sort=\"num\" tabindex=\"0\">Acc</th><th class=\"l\" data-sort=\"text\" "
                      "tabindex=\"0\">Name</th><th class=\"l\" data-sort=\"text\" tabindex=\"0\">Setting</th>"
                      "<th data-sort=\"num\" tabindex=\"0\">n</th><th class=\"l\">Links</th></tr></thead>"),
            std::string::npos)
      << html;
  // A number cell carries its value; the best of its group is bold; the HTML-only cell is raw HTML.
  // "mean ± std" may break before its "±" (class ms, a no-break space after it), nowhere else.
  EXPECT_NE(html.find("<tr id=\"row-2\"><td class=\"ms\" data-value=\"75.5\"><b>75.50 ±&nbsp;n/a</b></td>"),
            std::string::npos)
      << html;
  EXPECT_NE(html.find("<div class=\"w\"><a href=\"#r1\">s0</a></div>"), std::string::npos) << html;
  EXPECT_NE(html.find("<td data-value=\"0\">0</td>"), std::string::npos) << html;
  EXPECT_NE(html.find("<td>n/a</td>"), std::string::npos) << "no value, no data-value";
  // Long text wraps at its joints ("=", ",", "/"; every 16 characters in a run without one), is cut past 120
  // characters, and keeps its full value on hover.
  std::string cut;
  for (int i = 0; i < 7; ++i) cut += std::string(16, 'y') + "<wbr>";
  cut += std::string(8, 'y') + "…";
  EXPECT_NE(html.find("<div class=\"w\" title=\"" + std::string(130, 'y') + "\">" + cut + "</div>"), std::string::npos)
      << html;
  EXPECT_NE(html.find("<td class=\"l\"><div class=\"w\" title=\"x=1\">x=<wbr>1</div></td>"), std::string::npos) << html;
  EXPECT_NE(html.find("b&quot;4"), std::string::npos) << "text is escaped";
}

TEST(Tables, StandalonePageHasNoHtmlOnlyColumnsAndSortsInline) {
  std::string page = kd::HtmlPageWriter().write(small_table());
  EXPECT_EQ(page.find("Links"), std::string::npos);
  EXPECT_EQ(page.find("href"), std::string::npos);
  EXPECT_NE(page.find("function kdSortBy"), std::string::npos);
  EXPECT_EQ(page.find("http"), std::string::npos) << "no network";
  EXPECT_EQ(kd::file_writers(true).size(), 4u);
  EXPECT_EQ(kd::file_writers(false).back()->extension(), ".tex");
}

TEST(Tables, EmptyTableWithANoteIsTheNoteOnThePage) {
  kd::Table t = small_table();
  t.rows.clear();
  EXPECT_NE(kd::HtmlTableWriter().write(t).find("<table"), std::string::npos);
  t.empty_note = "No run failed.";
  EXPECT_EQ(kd::HtmlTableWriter().write(t), "<p>No run failed.</p>\n");
}

}  // namespace
