#include "reports/compare.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include "reports/power.h"
#include "reports/stats.h"

namespace kd {

namespace {

// The values by seed when every seed occurs once; nullopt when one repeats (then no pairing by seed).
std::optional<std::map<int64_t, double>> by_seed(const std::vector<int64_t>& seeds, const std::vector<double>& v) {
  std::map<int64_t, double> m;
  for (size_t i = 0; i < seeds.size() && i < v.size(); ++i)
    if (!m.emplace(seeds[i], v[i]).second) return std::nullopt;
  return m;
}

// splitmix64 (Steele, Lea & Flood 2014): a small generator whose output is fixed by its definition, so the
// bootstrap gives the same shares on every machine and compiler.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) (the modulo's bias is below n / 2^64).
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }

 private:
  uint64_t state_;
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace

std::optional<Comparison> compare_with_reference(const SettingStats& method, const SettingStats& reference) {
  const auto& a = method.test;
  const auto& b = reference.test;
  if (a.size() < 2 || b.size() < 2) return std::nullopt;
  Comparison c;
  c.n = a.size();
  c.n_reference = b.size();
  stats::PowerDesign design;
  auto ma = by_seed(method.test_seeds, a), mb = by_seed(reference.test_seeds, b);
  bool same_seeds =
      ma && mb && ma->size() == a.size() && mb->size() == b.size() && ma->size() == mb->size() &&
      std::equal(ma->begin(), ma->end(), mb->begin(), [](const auto& x, const auto& y) { return x.first == y.first; });
  if (same_seeds) {
    std::vector<double> pa, pb;  // in seed order
    for (const auto& [seed, v] : *ma) {
      pa.push_back(v);
      pb.push_back(mb->at(seed));
    }
    auto r = stats::paired_t_test(pa, pb);
    if (!r) return std::nullopt;
    c.paired = true;
    c.difference = r->diff;
    c.ci95 = r->ci95;
    c.t = r->t;
    c.dof = r->dof;
    c.p = r->p;
    c.sd = r->sd;
    design = {true, r->sd};
  } else {
    auto r = stats::welch_t_test(a, b);
    auto sd = stats::pooled_sd(a, b);
    if (!r || !sd) return std::nullopt;
    c.difference = r->diff;
    c.ci95 = r->ci95;
    c.t = r->t;
    c.dof = r->dof;
    c.p = r->p;
    c.sd = *sd;
    design = {false, *sd};
  }
  c.p_holm = c.p;
  c.detectable = stats::detectable_difference(design, c.n, c.n_reference, kAlpha, kPower);
  c.seeds_needed = stats::seeds_needed(design, c.difference, kAlpha, kPower, kMaxSeeds);
  return c;
}

void correct_for_multiple_comparisons(std::vector<MethodRow>& rows) {
  std::map<std::string, std::vector<size_t>> families;  // reference (data set, student model) -> rows
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i].comparison) families[rows[i].best.dataset_key + "\x1f" + rows[i].best.model].push_back(i);
  for (const auto& [key, members] : families) {
    std::vector<double> p;
    for (size_t i : members) p.push_back(rows[i].comparison->p);
    const auto adjusted = stats::holm_adjust(p);
    for (size_t j = 0; j < members.size(); ++j) {
      rows[members[j]].comparison->p_holm = adjusted[j];
      rows[members[j]].comparison->family = members.size();
    }
  }
}

void selection_stability(std::vector<MethodRow>& rows, std::vector<SettingStats>& settings) {
  for (auto& row : rows) {
    const auto& idx = row.setting_indices;
    if (idx.size() < 2) continue;
    // Each setting's validation top-1 by seed (a repeated seed: the mean of its runs).
    std::vector<std::map<int64_t, double>> val(idx.size());
    std::vector<int64_t> seeds;
    for (size_t s = 0; s < idx.size(); ++s) {
      const auto& st = settings[idx[s]];
      std::map<int64_t, int> count;
      for (size_t i = 0; i < st.val.size() && i < st.val_seeds.size(); ++i) {
        val[s][st.val_seeds[i]] += st.val[i];
        ++count[st.val_seeds[i]];
        seeds.push_back(st.val_seeds[i]);
      }
      for (auto& [seed, v] : val[s]) v /= count[seed];
    }
    std::sort(seeds.begin(), seeds.end());
    seeds.erase(std::unique(seeds.begin(), seeds.end()), seeds.end());
    if (seeds.size() < 2) continue;
    SplitMix64 rng(
        fnv1a(row.best.dataset_key + "\x1f" + row.best.model + "\x1f" + row.best.teachers + "\x1f" + row.best.label));
    std::vector<size_t> wins(idx.size(), 0);
    size_t drawn = 0;
    std::vector<int64_t> draw(seeds.size());
    for (size_t b = 0; b < kResamples; ++b) {
      for (auto& d : draw) d = seeds[rng.below(seeds.size())];
      std::optional<size_t> best;
      double best_mean = 0;
      for (size_t s = 0; s < idx.size(); ++s) {
        double sum = 0;
        size_t n = 0;
        for (int64_t d : draw)
          if (auto it = val[s].find(d); it != val[s].end()) {
            sum += it->second;
            ++n;
          }
        if (n == 0) continue;
        const double m = sum / static_cast<double>(n);
        if (!best || m > best_mean) {  // strict: a tie keeps the setting that comes first
          best = s;
          best_mean = m;
        }
      }
      if (!best) continue;
      ++wins[*best];
      ++drawn;
    }
    if (drawn == 0) continue;
    for (size_t s = 0; s < idx.size(); ++s)
      settings[idx[s]].chosen_share = static_cast<double>(wins[s]) / static_cast<double>(drawn);
    row.best.chosen_share = settings[row.best_index].chosen_share;
    row.stability = row.best.chosen_share;
  }
}

}  // namespace kd
