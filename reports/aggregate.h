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
//  * gain = mean test(method) - mean test(reference of the same student model);
//    gap closed = (method - reference) / (teacher - reference), teacher = final.test.top1 of the
//    strongest 'teacher' run the method distils from (through teacher-assistant chains);
//  * p = two-sided Welch's t-test of the method's seeds against the reference's seeds;
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

// One (pair, method entry, setting) over its seeds.
struct SettingStats {
  std::string model, label, method, setting;  // label: the sweep's name for the method entry; setting: JSON
  bool reference = false;                     // the reference method's runs (the from-scratch student)
  std::vector<std::string> teacher_ids;       // the runs its first run distils from (teachers or assistants)
  std::string teachers;  // who it distils from, by identity: "big", "big, wide", "big -> TA cnn_medium" ("" = none)
  std::vector<int64_t> seeds;                   // of the done runs, in store order
  std::vector<double> val, test, bestval_test;  // final.val.top1, final.test.top1, bestval.test.top1
  int failed = 0, incomplete = 0;               // runs failed / still pending or running
  int64_t method_params = 0, params = 0, macs = 0;
  std::vector<double> latency_ms;         // batch-1 inference latency recorded by each done run
  std::vector<std::string> run_ids;       // every run of the group, any status
  std::vector<std::string> done_run_ids;  // parallel to seeds
  nlohmann::json provenance;              // the published line its method entry reproduces (null = unsaid)
};

struct MethodRow {
  SettingStats best;                                // best setting by mean validation top-1
  size_t best_index = 0;                            // into ReportData::settings
  int settings = 0;                                 // how many settings were compared
  int failed = 0, incomplete = 0;                   // over every setting of the method
  std::optional<double> gain, gap_closed, p_value;  // against the reference; gap_closed in percent
  std::optional<double> teacher_top1;               // the teacher the gap is measured to
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

// A final metric when it is recorded and finite.
std::optional<double> finite_final(const std::map<std::string, double>& finals, const std::string& key);

}  // namespace kd
