// Each method against the student alone, and the noise in choosing its best setting:
//  * compare_with_reference: the paired t-test by seed where the two rows' seed sets match (runs of a seed
//    share initial weights and batches), Welch's t-test where they do not; the difference's 95% interval;
//    the smallest difference the comparison could detect and the seeds that would detect the observed one
//    (reports/power.h, at kAlpha and kPower);
//  * correct_for_multiple_comparisons: Holm-Bonferroni over the rows compared with the same reference;
//  * selection_stability: how often the setting chosen on validation stays chosen when the seeds are
//    resampled (a bootstrap with a fixed seed per row: the same store always gives the same shares).
#pragma once
#include <optional>
#include <vector>

#include "reports/aggregate.h"

namespace kd {

// `method`'s test top-1 against `reference`'s; nullopt when either has fewer than 2 values, or the
// test is undefined (no spread at all).
std::optional<Comparison> compare_with_reference(const SettingStats& method, const SettingStats& reference);

// Sets p_holm and family of every row's comparison: Holm over the rows with the same reference (same data
// set and student model).
void correct_for_multiple_comparisons(std::vector<MethodRow>& rows);

// For each row with two or more settings (`setting_indices` into `settings`) and two or more seeds: draws
// kResamples resamples of the seeds (with replacement, as many as there are), picks the best setting by
// mean validation top-1 over each resample (a tie keeps the first setting, as the report does), and sets
// each setting's chosen_share and the row's stability (the chosen setting's share).
void selection_stability(std::vector<MethodRow>& rows, std::vector<SettingStats>& settings);

}  // namespace kd
