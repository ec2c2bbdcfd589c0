// rms_norm: y = x / sqrt(mean(x²) + eps), times `weight` when given (spec §2 P1 weighted, P2
// unweighted). HF order: normalise in fp32, then multiply by the weight.
// GPU contract (cuda::rms_norm): fp32, as the reference (a tree sum for Σx²).
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct RmsNormParams {
  const float* x = nullptr;       // [n_rows, dim]
  const float* weight = nullptr;  // [dim]; null = unweighted (per-head q norm, mHC input norm)
  float* y = nullptr;             // [n_rows, dim]; may alias x
  int64_t n_rows = 0;
  int64_t dim = 0;
  float eps = 1e-6f;
};

Status check_rms_norm(const RmsNormParams& p);

namespace cpu {
void rms_norm(const RmsNormParams& p);
}  // namespace cpu

}  // namespace dsv4
