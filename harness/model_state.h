// Operations on a model's weights that the trainer needs: snapshots for best-on-validation, memory format,
// and the parameters upstream of a tap (for stages that train only part of a student).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "models/model.h"

namespace kd {

// Deterministic initial weights: the same (model, seed) gives the same weights in every run.
ModelPtr create_seeded_model(const std::string& name, const DataSplits& data, int64_t seed);

// Copies of every parameter and buffer, and putting them back.
std::vector<torch::Tensor> snapshot(torch::nn::Module& m);
void restore(torch::nn::Module& m, const std::vector<torch::Tensor>& saved);
// 4-D parameters (convolution weights) in channels-last memory format.
void to_channels_last(torch::nn::Module& m);
// Student parameters upstream of `tap` (found by autograd on a probe batch `x`).
std::vector<torch::Tensor> parameters_upstream_of(TapModel& model, const std::string& tap, const torch::Tensor& x);
// The shape of every tap of `model` on `x` (eval mode, no grad; the model's mode is restored).
TapShapes tap_shapes(TapModel& model, const torch::Tensor& x);

}  // namespace kd
