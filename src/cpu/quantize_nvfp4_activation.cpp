// CPU reference of `quantize_nvfp4_activation`: the core quantizer (core/quant.cpp) into the op's
// output buffers.
#include "ops/quantize_nvfp4_activation.h"

#include <algorithm>

#include "core/quant.h"

namespace dsv4 {

Status check_quantize_nvfp4_activation(const QuantizeNvfp4ActivationParams& p) {
  if (!p.x || !p.codes || !p.block_scales || !p.global_scale)
    return Status::error("quantize_nvfp4_activation: null input or output");
  if (p.rows < 0 || p.cols <= 0 || p.cols % kNvfp4Block != 0)
    return Status::errorf(
        "quantize_nvfp4_activation: shape [{}, {}]; expected rows >= 0 and cols a positive "
        "multiple of {}",
        p.rows, p.cols, kNvfp4Block);
  return {};
}

namespace cpu {

void quantize_nvfp4_activation(const QuantizeNvfp4ActivationParams& p) {
  const Nvfp4Activation q = dsv4::quantize_nvfp4_activation(p.x, p.rows, p.cols);
  std::copy(q.codes.begin(), q.codes.end(), p.codes);
  std::copy(q.block_scales.begin(), q.block_scales.end(), p.block_scales);
  *p.global_scale = q.global_scale;
}

}  // namespace cpu
}  // namespace dsv4
