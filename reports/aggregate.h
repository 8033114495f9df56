// Aggregation: the results store read into the numbers every report file shows (ReportData).
//
// Rules (the ones a reader of a paper needs to trust the numbers):
//  * student runs (role 'student') are grouped by (teacher-student pair, method entry, setting), where
//    the pair is the student model plus the run's teachers; a group's values are over its seeds;
//  * per group: mean, sample std (n-1) and 95% Student-t CI of final.test.top1, final.val.top1 and
//    bestval.test.top1 (n = 1: std and CI are "n/a", never 0);
//  * each method's best setting is the one with the highest mean final.val.top1 (VALIDATION only, never
//    test); ties keep the setting that comes first in the sweep (the store's run order);
//  * the reference is the method whose runs the store flags `reference` (the from-scratch student; the
//    method declares it, no name is special here);
//  * gain = mean test(method) - mean test(reference of the same student model and data set);
//    gap closed = (method - reference) / (teacher - reference), teacher = final.test.top1 of the
//    strongest 'teacher' run the method distils from (through teacher-assistant chains);
//  * the comparison with the reference (reports/compare.h): where the method's best setting and the
//    reference have test values for exactly the same seeds, the seeds pair them (runs of a seed share initial
//    weights and batches): the paired t-test on the per-seed differences, with their mean and its 95%
//    interval; otherwise Welch's t-test and its interval. p is corrected by Holm-Bonferroni over the rows
//    compared with the same reference; "better"/"worse" need the corrected p below 0.05. Each comparison
//    states the smallest difference it could detect (alpha 0.05, power 0.8, from the observed paired std, or
//    the pooled std for Welch's) and the seeds that would detect the observed difference;
//  * the stability of the best setting: the share of 2000 bootstrap resamples of the seeds (seeded by the
//    row's identity, so the same store gives the same numbers) in which the chosen setting stays best;
//  * several students or data sets: ranks across them, Friedman's test and Nemenyi's critical difference
//    (reports/ranks.h);
//  * failed runs are counted in every row they belong to and listed in a table of their own.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "store/store.h"

