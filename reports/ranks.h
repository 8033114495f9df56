// Methods ranked across data sets and teacher-student pairs, as benchmark papers compare them (Demsar 2006):
// mean ranks, Friedman's test and the Nemenyi critical difference, drawn by figures.py as a
// critical-difference diagram.
//
// A block is one data set, one student model and one root teacher (the teacher a method distils from,
// through assistant chains: "big", "big, wide" and "big -> TA mid" all have root "big"), with the student
// alone of that data set and model in it. A block's value of a method is the mean test top-1 of its best
// setting (chosen on validation); rank 1 is the best of the block, ties share the mean rank.
//
// Methods are matched across blocks by name: the sweep's label when that label is used in two or more
// blocks; otherwise the method's registry name (configs that give one entry per pair, such as
// cifar100.json's kd_resnet32x4_resnet8x4, match by method), unless another row of the block already has
// that name, which keeps its label. The student alone is its method's registry name in every block. Only
// methods present in every block are ranked; the others are listed as left out.
#pragma once
#include <optional>

#include "reports/aggregate.h"

namespace kd {

// nullopt unless there are two or more blocks and two or more methods present in all of them (and the
// blocks are not all one tie).
std::optional<RankAnalysis> rank_across_blocks(const ReportData& d);

}  // namespace kd
