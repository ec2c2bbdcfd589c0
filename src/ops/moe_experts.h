// moe_experts: y[t] = Σ_k weight[t, k] · expert_{id[t, k]}(x[t]) with the clamped SwiGLU
// (spec §4.4): g = min(x·W1ᵀ, L), u = clamp(x·W3ᵀ, −L, L), expert(x) = (silu(g) · u)·W2ᵀ.
// As HF: the routing weight multiplies the W2 output; experts are summed in ascending id order.
// The shared expert is this op with one expert, id 0 and weight 1.
#pragma once

#include <cstdint>

#include "core/quant.h"
#include "core/status.h"

namespace dsv4 {

struct ExpertWeights {
  WeightView w1;  // [d_ff, d_model] gate
  WeightView w3;  // [d_ff, d_model] up
  WeightView w2;  // [d_model, d_ff] down
};

struct MoeExpertsParams {
  const float* x = nullptr;                // [n_tokens, d_model]
  const int32_t* expert_ids = nullptr;     // [n_tokens, top_k]
  const float* weights = nullptr;          // [n_tokens, top_k]
  const ExpertWeights* experts = nullptr;  // [n_experts]
  float* y = nullptr;                      // [n_tokens, d_model], overwritten
  int64_t n_tokens = 0;
  int64_t d_model = 0;
  int64_t d_ff = 0;
  int64_t n_experts = 0;
  int64_t top_k = 0;
  float swiglu_limit = 0.0f;
};

Status check_moe_experts(const MoeExpertsParams& p);

namespace cpu {
void moe_experts(const MoeExpertsParams& p);
}  // namespace cpu

}  // namespace dsv4
