// quantize_nvfp4_activation: x ≈ e2m1(code) · e4m3(block scale) · global_scale with the run-time
// global scale amax(|x|) / (6·448) over the whole tensor (core/quant.h, Nvfp4Activation), the
// activation side a W4A4 GEMM (Blackwell) needs. Per row, blocks of 16 columns:
//   block scale = e4m3(max(block_amax / (6·global), 0)), step = block scale · global,
//   code = e2m1(x / step) (0 when step is 0); two codes per byte, the low nibble the even column.
// Not called by the model yet: each backend has it so that the GPU quantizer is tested against
// the CPU's bit for bit.
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct QuantizeNvfp4ActivationParams {
  const float* x = nullptr;         // [rows, cols]
  uint8_t* codes = nullptr;         // [rows, cols/2] e2m1 pairs
  uint8_t* block_scales = nullptr;  // [rows, cols/16] E4M3
  float* global_scale = nullptr;    // [1] amax / (6·448); 0 for an all-zero tensor
  int64_t rows = 0;
  int64_t cols = 0;  // a multiple of 16
};

Status check_quantize_nvfp4_activation(const QuantizeNvfp4ActivationParams& p);

namespace cpu {
void quantize_nvfp4_activation(const QuantizeNvfp4ActivationParams& p);
}  // namespace cpu

}  // namespace dsv4
