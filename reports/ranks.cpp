#include "reports/ranks.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "reports/stats.h"

namespace kd {

namespace {

struct Block {
  std::string label;
  std::vector<std::pair<std::string, double>> entries;  // method name -> mean test top-1
  bool has(const std::string& name) const {
    return std::any_of(entries.begin(), entries.end(), [&](const auto& e) { return e.first == name; });
  }
};

std::string student_of(const SettingStats& s) {
  return s.dataset_key + "\x1f" + s.model;
}

}  // namespace

std::optional<RankAnalysis> rank_across_blocks(const ReportData& d) {
  // The blocks, in order of first appearance, from the methods' rows.
  std::vector<std::string> order;
  std::map<std::string, Block> blocks;
  std::map<std::string, std::set<std::string>> label_blocks;  // label -> blocks it is used in
  for (const auto& row : d.rows) {
    const auto& s = row.best;
    if (s.reference || s.test.empty()) continue;
    const std::string key = student_of(s) + "\x1f" + s.root_teacher;
    if (!blocks.count(key)) {
      order.push_back(key);
      blocks[key].label = s.model + (s.root_teacher.empty() ? "" : " <- " + s.root_teacher) +
                          (d.several_datasets ? " (" + s.dataset + ")" : "");
    }
    label_blocks[s.label].insert(key);
  }
  if (order.size() < 2) return std::nullopt;
  // The student alone joins every block of its data set and model; then each method under its name.
  for (const auto& key : order) {
    Block& b = blocks[key];
    for (const auto& row : d.rows) {
      const auto& s = row.best;
      if (!s.reference || s.test.empty() || key.rfind(student_of(s) + "\x1f", 0) != 0 || b.has(s.method)) continue;
      b.entries.push_back({s.method, stats::mean(s.test)});
    }
    std::vector<const SettingStats*> shared, own;
    for (const auto& row : d.rows) {
      const auto& s = row.best;
      if (s.reference || s.test.empty() || student_of(s) + "\x1f" + s.root_teacher != key) continue;
      (label_blocks[s.label].size() >= 2 ? shared : own).push_back(&s);
    }
    for (const auto* s : shared)
      if (!b.has(s->label)) b.entries.push_back({s->label, stats::mean(s->test)});
    for (const auto* s : own) {
      std::string name = !b.has(s->method) ? s->method : s->label;
      if (b.has(name)) name = s->label + " <- " + s->teachers;
      if (!b.has(name)) b.entries.push_back({name, stats::mean(s->test)});
    }
  }
  // Methods in every block, in order of first appearance.
  std::vector<std::string> names;
  std::map<std::string, size_t> blocks_with;
  for (const auto& key : order)
    for (const auto& [name, v] : blocks[key].entries) {
      if (!blocks_with.count(name)) names.push_back(name);
      ++blocks_with[name];
    }
  RankAnalysis a;
  std::vector<std::string> common;
  for (const auto& n : names) {
    if (blocks_with[n] == order.size())
      common.push_back(n);
    else
      a.left_out.push_back(n + " (in " + std::to_string(blocks_with[n]) + " of " + std::to_string(order.size()) +
                           " blocks)");
  }
  if (common.size() < 2) return std::nullopt;
  std::vector<std::vector<double>> data;  // [block][method]
  for (const auto& key : order) {
    std::vector<double> row;
    for (const auto& n : common)
      for (const auto& [name, v] : blocks[key].entries)
        if (name == n) row.push_back(v);
    data.push_back(row);
  }
  auto f = stats::friedman_test(data);
  if (!f) return std::nullopt;
  std::vector<size_t> by_rank(common.size());
  std::iota(by_rank.begin(), by_rank.end(), 0);
  std::stable_sort(by_rank.begin(), by_rank.end(),
                   [&](size_t x, size_t y) { return f->mean_ranks[x] < f->mean_ranks[y]; });
  for (const auto& key : order) a.blocks.push_back(blocks[key].label);
  for (size_t t : by_rank) {
    a.treatments.push_back(common[t]);
    a.mean_ranks.push_back(f->mean_ranks[t]);
    std::vector<double> v;
    for (const auto& row : data) v.push_back(row[t]);
    a.values.push_back(v);
  }
  a.chi2 = f->chi2;
  a.dof = f->dof;
  a.p = f->p;
  a.q_alpha = stats::nemenyi_q(static_cast<int>(common.size()), kAlpha);
  a.critical_difference = stats::nemenyi_critical_difference(static_cast<int>(common.size()), order.size(), kAlpha);
  return a;
}

}  // namespace kd
