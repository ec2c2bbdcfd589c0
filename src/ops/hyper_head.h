// hyper_head: the final stream reduction (spec §5): mix = fn · (v / rms(v)),
// pre = sigmoid(mix·scale + base) + hc_eps, z = Σ_j pre_j · h_j. No Sinkhorn, no post.
// GPU contract (cuda::hyper_head): fp32 throughout, as the reference (tree sums for mix).
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct HyperHeadParams {
  const float* h = nullptr;      // [n_tokens, hc_mult, d_model]
  const float* fn = nullptr;     // [hc_mult, hc_mult·d_model]
  const float* base = nullptr;   // [hc_mult]
  const float* scale = nullptr;  // [1]
  float* z = nullptr;            // [n_tokens, d_model]
  int64_t n_tokens = 0;
  int64_t hc_mult = 0;
  int64_t d_model = 0;
  float rms_eps = 1e-6f;
  float hc_eps = 1e-6f;
};

Status check_hyper_head(const HyperHeadParams& p);

namespace cpu {
void hyper_head(const HyperHeadParams& p);
}  // namespace cpu

}  // namespace dsv4
