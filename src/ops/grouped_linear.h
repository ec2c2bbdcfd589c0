// grouped_linear: the first half of the grouped output projection (spec §4.2.8, HF
// DeepseekV4GroupedLinear): heads are grouped contiguously and group g is projected by its own
// block of rows of W: y[t, g, r] = Σ_k x[t, g, k] · W[g·out_per_group + r, k].
// GPU contract (cuda::grouped_linear): fp32 x (not rounded), the weight exact, fp32 accumulation.
#pragma once

#include <cstdint>

#include "core/quant.h"
#include "core/status.h"

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
void grouped_linear(const GroupedLinearParams& p);
}  // namespace cpu

}  // namespace dsv4
