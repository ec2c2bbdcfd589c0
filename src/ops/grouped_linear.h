// grouped_linear: the first half of the grouped output projection (spec §4.2.8, HF
// DeepseekV4GroupedLinear): heads are grouped contiguously and group g is projected by its own
// block of rows of W: y[t, g, r] = Σ_k x[t, g, k] · W[g·out_per_group + r, k].
// GPU contract (the CUDA backend, through linear_sm90 with groups): as linear — x rounded to BF16
// (nearest even) and W exact, fp32 accumulation; F32 weights keep x in fp32 (SGEMM).
#pragma once

#include <cstdint>

#include "core/quant.h"
#include "core/status.h"
#include "ops/linear.h"  // ActivationPrecision

namespace dsv4 {

struct GroupedLinearParams {
  const float* x = nullptr;  // [n_tokens, n_groups, w.cols]
  WeightView w;              // [n_groups · out_per_group, in_per_group]
  float* y = nullptr;        // [n_tokens, n_groups, out_per_group]
  int64_t n_tokens = 0;
  int64_t n_groups = 0;
};

Status check_grouped_linear(const GroupedLinearParams& p);

namespace cpu {
// kBF16: x is rounded to BF16 first, as the GPU does for quantized and BF16 weights.
void grouped_linear(const GroupedLinearParams& p,
                    ActivationPrecision x_precision = ActivationPrecision::kF32);
}  // namespace cpu

}  // namespace dsv4
