#include "methods/conv_reg.h"

#include "base/errors.h"

namespace kd {

ConvRegImpl::ConvRegImpl(const std::vector<int64_t>& s, const std::vector<int64_t>& t, bool relu,
                         const std::string& key, const std::string& what)
    : use_relu(relu) {
  if (s.size() != 4 || t.size() != 4)
    throw ConfigError(key, "RepDistiller's ConvReg needs 4-D feature maps (" + what + ")");
  const int64_t sC = s[1], sH = s[2], sW = s[3], tC = t[1], tH = t[2], tW = t[3];
  namespace nn = torch::nn;
  if (sH == 2 * tH) {
    conv = register_module("conv", nn::Conv2d(nn::Conv2dOptions(sC, tC, 3).stride(2).padding(1)));
  } else if (sH * 2 == tH) {
    deconv = register_module("conv", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(sC, tC, 4).stride(2).padding(1)));
  } else if (sH >= tH && sW >= tW) {
    conv = register_module("conv", nn::Conv2d(nn::Conv2dOptions(sC, tC, {1 + sH - tH, 1 + sW - tW})));
  } else {
    throw ConfigError(key, "RepDistiller's ConvReg cannot map " + what + ": student map " + std::to_string(sH) + "x" +
                               std::to_string(sW) + " to the teacher's " + std::to_string(tH) + "x" +
                               std::to_string(tW) +
                               " (it takes a student height of twice, half, or at least the "
                               "teacher's)");
  }
  bn = register_module("bn", nn::BatchNorm2d(tC));
}

torch::Tensor ConvRegImpl::forward(const torch::Tensor& x) {
  auto y = bn(conv ? conv(x) : deconv(x));
  return use_relu ? torch::relu(y) : y;
}

}  // namespace kd