namespace kd {

// The report's statistical conventions.
constexpr double kAlpha = 0.05;      // level of every test, two-sided
constexpr double kPower = 0.8;       // power at which the detectable difference and the seeds needed are stated
constexpr size_t kMaxSeeds = 10000;  // the seeds needed are searched up to this many
constexpr size_t kResamples = 2000;  // bootstrap resamples of the seeds for the stability of the best setting

// One (data set, pair, method entry, setting) over its seeds.
struct SettingStats {
  std::string dataset;                        // the runs' data set name (config "dataset.name"; "" when not recorded)
  std::string dataset_key;                    // the whole dataset config, which tells data sets apart
  std::string model, label, method, setting;  // label: the sweep's name for the method entry; setting: JSON
  bool reference = false;                     // the reference method's runs (the from-scratch student)
  std::vector<std::string> teacher_ids;       // the runs its first run distils from (teachers or assistants)
  std::string teachers;      // who it distils from, by identity: "big", "big, wide", "big -> TA cnn_medium" ("" = none)
  std::string root_teacher;  // the first teacher at the root of its chain ("big" for all three above)
  std::vector<int64_t> seeds;                   // of the done runs, in store order
  std::vector<double> val, test, bestval_test;  // final.val.top1, final.test.top1, bestval.test.top1
  std::vector<int64_t> val_seeds, test_seeds;   // the seed of each value of val and test
  int failed = 0, incomplete = 0;               // runs failed / still pending or running
  int64_t method_params = 0, params = 0, macs = 0;
  std::vector<double> latency_ms;         // batch-1 inference latency recorded by each done run
  std::vector<std::string> run_ids;       // every run of the group, any status
  std::vector<std::string> done_run_ids;  // parallel to seeds
  nlohmann::json provenance;              // the published line its method entry reproduces (null = unsaid)
  // Share of the bootstrap resamples of the seeds in which this setting is its method's best on validation
  // (nullopt when the method has one setting or fewer than 2 seeds).
  std::optional<double> chosen_share;
};

// How a row compares with the reference (the student alone) of its student model and data set.
struct Comparison {
  bool paired = false;            // true: paired t-test by seed (same seed sets); false: Welch's t-test
  size_t n = 0, n_reference = 0;  // the method's and the reference's values (pairs: n = n_reference)
  double difference = 0;          // mean(method) - mean(reference), = the mean of the paired differences
  double ci95 = 0;                // half-width of the difference's 95% interval (paired, or Welch's)
  double t = 0, dof = 0, p = 1;   // two-sided
  double p_holm = 1;              // Holm-Bonferroni over the `family` rows compared with the same reference
  size_t family = 1;
  double sd = 0;                       // of the paired differences, or the pooled std (Welch's rows)
  std::optional<double> detectable;    // smallest |difference| detected with power kPower at kAlpha
  std::optional<size_t> seeds_needed;  // seeds that detect `difference` so (nullopt: more than kMaxSeeds)
  // +1 better than the reference, -1 worse, 0 not shown (Holm-corrected p >= kAlpha).
  int verdict() const { return p_holm < kAlpha ? (difference > 0 ? 1 : -1) : 0; }
};

struct MethodRow {
  SettingStats best;                       // best setting by mean validation top-1
  size_t best_index = 0;                   // into ReportData::settings
  std::vector<size_t> setting_indices;     // every setting of the method entry, in sweep order
  int settings = 0;                        // how many settings were compared
  int failed = 0, incomplete = 0;          // over every setting of the method
  std::optional<double> gain, gap_closed;  // against the reference; gap_closed in percent
  std::optional<Comparison> comparison;    // against the reference (none for the reference itself)
  std::optional<double> teacher_top1;      // the teacher the gap is measured to
  std::optional<double> stability;         // the best setting's chosen_share
};

// Mean ranks across blocks (a block: one data set, student model and root teacher, with the student alone),
// Friedman's test and Nemenyi's critical difference (Demsar 2006); see reports/ranks.h.
struct RankAnalysis {
  std::vector<std::string> blocks;              // "cnn_tiny <- cnn_large" (+ " (data set)" when there are several)
  std::vector<std::string> treatments;          // methods present in every block, best mean rank first
  std::vector<std::vector<double>> values;      // [treatment][block]: mean test top-1 of the best setting
  std::vector<double> mean_ranks;               // per treatment (1 = the best of a block)
  double chi2 = 0, dof = 0, p = 1;              // Friedman
  double q_alpha = 0, critical_difference = 0;  // Nemenyi at kAlpha
  std::vector<std::string> left_out;            // methods not in every block, with how many blocks they are in
};

struct TeacherStats {
  std::string run_id, name, model;
  RunStatus status = RunStatus::Pending;
  std::optional<double> test, val;
  int64_t params = 0, macs = 0;
};

struct ReportData {
  std::vector<SettingStats> settings;  // in store order of first appearance
  std::vector<MethodRow> rows;         // per student model (first appearance): the reference first, then sweep order
  std::vector<TeacherStats> teachers;  // role 'teacher' runs
  std::map<std::string, double> teacher_top1;       // teacher name -> final.test.top1 (done teachers)
  nlohmann::json sweeps = nlohmann::json::array();  // [{id, name, config, environment}]
  std::map<std::string, int> status_counts;         // every run (any role) by status: "done" -> 12
  bool several_datasets = false;                    // the store holds runs of more than one data set
  std::optional<RankAnalysis> ranks;                // two or more blocks with two or more common methods
};

// Aggregates the store (pure: reads only; tests call it on a hand-made store).
ReportData aggregate(const ResultsStore& store);

// Indices into ReportData::settings of the settings chosen as some row's best.
std::set<size_t> selected_settings(const ReportData& d);

// The report's title: the first sweep's name ("sweep" when the store has none).
std::string report_title(const ReportData& d);

// A method entry's "provenance" in one line: "owner/repo@commit7 file:line args (note)"; "" for null.
std::string provenance_text(const nlohmann::json& provenance);

// label, or "label (method)" when the sweep named the entry differently from its method.
std::string method_text(const SettingStats& s);

// The student model, with its data set when the store holds several: "cnn_tiny (cifar10)".
std::string student_text(const ReportData& d, const SettingStats& s);

// A final metric when it is recorded and finite.
std::optional<double> finite_final(const std::map<std::string, double>& finals, const std::string& key);

}  // namespace kd
