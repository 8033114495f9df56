// RepDistiller's ConvReg, the feature adapter of its FitNet regressor and of AB's connectors
// (HobbitLong/RepDistiller @ b84f547c5db6a35318d4671d7d5c4de74c822403, models/util.py, class ConvReg):
// a convolution WITH bias chosen by the spatial sizes of the student map s [B, sC, sH, sW] and the teacher
// map t [B, tC, tH, tW], then BatchNorm2d(tC), then (use_relu, FitNet) a ReLU:
//   sH == 2 tH   Conv2d(sC, tC, 3, stride 2, padding 1)
//   2 sH == tH   ConvTranspose2d(sC, tC, 4, stride 2, padding 1)
//   sH >= tH     Conv2d(sC, tC, (1 + sH - tH, 1 + sW - tW))     (1x1 when the sizes are equal)
//   otherwise    an error (RepDistiller raises NotImplemented)
// The branches are tested in this order, as in the reference (8 -> 4 takes the stride-2 conv, not a 5x5 one);
// only the heights choose, the widths enter the kernel of the third branch (a narrower student map is an error).
// Parameter names are the reference's ("conv.weight", "conv.bias", "bn.*"), so state dicts carry over.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace kd {

struct ConvRegImpl : torch::nn::Module {
  // `s` and `t` are the [B, C, H, W] shapes; `key` and `what` name the config key and the tap in the error a
  // shape pair the reference cannot connect raises (ConfigError).
  ConvRegImpl(const std::vector<int64_t>& s, const std::vector<int64_t>& t, bool use_relu, const std::string& key,
              const std::string& what);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::ConvTranspose2d deconv{nullptr};  // registered as "conv", as in the reference
  torch::nn::BatchNorm2d bn{nullptr};
  bool use_relu;
};
TORCH_MODULE(ConvReg);

}  // namespace kd
